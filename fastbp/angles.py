"""Angle between a trainer's update direction and the backprop gradient, per layer.

Any trainer that implements ``update_directions(X, y)`` (every trainer in
``alternatives/`` does) can be measured against the exact gradient of the
same objective; `fastbp.compare` records it after every epoch for the
trainers that have it. (``alternatives.alignment`` offers the same measure as
a ``fit`` callback.)
"""
import numpy as np

from .optim import SGD


def layer_angles(directions, gradients):
    """Angle in degrees, per weight layer, between two parameter lists.

    Parameters
    ----------
    directions, gradients : list of ndarray
        Aligned with an MLP's ``params`` ([W_1, b_1, ..., W_L, b_L]); a
        layer's weight and bias entries are taken together as one vector.

    Returns
    -------
    ndarray (L,) float64
        arccos of the cosine similarity in degrees, in [0, 180]; NaN where
        either vector is zero.
    """
    if len(directions) != len(gradients) or len(directions) % 2:
        raise ValueError(f"directions and gradients must be [W_1, b_1, ..., W_L, b_L] lists "
                         f"of equal length, got {len(directions)} and {len(gradients)} entries")
    angles = np.empty(len(directions) // 2, dtype=np.float64)
    for i, l in enumerate(range(0, len(directions), 2)):
        a = np.concatenate([directions[l].ravel(), directions[l + 1].ravel()]).astype(np.float64)
        b = np.concatenate([gradients[l].ravel(), gradients[l + 1].ravel()]).astype(np.float64)
        na, nb = np.linalg.norm(a), np.linalg.norm(b)
        if na == 0 or nb == 0:
            angles[i] = np.nan
        else:
            angles[i] = np.degrees(np.arccos(np.clip(a @ b / (na * nb), -1.0, 1.0)))
    return angles


def has_update_directions(trainer):
    """True when ``trainer`` implements ``update_directions`` (the base
    `fastbp.Trainer` only declares it)."""
    from .trainer import Trainer
    method = getattr(type(trainer), "update_directions", None)
    return callable(method) and method is not Trainer.update_directions


def gradient_alignment(trainer, X, y):
    """Per-layer angle between ``trainer.update_directions(X, y)`` and the
    backprop gradient of the same objective at the current parameters.

    Parameters
    ----------
    trainer : fastbp.Trainer
        A trainer of an `fastbp.MLP` with ``update_directions``.
    X : ndarray (n, n_inputs) of the model's dtype
    y : targets for X

    Returns
    -------
    ndarray (L,) float64
        Degrees per weight layer: 0 = along the gradient, 90 = orthogonal.
    """
    from .backprop import BackpropTrainer
    reference = BackpropTrainer(trainer.model, loss=trainer.loss, optimizer=SGD(1.0),
                                weight_decay=trainer.weight_decay)
    return layer_angles(trainer.update_directions(X, y), reference.gradients(X, y))

"""Angles between a trainer's updates and the true gradient, per layer."""
import numpy as np

from fastbp import BackpropTrainer, SGD


def layer_angles(directions, gradients):
    """Angle in degrees, per layer, between two lists aligned with ``model.params``.

    Parameters
    ----------
    directions, gradients : list of ndarray
        [W_1, b_1, ..., W_L, b_L]-shaped arrays; each layer's weight and bias
        entries are taken together as one vector.

    Returns
    -------
    ndarray (L,) float64
        arccos of the cosine similarity, in [0, 180]; NaN for a layer where
        either vector is zero.
    """
    angles = []
    for l in range(0, len(directions), 2):
        a = np.concatenate([directions[l].ravel(), directions[l + 1].ravel()]).astype(np.float64)
        b = np.concatenate([gradients[l].ravel(), gradients[l + 1].ravel()]).astype(np.float64)
        na, nb = np.linalg.norm(a), np.linalg.norm(b)
        if na == 0 or nb == 0:
            angles.append(np.nan)
        else:
            angles.append(np.degrees(np.arccos(np.clip(a @ b / (na * nb), -1.0, 1.0))))
    return np.array(angles)


def alignment(trainer, X, y):
    """Per-layer angle between ``trainer.update_directions(X, y)`` and the
    backprop gradient of the same objective (same loss and weight decay) at
    the current parameters. Nothing is updated.

    Parameters
    ----------
    trainer : fastbp.Trainer
        Any trainer with ``update_directions``.
    X : ndarray (n_samples, n_inputs); y : targets for X

    Returns
    -------
    ndarray (L,) float64
        Degrees, one per weight layer: 0 means the trainer moves that layer
        exactly along the gradient, 90 orthogonally to it.
    """
    reference = BackpropTrainer(trainer.model, loss=trainer.loss, optimizer=SGD(1.0),
                                weight_decay=trainer.weight_decay)
    return layer_angles(trainer.update_directions(X, y), reference.gradients(X, y))


class AlignmentRecorder:
    """A ``fit`` callback that appends :func:`alignment` on (X, y) after every
    epoch to ``history.records["alignment"]`` (one (L,) array per epoch).

    Examples
    --------
    >>> hist = trainer.fit(X, y, epochs=10, callbacks=[AlignmentRecorder(Xv, yv)])
    ...                                                          # doctest: +SKIP
    >>> np.array(hist.records["alignment"])                     # (epochs, L) degrees
    ...                                                          # doctest: +SKIP
    """

    def __init__(self, X, y, key="alignment"):
        self.X = X
        self.y = y
        self.key = key

    def __call__(self, trainer, epoch, history):
        history.records.setdefault(self.key, []).append(alignment(trainer, self.X, self.y))

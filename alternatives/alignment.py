"""Angles between a trainer's updates and the true gradient, per layer."""
from fastbp import SGD, BackpropTrainer
from fastbp.angles import layer_angles

__all__ = ["AlignmentRecorder", "alignment", "layer_angles"]


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

"""Angles between a trainer's updates and the true gradient, per layer:
fastbp's own measure (``alignment`` is :func:`fastbp.angles.gradient_alignment`)
as a ``fit`` callback."""
from fastbp.angles import gradient_alignment as alignment
from fastbp.angles import layer_angles

__all__ = ["AlignmentRecorder", "alignment", "layer_angles"]


class AlignmentRecorder:
    """A ``fit`` callback that appends :func:`alignment` (the per-layer angle
    to the backprop gradient, :func:`fastbp.angles.gradient_alignment`) on
    (X, y) after every epoch to ``history.records["alignment"]`` (one (L,)
    array per epoch).

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

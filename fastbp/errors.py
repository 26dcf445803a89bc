"""Exceptions raised by fastbp."""


class DivergenceError(FloatingPointError):
    """A training step produced a non-finite loss or gradient.

    The model's parameters and the optimizer's state are exactly as they were
    before the failing step.

    Attributes
    ----------
    epoch : int or None
        1-based epoch in which the failing step ran (None for ``step``).
    history : History or None
        What ``fit`` recorded before the failure.
    """

    def __init__(self, message, epoch=None, history=None):
        super().__init__(message)
        self.epoch = epoch
        self.history = history

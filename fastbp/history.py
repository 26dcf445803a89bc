"""What ``fit`` records."""
from dataclasses import dataclass, field


@dataclass
class History:
    """Per-epoch record of a ``fit`` call.

    Attributes
    ----------
    loss : list of float
        Training objective per epoch: the mean over the epoch's samples of the
        batch objective (data loss + weight-decay penalty) at the time each
        batch was trained on.
    accuracy : list of float or None
        Training accuracy per epoch, measured on the batches as they were
        trained (classification losses only).
    val_loss, val_accuracy : list of float or None
        Validation loss (data loss, no penalty) and accuracy after each epoch.
    epoch_time : list of float
        Seconds per epoch. When several epochs ran in one kernel call (fit does
        that when nothing needs Python between epochs) each gets the call's
        time divided evenly.
    wall_time : list of float
        Seconds since ``fit`` started at the end of each epoch (validation and
        progress display included).
    iterations : int
        Parameter updates applied.
    training_time : float
        Seconds spent in ``fit``.
    diverged : bool
        True when training stopped on a non-finite loss or gradient
        (``on_divergence="stop"``); ``message`` then says where.
    records : dict of str -> list
        Per-epoch values that ``fit`` callbacks append (for example
        ``records["alignment"]`` from ``alternatives.AlignmentRecorder``).
    """

    loss: list = field(default_factory=list)
    accuracy: list = None
    val_loss: list = None
    val_accuracy: list = None
    epoch_time: list = field(default_factory=list)
    wall_time: list = field(default_factory=list)
    iterations: int = 0
    training_time: float = 0.0
    diverged: bool = False
    message: str = ""
    records: dict = field(default_factory=dict)

    @property
    def epochs(self):
        """Number of completed epochs."""
        return len(self.loss)

    def as_dict(self):
        """Plain dict of every field (for JSON)."""
        return {"loss": self.loss, "accuracy": self.accuracy, "val_loss": self.val_loss,
                "val_accuracy": self.val_accuracy, "epoch_time": self.epoch_time,
                "wall_time": self.wall_time, "iterations": self.iterations,
                "training_time": self.training_time, "epochs": self.epochs,
                "diverged": self.diverged, "message": self.message,
                "records": self.records}

    def __getitem__(self, key):
        return self.as_dict()[key]

    def __repr__(self):
        """One line: epochs, the last epoch's metrics and the time (the
        per-epoch lists are in the attributes and ``as_dict()``)."""
        parts = [f"{self.epochs} epoch{'' if self.epochs == 1 else 's'}"]
        for name in ("loss", "accuracy", "val_loss", "val_accuracy"):
            values = getattr(self, name)
            if values:
                parts.append(f"{name}={values[-1]:.4g}")
        parts.append(f"iterations={self.iterations}")
        parts.append(f"training_time={self.training_time:.3g} s")
        if self.records:
            parts.append(f"records={sorted(self.records)}")
        if self.diverged:
            parts.append(f"diverged: {self.message}")
        return f"History({', '.join(parts)})"

"""Extra parameter sets a trainer keeps beside the model's: feedback
matrices, learned inverses, synthetic-gradient modules, memories.

A trainer declares one with :meth:`fastbp.Trainer.add_parameter_set`; from
then on :meth:`~fastbp.Trainer.save_state` / :meth:`~fastbp.Trainer.load_state`
save and restore it (values and optimizer state), and its kernel arrays come
bundled as one :data:`fastbp.kernels.optim.StepArrays`, which
:func:`fastbp.kernels.optim.finish_steps` updates together with the model's,
all or nothing.
"""
import re

import numpy as np

from .kernels.optim import StepArrays
from .optim import get_optimizer

_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*\Z")


class ParameterSet:
    """One flat buffer of extra parameters, with its gradient buffer and,
    when it is learned, its own optimizer.

    Parameters
    ----------
    name : str
        An identifier; the set's arrays are saved as ``{name}_params``,
        ``{name}_optimizer_state`` and ``{name}_optimizer_hyper``.
    size : int >= 0
        Number of parameters.
    dtype : np.float32 or np.float64
        The model's dtype.
    optimizer : fb.SGD, fb.Adam, 'sgd', 'adam', None (Adam(1e-3)) or False
        The set's own optimizer (bound here to ``size`` parameters); False for
        a fixed set (e.g. random feedback matrices), which has no gradient
        buffer and no optimizer.

    Attributes
    ----------
    params : ndarray (size,)
        The values, zero until the trainer initialises them.
    grads : ndarray (size,) or None
        The gradient (update direction) buffer of a learned set.
    optimizer : fastbp.Optimizer or None
    train_hyper : ndarray (3,) float64 or None
        ``[loss code (unused), weight decay, clip norm]``: zeros, i.e. no weight
        decay and no clipping of this set's updates.
    step_arrays : StepArrays or None
        (params, grads, optimizer state, optimizer hyper, train_hyper) of a
        learned set, for step kernels.
    """

    def __init__(self, name, size, dtype, optimizer=None):
        if not isinstance(name, str) or not _NAME.match(name):
            raise ValueError(f"name={name!r} is not an identifier (letters, digits, '_')")
        self.name = name
        self.params = np.zeros(int(size), dtype=dtype)
        if optimizer is False:
            self.optimizer = self.grads = self.train_hyper = self.step_arrays = None
        else:
            self.optimizer = get_optimizer(optimizer)
            self.optimizer.bind(self.params.shape[0], self.params.dtype)
            self.grads = np.zeros_like(self.params)
            self.train_hyper = np.zeros(3, dtype=np.float64)
            self.step_arrays = StepArrays(self.params, self.grads, self.optimizer.state,
                                          self.optimizer.hyper, self.train_hyper)

    @property
    def size(self):
        """Number of parameters."""
        return self.params.shape[0]

    def state_arrays(self):
        """Arrays :meth:`fastbp.Trainer.save_state` writes for this set: name -> array."""
        arrays = {f"{self.name}_params": self.params}
        if self.optimizer is not None:
            arrays[f"{self.name}_optimizer_state"] = self.optimizer.state
            arrays[f"{self.name}_optimizer_hyper"] = self.optimizer.hyper
        return arrays

    def __repr__(self):
        opt = "fixed" if self.optimizer is None else f"optimizer={self.optimizer!r}"
        return f"ParameterSet({self.name!r}, size={self.size}, {opt})"

"""Reductions behind the input checks of :mod:`fastbp.validation`.

On the small arrays of one training step NumPy's per-call overhead is most of
the cost of a check: ``np.isfinite(X).all()`` took 1.8 us for a (32, 40)
float32 batch and ``y.min(), y.max()`` 1.9 us for 32 labels, where these
compiled loops take 0.27 and 0.24 us, dispatch included. The checks take
them for the common case (C-contiguous float32/float64 values, int64 labels)
and NumPy otherwise, so no other dtype or layout compiles a specialization.
These functions only reduce; the messages and decisions stay in Python.
Kernels that need the same test call them too (alternating minimisation's
candidates).
"""
import numpy as np
from numba import njit

from .codes import KERNEL


@njit(**KERNEL)
def all_finite_1d(x):
    """True when every entry of the 1-D float array x is finite (neither NaN
    nor +-inf); True for an empty x."""
    finite = True
    for i in range(x.shape[0]):
        finite &= np.isfinite(x[i])
    return finite


@njit(**KERNEL)
def label_range(y):
    """(min, max) of the non-empty 1-D int64 array y, in one pass."""
    lo = y[0]
    hi = y[0]
    for i in range(1, y.shape[0]):
        v = y[i]
        lo = min(lo, v)
        hi = max(hi, v)
    return lo, hi

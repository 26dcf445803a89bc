"""Numba kernels: pure array functions that write into preallocated outputs.

Nothing in this package validates input or touches Python objects; the public
API in :mod:`fastbp` validates, prepares arrays and then calls these kernels.
Integer codes (activations, losses, optimizers) are defined in
:mod:`fastbp.kernels.codes` and mapped from names by the registries in
:mod:`fastbp.activations`, :mod:`fastbp.losses` and :mod:`fastbp.optim`.
"""
import os as _os

from ..compile_cache import drop_stale_caches

#: this directory, for packages whose kernels call fastbp's
KERNELS_DIR = _os.path.dirname(_os.path.abspath(__file__))

drop_stale_caches(KERNELS_DIR)

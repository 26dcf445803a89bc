"""Compatibility module: the tasks moved to `fastbp.tasks`, the data loaders
and generators to `fastbp.data`.

``from fastbp import datasets`` keeps working (code written before the split
imports it); new code imports `fastbp.tasks` and `fastbp.data`.
"""
from .data import *  # noqa: F401,F403
from .data import __all__ as _data_all
from .data import _digits_arrays, _mnist1d_arrays  # noqa: F401
from .tasks import *  # noqa: F401,F403
from .tasks import __all__ as _tasks_all

__all__ = list(_tasks_all) + list(_data_all)

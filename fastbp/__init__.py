"""fastbp: backpropagation on the CPU with Numba-compiled kernels.

>>> import fastbp as fb
>>> model = fb.MLP([2, 2, 2], activation="sigmoid", output="sigmoid", seed=0)
>>> trainer = fb.BackpropTrainer(model, loss="squared_error", optimizer=fb.SGD(0.5))
"""
from . import compile_cache

# before any kernel module imports Numba: compiled kernels go to a per-user
# cache folder, never into the installed package
compile_cache.configure()

from .errors import DivergenceError
from .history import History
from .io import load
from .models import MLP, ElmanRNN
from .optim import SGD, Adam, Optimizer
from .backprop import BackpropTrainer
from .parameter_sets import ParameterSet
from .registry import TRAINERS, available_trainers, get_trainer, register_trainer
from .search_space import Choice, IntRange, LogUniform, Uniform
from .trainer import Trainer

__version__ = "0.1.0"

__all__ = ["MLP", "ElmanRNN", "BackpropTrainer", "Trainer", "ParameterSet", "SGD", "Adam",
           "Optimizer", "History", "DivergenceError", "load", "TRAINERS", "get_trainer", "register_trainer",
           "available_trainers", "compare", "Results", "Task", "tune", "Tuning",
           "LogUniform", "Uniform", "IntRange", "Choice",
           "__version__"]


def __getattr__(name):
    # fb.compare / fb.Results and fb.tune / fb.Tuning load the comparison and
    # tuning machinery (datasets, plotting hooks, Optuna) only when asked for,
    # so `import fastbp` stays cheap
    if name in ("compare", "Results"):
        from . import comparison
        return getattr(comparison, name)
    if name == "Task":   # a task (data, model, loss, budget); Task.from_arrays for your data
        from .tasks import Task
        return Task
    if name in ("tune", "Tuning"):
        from . import tuning
        return getattr(tuning, name)
    raise AttributeError(f"module 'fastbp' has no attribute {name!r}")

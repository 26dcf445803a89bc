"""fastbp: backpropagation on the CPU with Numba-compiled kernels.

>>> import fastbp as fb
>>> model = fb.MLP([2, 2, 2], activation="sigmoid", output="sigmoid", seed=0)
>>> trainer = fb.BackpropTrainer(model, loss="squared_error", optimizer=fb.SGD(0.5))
"""
from .errors import DivergenceError
from .history import History
from .io import load
from .models import MLP
from .optim import SGD, Adam, Optimizer
from .trainers import TRAINERS, BackpropTrainer, Trainer, get_trainer, register_trainer

__version__ = "0.1.0"

__all__ = ["MLP", "BackpropTrainer", "Trainer", "SGD", "Adam", "Optimizer", "History",
           "DivergenceError", "load", "TRAINERS", "get_trainer", "register_trainer",
           "__version__"]

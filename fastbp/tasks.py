"""Tasks: a data set, the model that learns it, its loss and a default budget.

``fastbp compare`` and `fastbp.compare` run every trainer on the same
`Task`. Each task names

* a loader that returns a `fastbp.data.Dataset` (train and test arrays,
  deterministic for a given seed and dtype; the loaders and generators live
  in `fastbp.data`),
* its model (a model kind, ``"MLP"`` or ``"ElmanRNN"``, and its arguments; the model
  seed is given per run, so every trainer starts from the same initialisation),
* its loss, optimizer, epochs and batch size,
* the test accuracy that counts as "reached" for the time-to-target column.

Registered tasks (see `available_tasks`; options after a colon, as in
``"adding:length=50"``):

========== ================================== ========================================
name       data                               model
========== ================================== ========================================
xor        the four XOR patterns              MLP 2-4-2 tanh/softmax
digits     scikit-learn 8x8 digits, (n, 64)   MLP 64-128-10 relu/softmax
digits-seq the same, read row by row (n, 8, 8) ElmanRNN 8-64-10 tanh, last state
mnist1d    MNIST-1D (Greydanus 2020), (n, 40) MLP 40-100-100-10 leaky_relu/softmax
mnist1d-seq MNIST-1D as sequences (n, 40, 1)  ElmanRNN 1-128-10, last state
adding     adding problem, (n, T, 2)          IRNN 2-32-1 relu, last state, regression
copy       copy-memory task, (n, 2S+D, K+2)   ElmanRNN K+2 -128- K+1, every step
echo       delayed echo of bits, (n, T, 2)    ElmanRNN 2-32-2 tanh, every step
========== ================================== ========================================

Optional packages (scikit-learn for digits, mnist1d for MNIST-1D) are in the
``compare`` extra; a missing one raises ImportError with the install command.
"""
from dataclasses import dataclass, field

import numpy as np

from .data import (load_adding, load_copy, load_digits, load_digits_sequence, load_echo,
                   load_mnist1d, load_mnist1d_sequence, load_xor)
from .io import model_class
from .optim import OPTIMIZERS
from .validation import check_dtype, check_seed

#: the adding problem counts a prediction as right when it is this close to
#: the target (Hochreiter & Schmidhuber 1997, experiment 4)
ADDING_TOLERANCE = 0.04


@dataclass(frozen=True)
class Task:
    """A registered task: data, model, loss and default budget.

    Attributes
    ----------
    name : str
        Registry name.
    description : str
        One line for listings and tables.
    loader : callable
        ``loader(seed, dtype, **options) -> fastbp.data.Dataset``.
    model : str
        Model kind (``"MLP"`` or ``"ElmanRNN"``, see `fastbp.io.model_class`).
    model_args : callable
        ``model_args(**options) -> dict`` of constructor arguments (without
        dtype and seed).
    loss : str
        Loss name for the trainer.
    optimizer : tuple
        ``("adam" | "sgd", kwargs)``; a fresh optimizer is built per run.
    epochs, batch_size : int
        Default budget.
    target_accuracy : float
        Test accuracy counted as "reached" (time to target).
    accuracy : str
        What accuracy means for this task (shown in docs and results.json).
    trainer_args : dict
        Extra trainer arguments every trainer gets (weight_decay, clip_norm).
    custom_accuracy : bool
        True when accuracy is not the arg-max accuracy that
        ``Trainer.evaluate`` reports (see `accuracy`).
    defaults : dict
        Default task options (sequence length, delay, sizes).
    trainer_options : dict
        Default options per trainer registry name, for trainers that need
        one (the truncation window of synthetic-gradient BPTT on sequence
        tasks); options given to ``compare`` take precedence.
    """

    name: str
    description: str
    loader: object
    model: str
    model_args: object
    loss: str
    optimizer: tuple
    epochs: int
    batch_size: int
    target_accuracy: float
    accuracy: str = "fraction of test samples whose arg-max output is the label"
    trainer_args: dict = field(default_factory=dict)
    defaults: dict = field(default_factory=dict)
    custom_accuracy: bool = False
    trainer_options: dict = field(default_factory=dict)

    def options(self, **overrides):
        """The task options: `defaults` updated by ``overrides``.

        Raises
        ------
        ValueError
            For an option the task does not have.
        """
        unknown = sorted(set(overrides) - set(self.defaults))
        if unknown:
            known = sorted(self.defaults) or "none"
            raise ValueError(f"task {self.name!r} has no option {unknown[0]!r}; "
                             f"its options: {known}")
        opts = dict(self.defaults)
        opts.update(overrides)
        return opts

    def load(self, seed=0, dtype=np.float32, **options):
        """The data set, deterministic for (seed, dtype, options).

        Parameters
        ----------
        seed : int >= 0
            Seed of generated data and of the train/test split where the task
            has one to draw.
        dtype : np.float32 or np.float64
            dtype of X (and of regression targets).
        **options
            Task options (see `defaults`).

        Returns
        -------
        Dataset
        """
        seed = check_seed(seed, "seed")
        if seed is None:
            raise TypeError("seed must be an int >= 0 (data must be reproducible), got None")
        dtype = check_dtype(dtype)
        return self.loader(seed, dtype, **self.options(**options))

    def build_model(self, seed, dtype=np.float32, **options):
        """A fresh model for this task, initialised from ``seed``.

        Parameters
        ----------
        seed : int >= 0
            Model initialisation seed (the same for every trainer of a run).
        dtype : np.float32 or np.float64
        **options
            Task options.

        Returns
        -------
        fb.MLP or fb.ElmanRNN
        """
        cls = model_class(self.model)
        args = self.model_args(**self.options(**options))
        return cls(**args, dtype=check_dtype(dtype), seed=seed)

    def make_optimizer(self, lr=None):
        """A fresh optimizer of this task's kind (``lr`` overrides its rate)."""
        kind, kwargs = self.optimizer
        kwargs = dict(kwargs)
        if lr is not None:
            kwargs["lr"] = lr
        return OPTIMIZERS[kind](**kwargs)

    @property
    def is_regression(self):
        return self.loss in ("mse", "squared_error")


# -- the registry --------------------------------------------------------------------

TASKS = {}


def register_task(task):
    """Add a `Task` to the registry under ``task.name`` and return it."""
    if not isinstance(task, Task):
        raise TypeError(f"task must be a fastbp.tasks.Task, got {type(task).__name__}")
    TASKS[task.name] = task
    return task


register_task(Task(
    "xor", "XOR truth table (4 patterns), MLP 2-4-2 tanh",
    load_xor, "MLP",
    lambda repeats: {"sizes": [2, 4, 2], "activation": "tanh", "output": "softmax"},
    "cross_entropy", ("adam", {"lr": 0.05}), epochs=300, batch_size=4,
    target_accuracy=1.0, defaults={"repeats": 1}))

register_task(Task(
    "digits", "scikit-learn 8x8 digits, MLP 64-128-10 relu",
    load_digits, "MLP",
    lambda test_fraction: {"sizes": [64, 128, 10], "activation": "relu",
                           "output": "softmax"},
    "cross_entropy", ("adam", {"lr": 1e-3}), epochs=20, batch_size=32,
    target_accuracy=0.95, defaults={"test_fraction": 0.25}))

register_task(Task(
    "digits-seq", "digits read row by row (T=8), ElmanRNN 8-64-10",
    load_digits_sequence, "ElmanRNN",
    lambda test_fraction: {"input_size": 8, "hidden_size": 64, "output_size": 10,
                           "activation": "tanh", "readout": "last", "output": "softmax",
                           "recurrent_init": "orthogonal"},
    "cross_entropy", ("adam", {"lr": 3e-3}), epochs=20, batch_size=32,
    target_accuracy=0.90, trainer_args={"clip_norm": 1.0},
    defaults={"test_fraction": 0.25}, trainer_options={"sg": {"truncate": 4}}))

register_task(Task(
    "mnist1d", "MNIST-1D (generated offline), MLP 40-100-100-10 leaky_relu",
    load_mnist1d, "MLP",
    lambda: {"sizes": [40, 100, 100, 10], "activation": "leaky_relu", "output": "softmax"},
    "cross_entropy", ("adam", {"lr": 1e-2}), epochs=200, batch_size=100,
    target_accuracy=0.65, trainer_args={"weight_decay": 1e-4}))

register_task(Task(
    "mnist1d-seq", "MNIST-1D as sequences (T=40), ElmanRNN 1-128-10",
    load_mnist1d_sequence, "ElmanRNN",
    lambda: {"input_size": 1, "hidden_size": 128, "output_size": 10, "activation": "tanh",
             "readout": "last", "output": "softmax", "recurrent_init": "orthogonal"},
    "cross_entropy", ("adam", {"lr": 1e-3}), epochs=30, batch_size=32,
    target_accuracy=0.60, trainer_args={"clip_norm": 1.0},
    trainer_options={"sg": {"truncate": 10}}))

register_task(Task(
    "adding", "adding problem (T=30 by default), IRNN 2-32-1 (relu, identity W_rec)",
    load_adding, "ElmanRNN",
    lambda length, n_train, n_test: {"input_size": 2, "hidden_size": 32, "output_size": 1,
                                     "activation": "relu", "readout": "last",
                                     "output": "identity", "recurrent_init": "identity"},
    "mse", ("adam", {"lr": 2e-3}), epochs=30, batch_size=32,
    target_accuracy=0.5,
    accuracy=f"fraction of test sequences predicted within {ADDING_TOLERANCE} of the sum",
    trainer_args={"clip_norm": 1.0}, custom_accuracy=True,
    defaults={"length": 30, "n_train": 4000, "n_test": 1000},
    trainer_options={"sg": {"truncate": 10}}))

register_task(Task(
    "copy", "copy-memory task (5 symbols, delay 10 by default), ElmanRNN, every step",
    load_copy, "ElmanRNN",
    lambda delay, length, n_symbols, n_train, n_test: {
        "input_size": n_symbols + 2, "hidden_size": 128, "output_size": n_symbols + 1,
        "activation": "tanh", "readout": "all", "output": "softmax",
        "recurrent_init": "orthogonal"},
    "cross_entropy", ("adam", {"lr": 3e-3}), epochs=30, batch_size=32,
    target_accuracy=0.5,
    accuracy="fraction of the recalled symbols (last `length` steps) that are right",
    trainer_args={"clip_norm": 1.0}, custom_accuracy=True,
    defaults={"delay": 10, "length": 5, "n_symbols": 8, "n_train": 4000, "n_test": 1000},
    trainer_options={"sg": {"truncate": 5}}))

register_task(Task(
    "echo", "delayed echo of random bits (delay 6, T=40), ElmanRNN 2-32-2 tanh, every step",
    load_echo, "ElmanRNN",
    lambda delay, length, n_train, n_test: {
        "input_size": 2, "hidden_size": 32, "output_size": 2, "activation": "tanh",
        "readout": "all", "output": "softmax", "recurrent_init": "orthogonal"},
    "cross_entropy", ("adam", {"lr": 1e-3}), epochs=40, batch_size=32,
    target_accuracy=0.9,
    accuracy="fraction of the echoed bits (steps `delay` and later) that are right",
    trainer_args={"clip_norm": 1.0}, custom_accuracy=True,
    defaults={"delay": 6, "length": 40, "n_train": 2000, "n_test": 500},
    trainer_options={"sg": {"truncate": 4, "sg_scale": 1.0}}))


def available_tasks():
    """Sorted names of the registered tasks."""
    return sorted(TASKS)


def parse_task_spec(spec):
    """Split ``"name:key=value,key=value"`` into (name, options).

    Values are parsed as int, then float, else kept as str.

    Parameters
    ----------
    spec : str
        For example ``"adding"`` or ``"adding:length=50"``.

    Returns
    -------
    (str, dict)
    """
    if not isinstance(spec, str) or not spec:
        raise TypeError(f"task must be a non-empty str such as 'mnist1d' or "
                        f"'adding:length=50', got {spec!r}")
    name, _, rest = spec.partition(":")
    options = {}
    for item in filter(None, rest.split(",")):
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise ValueError(f"task option {item!r} in {spec!r} is not key=value")
        options[key.strip()] = _parse_value(value.strip())
    return name.strip(), options


def task_key(spec):
    """A task spec in a canonical form (name and sorted options), so that
    ``"adding:n_test=32,length=5"`` and ``"adding:length=5,n_test=32"`` match."""
    name, options = parse_task_spec(spec)
    return name + "".join(f",{k}={v}" if i else f":{k}={v}"
                          for i, (k, v) in enumerate(sorted(options.items())))


def _parse_value(text):
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def get_task(name):
    """The `Task` registered under ``name``.

    Raises
    ------
    ValueError
        Naming the known tasks when ``name`` is not registered.
    """
    if not isinstance(name, str):
        raise TypeError(f"task name must be a str, got {name!r}")
    try:
        return TASKS[name]
    except KeyError:
        raise ValueError(f"task {name!r} is not registered; known: {available_tasks()}") \
            from None


def load(spec, seed=0, dtype=np.float32):
    """Load a task's data by spec (``"mnist1d"``, ``"adding:length=50"``).

    Parameters
    ----------
    spec : str
        Task name with optional ``:key=value,...`` options.
    seed : int >= 0
    dtype : np.float32 or np.float64

    Returns
    -------
    Dataset
    """
    name, options = parse_task_spec(spec)
    return get_task(name).load(seed=seed, dtype=dtype, **options)


def accuracy(task, outputs, y, **options):
    """The task's accuracy of model ``outputs`` against targets ``y``.

    Parameters
    ----------
    task : Task or str
    outputs : ndarray
        ``model.predict(X)``: (n, n_classes) or (n, n_outputs) for readout of
        the last state / MLPs, (n, T, n_classes) for per-step readout.
    y : ndarray
        Targets as loaded.
    **options
        Task options (the copy task needs ``length``).

    Returns
    -------
    float
        See `Task.accuracy`.
    """
    if isinstance(task, str):
        task = get_task(task)
    opts = task.options(**options)
    outputs = np.asarray(outputs)
    if task.name == "adding":
        return float(np.mean(np.abs(outputs.reshape(-1) - y.reshape(-1)) < ADDING_TOLERANCE))
    if task.name == "copy":
        k = opts["length"]
        pred = outputs[:, -k:, :].argmax(axis=-1)
        return float(np.mean(pred == y[:, -k:]))
    if task.name == "echo":
        d = opts["delay"]
        return float(np.mean(outputs[:, d:, :].argmax(axis=-1) == y[:, d:]))
    if outputs.ndim == 3:
        return float(np.mean(outputs.argmax(axis=-1) == y))
    return float(np.mean(outputs.argmax(axis=1) == y))


def describe(name):
    """A dict describing a task for tables and results.json."""
    t = get_task(name)
    return {"name": t.name, "description": t.description, "model": t.model,
            "loss": t.loss, "optimizer": {"name": t.optimizer[0], **t.optimizer[1]},
            "epochs": t.epochs, "batch_size": t.batch_size,
            "target_accuracy": t.target_accuracy, "accuracy": t.accuracy,
            "trainer_args": dict(t.trainer_args), "options": dict(t.defaults)}


__all__ = ["Task", "TASKS", "register_task", "available_tasks", "get_task", "load",
           "parse_task_spec", "accuracy", "describe", "ADDING_TOLERANCE"]

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

The user's own data is a task too: ``"file:PATH.npz"`` names one (arrays
X_train, y_train, X_test, y_test; options after the path, as in
``"file:data.npz:hidden=128x64,loss=mse"``, see `parse_task_spec` and
`USER_DEFAULTS`), and `Task.from_arrays` makes one from arrays in memory.
"""
import numbers
import os
import re
from dataclasses import dataclass, field

import numpy as np

from .activations import HIDDEN_ACTIVATIONS
from .data import (USER_LOSSES, UserData, check_user_arrays, load_adding, load_copy,
                   load_digits, load_digits_sequence, load_echo, load_mnist1d,
                   load_mnist1d_sequence, load_npz, load_xor)
from .io import model_class
from .optim import OPTIMIZERS
from .validation import (check_dtype, check_nonnegative_float, check_positive_float,
                         check_positive_int, check_seed)

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
    score : callable or None
        ``score(outputs, y) -> float``, the task's accuracy when it is not a
        fixed rule of `accuracy` (the R^2 of a regression on the user's data).
    settings : dict
        For a task on the user's own data, the options it was made with, as
        given (see `USER_DEFAULTS`); empty otherwise.
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
    score: object = None
    settings: dict = field(default_factory=dict)

    @classmethod
    def from_arrays(cls, X_train, y_train, X_test, y_test, *, name="arrays", **options):
        """A task on the user's own arrays, usable wherever a registered task is.

        2-D X gives an `fastbp.MLP`, 3-D X (n_sequences, T, input_size) an
        `fastbp.ElmanRNN`; integer labels a classifier (softmax output,
        cross-entropy), real targets a regression (identity output, mse,
        accuracy the R^2 of the test targets). ``fb.compare(tasks=[task])``
        runs it (and registers it under ``name`` in this process);
        `Task.save` writes it to an .npz file for ``--task file:PATH`` and
        Dask workers.

        Parameters
        ----------
        X_train : array_like (n_train, n_features) or (n_train, T, input_size)
            Numbers; integers and bools become float64.
        y_train : array_like
            Integer labels (n_train,) or, for sequences, (n_train, T) per
            step; or real targets (n_train,), (n_train, n_outputs) or
            (n_train, T, n_outputs) per step.
        X_test, y_test : array_like
            The same layouts, with at least one sample.
        name : str
            Registry name: no ':' or ',', not a built-in task's name.
        **options
            Any of `USER_DEFAULTS`: ``hidden`` (an int, a list of ints or
            ``"128x64"``; default 128x128 for an MLP, 64 for an ElmanRNN),
            ``activation`` (relu for an MLP, tanh for an ElmanRNN), ``loss``
            (from the labels' dtype), ``epochs`` (20), ``batch_size`` (32),
            ``lr`` (1e-3), ``optimizer`` ('adam'), ``weight_decay`` (0),
            ``clip_norm`` ('auto': 1.0 for an ElmanRNN, none for an MLP),
            ``target_accuracy`` (0.9).

        Returns
        -------
        Task

        Raises
        ------
        TypeError, ValueError
            For a bad array or option; the message names it, what it holds
            and what was expected (see `fastbp.data.check_user_arrays`).

        Examples
        --------
        >>> import numpy as np, fastbp as fb
        >>> rng = np.random.default_rng(0)
        >>> X = rng.normal(size=(200, 5))
        >>> y = (X[:, 0] > 0).astype(int)
        >>> task = fb.Task.from_arrays(X[:150], y[:150], X[150:], y[150:], name="mine",
        ...                            hidden=32, epochs=5)
        >>> task.build_model(seed=0).sizes
        [5, 32, 2]
        >>> fb.compare(tasks=[task], trainers=["backprop", "fa"], seeds=1)  # doctest: +SKIP
        """
        name = _check_user_name(name)
        settings = _user_settings(options, "Task.from_arrays")
        data = check_user_arrays(X_train, y_train, X_test, y_test, loss=settings.get("loss"),
                                 source=f"arrays {name!r}")
        return _user_task(data, name, settings)

    def save(self, path):
        """Write a task on the user's own data to an .npz file; return its spec.

        Parameters
        ----------
        path : str or os.PathLike
            ``.npz`` is appended when missing (as ``np.savez`` does).

        Returns
        -------
        str
            ``"file:ABSOLUTE_PATH[:options]"`` with the options the task was
            made with: ``fastbp compare --task`` (and Dask workers that see
            the same file system) resolve it to the same task.

        Raises
        ------
        TypeError
            For a task that is not made of arrays (a built-in task).
        """
        if not isinstance(self.loader, UserData):
            raise TypeError(f"task {self.name!r} is not made of the user's arrays; save works "
                            f"for tasks from Task.from_arrays or a 'file:' spec")
        path = os.path.abspath(os.path.expanduser(os.fspath(path)))
        if not path.endswith(".npz"):
            path += ".npz"
        data = self.loader
        np.savez(path, X_train=data.X_train, y_train=data.y_train, X_test=data.X_test,
                 y_test=data.y_test)
        return _file_spec(path, self.settings)

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

    A spec on the user's own data, ``"file:PATH[:key=value,...]"``, is one
    task whatever its options (they choose its model, loss and budget), so
    its name is the whole spec in canonical form (absolute path, options
    sorted and normalised) and its options are empty: `get_task` resolves
    that name. The options start after the *last* ':' when what follows it
    reads ``key=value`` (a name, '=', and no '/' or '\\'), so a Windows
    path keeps its drive letter: ``file:C:\\data\\d.npz:hidden=64``.

    Parameters
    ----------
    spec : str
        For example ``"adding"``, ``"adding:length=50"`` or
        ``"file:data.npz:hidden=128x64,loss=mse"``.

    Returns
    -------
    (str, dict)
    """
    if not isinstance(spec, str) or not spec:
        raise TypeError(f"task must be a non-empty str such as 'mnist1d' or "
                        f"'adding:length=50', got {spec!r}")
    if spec.startswith(FILE_PREFIX):
        path, options = _parse_file_spec(spec)
        return _file_spec(path, options), {}
    name, _, rest = spec.partition(":")
    return name.strip(), _parse_options(rest, spec)


def _parse_options(text, spec):
    options = {}
    for item in filter(None, text.split(",")):
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise ValueError(f"task option {item!r} in {spec!r} is not key=value")
        options[key.strip()] = _parse_value(value.strip())
    return options


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
    """The `Task` registered under ``name``, or the task of a ``"file:"`` spec.

    A ``"file:PATH[:options]"`` spec is read (and checked) when first asked
    for and again whenever the file's size or modification time changes
    (see `parse_task_spec`).

    Raises
    ------
    ValueError
        Naming the known tasks when ``name`` is not registered; for a file
        spec, naming what is wrong with the file or its options.
    """
    if not isinstance(name, str):
        raise TypeError(f"task name must be a str, got {name!r}")
    if name.startswith(FILE_PREFIX):
        return _file_task(name)
    try:
        return TASKS[name]
    except KeyError:
        raise ValueError(f"task {name!r} is not registered; known: {available_tasks()} (or "
                         f"'file:PATH.npz' for your own data)") from None


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
    if task.score is not None:
        return float(task.score(outputs, y))
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


# -- the user's own data --------------------------------------------------------------

#: the prefix of a task spec on the user's own data: ``"file:PATH.npz[:options]"``
FILE_PREFIX = "file:"

#: options of a task on the user's own data (``file:`` spec options, keywords
#: of `Task.from_arrays`) and their defaults; None: depends on the data
#: (hidden: 128x128 for an MLP, 64 for an ElmanRNN; activation: relu for an
#: MLP, tanh for an ElmanRNN; loss: cross_entropy for integer labels, mse for
#: real targets)
USER_DEFAULTS = {"hidden": None, "activation": None, "loss": None, "epochs": 20,
                 "batch_size": 32, "lr": 1e-3, "optimizer": "adam", "weight_decay": 0.0,
                 "clip_norm": "auto", "target_accuracy": 0.9}

#: hidden sizes when none are given
MLP_HIDDEN = (128, 128)
RNN_HIDDEN = 64

#: what follows the last ':' of a file spec when it holds options
_OPTIONS_TAIL = re.compile(r"\s*[A-Za-z_]\w*\s*=[^/\\]*\Z")

#: canonical file spec -> ((size, mtime_ns, inode), Task), the last few read
_FILE_TASKS = {}
_FILE_CACHE_SIZE = 8


def _check_hidden(value):
    if isinstance(value, str):
        parts = value.lower().split("x")
        try:
            value = [int(p) for p in parts]
        except ValueError:
            raise ValueError(f"hidden={value!r}; expected layer sizes such as 128 or "
                             f"128x64") from None
    elif isinstance(value, numbers.Integral) and not isinstance(value, bool):
        value = [value]
    try:
        sizes = tuple(value)
    except TypeError:
        raise TypeError(f"hidden={value!r}; expected an int, a list of ints or a str such as "
                        f"'128x64'") from None
    if not sizes or any(isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1
                        for n in sizes):
        raise ValueError(f"hidden={value!r}; expected one or more layer sizes >= 1 such as "
                         f"128 or 128x64")
    return tuple(int(n) for n in sizes)


def _check_choice(choices):
    def check(value, name):
        if not isinstance(value, str) or value not in choices:
            raise ValueError(f"{name}={value!r}; expected one of {sorted(choices)}")
        return value
    return check


def _check_clip(value, name):
    if isinstance(value, str) and value.lower() in ("auto", "none"):
        return value.lower()
    if value is None:
        return "none"
    return check_positive_float(value, name)


def _check_target(value, name):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value <= 1:
        raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")
    return float(value)


_USER_CHECKS = {
    "hidden": lambda v, n: _check_hidden(v),
    "activation": _check_choice(set(HIDDEN_ACTIVATIONS)),
    "loss": _check_choice(set(USER_LOSSES)),
    "epochs": check_positive_int, "batch_size": check_positive_int,
    "lr": check_positive_float, "optimizer": _check_choice(set(OPTIMIZERS)),
    "weight_decay": check_nonnegative_float, "clip_norm": _check_clip,
    "target_accuracy": _check_target,
}


def _user_settings(options, where):
    """Options of a task on the user's data, checked and normalised."""
    out = {}
    for key, value in options.items():
        if key not in USER_DEFAULTS:
            raise ValueError(f"{where} has no option {key!r}; its options: "
                             f"{sorted(USER_DEFAULTS)}")
        try:
            out[key] = _USER_CHECKS[key](value, key)
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"{where}: {exc}") from None
    return out


def _check_user_name(name):
    if not isinstance(name, str) or not name.strip() or name != name.strip() \
            or ":" in name or "," in name:
        raise ValueError(f"name={name!r}; expected a non-empty task name without ':', ',' or "
                         f"surrounding spaces")
    existing = TASKS.get(name)
    if existing is not None and not isinstance(existing.loader, UserData):
        raise ValueError(f"name={name!r} is a built-in task ({existing.description}); give "
                         f"your data another name")
    return name


def _format(value):
    if isinstance(value, tuple):
        return "x".join(str(n) for n in value)
    return repr(value) if isinstance(value, float) else str(value)


def _file_spec(path, settings):
    """The canonical spec of a file task: absolute path, sorted options."""
    tail = ",".join(f"{k}={_format(settings[k])}" for k in sorted(settings))
    return f"{FILE_PREFIX}{path}" + (f":{tail}" if tail else "")


def _parse_file_spec(spec):
    """(absolute path, normalised options) of ``"file:PATH[:options]"``."""
    rest = spec[len(FILE_PREFIX):]
    path, colon, tail = rest.rpartition(":")
    if not (colon and (not tail.strip() or _OPTIONS_TAIL.match(tail))):
        path, tail = rest, ""
    if not path.strip():
        raise ValueError(f"task {spec!r} names no file; expected 'file:PATH.npz' or "
                         f"'file:PATH.npz:key=value,...'")
    options = _user_settings(_parse_options(tail, spec), f"task {spec!r}")
    return os.path.abspath(os.path.expanduser(path.strip())), options


def _file_task(spec):
    """The task of a file spec, read again when the file has changed."""
    path, settings = _parse_file_spec(spec)
    name = _file_spec(path, settings)
    try:
        st = os.stat(path)
        stamp = (st.st_size, st.st_mtime_ns, st.st_ino)
    except OSError:
        stamp = None   # load_npz names the problem
    cached = _FILE_TASKS.get(name)
    if cached is not None and stamp is not None and cached[0] == stamp:
        return cached[1]
    try:
        data = load_npz(path, loss=settings.get("loss"))
        task = _user_task(data, name, settings)
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"task {name!r}: {exc}") from None
    if len(_FILE_TASKS) >= _FILE_CACHE_SIZE:
        _FILE_TASKS.pop(next(iter(_FILE_TASKS)))
    _FILE_TASKS[name] = (stamp, task)
    return task


class _ModelArgs:
    """A user task's ``model_args``: the same arguments whatever the options
    (the only option, ``sha256``, names the data, not the model)."""

    def __init__(self, args):
        self.args = args

    def __call__(self, sha256=None):
        return {k: list(v) if isinstance(v, list) else v for k, v in self.args.items()}


def r_squared(outputs, y):
    """The coefficient of determination of regression outputs.

    Parameters
    ----------
    outputs, y : ndarray of the same shape, (n, n_outputs) or (n, T, n_outputs)

    Returns
    -------
    float
        1 - sum((outputs - y)^2) / sum((y - mean(y))^2), the means taken per
        output (and step) over the samples: 1 for a perfect fit, 0 for
        predicting each output's mean, negative below that.
    """
    y = np.asarray(y, dtype=np.float64)
    outputs = np.asarray(outputs, dtype=np.float64).reshape(y.shape)
    total = np.sum((y - y.mean(axis=0)) ** 2)
    residual = np.sum((outputs - y) ** 2)
    if total == 0:
        return 1.0 if residual == 0 else 0.0
    return float(1.0 - residual / total)


def _user_task(data, name, settings):
    """The `Task` of checked user data (`fastbp.data.UserData`) and options."""
    mlp = data.model == "MLP"
    hidden = settings.get("hidden") or (MLP_HIDDEN if mlp else (RNN_HIDDEN,))
    if not mlp and len(hidden) != 1:
        raise ValueError(f"hidden={_format(hidden)}: an ElmanRNN has one hidden layer; give "
                         f"one size such as hidden=64")
    activation = settings.get("activation") or ("relu" if mlp else "tanh")
    output = "softmax" if data.classification else "identity"
    if mlp:
        args = {"sizes": [data.n_inputs, *hidden, data.n_outputs], "activation": activation,
                "output": output}
        shape = "-".join(map(str, args["sizes"]))
    else:
        args = {"input_size": data.n_inputs, "hidden_size": hidden[0],
                "output_size": data.n_outputs, "activation": activation,
                "readout": data.readout, "output": output, "recurrent_init": "orthogonal"}
        shape = f"{data.n_inputs}-{hidden[0]}-{data.n_outputs}, T={data.steps}"
        if data.readout == "all":
            shape += ", every step"
    get = lambda key: settings.get(key, USER_DEFAULTS[key])   # noqa: E731
    clip = get("clip_norm")
    clip = (None if mlp else 1.0) if clip == "auto" else None if clip == "none" else clip
    trainer_args = {}
    if get("weight_decay"):
        trainer_args["weight_decay"] = get("weight_decay")
    if clip is not None:
        trainer_args["clip_norm"] = clip
    n_train, n_test = len(data.y_train), len(data.y_test)
    what = (f"{data.n_outputs} classes" if data.classification else
            f"regression, {data.n_outputs} output{'s' if data.n_outputs > 1 else ''}")
    where = os.path.basename(data.source[5:]) if data.source.startswith("file ") else name
    if data.classification:
        unit = "steps" if data.readout == "all" else "samples"
        accuracy_text = f"fraction of test {unit} whose arg-max output is the label"
    else:
        accuracy_text = ("R^2 of the test targets: 1 - (sum of squared errors) / (sum of "
                         "squared deviations from their mean)")
    return Task(
        name, f"{where}: {data.model} {shape} {activation}, {what}, {n_train} train / "
              f"{n_test} test",
        data, data.model, _ModelArgs(args), data.loss, (get("optimizer"), {"lr": get("lr")}),
        epochs=get("epochs"), batch_size=get("batch_size"),
        target_accuracy=get("target_accuracy"), accuracy=accuracy_text,
        trainer_args=trainer_args, defaults={"sha256": data.sha256},
        custom_accuracy=not data.classification,
        trainer_options={} if mlp else {"sg": {"truncate": -(-data.steps // 4)}},
        score=None if data.classification else r_squared, settings=dict(settings))


def _register_task_object(task):
    """Register a Task given to compare or tune by object; return its name."""
    if task.name.startswith(FILE_PREFIX):
        return parse_task_spec(task.name)[0]
    existing = TASKS.get(task.name)
    if existing is not None and existing is not task and \
            not (isinstance(existing.loader, UserData) and isinstance(task.loader, UserData)):
        raise ValueError(f"a task named {task.name!r} is registered already "
                         f"({existing.description}); give this one another name")
    TASKS[task.name] = task
    return task.name


def as_task_specs(tasks, portable=False):
    """Task specs for `fastbp.compare` and `fastbp.tune` from names, specs and
    `Task` objects.

    A `Task` object is registered in this process under its name (a task on
    the user's own data replaces an earlier one of the same name), and its
    name is the spec; a ``"file:"`` spec is put in canonical form (absolute
    path), so that it means the same file on any worker. Anything else is
    returned as it is, for the caller's own checks.

    Parameters
    ----------
    tasks : str, Task, list of (str or Task), or None
    portable : bool
        The specs go to other processes (Dask workers): refuse a task whose
        data lives only in this process's memory.

    Returns
    -------
    list or None
        None stays None (the caller's default).

    Raises
    ------
    ValueError
        A task of the same name as a different registered task, or (with
        ``portable``) a task on arrays in memory: the message says to save
        it with `Task.save` and pass the ``"file:"`` spec that returns.
    """
    if tasks is None:
        return None
    if isinstance(tasks, (str, Task)):
        tasks = [tasks]
    try:
        items = list(tasks)
    except TypeError:
        return tasks
    out, given = [], {}
    for item in items:
        if isinstance(item, Task):
            if given.setdefault(item.name, item) is not item:
                raise ValueError(f"two different tasks are named {item.name!r}; give "
                                 f"Task.from_arrays a name= of its own for each")
            item = _register_task_object(item)
        elif isinstance(item, str) and item.startswith(FILE_PREFIX):
            item = parse_task_spec(item)[0]
        if portable and isinstance(item, str) and not item.startswith(FILE_PREFIX):
            registered = TASKS.get(parse_task_spec(item)[0])
            if registered is not None and isinstance(registered.loader, UserData):
                raise ValueError(f"task {item!r} holds its arrays in this process, and Dask "
                                 f"workers cannot load it: save it with "
                                 f"task.save('{item}.npz') and pass the 'file:' spec that "
                                 f"returns")
        out.append(item)
    return out


__all__ = ["Task", "TASKS", "register_task", "available_tasks", "get_task", "load",
           "as_task_specs", "r_squared", "FILE_PREFIX", "USER_DEFAULTS",
           "parse_task_spec", "accuracy", "describe", "ADDING_TOLERANCE"]

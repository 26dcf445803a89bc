"""Tasks: a data set, the model that learns it, its loss and a default budget.

``fastbp compare`` and `fastbp.compare` run every trainer on the same
`Task`. Each task names

* a loader that returns a `Dataset` (train and test arrays, deterministic
  for a given seed and dtype),
* its model (a constructor name in `fastbp` and its arguments; the model
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
from functools import lru_cache

import numpy as np

from .validation import check_dtype, check_positive_int, check_seed

INSTALL_HINT = 'pip install "fastbp[compare]"'

#: the adding problem counts a prediction as right when it is this close to
#: the target (Hochreiter & Schmidhuber 1997, experiment 4)
ADDING_TOLERANCE = 0.04


def require(module, purpose):
    """Import an optional dependency or raise ImportError with a one-line hint.

    Parameters
    ----------
    module : str
        Importable module name, for example ``"sklearn.datasets"``.
    purpose : str
        What it is needed for, shown in the message.

    Returns
    -------
    module
    """
    import importlib
    try:
        return importlib.import_module(module)
    except ImportError:
        top = module.split(".")[0]
        raise ImportError(f"{purpose} needs the optional package {top!r}: "
                          f"{INSTALL_HINT}") from None


@dataclass
class Dataset:
    """Train and test arrays of one task.

    Attributes
    ----------
    X_train, X_test : ndarray of float32 or float64
        (n, n_features) for MLP tasks, (n, T, n_inputs) for sequence tasks.
    y_train, y_test : ndarray
        int64 class labels (n,) or (n, T) for per-step classification;
        float targets (n, n_outputs) for regression, of the dtype of X.
    info : dict
        Facts about the data (source, sizes, options), JSON-serialisable.
    """

    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    info: dict = field(default_factory=dict)


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
        ``loader(seed, dtype, **options) -> Dataset``.
    model : str
        Name of the model class in `fastbp` (``"MLP"`` or ``"ElmanRNN"``).
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
        import fastbp
        cls = getattr(fastbp, self.model, None)
        if cls is None:
            raise RuntimeError(f"task {self.name!r} needs fastbp.{self.model}, which this "
                               f"version of fastbp does not have")
        args = self.model_args(**self.options(**options))
        return cls(**args, dtype=check_dtype(dtype), seed=seed)

    def make_optimizer(self, lr=None):
        """A fresh optimizer of this task's kind (``lr`` overrides its rate)."""
        from .optim import SGD, Adam
        kind, kwargs = self.optimizer
        kwargs = dict(kwargs)
        if lr is not None:
            kwargs["lr"] = lr
        return (Adam if kind == "adam" else SGD)(**kwargs)

    @property
    def is_regression(self):
        return self.loss in ("mse", "squared_error")


# -- loaders -------------------------------------------------------------------------

def _split(n, n_test, rng):
    order = rng.permutation(n)
    return order[n_test:], order[:n_test]


def load_xor(seed, dtype, repeats=1):
    """The four XOR patterns; train and test are the same four rows.

    Returns X (4 * repeats, 2) in {0, 1} and int64 labels a xor b.
    """
    repeats = check_positive_int(repeats, "repeats")
    X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=dtype)
    y = np.array([0, 1, 1, 0], dtype=np.int64)
    X, y = np.tile(X, (repeats, 1)), np.tile(y, repeats)
    return Dataset(X, y, X.copy(), y.copy(), {"source": "xor truth table", "n_train": len(y),
                                              "n_test": len(y)})


@lru_cache(maxsize=2)
def _digits_arrays():
    datasets = require("sklearn.datasets", "the digits task")
    d = datasets.load_digits()
    return d.data / 16.0, d.target.astype(np.int64)


def _digits(seed, dtype, test_fraction, sequence):
    X, y = _digits_arrays()
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    rng = np.random.default_rng(seed)
    tr, te = _split(len(y), int(round(test_fraction * len(y))), rng)
    X = X.astype(dtype)
    if sequence:
        X = X.reshape(-1, 8, 8)
    return Dataset(np.ascontiguousarray(X[tr]), y[tr], np.ascontiguousarray(X[te]), y[te],
                   {"source": "sklearn.datasets.load_digits, pixels / 16",
                    "n_train": len(tr), "n_test": len(te),
                    "split": f"random {1 - test_fraction:.0%}/{test_fraction:.0%}, seed {seed}"})


def load_digits(seed, dtype, test_fraction=0.25):
    """scikit-learn's 8x8 digits as rows: X (n, 64) in [0, 1], labels 0..9.

    The 1797 images are split at random (``seed``) into train and test.
    """
    return _digits(seed, dtype, test_fraction, sequence=False)


def load_digits_sequence(seed, dtype, test_fraction=0.25):
    """The digits read row by row: X (n, 8, 8), 8 steps of 8 pixels in [0, 1]."""
    return _digits(seed, dtype, test_fraction, sequence=True)


@lru_cache(maxsize=1)
def _mnist1d_arrays():
    """MNIST-1D from the package's own generator with its default arguments
    (4000 train / 1000 test, 40 features, standardised by the generator).
    Never downloads. The generator seeds Python's and NumPy's global random
    state; both are restored afterwards."""
    import random
    data = require("mnist1d.data", "the mnist1d task")
    py_state, np_state = random.getstate(), np.random.get_state()
    try:
        ds = data.make_dataset(data.get_dataset_args())
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
    return (np.asarray(ds["x"], dtype=np.float64), np.asarray(ds["y"], dtype=np.int64),
            np.asarray(ds["x_test"], dtype=np.float64), np.asarray(ds["y_test"], dtype=np.int64))


def _mnist1d(dtype, sequence):
    Xtr, ytr, Xte, yte = _mnist1d_arrays()
    if sequence:
        Xtr, Xte = Xtr[:, :, None], Xte[:, :, None]
    return Dataset(np.ascontiguousarray(Xtr, dtype=dtype), ytr.copy(),
                   np.ascontiguousarray(Xte, dtype=dtype), yte.copy(),
                   {"source": "mnist1d.data.make_dataset(get_dataset_args()) (generated, "
                              "generator seed 42)",
                    "n_train": len(ytr), "n_test": len(yte), "split": "the generator's 80/20"})


def load_mnist1d(seed, dtype):
    """MNIST-1D (Greydanus 2020): X (4000, 40) train, (1000, 40) test, labels 0..9.

    Generated offline by ``mnist1d.data.make_dataset`` with the package's
    default arguments (its own fixed seed 42), so ``seed`` does not change the
    data. Features are standardised by the generator (mean 0, std 1).
    """
    return _mnist1d(dtype, sequence=False)


def load_mnist1d_sequence(seed, dtype):
    """MNIST-1D as sequences: X (n, 40, 1), one value per step."""
    return _mnist1d(dtype, sequence=True)


def make_adding(n, length, rng, dtype):
    """The adding problem (Hochreiter & Schmidhuber 1997; Le et al. 2015 form).

    Parameters
    ----------
    n : int
        Sequences.
    length : int >= 2
        Steps T per sequence.
    rng : numpy Generator
    dtype : float dtype

    Returns
    -------
    X : ndarray (n, T, 2)
        Channel 0: values uniform in [0, 1); channel 1: 1.0 at the two marked
        steps (one in each half of the sequence), else 0.
    y : ndarray (n, 1)
        Sum of the two marked values, in [0, 2).
    """
    half = length // 2
    values = rng.random((n, length))
    first = rng.integers(0, half, size=n)
    second = rng.integers(half, length, size=n)
    X = np.zeros((n, length, 2), dtype=np.float64)
    X[:, :, 0] = values
    rows = np.arange(n)
    X[rows, first, 1] = 1.0
    X[rows, second, 1] = 1.0
    y = (values[rows, first] + values[rows, second])[:, None]
    return X.astype(dtype), y.astype(dtype)


def load_adding(seed, dtype, length=30, n_train=4000, n_test=1000):
    """Adding problem of ``length`` steps: X (n, length, 2), y (n, 1).

    Predicting the mean (1.0) gives a mean squared error of 1/6 (0.167);
    accuracy is the fraction of test sequences predicted within
    `ADDING_TOLERANCE` (0.04) of the sum.
    """
    length = check_positive_int(length, "length")
    if length < 2:
        raise ValueError(f"length must be >= 2 (two marked steps), got {length}")
    rng = np.random.default_rng(seed)
    Xtr, ytr = make_adding(check_positive_int(n_train, "n_train"), length, rng, dtype)
    Xte, yte = make_adding(check_positive_int(n_test, "n_test"), length, rng, dtype)
    return Dataset(Xtr, ytr, Xte, yte, {"source": "adding problem", "length": length,
                                        "n_train": n_train, "n_test": n_test,
                                        "baseline_mse": 1.0 / 6.0})


def make_copy(n, n_symbols, length, delay, rng, dtype):
    """Copy-memory task (Hochreiter & Schmidhuber 1997; Arjovsky et al. 2016 form).

    A sequence of ``length`` symbols drawn from 1..n_symbols is shown, followed
    by ``delay - 1`` blanks and a delimiter; during the next ``length`` steps
    the network must output the symbols in order; every other step's target
    is the blank class 0.

    Parameters
    ----------
    n : int
    n_symbols : int >= 1
    length : int >= 1
    delay : int >= 1
    rng : numpy Generator
    dtype : float dtype

    Returns
    -------
    X : ndarray (n, 2 * length + delay, n_symbols + 2)
        One-hot inputs: index 0 blank, 1..n_symbols the symbols,
        n_symbols + 1 the delimiter.
    y : ndarray int64 (n, 2 * length + delay)
        Class per step: 0 blank, 1..n_symbols the symbol to recall.
    """
    T = 2 * length + delay
    symbols = rng.integers(1, n_symbols + 1, size=(n, length))
    codes = np.zeros((n, T), dtype=np.int64)
    codes[:, :length] = symbols
    codes[:, length + delay - 1] = n_symbols + 1
    X = np.zeros((n, T, n_symbols + 2), dtype=dtype)
    np.put_along_axis(X, codes[:, :, None], 1.0, axis=2)
    y = np.zeros((n, T), dtype=np.int64)
    y[:, length + delay:] = symbols
    return X, y


def make_echo(n, length, delay, rng, dtype):
    """Delayed-echo task: a stream of random bits; the target at step t is the
    bit shown ``delay`` steps earlier.

    Every step has a loss, and the only information that predicts a target
    lies exactly ``delay`` steps back. Truncated BPTT with a window of
    ``delay`` steps or fewer never sees a target together with the input that
    predicts it, so its recurrent weights get no gradient toward keeping that
    input (the readout can still decode what the untrained recurrence happens
    to keep; see docs/recurrent.md for what training then does to it).

    Parameters
    ----------
    n : int
    length : int > delay
    delay : int >= 1
    rng : numpy Generator
    dtype : float dtype

    Returns
    -------
    X : ndarray (n, length, 2)
        One-hot bits.
    y : ndarray int64 (n, length)
        y[:, t] = bit at t - delay for t >= delay; 0 for the first ``delay``
        steps (no bit to echo yet).
    """
    bits = rng.integers(0, 2, size=(n, length))
    X = np.zeros((n, length, 2), dtype=dtype)
    np.put_along_axis(X, bits[:, :, None], 1.0, axis=2)
    y = np.zeros((n, length), dtype=np.int64)
    y[:, delay:] = bits[:, :length - delay]
    return X, y


def load_echo(seed, dtype, delay=6, length=40, n_train=2000, n_test=500):
    """Delayed-echo task: X (n, length, 2), y int64 (n, length).

    Accuracy is the fraction of echoed bits (steps ``delay`` and later) that
    are right; chance is 0.5.
    """
    delay = check_positive_int(delay, "delay")
    length = check_positive_int(length, "length")
    if length <= delay:
        raise ValueError(f"length must be greater than delay (some step must echo a bit), "
                         f"got length={length}, delay={delay}")
    rng = np.random.default_rng(seed)
    Xtr, ytr = make_echo(check_positive_int(n_train, "n_train"), length, delay, rng, dtype)
    Xte, yte = make_echo(check_positive_int(n_test, "n_test"), length, delay, rng, dtype)
    return Dataset(Xtr, ytr, Xte, yte, {"source": "delayed-echo task", "delay": delay,
                                        "length": length, "n_train": n_train,
                                        "n_test": n_test, "chance_accuracy": 0.5})


def load_copy(seed, dtype, delay=10, length=5, n_symbols=8, n_train=4000, n_test=1000):
    """Copy-memory task: X (n, 2*length+delay, n_symbols+2), y int64 (n, T).

    Accuracy is the fraction of recalled symbols (the last ``length`` steps)
    that are right; always answering at random gets 1/n_symbols.
    """
    delay = check_positive_int(delay, "delay")
    length = check_positive_int(length, "length")
    n_symbols = check_positive_int(n_symbols, "n_symbols")
    rng = np.random.default_rng(seed)
    Xtr, ytr = make_copy(check_positive_int(n_train, "n_train"), n_symbols, length, delay,
                         rng, dtype)
    Xte, yte = make_copy(check_positive_int(n_test, "n_test"), n_symbols, length, delay,
                         rng, dtype)
    return Dataset(Xtr, ytr, Xte, yte, {"source": "copy-memory task", "delay": delay,
                                        "length": length, "n_symbols": n_symbols,
                                        "n_train": n_train, "n_test": n_test,
                                        "chance_accuracy": 1.0 / n_symbols})


# -- the registry --------------------------------------------------------------------

TASKS = {}


def register_task(task):
    """Add a `Task` to the registry under ``task.name`` and return it."""
    if not isinstance(task, Task):
        raise TypeError(f"task must be a fastbp.datasets.Task, got {type(task).__name__}")
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


__all__ = ["Task", "Dataset", "TASKS", "register_task", "available_tasks", "get_task",
           "load", "parse_task_spec", "accuracy", "describe", "make_adding", "make_copy",
           "make_echo",
           "ADDING_TOLERANCE", "require"]

"""Data generators and loaders: the arrays the tasks train on.

Each loader has the signature ``loader(seed, dtype, **options) -> Dataset``
and is deterministic for its arguments; `fastbp.tasks` pairs them with models,
losses and budgets. Generators (``make_adding``, ``make_copy``, ``make_echo``)
draw from a given numpy Generator.

Optional packages (scikit-learn for digits, mnist1d for MNIST-1D) are in the
``compare`` extra; a missing one raises ImportError with the install command
(see `require`).
"""
import hashlib
import io
import numbers
import os
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from .validation import check_positive_int

INSTALL_HINT = 'pip install "fastbp[compare]"'


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
    if isinstance(test_fraction, bool) or not isinstance(test_fraction, numbers.Real) \
            or not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be a number in (0, 1), got {test_fraction!r}")
    X, y = _digits_arrays()
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
    ``fastbp.tasks.ADDING_TOLERANCE`` (0.04) of the sum.
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


# -- the user's own data -------------------------------------------------------------

#: the arrays of a task on the user's own data, and the keys of its .npz file
ARRAY_KEYS = ("X_train", "y_train", "X_test", "y_test")

#: losses a task on the user's own data can have: cross-entropy for integer
#: labels, the squared errors for real targets
USER_LOSSES = ("cross_entropy", "mse", "squared_error")

_X_LAYOUT = ("2-D (n_samples, n_features) for an MLP or 3-D (n_sequences, T, input_size) "
             "for an ElmanRNN")


class UserData:
    """The user's own train and test arrays, checked, as a task loader.

    Made by `check_user_arrays` (arrays in memory) or `load_npz` (a file);
    `fastbp.tasks` pairs it with a model (see ``fastbp.Task.from_arrays``).
    Calling it returns fresh, writable copies in the dtype asked for, so a
    run can never change the data another run gets.

    Attributes
    ----------
    X_train, X_test : ndarray of float32 or float64, read-only
        (n, n_features), or (n, T, input_size) for sequences.
    y_train, y_test : ndarray, read-only
        int64 class labels, (n,) or (n, T) per step; or float64 regression
        targets (n, n_outputs), or (n, T, n_outputs) per step.
    model : {'MLP', 'ElmanRNN'}
        From the number of dimensions of X.
    loss : {'cross_entropy', 'mse', 'squared_error'}
    n_inputs, n_outputs : int
        Features (per step); classes (the largest label + 1) or target columns.
    readout : {'last', 'all'} or None
        For sequences: one target per sequence or one per step; None for an MLP.
    steps : int or None
        T of the training sequences; None for an MLP.
    sha256 : str
        Hex digest of the data: of the file's bytes for a file, of the
        checked arrays otherwise. A task keys its data on it.
    source : str
        Where the data came from, for tables and results.json.
    """

    def __init__(self, arrays, model, loss, n_outputs, readout, sha256, source):
        for key in ARRAY_KEYS:
            arrays[key].flags.writeable = False
            setattr(self, key, arrays[key])
        self.model = model
        self.loss = loss
        self.n_inputs = int(self.X_train.shape[-1])
        self.n_outputs = int(n_outputs)
        self.readout = readout
        self.steps = int(self.X_train.shape[1]) if model == "ElmanRNN" else None
        self.sha256 = sha256
        self.source = source

    @property
    def classification(self):
        """True for integer labels (cross-entropy), False for regression."""
        return self.loss == "cross_entropy"

    def __call__(self, seed, dtype, sha256=None):
        """The data as a `Dataset` (``seed`` is unused: the split is the user's).

        Parameters
        ----------
        seed : int
        dtype : np.float32 or np.float64
            dtype of X and of regression targets.
        sha256 : str or None
            When given, the digest the caller expects; ValueError if the
            data is not that data.

        Returns
        -------
        Dataset
        """
        if sha256 is not None and sha256 != self.sha256:
            raise ValueError(f"the data of {self.source} is not the data expected: its sha256 "
                             f"is {self.sha256}, expected {sha256}")
        ydt = np.int64 if self.classification else dtype
        return Dataset(np.array(self.X_train, dtype=dtype, order="C"),
                       np.array(self.y_train, dtype=ydt, order="C"),
                       np.array(self.X_test, dtype=dtype, order="C"),
                       np.array(self.y_test, dtype=ydt, order="C"),
                       {"source": self.source, "n_train": int(len(self.y_train)),
                        "n_test": int(len(self.y_test)), "sha256": self.sha256})

    def __repr__(self):
        return (f"UserData({self.source}, X_train {self.X_train.shape}, "
                f"X_test {self.X_test.shape}, loss={self.loss!r})")


def _numeric(value, name, expected):
    """``value`` as an ndarray of numbers, or TypeError naming ``name``."""
    try:
        arr = value if isinstance(value, np.ndarray) else np.asarray(value)
    except (TypeError, ValueError) as exc:   # ragged lists, objects numpy refuses
        raise TypeError(f"{name} must be an array of numbers ({expected}), got "
                        f"{type(value).__name__} that numpy cannot read as one ({exc})") from None
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} has dtype {arr.dtype}; expected an array of numbers "
                        f"({expected})")
    return arr


def _check_finite(arr, name):
    if arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
        index = tuple(int(i) for i in np.argwhere(~np.isfinite(arr))[0])
        at = index[0] if len(index) == 1 else index
        raise ValueError(f"{name} holds {arr[index]} at index {at}; expected finite numbers "
                         f"(no NaN or inf)")


def check_user_arrays(X_train, y_train, X_test, y_test, loss=None, where="", source=None,
                      sha256=None):
    """Check the user's own train and test arrays and make them a task loader.

    The layout decides the model: 2-D X (n_samples, n_features) an MLP,
    3-D X (n_sequences, T, input_size) an ElmanRNN. Integer labels make a
    classification task (softmax, cross-entropy, one output per class
    0..max label), real targets a regression (identity output, ``mse``).

    Parameters
    ----------
    X_train, X_test : array_like of numbers
        (n, n_features) or (n, T, input_size); the same features (per step)
        in both. Integer and bool inputs become float64, floats keep their
        dtype (every run converts to its own dtype).
    y_train, y_test : array_like of numbers
        Classification: integer labels >= 0 of shape (n,), or (n, T) per
        step for sequences. Regression: real targets of shape (n,) or
        (n, n_outputs), or (n, T, n_outputs) per step for sequences.
    loss : {'cross_entropy', 'mse', 'squared_error'} or None
        None: 'cross_entropy' for integer labels, 'mse' for real targets.
        A squared-error loss with integer targets makes them real targets.
    where : str
        Appended to the array names in messages, e.g. ``" in data.npz"``.
    source : str or None
        Where the data came from (default: "arrays").
    sha256 : str or None
        The data's digest (a file's); None computes it from the arrays.

    Returns
    -------
    UserData

    Raises
    ------
    TypeError
        An array that is not numbers (objects, strings), or real labels
        with loss 'cross_entropy'.
    ValueError
        Wrong number of dimensions, rows of X and y that differ, features
        that differ between train and test, NaN or inf, negative labels,
        a single class, too few samples (2 to train on, 1 to test on), a
        constant regression y_test (its R^2 would be undefined); the
        message names the array, what it holds and what was expected.
    """
    arrays = {}
    for key, value in zip(ARRAY_KEYS, (X_train, y_train, X_test, y_test)):
        expected = _X_LAYOUT if key[0] == "X" else "class labels or regression targets"
        arrays[key] = _numeric(value, f"{key}{where}", expected)
    Xtr, Xte = arrays["X_train"], arrays["X_test"]
    if Xtr.ndim not in (2, 3):
        raise ValueError(f"X_train{where} is {Xtr.ndim}-D with shape {Xtr.shape}; expected "
                         f"{_X_LAYOUT}")
    if Xte.ndim != Xtr.ndim:
        raise ValueError(f"X_test{where} is {Xte.ndim}-D with shape {Xte.shape} but X_train is "
                         f"{Xtr.ndim}-D with shape {Xtr.shape}; expected the same layout")
    sequences = Xtr.ndim == 3
    unit = "features per step" if sequences else "features"
    if Xte.shape[-1] != Xtr.shape[-1]:
        raise ValueError(f"X_test{where} has {Xte.shape[-1]} {unit} (shape {Xte.shape}) but "
                         f"X_train has {Xtr.shape[-1]} (shape {Xtr.shape}); expected the same")
    for key, X in (("X_train", Xtr), ("X_test", Xte)):
        if 0 in X.shape[1:]:
            raise ValueError(f"{key}{where} has shape {X.shape}; expected at least one "
                             f"{'step and one feature' if sequences else 'feature'}")
    if Xtr.shape[0] < 2:
        raise ValueError(f"X_train{where} has {Xtr.shape[0]} sample(s); expected at least 2 "
                         f"to train on")
    if Xte.shape[0] < 1:
        raise ValueError(f"X_test{where} has no samples; expected at least 1 to test on")
    for key in ARRAY_KEYS:
        y = arrays[key]
        if key[0] == "y":
            X = arrays["X" + key[1:]]
            rows = y.shape[0] if y.ndim else 0
            if y.ndim == 0 or rows != X.shape[0]:
                raise ValueError(f"{key}{where} has {rows} rows (shape {y.shape}) but "
                                 f"X{key[1:]} has {X.shape[0]} (shape {X.shape}); expected one "
                                 f"label or target per {'sequence' if sequences else 'sample'}")
        _check_finite(arrays[key], f"{key}{where}")

    ytr, yte = arrays["y_train"], arrays["y_test"]
    integer = [y.dtype.kind in "biu" for y in (ytr, yte)]
    if loss is None:
        if integer[0] != integer[1]:
            raise TypeError(f"y_train{where} has dtype {ytr.dtype} and y_test dtype {yte.dtype}; "
                            f"expected integer labels in both (classification) or real targets "
                            f"in both (regression)")
        loss = "cross_entropy" if integer[0] else "mse"
    if loss not in USER_LOSSES:
        raise ValueError(f"loss={loss!r} is not a loss for the user's own data; expected one "
                         f"of {list(USER_LOSSES)} (cross_entropy for integer labels)")
    model = "ElmanRNN" if sequences else "MLP"
    if loss == "cross_entropy":
        for key, y, is_int in (("y_train", ytr, integer[0]), ("y_test", yte, integer[1])):
            if not is_int:
                raise TypeError(f"{key}{where} has dtype {y.dtype} but loss='cross_entropy' "
                                f"needs integer class labels; save {key}.astype(int) if the "
                                f"values are labels, or use loss='mse' for regression")
        readout = _label_layout(arrays, where, sequences)
        low = int(min(ytr.min(), yte.min()))
        if low < 0:
            key = "y_train" if ytr.min() < 0 else "y_test"
            raise ValueError(f"{key}{where} holds the label {low}; expected class labels "
                             f"0, 1, ..., n_classes - 1")
        n_outputs = int(max(ytr.max(), yte.max())) + 1
        if n_outputs < 2:
            raise ValueError(f"y_train{where} and y_test hold only the class 0; expected at "
                             f"least two classes (for regression save real targets)")
        ytr, yte = (np.array(y, dtype=np.int64, order="C") for y in (ytr, yte))
    else:
        readout, ytr, yte = _target_layout(arrays, where, sequences)
        n_outputs = ytr.shape[-1]
        if not np.sum((yte - yte.mean(axis=0)) ** 2) > 0:
            raise ValueError(f"y_test{where} is constant; a regression task's accuracy is the "
                             f"R^2 of the test targets, which needs targets that vary")
    arrays = {"X_train": np.array(Xtr, dtype=_float_dtype(Xtr), order="C"), "y_train": ytr,
              "X_test": np.array(Xte, dtype=_float_dtype(Xte), order="C"), "y_test": yte}
    if sha256 is None:
        h = hashlib.sha256()
        for key in ARRAY_KEYS:
            a = arrays[key]
            h.update(f"{key}:{a.dtype.str}:{a.shape};".encode())
            h.update(a.tobytes())
        sha256 = h.hexdigest()
    return UserData(arrays, model, loss, n_outputs, readout if sequences else None, sha256,
                    source or "arrays")


def _float_dtype(X):
    return X.dtype if X.dtype in (np.float32, np.float64) else np.float64


def _label_layout(arrays, where, sequences):
    """The readout integer labels ask for: 'last' for (n,), 'all' for (n, T)."""
    ytr, yte = arrays["y_train"], arrays["y_test"]
    shapes = "(n_sequences,) or (n_sequences, T) per step" if sequences else "(n_samples,)"
    for key, y in (("y_train", ytr), ("y_test", yte)):
        X = arrays["X" + key[1:]]
        if y.ndim == 2 and sequences:
            if y.shape[1] != X.shape[1]:
                raise ValueError(f"{key}{where} has shape {y.shape} but the sequences of "
                                 f"X{key[1:]} have {X.shape[1]} steps; per-step labels have "
                                 f"shape (n_sequences, T) = {X.shape[:2]}")
        elif y.ndim != 1:
            raise ValueError(f"{key}{where} has shape {y.shape}; class labels have shape "
                             f"{shapes}")
    if ytr.ndim != yte.ndim:
        raise ValueError(f"y_train{where} has shape {ytr.shape} and y_test {yte.shape}; "
                         f"expected labels per sequence in both or per step in both")
    return "all" if ytr.ndim == 2 else "last"


def _target_layout(arrays, where, sequences):
    """(readout, y_train, y_test) of real targets: (n, k) for one target row
    per sample or sequence, (n, T, k) per step (sequences only)."""
    ytr, yte = arrays["y_train"], arrays["y_test"]
    shapes = ("(n_sequences,) or (n_sequences, n_outputs) per sequence, or (n_sequences, T, "
              "n_outputs) per step" if sequences else "(n_samples,) or (n_samples, n_outputs)")
    out = []
    for key, y in (("y_train", ytr), ("y_test", yte)):
        X = arrays["X" + key[1:]]
        if y.ndim == 3 and sequences:
            if y.shape[1] != X.shape[1] or y.shape[2] == 0:
                raise ValueError(f"{key}{where} has shape {y.shape} but the sequences of "
                                 f"X{key[1:]} have {X.shape[1]} steps; per-step targets have "
                                 f"shape (n_sequences, T, n_outputs)")
        elif y.ndim not in (1, 2) or (y.ndim == 2 and y.shape[1] == 0):
            raise ValueError(f"{key}{where} has shape {y.shape}; regression targets have "
                             f"shape {shapes}")
        out.append(np.array(y.reshape(len(y), -1) if y.ndim == 1 else y, dtype=np.float64,
                            order="C"))
    ytr, yte = out
    if ytr.ndim != yte.ndim or ytr.shape[-1] != yte.shape[-1]:
        raise ValueError(f"y_train{where} has shape {arrays['y_train'].shape} and y_test "
                         f"{arrays['y_test'].shape}; expected the same targets per "
                         f"{'sequence or step' if sequences else 'sample'}")
    return ("all" if ytr.ndim == 3 else "last"), ytr, yte


def load_npz(path, loss=None):
    """Read and check a task's arrays from an .npz file.

    Parameters
    ----------
    path : str or os.PathLike
        An archive written by ``np.savez(path, X_train=..., y_train=...,
        X_test=..., y_test=...)`` (or ``np.savez_compressed``); other arrays
        in it are ignored. Object arrays are refused (the file is read with
        ``allow_pickle=False``: unpickling can run code).
    loss : str or None
        As for `check_user_arrays`.

    Returns
    -------
    UserData
        ``sha256`` is the digest of the file's bytes, ``source`` names the file.

    Raises
    ------
    ValueError
        A missing or unreadable file, a file that is not an .npz archive, a
        missing array (the message lists the arrays the file has), an
        object array, or arrays that `check_user_arrays` refuses (the
        message names the array and the file).
    TypeError
        As for `check_user_arrays`.
    """
    path = os.path.abspath(os.path.expanduser(os.fspath(path)))
    expected = ("expected an .npz archive written by np.savez(path, X_train=..., y_train=..., "
                "X_test=..., y_test=...)")
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise ValueError(f"{path!r} does not exist; {expected}") from None
    except IsADirectoryError:
        raise ValueError(f"{path!r} is a folder; {expected}") from None
    except OSError as exc:
        raise ValueError(f"{path!r} cannot be read ({exc.strerror or exc}); {expected}") from None
    if raw.startswith(b"\x93NUMPY"):
        raise ValueError(f"{path!r} is an .npy file (a single array); {expected}")
    if not raw.startswith(b"PK"):
        raise ValueError(f"{path!r} is not an .npz file; {expected}")
    try:
        archive = np.load(io.BytesIO(raw), allow_pickle=False)
    except Exception as exc:   # a damaged archive: zipfile, OSError or ValueError
        raise ValueError(f"{path!r} is not a readable .npz file ({type(exc).__name__}: {exc}); "
                         f"{expected}") from None
    arrays = {}
    with archive:
        missing = [k for k in ARRAY_KEYS if k not in archive.files]
        if missing:
            raise ValueError(f"{path!r} has no array {' and no '.join(map(repr, missing))}; it "
                             f"holds {sorted(archive.files)}; {expected}")
        for key in ARRAY_KEYS:
            try:
                arrays[key] = archive[key]
            except ValueError as exc:
                if "allow_pickle" in str(exc):
                    raise ValueError(f"array {key!r} in {path!r} holds Python objects (dtype "
                                     f"object), which fastbp does not load (allow_pickle=False: "
                                     f"unpickling can run code); save arrays of numbers") from None
                raise ValueError(f"array {key!r} in {path!r} cannot be read: {exc}") from None
            except Exception as exc:
                raise ValueError(f"array {key!r} in {path!r} cannot be read "
                                 f"({type(exc).__name__}: {exc})") from None
    return check_user_arrays(**arrays, loss=loss, where=f" in {path}", source=f"file {path}",
                             sha256=hashlib.sha256(raw).hexdigest())


__all__ = ["Dataset", "require", "INSTALL_HINT", "make_adding", "make_copy",
           "make_echo", "load_xor", "load_digits", "load_digits_sequence", "load_mnist1d",
           "load_mnist1d_sequence", "load_adding", "load_copy", "load_echo", "ARRAY_KEYS",
           "USER_LOSSES", "UserData", "check_user_arrays", "load_npz"]

"""Data generators and loaders: the arrays the tasks train on.

Each loader has the signature ``loader(seed, dtype, **options) -> Dataset``
and is deterministic for its arguments; `fastbp.tasks` pairs them with models,
losses and budgets. Generators (``make_adding``, ``make_copy``, ``make_echo``)
draw from a given numpy Generator.

Optional packages (scikit-learn for digits, mnist1d for MNIST-1D) are in the
``compare`` extra; a missing one raises ImportError with the install command
(see `require`).
"""
import numbers
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


__all__ = ["Dataset", "require", "INSTALL_HINT", "make_adding", "make_copy",
           "make_echo", "load_xor", "load_digits", "load_digits_sequence", "load_mnist1d",
           "load_mnist1d_sequence", "load_adding", "load_copy", "load_echo"]

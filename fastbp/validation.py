"""Input checks shared by every public entry point.

Each check raises TypeError/ValueError naming the argument, what was given and
what was expected, before any kernel runs.

The dtype rule (one rule for every input array: ``X``, ``h0``,
``validation_data[0]``):

* **Values with no dtype of their own** -- Python lists, tuples, nested lists
  of numbers -- are converted to the model's dtype. There is nothing to lose:
  Python numbers carry no precision choice, and ``model.predict([[0.1, 0.2]])``
  should just work. They must hold numbers (int, float or bool); strings,
  ragged nestings and other objects are refused with a TypeError.
* **Arrays** -- NumPy arrays and array-likes that carry a dtype (a pandas
  frame, an array of another library) -- must already have the model's dtype.
  A float64 array given to a float32 model (or an int array to any model) is
  refused with a TypeError that shows the one-line cast
  (``X.astype(np.float32)``): fastbp never casts an array silently, since the
  cast loses precision or copies every call, and the caller should choose it.

Targets (``y``) are not features: integer class labels are taken from any
integer array or list (never from floats), and real-valued targets -- regression
values, one-hot or probability rows -- are converted to the model's dtype, as
the loss compares them with outputs of that dtype (``np.eye(k)[labels]`` is
float64 and must serve a float32 model); see
:func:`fastbp.losses.prepare_targets`.
"""
import numbers

import numpy as np

from .kernels.checks import all_finite_1d

SUPPORTED_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def check_dtype(dtype, argument="dtype"):
    """Return np.float32 or np.float64 as a numpy dtype, or raise TypeError."""
    dt = None
    if dtype is not None:  # np.dtype(None) would silently mean float64
        try:
            dt = np.dtype(dtype)
        except (TypeError, ValueError):
            dt = None
    if dt is None or not any(dt == s for s in SUPPORTED_DTYPES):
        raise TypeError(f"{argument}={dtype!r} is not supported; expected np.float32 "
                        "or np.float64")
    return dt


def check_seed(seed, argument="seed", allow_generator=False):
    """Validate a seed: None, an int >= 0, or (when allowed) a numpy Generator."""
    if seed is None or (allow_generator and isinstance(seed, np.random.Generator)):
        return seed
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        kinds = "an int >= 0, None" + (" or a numpy Generator" if allow_generator else "")
        raise TypeError(f"{argument} must be {kinds}, got {seed!r}")
    if seed < 0:
        raise ValueError(f"{argument} must be >= 0, got {seed}")
    return int(seed)


def check_positive_int(value, argument, allow_none=False):
    """Validate an integer >= 1 (or None when allowed) and return it as int."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{argument} must be a positive integer"
                        f"{' or None' if allow_none else ''}, got {value!r}")
    if value < 1:
        raise ValueError(f"{argument} must be >= 1, got {value}")
    return int(value)


def check_int_at_least(value, argument, low):
    """Validate an integer >= ``low`` and return it as int; ValueError (naming
    the argument, the bound and the value) for anything else, bools included."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ValueError(f"{argument} must be an int >= {low}, got {value!r}")
    return int(value)


def check_nonnegative_float(value, argument):
    """Validate a finite real >= 0 and return it as float."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{argument} must be a real number >= 0, got {value!r}")
    value = float(value)
    if not np.isfinite(value) or value < 0:
        raise ValueError(f"{argument} must be a finite number >= 0, got {value}")
    return value


def check_positive_float(value, argument):
    """Validate a finite real > 0 and return it as float."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{argument} must be a real number > 0, got {value!r}")
    value = float(value)
    if not np.isfinite(value) or value <= 0:
        raise ValueError(f"{argument} must be a finite number > 0, got {value}")
    return value


def all_finite(a):
    """True when every entry of a float array is finite (cheap path first)."""
    if a.size <= 65536:
        # small arrays: a compiled loop for C-contiguous float32/float64 (most
        # of NumPy's cost here is its per-call overhead: 0.27 against 1.8 us
        # for a (32, 40) batch); the elementwise test for the rest, which costs
        # less than entering the error-state context below
        if a.dtype.char in "fd" and a.flags.c_contiguous:
            return bool(all_finite_1d(a.reshape(-1)))
        return bool(np.isfinite(a).all())
    # the sum is finite whenever all entries are, unless finite values overflow
    # it; only then pay for the elementwise test
    with np.errstate(over="ignore", invalid="ignore"):
        if np.isfinite(a.sum()):
            return True
    return bool(np.isfinite(a).all())


def as_input_array(X, dtype, argument="X", shape_hint="(n_samples, n_features)"):
    """Apply the module's dtype rule to an input: an ndarray is returned as it
    is (its dtype is checked later, never cast); an array-like with a dtype of
    its own becomes an ndarray of that dtype; numbers in lists or tuples are
    converted to ``dtype``.

    Parameters
    ----------
    X : array_like
    dtype : numpy dtype
        The model's dtype.
    argument, shape_hint : str
        Name and expected shape of ``X``, for messages.

    Returns
    -------
    ndarray

    Raises
    ------
    TypeError
        When ``X`` does not convert to a numeric array (strings, ragged
        lists, other objects).
    """
    if isinstance(X, np.ndarray):
        return X
    try:
        A = np.asarray(X)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{argument} must be a numeric array of shape {shape_hint}, "
                        f"got {type(X).__name__} ({exc})") from None
    if A.dtype.kind not in "biuf":
        raise TypeError(f"{argument} must be a numeric array of shape {shape_hint}, "
                        f"got {type(X).__name__} of {A.dtype} values")
    if hasattr(X, "dtype"):
        return A  # an array of another library: the array rule, no cast
    return A.astype(dtype)


def _finish_array(X, dtype, argument):
    """The checks every input array shares once its shape is right: exactly
    the model's dtype (never cast), finite values; returned C-contiguous."""
    if X.dtype != dtype:
        raise TypeError(f"{argument} has dtype {X.dtype}, but the model is "
                        f"{np.dtype(dtype).name}; convert it with "
                        f"{argument}.astype(np.{np.dtype(dtype).name}) "
                        "(fastbp never casts an array silently; lists are converted)")
    if not all_finite(X):
        bad = tuple(int(i) for i in np.argwhere(~np.isfinite(X))[0])
        raise ValueError(f"{argument} contains NaN or inf (first at index {bad}: "
                         f"{X[bad]}); expected finite values")
    if not X.flags.c_contiguous:
        X = np.ascontiguousarray(X)
    return X


def check_features(X, n_features, dtype, argument="X", shape_hint="(n_samples, n_features)"):
    """Validate a 2-D feature array for a model taking ``n_features`` inputs.

    Returns X itself when it is already a C-contiguous array of ``dtype``
    (no copy), otherwise a C-contiguous copy for non-array input and
    non-contiguous arrays. Arrays of another dtype are rejected, never cast.
    """
    X = as_input_array(X, dtype, argument, shape_hint)
    if X.ndim != 2:
        hint = ""
        if X.ndim == 1:
            hint = (f"; for one sample use {argument}.reshape(1, -1), for one feature "
                    f"{argument}.reshape(-1, 1)")
        raise ValueError(f"{argument} must be 2-D of shape {shape_hint} with "
                         f"n_features={n_features}, got {X.ndim}-D shape {X.shape}{hint}")
    if X.shape[0] == 0:
        raise ValueError(f"{argument} is empty (shape {X.shape}); expected at least one sample")
    if X.shape[1] != n_features:
        raise ValueError(f"{argument} has {X.shape[1]} features (shape {X.shape}), but the "
                         f"model expects {n_features}: shape (n_samples, {n_features})")
    return _finish_array(X, dtype, argument)


def check_sequences(X, input_size, dtype, argument="X"):
    """Validate a batch of sequences of shape (n_sequences, T, input_size) for a
    recurrent model; same rules as :func:`check_features` (no silent casts,
    finite values), returning a C-contiguous array."""
    shape_hint = "(n_sequences, T, input_size)"
    X = as_input_array(X, dtype, argument, shape_hint)
    if X.ndim != 3:
        hint = ""
        if X.ndim == 2:
            hint = (f"; for sequences of scalars use {argument}[:, :, None] (shape "
                    f"{X.shape + (1,)}), for a single sequence {argument}[None] "
                    f"(shape {(1,) + X.shape})")
        raise ValueError(f"{argument} must be 3-D of shape {shape_hint} with "
                         f"input_size={input_size}, got {X.ndim}-D shape {X.shape}{hint}")
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise ValueError(f"{argument} is empty (shape {X.shape}); expected at least one "
                         "sequence of at least one step")
    if X.shape[2] != input_size:
        raise ValueError(f"{argument} has {X.shape[2]} features per step (shape {X.shape}), "
                         f"but the model expects {input_size}: shape "
                         f"(n_sequences, T, {input_size})")
    return _finish_array(X, dtype, argument)

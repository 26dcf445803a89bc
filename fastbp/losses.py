"""Loss registry and target preparation.

=========================  ==============================================  ==================
name                       per-sample value (batch loss = mean of these)   outputs it accepts
=========================  ==============================================  ==================
``squared_error``          1/2 * sum_j (y_j - h_j)^2                        any
``mse``                    1/k * sum_j (y_j - h_j)^2                        any
``cross_entropy``          -sum_j y_j log softmax(a)_j                      softmax, identity
``binary_cross_entropy``   sum_j -y_j log s(a_j) - (1 - y_j) log(1-s(a_j))  sigmoid, identity
=========================  ==============================================  ==================

``a`` is the output layer's pre-activation: cross-entropies are computed from
logits (log-softmax / softplus form), never from rounded probabilities, so
they stay finite for any logits. With an ``identity`` output the network's
outputs are taken as logits.
"""
import numpy as np

from .kernels import codes
from .kernels.checks import label_range

LOSSES = {
    "squared_error": codes.SQUARED_ERROR,
    "mse": codes.MSE,
    "cross_entropy": codes.CROSS_ENTROPY,
    "binary_cross_entropy": codes.BINARY_CROSS_ENTROPY,
}

#: output activations each loss can be paired with
COMPATIBLE_OUTPUTS = {
    "squared_error": ("identity", "sigmoid", "softmax"),
    "mse": ("identity", "sigmoid", "softmax"),
    "cross_entropy": ("softmax", "identity"),
    "binary_cross_entropy": ("sigmoid", "identity"),
}

#: the loss used when a trainer is given none
DEFAULT_LOSS = {"softmax": "cross_entropy", "sigmoid": "binary_cross_entropy",
                "identity": "mse"}

_EMPTY_LABELS = np.empty(0, dtype=np.int64)
_EMPTY_TARGETS = {np.dtype(np.float32): np.empty((0, 0), np.float32),
                  np.dtype(np.float64): np.empty((0, 0), np.float64)}


def check_loss(loss, output):
    """Validate a loss name against the model's output activation.

    Parameters
    ----------
    loss : str or None
        A key of :data:`LOSSES`; None picks :data:`DEFAULT_LOSS` for ``output``.
    output : str
        The model's output activation.

    Returns
    -------
    str
    """
    if loss is None:
        return DEFAULT_LOSS[output]
    if loss not in LOSSES:
        raise ValueError(f"loss={loss!r} is not known; expected one of {sorted(LOSSES)}")
    if output not in COMPATIBLE_OUTPUTS[loss]:
        raise ValueError(f"loss={loss!r} does not fit output={output!r}; it needs an output "
                         f"in {COMPATIBLE_OUTPUTS[loss]}")
    return loss


def is_classification(loss):
    """True for losses whose predictions have an accuracy."""
    return loss in ("cross_entropy", "binary_cross_entropy")


def empty_labels():
    """The (0,) int64 array passed to kernels when targets are rows."""
    return _EMPTY_LABELS


def empty_targets(dtype):
    """The (0, 0) array passed to kernels when targets are integer labels."""
    return _EMPTY_TARGETS[np.dtype(dtype)]


def distribution_tolerance(dtype):
    """How far a cross-entropy target row may sum from 1: sqrt(eps) of the
    model's dtype (3.5e-4 for float32, 1.5e-8 for float64), loose enough for
    probabilities computed in that dtype, tight enough to catch rows that are
    not distributions (all zeros, counts, percentages)."""
    return float(np.sqrt(np.finfo(dtype).eps))


def _check_distributions(y, argument, row_name):
    """Refuse cross-entropy target rows that are not probability distributions."""
    if y.min() < 0:
        i = int(np.argmin(y.min(axis=1)))
        raise ValueError(f"{argument} rows for cross_entropy must be >= 0 (one-hot or "
                         f"probabilities), got a minimum of {y.min()} in {row_name(i)}: "
                         f"{y[i]}")
    tol = distribution_tolerance(y.dtype)
    sums = y.sum(axis=1, dtype=np.float64)
    bad = np.flatnonzero(np.abs(sums - 1.0) > tol)
    if bad.size:
        i = int(bad[0])
        raise ValueError(f"{argument} rows for cross_entropy must be probability "
                         f"distributions (entries >= 0 summing to 1 within {tol:.2g} for "
                         f"{y.dtype}), but {row_name(i)} sums to {sums[i]:.6g}: {y[i]} "
                         f"({bad.size} of {len(sums)} rows do not sum to 1; for class "
                         f"labels pass integers of shape (n,), for weights normalise the "
                         f"rows: {argument} / {argument}.sum(axis=1, keepdims=True))")


def _row_name(i):
    return f"row {i}"


def prepare_targets(y, loss, n_samples, n_outputs, dtype, argument="y", x_argument="X",
                    row_name=None):
    """Validate targets and split them into the kernels' (labels, targets) pair.

    Parameters
    ----------
    y : array_like
        ``cross_entropy``: integer labels of shape (n_samples,) in
        [0, n_outputs), or target rows of shape (n_samples, n_outputs) that are
        probability distributions (entries >= 0 summing to 1 within
        :func:`distribution_tolerance` of ``dtype``: one-hot or
        probabilities). Other losses: real targets of shape (n_samples,
        n_outputs), or (n_samples,) when n_outputs == 1;
        ``binary_cross_entropy`` targets must lie in [0, 1].
    loss : str
    n_samples, n_outputs : int
    dtype : numpy dtype of the model
        Real-valued targets (rows) are converted to it, from any real array
        or list (see :mod:`fastbp.validation` for why targets, unlike
        features, are converted); labels are never taken from floats.
    argument, x_argument : str
        Names of y and of its features, for error messages.
    row_name : callable or None
        ``row_name(i)`` names target row i in messages (default "row i").

    Returns
    -------
    labels : int64 ndarray (n_samples,) or (0,)
    targets : ndarray (n_samples, n_outputs) of ``dtype``, C order, or (0, 0)

    Raises
    ------
    TypeError
        Non-numeric targets, or float labels for cross_entropy.
    ValueError
        Wrong shape, NaN or inf, labels out of range, binary targets outside
        [0, 1], cross-entropy rows that are not distributions; the message
        names the argument and the first bad label or row.
    """
    if not isinstance(y, np.ndarray):
        y = np.asarray(y)
    if y.dtype.kind not in "biuf":
        raise TypeError(f"{argument} must be numeric, got dtype {y.dtype}")
    if y.shape[:1] != (n_samples,):
        raise ValueError(f"{argument} has {y.shape[0] if y.ndim else 0} rows (shape {y.shape}) "
                         f"but {x_argument} has {n_samples}; expected one target per sample")
    if loss == "cross_entropy" and y.ndim == 1:
        if y.dtype.kind not in "iu":
            raise TypeError(f"{argument} for cross_entropy must be integer class labels of "
                            f"shape (n_samples,) or rows of shape (n_samples, {n_outputs}); "
                            f"got dtype {y.dtype} with shape {y.shape} "
                            f"(use {argument}.astype(int) if the values are labels)")
        if y.dtype == np.int64 and y.flags.c_contiguous and y.shape[0] > 0:
            lo, hi = label_range(y)     # one compiled pass (see kernels.checks)
        else:
            lo, hi = y.min(), y.max()
        if lo < 0 or hi >= n_outputs:
            bad = lo if lo < 0 else hi
            raise ValueError(f"{argument} contains the label {bad}, outside [0, {n_outputs}) "
                             f"for a model with {n_outputs} outputs")
        if y.dtype != np.int64 or not y.flags.c_contiguous:
            y = np.ascontiguousarray(y, dtype=np.int64)
        return y, _EMPTY_TARGETS[np.dtype(dtype)]
    if y.ndim == 1 and n_outputs == 1:
        y = y.reshape(-1, 1)
    if y.ndim != 2 or y.shape[1] != n_outputs:
        raise ValueError(f"{argument} must have shape (n_samples, {n_outputs})"
                         f"{' or (n_samples,)' if n_outputs == 1 else ''} for loss={loss!r}, "
                         f"got shape {y.shape}")
    if y.dtype != dtype or not y.flags.c_contiguous:
        y = np.ascontiguousarray(y, dtype=dtype)
    if not np.isfinite(y.sum()) and not np.isfinite(y).all():
        raise ValueError(f"{argument} contains NaN or inf; expected finite targets")
    if loss == "binary_cross_entropy" and (y.min() < 0 or y.max() > 1):
        raise ValueError(f"{argument} for binary_cross_entropy must lie in [0, 1], got values "
                         f"in [{y.min()}, {y.max()}]")
    if loss == "cross_entropy":
        _check_distributions(y, argument, row_name or _row_name)
    return _EMPTY_LABELS, y


_EMPTY_SEQ_LABELS = np.empty((0, 0), dtype=np.int64)
_EMPTY_SEQ_TARGETS = {np.dtype(np.float32): np.empty((0, 0, 0), np.float32),
                      np.dtype(np.float64): np.empty((0, 0, 0), np.float64)}


def prepare_sequence_targets(y, loss, n_sequences, n_steps, n_outputs, readout, dtype,
                             argument="y", x_argument="X"):
    """Validate targets of a recurrent model and split them into the kernels'
    (labels, targets) pair.

    Parameters
    ----------
    y : array_like
        readout 'last': one target per sequence, as :func:`prepare_targets`
        takes per sample: labels (n_sequences,) or rows (n_sequences,
        n_outputs). readout 'all': one per time step: labels (n_sequences, T)
        or rows (n_sequences, T, n_outputs) ((n_sequences, T) also for real
        targets when n_outputs == 1).
    loss : str
    n_sequences, n_steps, n_outputs : int
    readout : {'last', 'all'}
    dtype : numpy dtype of the model
    argument, x_argument : str
        Names for error messages.

    Returns
    -------
    labels : int64 ndarray (n_sequences, Tl) or (0, 0), Tl = T ('all') or 1
    targets : ndarray (n_sequences, Tl, n_outputs) of ``dtype`` or (0, 0, 0)
    """
    if readout == "last":
        labels, targets = prepare_targets(y, loss, n_sequences, n_outputs, dtype, argument,
                                          x_argument)
        per_seq = 1
    else:
        if not isinstance(y, np.ndarray):
            y = np.asarray(y)
        if y.ndim < 2 or y.shape[:2] != (n_sequences, n_steps):
            raise ValueError(
                f"{argument} has shape {y.shape}, but readout='all' needs one target per time "
                f"step of the {n_sequences} sequences of {n_steps} steps in {x_argument}: "
                f"labels of shape ({n_sequences}, {n_steps}) or rows of shape "
                f"({n_sequences}, {n_steps}, {n_outputs})")
        labels, targets = prepare_targets(y.reshape((n_sequences * n_steps,) + y.shape[2:]),
                                          loss, n_sequences * n_steps, n_outputs, dtype,
                                          argument, x_argument,
                                          lambda i: f"the row of sequence {i // n_steps}, "
                                                    f"step {i % n_steps}")
        per_seq = n_steps
    if labels.shape[0]:
        return labels.reshape(n_sequences, per_seq), _EMPTY_SEQ_TARGETS[np.dtype(dtype)]
    return _EMPTY_SEQ_LABELS, targets.reshape(n_sequences, per_seq, n_outputs)

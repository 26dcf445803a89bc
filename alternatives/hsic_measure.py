"""Hilbert-Schmidt independence criterion between two sets of paired samples:
the biased estimator and the normalised form the HSIC bottleneck trains on
(Ma, Lewis & Kleijn 2020).

Both use the Gaussian kernel on rows, K[i, j] = exp(-||a_i - a_j||^2 /
(2 sigma^2 d)) with d the matrix's width, so one ``sigma`` suits matrices of
different widths. The numerical core is in :mod:`alternatives._hsic_kernels`.
"""
import numpy as np

from fastbp.validation import SUPPORTED_DTYPES, all_finite, check_positive_float

from ._hsic_kernels import hsic_value, hsic_workspace, inner_product, normalized_r

__all__ = ["hsic", "nhsic"]


def _check_samples(A, argument):
    """A as a 2-D float32/float64 array with at least one column, finite."""
    if not isinstance(A, np.ndarray):
        try:
            A = np.asarray(A, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"{argument} must be a numeric array of shape (m, d), got "
                            f"{type(A).__name__} ({exc})") from None
    if not any(A.dtype == s for s in SUPPORTED_DTYPES):
        raise TypeError(f"{argument} has dtype {A.dtype}; expected float32 or float64 "
                        f"(convert it with {argument}.astype(np.float64))")
    if A.ndim != 2:
        hint = f"; for one feature use {argument}.reshape(-1, 1)" if A.ndim == 1 else ""
        raise ValueError(f"{argument} must be 2-D of shape (m, d) with samples as rows, "
                         f"got {A.ndim}-D shape {A.shape}{hint}")
    if A.shape[1] == 0:
        raise ValueError(f"{argument} has no columns (shape {A.shape}); expected at least "
                         "one feature per sample")
    if not all_finite(A):
        bad = tuple(int(i) for i in np.argwhere(~np.isfinite(A))[0])
        raise ValueError(f"{argument} contains NaN or inf (first at index {bad}: {A[bad]}); "
                         "expected finite values")
    return A


def _check_pair(A, B):
    A = _check_samples(A, "A")
    B = _check_samples(B, "B")
    if A.shape[0] != B.shape[0]:
        raise ValueError(f"A and B must pair the same samples: A has {A.shape[0]} rows "
                         f"(shape {A.shape}), B has {B.shape[0]} (shape {B.shape})")
    if A.shape[0] < 2:
        raise ValueError(f"HSIC needs at least two samples, got m={A.shape[0]} rows "
                         f"(A shape {A.shape}, B shape {B.shape})")
    return A, B


def hsic(A, B, sigma):
    """Biased HSIC estimate between paired samples A and B.

    HSIC(A, B) = tr(K_A H K_B H) / (m - 1)^2, with Gaussian kernels
    K[i, j] = exp(-||a_i - a_j||^2 / (2 sigma^2 d)) (d the width of the
    matrix) and H = I - 11^T / m.

    Parameters
    ----------
    A : ndarray of shape (m, dA), float32 or float64
        Samples as rows.
    B : ndarray of shape (m, dB), float32 or float64
        The same m samples' second variable (row i pairs with A's row i).
    sigma : float > 0
        Kernel width, shared by A and B.

    Returns
    -------
    float
        The estimate, >= 0 (computed in float64 whatever the input dtype);
        0 when either side is constant.

    Raises
    ------
    TypeError
        A or B not numeric or of another dtype; sigma not a real number.
    ValueError
        A or B not 2-D, without columns, or with NaN/inf; different numbers
        of rows; fewer than two samples; sigma not finite and > 0.
    """
    A, B = _check_pair(A, B)
    sigma = check_positive_float(sigma, "sigma")
    ws = hsic_workspace(A.shape[0], max(A.shape[1], B.shape[1]))
    return float(hsic_value(A, B, sigma, ws))


def nhsic(A, B, sigma, epsilon=1e-5):
    """Normalised HSIC between paired samples A and B, as in the HSIC bottleneck.

    nHSIC(A, B) = tr(R_A R_B), R = K~ (K~ + epsilon m I)^-1, K~ = H K H, with
    the Gaussian kernels and H of :func:`hsic`. Each R has eigenvalues
    mu / (mu + epsilon m) for the eigenvalues mu of K~, so nHSIC(A, A) counts
    (softly) the kernel's directions above epsilon m: at most m - 1.

    Parameters
    ----------
    A, B, sigma
        As for :func:`hsic`: (m, dA) and (m, dB) float32 or float64 arrays
        pairing the same m samples row by row, and the shared kernel width.
    epsilon : float > 0, default 1e-5
        Regulariser: the inverse is of K~ + epsilon m I.

    Returns
    -------
    float
        The value, >= 0, solved in float64 (Cholesky factorisation) whatever
        the input dtype; 0 (up to rounding, ~1e-15) when either side is
        constant.

    Raises
    ------
    TypeError
        A or B not numeric or of another dtype; sigma or epsilon not a real
        number.
    ValueError
        A or B not 2-D, without columns, or with NaN/inf; different numbers
        of rows; fewer than two samples; sigma or epsilon not finite and > 0.
    """
    A, B = _check_pair(A, B)
    sigma = check_positive_float(sigma, "sigma")
    epsilon = check_positive_float(epsilon, "epsilon")
    m = A.shape[0]
    ws = hsic_workspace(m, max(A.shape[1], B.shape[1]))
    RA = np.empty(m * m)
    RB = np.empty(m * m)
    for R, V, name in ((RA, A, "A"), (RB, B, "B")):
        info = normalized_r(V, sigma, epsilon, ws, R)
        if info != 0:  # K~ + epsilon m I is positive definite: only rounding can fail it
            raise FloatingPointError(f"the Cholesky factorisation of K~ + epsilon m I for "
                                     f"{name} failed (status {info}); try a larger "
                                     f"epsilon than {epsilon}")
    return float(inner_product(RA, RB, m))

"""Numba kernels of the HSIC bottleneck (Ma, Lewis & Kleijn 2020): Gaussian
Gram matrices, centring, normalised HSIC and the per-layer objective's gradient.

Definitions (m samples as rows, d a matrix's width, H = I - 11^T / m):

* K_A[i, j] = exp(-||a_i - a_j||^2 / (2 sigma^2 d))   (:func:`gaussian_gram`)
* K~ = H K H                                          (:func:`center`)
* HSIC(A, B) = tr(K_A H K_B H) / (m - 1)^2             (:func:`hsic_value`)
* R_A = K~_A (K~_A + c I)^-1 with c = epsilon m       (:func:`normalized_r`)
* nHSIC(A, B) = tr(R_A R_B)                            (:func:`inner_product`)
* layer objective J(Z) = tr(R_Z S), S = R_X - beta R_Y (:func:`target_matrix`,
  :func:`layer_value`, :func:`layer_gradient`)

Gradient of J (what :func:`layer_gradient` computes; checked against central
differences in tests/test_hsic_measure.py). With M = K~_Z + c I, K~_Z and M
commute, so R_Z = I - c M^-1 and J = tr(S) - c tr(M^-1 S). Since
d tr(M^-1 S) = -tr(M^-1 S M^-1 dM) and dM = H dK H,

    G = dJ/dK_Z = c H M^-1 S M^-1 H            (symmetric, as S and M are)
    P = G * K_Z (elementwise),  r = P 1
    dJ/dZ = -(2 / (sigma^2 d)) (diag(r) Z - P Z)

(dK_ij/dz_i = -K_ij (z_i - z_j) / (sigma^2 d); each pair appears as (i, j) and
(j, i), hence the 2.)

Cost per layer: one Cholesky factorisation and inverse of M (LAPACK dpotrf +
dpotri, m^3 flops), two m x m products for M^-1 S M^-1 (BLAS, 4 m^3), the
Gram Z Z^T (BLAS dsyrk, m^2 d) and the product P Z (2 m^2 d), and O(m^2)
loops: m^2 / 2 exponentials (vectorised, :func:`exp_nonpositive`), centring
passes and tiled mirroring of symmetric matrices. The explicit M^-1 and two
GEMMs measured ~2x faster than the solves (dpotrs twice, i.e. four dtrsm:
3.6 ms against 1.7 ms at m = 256, one thread), because OpenBLAS's dtrsm runs
at a fifth of its GEMM speed; M^-1 also stays behind, so tr(R_Z R) for any
other R (nHSIC(Z, X) and nHSIC(Z, Y) separately, for logging) costs O(m^2)
more (:func:`layer_nhsic`).

Whatever the input dtype, every Gram, factorisation and product runs in
float64 in the caller's :class:`HSICWorkspace`; nothing allocates. LAPACK and
BLAS are called in place through SciPy's ``cython_lapack``/``cython_blas``
(``dpotrf``, ``dpotri``, ``dsyrk``; Fortran ABI: every argument by pointer,
the scalar arguments in stack slots of the calling kernel). The symbols are
registered with LLVM by name at import, so compiled kernels carry no
process-specific address and ``cache=True`` works. ``np.linalg.cholesky``
inside @njit would allocate its result and a Fortran-order copy on every call
(measured 41 vs 26 us at m = 100, 402 vs 222 us at m = 256, single thread);
numba offers no in-place triangular solve or Cholesky inverse.

Matrices of the m x m kind are the first m * m entries of flat float64
buffers, row-major; a batch smaller than the workspace's m_max uses the
leading entries. Every matrix LAPACK factorises or inverts here is symmetric,
so row- and column-major agree (LAPACK's "lower" triangle is the row-major
upper one).

Calling order for a trainer (one batch of m rows; X (m, n_0), one-hot Y
(m, k), hidden outputs Z_l (m, n_l), all in the model's dtype)::

    ws = hsic_workspace(m_max, max(n_0, k, n_1, ..., n_L))   # once
    RX, RY, S = (np.empty(m_max * m_max) for _ in range(3))  # once
    normalized_r(X, sigma, epsilon, ws, RX)       # per batch -> 0 (status)
    normalized_r(Y, sigma, epsilon, ws, RY)
    target_matrix(RX, RY, beta, m, S)
    J_l = layer_gradient(Z_l, S, sigma, epsilon, ws, dZ_l)   # per layer
    nhsic_zx = layer_nhsic(RX, m, epsilon, ws)    # optional, O(m^2), same Z_l
    nhsic_zy = layer_nhsic(RY, m, epsilon, ws)

then delta_l = dZ_l * f'(a_l), dW_l = delta_l^T Z_{l-1}, db_l = column sums.
A NaN J_l (and dZ_l) means M_Z could not be factorised: non-finite Z_l.

BLAS threads: OpenBLAS threads dpotri at every size, so at m = 100 a layer
took 275 us with one thread and 325 us with two (tiny m: 3 us against ~80 us);
from m ~ 256 two threads pay (2.1 against 2.75 ms). fastbp's comparison runs
already pin one BLAS thread (``blas_threads=1``).
"""
from collections import namedtuple

import llvmlite.binding as _llvm
import llvmlite.ir as _ir
import numpy as np
from numba import njit, types
from numba.core import cgutils
from numba.extending import get_cython_function_address, intrinsic

from fastbp.kernels.activations import exp_reduced
from fastbp.kernels.codes import KERNEL, REDUCTION

# -- LAPACK, in place ----------------------------------------------------------------

for _module, _name in (("lapack", "dpotrf"), ("lapack", "dpotri"), ("blas", "dsyrk")):
    _llvm.add_symbol("fastbp_hsic_" + _name,
                     get_cython_function_address("scipy.linalg.cython_" + _module, _name))

_vp = types.voidptr
# (uplo, n, a, lda, info), all by reference
_dpotrf = types.ExternalFunction("fastbp_hsic_dpotrf", types.void(_vp, _vp, _vp, _vp, _vp))
_dpotri = types.ExternalFunction("fastbp_hsic_dpotri", types.void(_vp, _vp, _vp, _vp, _vp))
# (uplo, trans, n, k, alpha, a, lda, beta, c, ldc)
_dsyrk = types.ExternalFunction("fastbp_hsic_dsyrk", types.void(*(_vp,) * 10))

_LOWER = 76  # ord("L")
_TRANSPOSE = 84  # ord("T")


def _reference_to(target, accepted):
    """An intrinsic taking a scalar (of a type in ``accepted``) and returning a
    pointer to a stack slot, in the calling kernel's frame, that holds it as
    ``target``: how a Fortran routine takes its scalar arguments."""
    @intrinsic
    def reference(typingctx, value):
        if not isinstance(value, accepted):
            return None

        def codegen(context, builder, signature, args):
            v = context.cast(builder, args[0], signature.args[0], target)
            slot = cgutils.alloca_once_value(builder, v)
            return builder.bitcast(slot, cgutils.voidptr_t)
        return types.voidptr(value), codegen
    return reference


_int32_ref = _reference_to(types.int32, types.Integer)  # INTEGER (C int)
_char_ref = _reference_to(types.int8, types.Integer)  # CHARACTER*1, from its code
_float64_ref = _reference_to(types.float64, (types.Float, types.Integer))  # DOUBLE PRECISION


@intrinsic
def _int32_load(typingctx, ptr):
    """The C int that ``ptr`` (from :func:`_int32_ref`) points at now."""
    if ptr != types.voidptr:
        return None

    def codegen(context, builder, signature, args):
        slot = builder.bitcast(args[0], cgutils.int32_t.as_pointer())
        return builder.load(slot)
    return types.int32(ptr), codegen


@intrinsic
def _bits_to_float64(typingctx, bits):
    """The float64 whose bit pattern is the int64 ``bits``."""
    if bits != types.int64:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], _ir.DoubleType())
    return types.float64(bits), codegen


_LOG2E = 1.4426950408889634
_LN2_HI = 6.93147180369123816490e-01  # ln 2 split in two (Cody-Waite): n * _LN2_HI is exact
_LN2_LO = 1.90821492927058770002e-10


@njit(inline="always", **KERNEL)
def exp_nonpositive(x):
    """exp(x) for x <= 0 within 1 ulp (0 below -708, where exp < 3e-308; NaN
    stays NaN), written without calls or branches so that a loop over
    contiguous entries vectorises: libm's exp does not (Numba has no SVML
    here), and it cost ~2x more in the Gram (~6 ns per entry).

    x = n ln 2 + r with |r| <= ln(2) / 2; exp(r) by
    :func:`fastbp.kernels.activations.exp_reduced` (the polynomial tanh_float64
    uses), times 2^n built from its bits."""
    xc = x if x > -708.0 else -708.0  # NaN takes the finite path, then is restored
    n = np.floor(xc * _LOG2E + 0.5)
    r = xc - n * _LN2_HI - n * _LN2_LO
    e = exp_reduced(r) * _bits_to_float64(np.int64(n + 1023.0) << 52)
    return e if x > -708.0 else (0.0 if x <= -708.0 else x)


@njit(**KERNEL)
def mirror_upper(a, m):
    """Copy the row-major upper triangle of the (m, m) block a[:m*m] onto its
    lower one, in 8 x 8 tiles: a plain column walk at m = 256 strides by a
    power of two and thrashes the L1 cache (3x slower)."""
    T = 8
    for ib in range(0, m, T):
        ie = min(ib + T, m)
        for jb in range(ib, m, T):
            je = min(jb + T, m)
            for i in range(ib, ie):
                for j in range(max(jb, i + 1), je):
                    a[j * m + i] = a[i * m + j]


@njit(**KERNEL)
def _check_square(buffer, m):
    """Raise unless ``buffer`` is a flat, contiguous float64 array holding an
    (m, m) block. Numba does not check bounds and LAPACK writes wherever it is
    told, so every kernel checks its buffers first (O(1))."""
    if buffer.itemsize != 8 or buffer.strides[0] != 8:
        raise ValueError("HSIC kernel: m x m buffers must be flat, contiguous float64 arrays")
    if m < 1 or buffer.size < m * m:
        raise ValueError("HSIC kernel: a buffer is smaller than m * m entries for the batch's "
                         "m rows")


@njit(**KERNEL)
def _check_workspace(ws, m, d):
    """Raise unless ``ws`` fits m rows of width d."""
    if m < 1 or d < 1 or ws.z.size < m * d or ws.pz.size < m * d or ws.k.size < m * m \
            or ws.a.size < m * m or ws.b.size < m * m or ws.c.size < m * m \
            or ws.v.size < 2 * m:
        raise ValueError("HSICWorkspace too small for this matrix: allocate it with "
                         "hsic_workspace(m_max, d_max) where m_max covers the batch's rows and "
                         "d_max the widest of X, Y and every Z")


@njit(**KERNEL)
def cholesky_inplace(a, m):
    """Cholesky factor of the symmetric positive definite (m, m) matrix held
    in ``a[:m*m]``, in place (LAPACK dpotrf). Reads and writes only the
    row-major upper triangle (j >= i), which ends as L^T with M = L L^T.
    Returns LAPACK's info: 0 on success, k > 0 when the leading minor of
    order k is not positive definite."""
    _check_square(a, m)
    info = _int32_ref(0)
    _dpotrf(_char_ref(_LOWER), _int32_ref(m), a.ctypes, _int32_ref(m), info)
    return _int32_load(info)


@njit(**KERNEL)
def cholesky_inverse_inplace(a, m):
    """M^-1 from the factor :func:`cholesky_inplace` left in ``a[:m*m]``, in
    place (LAPACK dpotri), then mirrored so the whole (m, m) block holds the
    symmetric M^-1. Returns LAPACK's info (0 on success)."""
    _check_square(a, m)
    info = _int32_ref(0)
    _dpotri(_char_ref(_LOWER), _int32_ref(m), a.ctypes, _int32_ref(m), info)
    mirror_upper(a, m)
    return _int32_load(info)


@njit(**KERNEL)
def gram_upper(z, m, d, K):
    """The row-major upper triangle (j >= i) of K[:m*m] <- Z Z^T for the
    row-major (m, d) matrix Z in z[:m*d] (BLAS dsyrk, half a GEMM's work);
    the strict lower triangle is left as it was."""
    _check_square(K, m)
    if z.itemsize != 8 or z.strides[0] != 8:
        raise ValueError("gram_upper: z must be a flat, contiguous float64 array")
    if d < 1 or z.size < m * d:
        raise ValueError("gram_upper: z holds fewer than m * d entries")
    # column-major, z holds Z^T (d, m): C = (Z^T)^T Z^T; its "lower" triangle
    # is the row-major upper one
    _dsyrk(_char_ref(_LOWER), _char_ref(_TRANSPOSE), _int32_ref(m), _int32_ref(d),
           _float64_ref(1.0), z.ctypes, _int32_ref(d), _float64_ref(0.0), K.ctypes,
           _int32_ref(m))


# -- workspace -----------------------------------------------------------------------

#: Float64 scratch of the HSIC kernels, sized for at most ``m_max`` samples of
#: width at most ``d_max`` (smaller batches use the leading entries).
#:
#: * ``z``  (m_max * d_max,): the input rows copied to float64, (m, d) row-major
#:   (not used for an input that is a contiguous float64 array)
#: * ``pz`` (m_max * d_max,): the product P Z of :func:`layer_gradient`
#: * ``k``  (m_max^2,): the Gaussian Gram matrix K of the last input
#: * ``a``  (m_max^2,): M = K~ + c I, then its Cholesky factor, then M^-1
#:   (after :func:`layer_value` or :func:`layer_gradient` it holds M_Z^-1,
#:   which :func:`layer_nhsic` reads)
#: * ``b``, ``c`` (m_max^2,): S M^-1, then M^-1 S M^-1 -> P (layer_gradient);
#:   K_B in :func:`hsic_value`
#: * ``v``  (2 m_max,): row norms, row and column means, row sums of P
HSICWorkspace = namedtuple("HSICWorkspace", ["z", "pz", "k", "a", "b", "c", "v"])


def hsic_workspace(m_max, d_max):
    """Allocate an :class:`HSICWorkspace` for batches of at most ``m_max``
    rows whose matrices (X, Y and every Z_l) are at most ``d_max`` wide."""
    m_max = int(m_max)
    d_max = int(d_max)
    if m_max < 2 or d_max < 1:
        raise ValueError(f"hsic_workspace needs m_max >= 2 and d_max >= 1, got "
                         f"m_max={m_max}, d_max={d_max}")
    zeros = np.zeros
    return HSICWorkspace(zeros(m_max * d_max), zeros(m_max * d_max), zeros(m_max * m_max),
                         zeros(m_max * m_max), zeros(m_max * m_max), zeros(m_max * m_max),
                         zeros(2 * m_max))


# -- kernels -------------------------------------------------------------------------

@njit(**KERNEL)
def _float64_rows(A, ws, copy):
    """The rows of A (m, d) as one flat float64 array: A's own buffer when A
    is a contiguous float64 array (no copy), else ws.z[:m*d], into which they
    are copied when ``copy`` (else ws.z is assumed to hold them already, from
    an earlier call on the same A)."""
    m, d = A.shape
    if A.itemsize == 8 and A.flags.c_contiguous:
        return A.ravel().view(np.float64)      # the float64 A itself
    z = ws.z
    if copy:
        for i in range(m):
            row = z[i * d:(i + 1) * d]
            for j in range(d):
                row[j] = A[i, j]
    return z[:m * d]


@njit(**KERNEL)
def gaussian_gram(A, sigma, ws, K):
    """K[:m*m] <- the Gaussian kernel matrix of the rows of A (m, d), any
    float dtype: exp(-||a_i - a_j||^2 / (2 sigma^2 d)), exactly symmetric with
    a unit diagonal. Squared distances are ||a_i||^2 + ||a_j||^2 - 2 a_i.a_j
    (clipped at 0), every term from :func:`gram_upper` (the norms are its
    diagonal: a sum of squares in a loop of its own is a chain of dependent
    additions, which cost more than the copy to float64); one exponential per
    pair i < j. A's rows in float64 are :func:`_float64_rows` (copied to ws.z
    unless A is a contiguous float64 array); uses ws.v."""
    m, d = A.shape
    _check_workspace(ws, m, d)
    _check_square(K, m)
    v = ws.v
    gram_upper(_float64_rows(A, ws, np.bool_(True)), m, d, K)
    for i in range(m):
        v[i] = K[i * m + i]
    scale = -1.0 / (2.0 * sigma * sigma * d)
    for i in range(m):
        K[i * m + i] = 1.0
        vi = v[i]
        row = K[i * m + i + 1:(i + 1) * m]  # slices: a loop from 0 vectorises
        vj = v[i + 1:m]
        for j in range(row.size):
            dist = vi + vj[j] - 2.0 * row[j]
            dist = 0.0 if dist < 0.0 else dist  # rounding; NaN passes
            row[j] = exp_nonpositive(scale * dist)
    mirror_upper(K, m)


@njit(**KERNEL)
def center(K, m, out, v):
    """out[:m*m] <- H K H for the (m, m) matrix in K[:m*m] (any square matrix:
    row means, column means and the grand mean are removed). ``out`` may be
    ``K``; ``v`` is scratch of at least 2 m entries."""
    _check_square(out, m)
    _means(K, m, v)
    for i in range(m):
        ri = v[i]
        for j in range(m):
            out[i * m + j] = K[i * m + j] - ri - v[m + j]


@njit(**KERNEL)
def _means(K, m, v):
    """v[:m] <- the row means of the (m, m) matrix in K[:m*m] less its grand
    mean, v[m:2m] <- its column means: K - v[i] - v[m + j] is H K H."""
    _check_square(K, m)
    if v.size < 2 * m:
        raise ValueError("center: the scratch vector needs 2 m entries")
    for i in range(2 * m):
        v[i] = 0.0
    for i in range(m):
        s = 0.0
        for j in range(m):
            x = K[i * m + j]
            s += x
            v[m + j] += x
        v[i] = s / m
    total = 0.0
    for j in range(m):
        v[m + j] /= m
        total += v[m + j]
    g = total / m
    for i in range(m):
        v[i] -= g


@njit(**REDUCTION)
def inner_product(A, B, m):
    """sum_ij A[i, j] B[i, j] = tr(A^T B) for (m, m) matrices in A[:m*m] and
    B[:m*m]: tr(A B) when A or B is symmetric (every use here), read row by
    row rather than down B's columns."""
    _check_square(A, m)
    _check_square(B, m)
    s = 0.0
    for i in range(m * m):
        s += A[i] * B[i]
    return s


@njit(**KERNEL)
def hsic_value(A, B, sigma, ws):
    """The biased HSIC estimate tr(K_A H K_B H) / (m - 1)^2 of A (m, dA) and
    B (m, dB) (any float dtypes, widths <= the workspace's d_max).
    Uses ws.z, ws.v, ws.k (K~_A), ws.b (K_B)."""
    m = A.shape[0]
    gaussian_gram(A, sigma, ws, ws.k)
    center(ws.k, m, ws.k, ws.v)
    gaussian_gram(B, sigma, ws, ws.b)
    # tr(K_A H K_B H) = tr(H K_A H K_B), both symmetric
    return inner_product(ws.k, ws.b, m) / ((m - 1.0) * (m - 1.0))


#: status of the factorising kernels for non-finite input: OpenBLAS's dpotrf
#: lets NaN through with info = 0, so the factor's diagonal is checked too
NONFINITE = -1


@njit(**KERNEL)
def _regularised_inverse(A, sigma, c, ws, out):
    """out[:m*m] <- (H K_A H + c I)^-1 (symmetric, full). Leaves K_A in ws.k.
    Returns 0 on success, LAPACK's info > 0, or NONFINITE."""
    m = A.shape[0]
    gaussian_gram(A, sigma, ws, ws.k)
    center(ws.k, m, out, ws.v)
    for i in range(m):
        out[i * m + i] += c
    info = cholesky_inplace(out, m)
    if info != 0:
        return info
    diagonal = 0.0
    for i in range(m):
        diagonal += out[i * m + i]
    if not np.isfinite(diagonal):  # NaN in A spreads to every entry of M
        return NONFINITE
    return cholesky_inverse_inplace(out, m)


@njit(**KERNEL)
def normalized_r(A, sigma, epsilon, ws, R):
    """R[:m*m] <- R_A = K~_A (K~_A + c I)^-1, c = epsilon m, for the rows of
    A (m, d), any float dtype: computed as H (I - c M^-1) H with
    M = K~_A + c I (equal, since K~_A and M commute and R_A 1 = 0), so R is
    symmetric and centred. Uses ws.z, ws.v, ws.k.

    Returns 0 on success; otherwise (LAPACK's info > 0, or
    :data:`NONFINITE` for NaN/inf in A) R is filled with NaN."""
    m = A.shape[0]
    _check_square(R, m)
    c = epsilon * m
    info = _regularised_inverse(A, sigma, c, ws, R)
    if info != 0:
        for i in range(m * m):
            R[i] = np.nan
        return info
    for i in range(m * m):
        R[i] = -c * R[i]
    for i in range(m):
        R[i * m + i] += 1.0
    center(R, m, R, ws.v)
    return 0


@njit(**KERNEL)
def target_matrix(RX, RY, beta, m, S):
    """S[:m*m] <- R_X - beta R_Y: the fixed matrix of every layer's objective
    J = tr(R_Z S) = nHSIC(Z, X) - beta nHSIC(Z, Y) in this batch."""
    _check_square(RX, m)
    _check_square(RY, m)
    _check_square(S, m)
    for i in range(m * m):
        S[i] = RX[i] - beta * RY[i]


@njit(**KERNEL)
def layer_nhsic(R, m, epsilon, ws):
    """tr(R_Z R) for the Z of the last :func:`layer_value` or
    :func:`layer_gradient` call (whose M_Z^-1 is still in ws.a) and a
    symmetric (m, m) R (R_X gives nHSIC(Z, X), R_Y nHSIC(Z, Y), the target
    S the objective J). tr(R_Z R) = tr(R) - c tr(M_Z^-1 R), c = epsilon m."""
    c = epsilon * m
    tr = 0.0
    for i in range(m):
        tr += R[i * m + i]
    return tr - c * inner_product(ws.a, R, m)


@njit(**KERNEL)
def layer_value(Z, S, sigma, epsilon, ws):
    """The layer objective J = tr(R_Z S) of the rows of Z (m, d), any float
    dtype, for the symmetric target S[:m*m] (from :func:`target_matrix`).
    Leaves K_Z in ws.k and M_Z^-1 in ws.a. Returns NaN if M_Z cannot be
    factorised (only with non-finite Z)."""
    m = Z.shape[0]
    _check_square(S, m)
    c = epsilon * m
    if _regularised_inverse(Z, sigma, c, ws, ws.a) != 0:
        return np.nan
    return layer_nhsic(S, m, epsilon, ws)


@njit(**KERNEL)
def layer_gradient(Z, S, sigma, epsilon, ws, dZ):
    """J = tr(R_Z S) and dZ <- dJ/dZ for the rows of Z (m, d), any float
    dtype; dZ is a preallocated (m, d) array of any float dtype (it may be
    Z's own dtype). S[:m*m] is the symmetric target from
    :func:`target_matrix`. See the module docstring for the formulas.

    Leaves K_Z in ws.k and M_Z^-1 in ws.a (so :func:`layer_nhsic` can report
    nHSIC(Z, X) and nHSIC(Z, Y) separately at O(m^2)); uses every buffer of
    the workspace. Returns J, or NaN (dZ filled with NaN) if M_Z cannot be
    factorised (only with non-finite Z)."""
    m, d = Z.shape
    _check_square(S, m)
    if dZ.shape[0] != m or dZ.shape[1] != d:
        raise ValueError("layer_gradient: dZ must have Z's shape (m, d)")
    c = epsilon * m
    a = ws.a
    b = ws.b
    w = ws.c
    v = ws.v
    if _regularised_inverse(Z, sigma, c, ws, a) != 0:
        for i in range(m):
            for j in range(d):
                dZ[i, j] = np.nan
        return np.nan
    J = layer_nhsic(S, m, epsilon, ws)
    Minv = a[:m * m].reshape((m, m))
    np.dot(S[:m * m].reshape((m, m)), Minv, b[:m * m].reshape((m, m)))
    np.dot(Minv, b[:m * m].reshape((m, m)), w[:m * m].reshape((m, m)))
    # G = c H W H, centred in the pass that forms P = G * K (as center()
    # would, one m x m pass less). Rounding leaves W asymmetric at the 1e-16
    # relative level only, which moves dZ by as little: not worth a pass
    # averaging W with W^T (a column walk, ~8% of the step at m = 256 untiled).
    _means(w, m, v)
    K = ws.k
    for i in range(m):
        s = 0.0
        ri = v[i]
        for j in range(m):
            p = c * (w[i * m + j] - ri - v[m + j]) * K[i * m + j]
            w[i * m + j] = p
            s += p
        v[i] = s
    z = _float64_rows(Z, ws, np.bool_(False))        # as gaussian_gram left them
    np.dot(w[:m * m].reshape((m, m)), z.reshape((m, d)), ws.pz[:m * d].reshape((m, d)))
    pz = ws.pz
    scale = -2.0 / (sigma * sigma * d)
    for i in range(m):
        ri = v[i]
        for j in range(d):
            dZ[i, j] = scale * (ri * z[i * d + j] - pz[i * d + j])
    return J

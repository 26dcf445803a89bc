"""Activation functions and their derivatives, applied to a (rows, cols) block
stored row-major in a flat buffer at an offset.

Kernels index flat buffers instead of taking 2-D views: a view costs a
reshape and an atomic reference-count update, which dominates a tiny network's
step. Derivatives are computed from the activation's *output* h = f(a), so
the forward pass only keeps outputs.

These are ordinary (not inlined) functions. For large layers callers pass
separate slices rather than one buffer at two offsets: LLVM then vectorizes
behind a runtime overlap check, and with one array at two offsets it cannot
(ReLU' on 128 x 256: 19 us -> 3 us). In-place activation has its own
one-array function for the same reason.

The elementwise loops index through ``np.uint64(offset + i)``: with a signed
index Numba tests every access for a negative (wrap-around) index, and LLVM
then vectorizes the loop only when the offset is a constant it can see.
Measured on 4096 entries at a run-time offset, ns per entry before -> after:
tanh 3.6 -> 0.5 (float32) and 12.9 -> 3.3 (float64), ReLU 0.42 -> 0.07,
tanh' 1.4 -> 0.26. Offsets are never negative here.
"""
import numpy as np
from numba import njit, types
from numba.extending import overload

from .codes import CONTRACT, KERNEL, LEAKY_RELU, LEAKY_SLOPE, RELU, SIGMOID, SOFTMAX, TANH, ZERO


#: 1 as a float32, for derivative forms such as 1 - h * h: with the float
#: literal 1.0 (a float64 in Numba) a float32 model's derivative was formed in
#: float64, half as many lanes per vector (tanh' 0.26 -> 0.10 ns per entry);
#: with a float64 h the result is the same as with 1.0
ONE32 = np.float32(1.0)


@njit(inline="always", **KERNEL)
def sigmoid_scalar(a):
    # split on the sign so exp never overflows
    if a >= 0:
        return 1.0 / (1.0 + np.exp(-a))
    e = np.exp(a)
    return e / (1.0 + e)


@njit(inline="always", **KERNEL)
def tanh_float32(x):
    """tanh of a float32 by a [13/6] rational approximation on [-7.905, 7.905]
    (the form XLA and Eigen use for float32): within 6 ulp (3.4e-7 absolute)
    of the exact value, ~25x faster than Numba's scalar libm ``np.tanh``.
    Saturates to +-1 beyond the interval; tanh(x) = x below 4e-4."""
    f = np.float32
    clamp = f(7.90531110763549805)
    if x > clamp:
        x = clamp
    elif x < -clamp:
        x = -clamp
    if abs(x) < f(0.0004):
        return f(x)
    x2 = x * x
    p = x2 * f(-2.76076847742355e-16) + f(2.00018790482477e-13)
    p = x2 * p + f(-8.60467152213735e-11)
    p = x2 * p + f(5.12229709037114e-08)
    p = x2 * p + f(1.48572235717979e-05)
    p = x2 * p + f(6.37261928875436e-04)
    p = x2 * p + f(4.89352455891786e-03)
    q = x2 * f(1.19825839466702e-06) + f(1.18534705686654e-04)
    q = x2 * q + f(2.26843463243900e-03)
    q = x2 * q + f(4.89352518554385e-03)
    return x * p / q


@njit(**CONTRACT)
def tanh_block_float32(Z, z0, n):
    """Z[z0:z0 + n] = tanh(Z[z0:z0 + n]) for a 1-D float32 array Z, by
    :func:`tanh_float32` with its multiply-adds fused (:data:`CONTRACT`):
    0.54 -> 0.36 ns per entry on this package's test machine (AVX-512), the
    loop then bound by the division. Same error bound (tested)."""
    for i in range(n):
        k = np.uint64(z0 + i)
        Z[k] = tanh_float32(Z[k])


@njit(**CONTRACT)
def add_tanh_float32(H, h0, Z, z0, n):
    """H[h0:h0 + n] = tanh(H[h0:h0 + n] + Z[z0:z0 + n]) for 1-D float32
    arrays H, Z (different arrays), as :func:`tanh_block_float32` after the
    sum."""
    for i in range(n):
        k = np.uint64(h0 + i)
        H[k] = tanh_float32(H[k] + Z[np.uint64(z0 + i)])


#: 2^k for k = 0..64, the scale step of :func:`tanh_float64`'s exp
_POW2 = np.array([2.0 ** k for k in range(65)])
_LN2_HI = 6.93147180369123816490e-01     # ln 2 split so that k * LN2_HI is exact
_LN2_LO = 1.90821492927058770002e-10
_INV_LN2 = 1.44269504088896338700e+00


@njit(inline="always", **KERNEL)
def exp_reduced(r):
    """exp(r) for a float64 |r| <= ln(2) / 2, the remainder of a Cody-Waite
    reduction x = k ln 2 + r: the degree-13 Taylor polynomial (truncation
    error < 1e-17), by Horner from 1/13! down to 1/0!. No calls and no
    branches, so a loop over contiguous entries vectorizes; the caller scales
    by 2^k."""
    e = 1.0 / 6227020800.0
    e = e * r + 1.0 / 479001600.0
    e = e * r + 1.0 / 39916800.0
    e = e * r + 1.0 / 3628800.0
    e = e * r + 1.0 / 362880.0
    e = e * r + 1.0 / 40320.0
    e = e * r + 1.0 / 5040.0
    e = e * r + 1.0 / 720.0
    e = e * r + 1.0 / 120.0
    e = e * r + 1.0 / 24.0
    e = e * r + 1.0 / 6.0
    e = e * r + 0.5
    e = e * r + 1.0
    return e * r + 1.0


@njit(inline="always", **KERNEL)
def tanh_float64(x):
    """tanh of a float64 in a form LLVM vectorizes (libm's tanh is a scalar
    call, ~12 ns; this is ~2.4 ns), within 1.5 ulp of the exact value (tested
    against long double on 3 million points; the worst cases, 1.3 ulp, lie
    just above 0.625, where 1 - 2 / (e + 1) loses a little to cancellation;
    NumPy's own SIMD tanh allows up to 4 ulp).

    |x| < 0.625: Cephes' x + x z P(z) / Q(z), z = x^2 (Moshier, "Methods and
    programs for mathematical functions", 1989). Otherwise 1 - 2 / (e^{2|x|} +
    1), with e^y by Cody-Waite reduction y = k ln 2 + r, |r| <= ln2 / 2, a
    degree-13 Taylor polynomial (:func:`exp_reduced`) and 2^k from a table;
    y is capped at 44, where the result is 1 in float64. Both branches are
    computed and one selected, so the loop has no branches. NaN stays NaN,
    tanh(-0) = -0.
    """
    ax = abs(x)
    z = ax * ax
    p = (-9.64399179425052238628e-1 * z - 9.92877231001918586564e1) * z \
        - 1.61468768441708447952e3
    q = ((z + 1.12811678491632931402e2) * z + 2.23548839060100448583e3) * z \
        + 4.84406305325125486048e3
    small = ax + ax * z * p / q
    y = 2.0 * ax
    y = y if y < 44.0 else 44.0            # maps NaN to 44 too: the index stays valid
    kf = np.floor(y * _INV_LN2 + 0.5)
    r = (y - kf * _LN2_HI) - kf * _LN2_LO
    e = exp_reduced(r) * _POW2[np.int64(kf)]
    large = 1.0 - 2.0 / (e + 1.0)
    t = np.copysign(small if ax < 0.625 else large, x)
    return t if x == x else x


@njit(inline="always", **KERNEL)
def tanh_block_float64(Z, z0, n):
    """Z[z0:z0 + n] = tanh(Z[z0:z0 + n]) for a 1-D float64 array Z, by
    :func:`tanh_float64` (no fused multiply-adds: within the tested 1.5 ulp,
    and the values of the small-network kernels bit for bit)."""
    for i in range(n):
        k = np.uint64(z0 + i)
        Z[k] = tanh_float64(Z[k])


@njit(inline="always", **KERNEL)
def add_tanh_float64(H, h0, Z, z0, n):
    """H[h0:h0 + n] = tanh(H[h0:h0 + n] + Z[z0:z0 + n]) for 1-D float64
    arrays H, Z (different arrays)."""
    for i in range(n):
        k = np.uint64(h0 + i)
        H[k] = tanh_float64(H[k] + Z[np.uint64(z0 + i)])


def tanh_block(Z, z0, n):
    """Z[z0:z0 + n] = tanh(Z[z0:z0 + n]) in place, for a 1-D float32 or
    float64 array Z: :func:`tanh_block_float32` or :func:`tanh_block_float64`.

    In compiled code the choice is made when the caller is compiled, so a
    float32 kernel never compiles the float64 loop, nor the reverse (a branch
    on ``Z.itemsize`` would compile both, Numba typing dead branches too).
    """
    (tanh_block_float32 if Z.dtype == np.float32 else tanh_block_float64)(Z, z0, n)


def add_tanh(H, h0, Z, z0, n):
    """H[h0:h0 + n] = tanh(H[h0:h0 + n] + Z[z0:z0 + n]) for 1-D float32 or
    float64 arrays H, Z of one dtype (different arrays): :func:`add_tanh_float32`
    or :func:`add_tanh_float64`, chosen as in :func:`tanh_block`."""
    (add_tanh_float32 if H.dtype == np.float32 else add_tanh_float64)(H, h0, Z, z0, n)


@overload(tanh_block, jit_options=KERNEL)
def _tanh_block_compiled(Z, z0, n):
    block = tanh_block_float32 if Z.dtype == types.float32 else tanh_block_float64
    return lambda Z, z0, n: block(Z, z0, n)


@overload(add_tanh, jit_options=KERNEL)
def _add_tanh_compiled(H, h0, Z, z0, n):
    block = add_tanh_float32 if H.dtype == types.float32 else add_tanh_float64
    return lambda H, h0, Z, z0, n: block(H, h0, Z, z0, n)


@njit(**KERNEL)
def softmax_rows(A, a0, H, h0, rows, cols):
    """H[h0:] = softmax of each row of A[a0:], the row maximum subtracted first."""
    for i in range(rows):
        ai = a0 + i * cols
        hi = h0 + i * cols
        m = A[ai]
        for j in range(1, cols):
            if A[ai + j] > m:
                m = A[ai + j]
        s = 0.0
        for j in range(cols):
            e = np.exp(A[ai + j] - m)
            H[hi + j] = e
            s += e
        inv = 1.0 / s
        for j in range(cols):
            H[hi + j] *= inv


@njit(**KERNEL)
def activate_inplace(Z, z0, rows, cols, code):
    """Z = f(Z) on a (rows, cols) block at offset z0: elementwise, or row-wise
    for softmax.

    Parameters
    ----------
    Z : 1-D float32/float64 array
    z0 : int, offset of the block
    rows, cols : int
    code : int, an activation code from :mod:`fastbp.kernels.codes`
    """
    n = rows * cols
    if code == SOFTMAX:
        softmax_rows(Z, z0, Z, z0, rows, cols)
    elif code == SIGMOID:
        for i in range(n):
            k = np.uint64(z0 + i)
            Z[k] = sigmoid_scalar(Z[k])
    elif code == TANH:
        tanh_block(Z, z0, n)
    elif code == RELU:
        for i in range(n):
            k = np.uint64(z0 + i)
            a = Z[k]
            Z[k] = a if a > 0 else 0.0
    elif code == LEAKY_RELU:
        for i in range(n):
            k = np.uint64(z0 + i)
            a = Z[k]
            Z[k] = a if a > 0 else LEAKY_SLOPE * a


@njit(**KERNEL)
def add_activate(H, h0, Z, n, code):
    """H[h0:h0 + n] = f(H[h0:h0 + n] + Z[:n]) for a hidden activation: the last
    part of a pre-activation added and the activation applied in one pass (a
    recurrent step's h_t = f(a_t + h_{t-1} W_rec^T)). The same values as the
    sum followed by :func:`activate_inplace`.

    Parameters
    ----------
    H, Z : 1-D float32/float64 arrays (different arrays)
    h0 : int, offset of the block in H
    n : int, entries
    code : int, a hidden activation code (identity, sigmoid, tanh, relu,
        leaky_relu; not softmax)
    """
    if code == SIGMOID:
        for i in range(n):
            k = np.uint64(h0 + i)
            H[k] = sigmoid_scalar(H[k] + Z[i])
    elif code == TANH:
        add_tanh(H, h0, Z, ZERO, n)
    elif code == RELU:
        for i in range(n):
            k = np.uint64(h0 + i)
            a = H[k] + Z[i]
            H[k] = a if a > 0 else 0.0
    elif code == LEAKY_RELU:
        for i in range(n):
            k = np.uint64(h0 + i)
            a = H[k] + Z[i]
            H[k] = a if a > 0 else LEAKY_SLOPE * a
    else:
        for i in range(n):
            H[np.uint64(h0 + i)] += Z[i]


@njit(**KERNEL)
def add_backprop_activation(H, h0, D, d0, Z, n, code):
    """D[d0:d0 + n] = (D[d0:d0 + n] + Z[:n]) * f'(a), f' computed from the
    output H[h0:h0 + n] = f(a), for a hidden activation: a gradient arriving
    by a second path added and the derivative applied in one pass (a
    recurrent step's carry). The same values as the sum followed by
    :func:`backprop_activation`.

    Parameters
    ----------
    H, D : 1-D float32/float64 arrays (may be the same array); Z a different one
    h0, d0 : int, offsets of the blocks
    n : int, entries
    code : int, a hidden activation code (not softmax)
    """
    if code == SIGMOID:
        for i in range(n):
            k = np.uint64(d0 + i)
            h = H[np.uint64(h0 + i)]
            D[k] = (D[k] + Z[i]) * (h * (ONE32 - h))
    elif code == TANH:
        for i in range(n):
            k = np.uint64(d0 + i)
            h = H[np.uint64(h0 + i)]
            D[k] = (D[k] + Z[i]) * (ONE32 - h * h)
    elif code == RELU:
        for i in range(n):
            k = np.uint64(d0 + i)
            d = D[k] + Z[i]
            D[k] = d if H[np.uint64(h0 + i)] > 0 else 0.0
    elif code == LEAKY_RELU:
        for i in range(n):
            k = np.uint64(d0 + i)
            d = D[k] + Z[i]
            D[k] = d if H[np.uint64(h0 + i)] > 0 else LEAKY_SLOPE * d
    else:
        for i in range(n):
            D[np.uint64(d0 + i)] += Z[i]


@njit(**KERNEL)
def activate(A, a0, H, h0, rows, cols, code):
    """H = f(A) on (rows, cols) blocks: A copied to H, then activated in place.

    Parameters
    ----------
    A, H : 1-D float32/float64 arrays (may be the same array)
    a0, h0 : int, offsets of the blocks (non-overlapping unless equal)
    """
    n = rows * cols
    for i in range(n):
        H[np.uint64(h0 + i)] = A[np.uint64(a0 + i)]
    activate_inplace(H, h0, rows, cols, code)


@njit(**KERNEL)
def backprop_activation(H, h0, D, d0, rows, cols, code):
    """D *= f'(a) on a (rows, cols) block, f'(a) computed from the output H = f(a).

    For softmax, D is replaced by the Jacobian-vector product
    J^T d = h * (d - sum(d * h)) row by row.
    """
    n = rows * cols
    if code == SIGMOID:
        for i in range(n):
            h = H[np.uint64(h0 + i)]
            D[np.uint64(d0 + i)] *= h * (ONE32 - h)
    elif code == TANH:
        for i in range(n):
            h = H[np.uint64(h0 + i)]
            D[np.uint64(d0 + i)] *= ONE32 - h * h
    elif code == RELU:
        # an unconditional store of a select, not "if h <= 0: D = 0": the
        # conditional store mispredicts on real data and does not vectorize
        # (measured 251 us -> 3 us on a 128 x 256 block)
        for i in range(n):
            k = np.uint64(d0 + i)
            d = D[k]
            D[k] = d if H[np.uint64(h0 + i)] > 0 else 0.0
    elif code == LEAKY_RELU:
        for i in range(n):
            k = np.uint64(d0 + i)
            d = D[k]
            D[k] = d if H[np.uint64(h0 + i)] > 0 else LEAKY_SLOPE * d
    elif code == SOFTMAX:
        for i in range(rows):
            hi = h0 + i * cols
            di = d0 + i * cols
            s = 0.0
            for j in range(cols):
                s += D[di + j] * H[hi + j]
            for j in range(cols):
                D[di + j] = H[hi + j] * (D[di + j] - s)

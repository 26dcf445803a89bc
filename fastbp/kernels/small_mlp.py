"""Scalar helpers of the kernels that :mod:`fastbp.small_nets` generates for
networks small enough to live in registers.

They are ordinary compiled functions, not ``inline="always"``: LLVM inlines
them into the generated kernel anyway, whereas Numba's own inlining, repeated
at every unit of a network, made a kernel's compile several times slower.

None has a data-dependent branch: on a tiny network a branch on the sign of
an activation is mispredicted about half the time, and each miss costs about
as much as the arithmetic of a whole unit. None calls a library function in
float32: a call makes the compiler save every live register around it, and
the parameters of a small network all live in registers.

* float64 helpers return exactly what the generic kernels' expressions give
  (same value, same type, bit for bit).
* float32 helpers compute in float32 only (the generic kernels accumulate
  some float32 sums in float64 and call libm's ``expf``); they agree with
  the generic kernels within float32 rounding.
"""
import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

from .activations import tanh_float32, tanh_float64
from .codes import KERNEL
from .optim import _adam_element, _momentum_element


@njit(**KERNEL)
def sigmoid_select(a):
    """:func:`fastbp.kernels.activations.sigmoid_scalar` with one exp and no
    branch. Both forms divide the same two numbers: for a >= 0, 1 / (1 +
    exp(-a)); below, e / (1 + e) with e = exp(a); and exp(-|a|) is exp(-a) or
    exp(a) exactly (negation is exact), so only the numerator is selected."""
    e = np.exp(-abs(a))
    num = 1.0 if a >= 0 else e
    return num / (1.0 + e)


#: compile flags of the float32 helpers and kernels: KERNEL's, plus fused
#: multiply-adds (a * b + c rounded once), which shorten the chain of dependent
#: operations of an update; float32 results are within rounding of the
#: generic kernels either way
KERNEL_F32 = dict(KERNEL, fastmath={"contract"})

#: 2^(k / 16) for k = -16 * 152 .. 0 in float32 (subnormal below 2^-126, 0
#: below 2^-150): the scale step of :func:`exp_float32`, one load per call
_EXP_STEPS = 16
_EXP_LOWEST = -152 * _EXP_STEPS
_EXP2_TABLE = np.array([2.0 ** (k / _EXP_STEPS) for k in range(_EXP_LOWEST, 1)],
                       dtype=np.float32)
_EXP_SCALE = np.float32(_EXP_STEPS / np.log(2.0))
# ln 2 / 16 split so that k * hi is exact for |k| < 2^12
_EXP_HI = np.float32(np.float32(np.log(2.0) / _EXP_STEPS * 2.0**12).round() / 2.0**12)
_EXP_LO = np.float32(np.log(2.0) / _EXP_STEPS - float(_EXP_HI))
# 1.5 * 2^23: adding it rounds to an integer, which its low mantissa bits then hold
_ROUNDER = np.float32(12582912.0)
_ROUNDER_BITS = 0x4B400000


@intrinsic
def float32_bits(typingctx, x):
    """The bits of a float32 as an int32 (a bit cast, no conversion)."""
    if x != types.float32:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(32))
    return types.int32(types.float32), codegen


@njit(**KERNEL_F32)
def exp_float32(x):
    """exp of a float32 x <= 0, in float32 without a library call or a
    branch (NaN stays NaN, -inf and x < -104 give 0; x > 0 is outside its
    domain and returns 1).

    x = (k / 16) ln 2 + r with |r| <= ln 2 / 32, e^x = 2^(k/16) e^r: 2^(k/16)
    from a table and e^r - 1 by r + r^2 (1/2 + r / 6) (truncation below
    1e-8 relative). k is rounded by adding 1.5 * 2^23 and read from the
    sum's bits, which is shorter than a rounding instruction and a
    conversion to integer: a tiny network's forward pass waits on this
    chain. Within 1.1 ulp of the exact value for normal results (tested
    against float64 exp; libm's expf: 0.5 ulp).
    """
    f = np.float32
    xc = x if x > f(-104.0) else f(-104.0)      # NaN too: the index stays valid
    xc = xc if xc < f(0.0) else f(0.0)
    big = xc * _EXP_SCALE + _ROUNDER
    kf = big - _ROUNDER
    k = np.int64(float32_bits(big)) - _ROUNDER_BITS
    r = (xc - kf * _EXP_HI) - kf * _EXP_LO
    q = r + (r * r) * (f(0.5) + r * f(1.0 / 6.0))     # e^r - 1
    scale = _EXP2_TABLE[np.uint64(k - _EXP_LOWEST)]
    y = scale * q + scale
    return y if x == x else x


@njit(**KERNEL_F32)
def sigmoid_float32(a):
    """The logistic function of a float32, in float32: :func:`sigmoid_select`
    with :func:`exp_float32`."""
    e = exp_float32(-abs(a))
    num = np.float32(1.0) if a >= 0 else e
    return num / (np.float32(1.0) + e)


@njit(**KERNEL)
def tanh32(a):
    """:func:`fastbp.kernels.activations.tanh_float32` of a float32."""
    return tanh_float32(a)


@njit(**KERNEL)
def tanh64(a):
    """:func:`fastbp.kernels.activations.tanh_float64` of a float64."""
    return tanh_float64(a)


@njit(**KERNEL)
def relu(a, zero):
    """ReLU as :func:`fastbp.kernels.activations.activate_inplace` computes it."""
    return a if a > 0 else zero


@njit(**KERNEL)
def leaky_relu(a, slope):
    """Leaky ReLU as :func:`fastbp.kernels.activations.activate_inplace` computes it."""
    return a if a > 0 else slope * a


@njit(**KERNEL)
def relu_delta(d, h, zero):
    """d * ReLU'(a), from the output h, as
    :func:`fastbp.kernels.activations.backprop_activation`."""
    return d if h > 0 else zero


@njit(**KERNEL)
def leaky_relu_delta(d, h, slope):
    """d * leaky-ReLU'(a), from the output h, as
    :func:`fastbp.kernels.activations.backprop_activation`."""
    return d if h > 0 else slope * d


@njit(**KERNEL)
def momentum_entry(p, g, v, lr, mu, nesterov):
    """:func:`fastbp.kernels.optim._momentum_element`: new (p, v), in the type of
    lr and mu (float64 kernels: float64, as the generic update)."""
    return _momentum_element(p, g, v, lr, mu, nesterov)


@njit(**KERNEL)
def adam_entry(p, g, m, v, c):
    """:func:`fastbp.kernels.optim._adam_element`: new (p, m, v)."""
    return _adam_element(p, g, m, v, c)


@njit(**KERNEL)
def flush(x, tiny, zero):
    """:func:`fastbp.kernels.optim._flush`: x, or a zero of its sign (``zero``
    is a 0 of x's type) when |x| is below the smallest normal number ``tiny``."""
    return x if not abs(x) < tiny else x * zero

"""The float32 tanh approximation against exact tanh (computed in float64):
the scalar function, and the block loops that compile it with fused
multiply-adds (the forms every float32 layer takes)."""
import numpy as np
import pytest
from numba import njit

from fastbp.kernels.activations import (activate_inplace, add_activate, add_tanh,
                                        add_tanh_float32, tanh_block, tanh_block_float32,
                                        tanh_float32)
from fastbp.kernels.codes import TANH
from fastbp.kernels.mlp import bias_activate


@njit
def _scalar(x, out):
    for i in range(x.shape[0]):
        out[i] = tanh_float32(x[i])


def _block(x, out):
    out[:] = x
    tanh_block_float32(out, 0, out.size)


def _add(x, out):
    """tanh(H + Z) with H = x and Z = 0."""
    out[:] = x
    add_tanh_float32(out, 0, np.zeros_like(x), 0, out.size)


def _add_operand(x, out):
    """tanh(H + Z) with H = 0 and Z = x, read at an offset."""
    out[:] = 0
    add_tanh_float32(out, 0, np.concatenate([x[:3], x]), 3, out.size)


@njit
def _dispatched(x, out):
    """The dtype-dispatching entry points, called from compiled code."""
    out[:] = x
    tanh_block(out, 0, out.shape[0])
    tmp = np.zeros_like(x)
    add_tanh(tmp, 0, x, 0, x.shape[0])
    for i in range(x.shape[0]):
        if tmp[i] != out[i] and not (np.isnan(tmp[i]) and np.isnan(out[i])):
            out[i] = np.nan       # a disagreement fails the test


def _activate_inplace(x, out):
    out[:] = x
    activate_inplace(out, 0, 1, out.size, TANH)


def _add_activate(x, out):
    out[:] = 0
    add_activate(out, 0, x, out.size, TANH)


def _bias_activate(x, out):
    """One row of the MLP's bias + activation pass, a zero block plus x as the bias."""
    out[:] = 0
    bias_activate(out, 0, x, 0, 1, out.size, TANH)


FORMS = {"scalar": _scalar, "block": _block, "add": _add, "add_operand": _add_operand,
         "dispatched": _dispatched,
         "activate_inplace": _activate_inplace, "add_activate": _add_activate,
         "bias_activate": _bias_activate}


@pytest.mark.parametrize("form", FORMS)
def test_within_6_ulp_everywhere(form):
    x = np.linspace(-12, 12, 400_001, dtype=np.float32)
    x = np.concatenate([x, np.float32([1e-30, -1e-30, 3.99e-4, 4.01e-4, 7.9, 7.91, -7.91])])
    out = np.empty_like(x)
    FORMS[form](x, out)
    exact = np.tanh(x.astype(np.float64))
    ulp = np.spacing(np.abs(exact).astype(np.float32)).astype(np.float64)
    assert np.max(np.abs(out - exact) / ulp) <= 6
    assert np.all(np.abs(out) <= 1)
    np.testing.assert_array_equal(np.sign(out), np.sign(x))


@pytest.mark.parametrize("form", FORMS)
def test_special_values(form):
    x = np.float32([0.0, np.inf, -np.inf, np.nan])
    out = np.empty_like(x)
    FORMS[form](x, out)
    assert out[0] == 0
    assert abs(out[1] - 1) < 1e-6 and abs(out[2] + 1) < 1e-6
    assert np.isnan(out[3])


def test_block_forms_agree_with_each_other():
    """The layer loops compute one value per input, whichever form: a float32
    layer's activations do not depend on which kernel applied them."""
    x = np.random.default_rng(0).uniform(-9, 9, 10_000).astype(np.float32)
    outs = {}
    for form in ("block", "add", "add_operand", "dispatched", "activate_inplace",
                 "add_activate", "bias_activate"):
        outs[form] = np.empty_like(x)
        FORMS[form](x, outs[form])
    for form, out in outs.items():
        np.testing.assert_array_equal(out, outs["block"], err_msg=form)

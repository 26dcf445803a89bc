"""The float32 tanh approximation against exact tanh (computed in float64)."""
import numpy as np
from numba import njit

from fastbp.kernels.activations import activate_inplace, tanh_float32
from fastbp.kernels.codes import TANH


@njit
def _apply(x, out):
    for i in range(x.shape[0]):
        out[i] = tanh_float32(x[i])


def test_within_8_ulp_everywhere():
    x = np.linspace(-12, 12, 400_001, dtype=np.float32)
    x = np.concatenate([x, np.float32([1e-30, -1e-30, 3.99e-4, 4.01e-4, 7.9, 7.91, -7.91])])
    out = np.empty_like(x)
    _apply(x, out)
    exact = np.tanh(x.astype(np.float64))
    ulp = np.spacing(np.abs(exact).astype(np.float32)).astype(np.float64)
    assert np.max(np.abs(out - exact) / ulp) <= 8
    assert np.all(np.abs(out) <= 1)
    np.testing.assert_array_equal(np.sign(out), np.sign(x))


def test_special_values():
    x = np.float32([0.0, np.inf, -np.inf, np.nan])
    out = np.empty_like(x)
    _apply(x, out)
    assert out[0] == 0
    assert abs(out[1] - 1) < 1e-6 and abs(out[2] + 1) < 1e-6
    assert np.isnan(out[3])

"""The float64 tanh (fastbp.kernels.activations.tanh_float64) against tanh
computed in long double (x87 80-bit on x86-64, 11 more bits than float64)."""
import numpy as np
import pytest
from numba import njit

from fastbp.kernels.activations import activate_inplace, add_activate, add_tanh, tanh_float64
from fastbp.kernels.codes import TANH
from fastbp.kernels.mlp import bias_activate


@njit
def _apply(x, out):
    for i in range(x.shape[0]):
        out[i] = tanh_float64(x[i])


def _ulp_error(x, chunk=250_000):
    """Error of tanh_float64 in float64 ulps of the exact value, computed in
    chunks (the long-double temporaries of 3 M points at once took 200 MB)."""
    out = np.empty_like(x)
    _apply(x, out)
    errors = np.empty_like(x)
    for a in range(0, x.shape[0], chunk):
        exact = np.tanh(x[a:a + chunk].astype(np.longdouble))
        ulp = np.spacing(np.abs(exact.astype(np.float64)))
        errors[a:a + chunk] = np.abs(out[a:a + chunk].astype(np.longdouble) - exact) / ulp
    return errors


@pytest.mark.skipif(np.finfo(np.longdouble).nmant < 60,
                    reason="needs an extended-precision long double for the reference")
def test_within_one_and_a_half_ulp_of_the_exact_value():
    x = np.concatenate([np.linspace(-25, 25, 2_000_001), np.linspace(-1, 1, 1_000_001),
                        np.geomspace(1e-300, 1e-3, 10_001), -np.geomspace(1e-300, 1e-3, 10_001),
                        [0.625, np.nextafter(0.625, 0), 22.0, 21.9, 44.0]])
    errors = _ulp_error(x)
    assert errors.max() <= 1.5
    assert np.mean(errors > 0.5) < 0.1      # mostly correctly rounded


def test_close_to_numpy_and_special_values():
    x = np.linspace(-30, 30, 600_001)
    out = np.empty_like(x)
    _apply(x, out)
    np.testing.assert_allclose(out, np.tanh(x), rtol=5e-16, atol=0)
    special = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 710.0, -1e300, 5e-324])
    out = np.empty_like(special)
    _apply(special, out)
    np.testing.assert_array_equal(out[:4], [0.0, -0.0, 1.0, -1.0])
    assert np.signbit(out[1]) and not np.signbit(out[0])
    assert np.isnan(out[4])
    np.testing.assert_array_equal(out[5:], [1.0, -1.0, 5e-324])


@njit
def _add_tanh(h, z):
    add_tanh(h, 0, z, 0, h.shape[0])


def test_activation_uses_it_for_float64():
    """Every layer loop gives tanh_float64's values bit for bit (no fused
    multiply-adds in float64: the small-network kernels' values)."""
    z = np.linspace(-5, 5, 1001)
    expected = np.empty_like(z)
    _apply(z, expected)
    a = z.copy()
    activate_inplace(a, 0, 1, a.shape[0], TANH)
    np.testing.assert_array_equal(a, expected)
    b = np.zeros_like(z)
    add_activate(b, 0, z, b.shape[0], TANH)
    np.testing.assert_array_equal(b, expected)
    c = np.zeros_like(z)
    bias_activate(c, 0, z, 0, 1, c.shape[0], TANH)
    np.testing.assert_array_equal(c, expected)
    d = np.zeros_like(z)
    _add_tanh(d, z)
    np.testing.assert_array_equal(d, expected)

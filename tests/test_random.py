"""fastbp.kernels.random: a per-owner generator, against a plain-Python twin."""
import math

import numpy as np

from fastbp.kernels import random as krandom

MASK = (1 << 64) - 1


def twin_splitmix64(state):
    z = (state + 0x9E3779B97F4A7C15) & MASK
    x = z
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & MASK
    return z, x ^ (x >> 31)


def twin_normals(seed, n, sigma):
    state, out = seed, []
    for _ in range(n):
        state, a = twin_splitmix64(state)
        state, b = twin_splitmix64(state)
        u1 = ((a >> 11) + 1) / 2.0**53
        u2 = ((b >> 11) + 1) / 2.0**53
        out.append(sigma * math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2))
    return np.array(out), state


def test_fill_normal_matches_its_twin_and_advances_the_state():
    state = krandom.new_state(12345)
    out = np.empty(50)
    krandom.fill_normal(out, 50, 0.3, state)
    want, end = twin_normals(12345, 50, 0.3)
    np.testing.assert_allclose(out, want, rtol=1e-13, atol=1e-15)
    assert int(state[0]) == end


def test_draws_look_standard_normal_and_fill_float32():
    state = krandom.new_state(7)
    out = np.empty(200_000, dtype=np.float32)
    krandom.fill_normal(out, out.size, 2.0, state)
    assert abs(out.mean()) < 0.02 and abs(out.std() - 2.0) < 0.02
    assert np.isfinite(out).all()
    again = np.empty_like(out)
    krandom.fill_normal(again, again.size, 2.0, krandom.new_state(7))
    np.testing.assert_array_equal(again, out)

"""A random stream per owner: a trainer that draws noise keeps its own
generator state (one uint64), seeded from its seed and saved with its state,
so results never depend on what else used a global generator, in which thread
``fit`` runs, or on a save/resume in between."""
import math

import numpy as np
from numba import njit

from .codes import KERNEL
from .epochs import splitmix64


def new_state(seed):
    """A generator state for :func:`standard_normal`: uint64 ndarray (1,).

    Parameters
    ----------
    seed : int >= 0
    """
    return np.array([seed], dtype=np.uint64)


@njit(**KERNEL)
def uniform(state):
    """A float64 in (0, 1] from the splitmix64 stream in ``state`` (advanced
    in place)."""
    z, x = splitmix64(state[0])
    state[0] = z
    return ((x >> np.uint64(11)) + np.uint64(1)) * (1.0 / 9007199254740992.0)


@njit(**KERNEL)
def standard_normal(state):
    """One N(0, 1) draw (Box-Muller from two uniforms of ``state``)."""
    u1 = uniform(state)
    u2 = uniform(state)
    return math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * u2)


@njit(**KERNEL)
def fill_normal(out, n, sigma, state):
    """out[:n] = sigma * N(0, 1) draws from ``state``."""
    for i in range(n):
        out[i] = sigma * standard_normal(state)

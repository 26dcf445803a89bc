"""Matrix products on row-major blocks of flat buffers, into preallocated output.

Each matrix is (buffer, offset) plus its dimensions. Large products go to BLAS
through ``np.dot`` on 2-D views (Numba links SciPy's BLAS); small ones run as
plain loops on the flat buffers, because a BLAS call, and even building the
views, costs more than the arithmetic of a tiny product.

The last argument ``blas`` is ``None`` or an int, and selects a compiled
specialization: Numba prunes ``if blas is not None`` at compile time, so with
``None`` the kernel contains no BLAS call at all. That matters for tiny
networks: a reachable ``np.dot`` stops LLVM from inlining the loop path into
its caller, and a 2-2-2 forward pass then costs ~100 ns instead of ~15 ns.
Callers pass ``None`` when every product of the network is below
:data:`SMALL_GEMM` (see :func:`blas_flag`).
"""
import numpy as np
from numba import njit

from .codes import KERNEL

#: below this many multiply-adds a product runs as a plain loop
SMALL_GEMM = 4096


def blas_flag(rows, max_layer_size):
    """The ``blas`` argument for batches of ``rows`` through layers whose
    largest n_in * n_out is ``max_layer_size``: None when no product can reach
    :data:`SMALL_GEMM`, else 1."""
    return 1 if rows * max_layer_size >= SMALL_GEMM else None


@njit(inline="always", **KERNEL)
def copy_block(src, dst):
    """dst[i] = src[i] for the equal-length 1-D views ``src``, ``dst``.

    A loop, not ``dst[:] = src``: Numba compiles array-to-slice assignment
    with a shape check whose error message is formatted at run time, and
    that string machinery (about 3 s to compile once per process) is linked
    into, and optimized again in, every kernel above it. A loop from 0 over
    two views also vectorizes, where indexing one buffer at run-time
    offsets does not."""
    for i in range(dst.shape[0]):
        dst[i] = src[i]


@njit(inline="always", **KERNEL)
def gemm_nt(A, a0, B, b0, C, c0, m, n, k, blas):
    """C (m, n) = A (m, k) @ B (n, k).T."""
    if blas is not None and m * n * k >= SMALL_GEMM:
        np.dot(A[a0:a0 + m * k].reshape((m, k)), B[b0:b0 + n * k].reshape((n, k)).T,
               C[c0:c0 + m * n].reshape((m, n)))
        return
    for i in range(m):
        for j in range(n):
            s = 0.0
            for p in range(k):
                s += A[a0 + i * k + p] * B[b0 + j * k + p]
            C[c0 + i * n + j] = s


@njit(inline="always", **KERNEL)
def gemm_tn(A, a0, B, b0, C, c0, m, n, k, blas):
    """C (n, k) = A (m, n).T @ B (m, k)."""
    if blas is not None and m * n * k >= SMALL_GEMM:
        np.dot(A[a0:a0 + m * n].reshape((m, n)).T, B[b0:b0 + m * k].reshape((m, k)),
               C[c0:c0 + n * k].reshape((n, k)))
        return
    for i in range(n * k):
        C[c0 + i] = 0.0
    for r in range(m):
        for i in range(n):
            a = A[a0 + r * n + i]
            ci = c0 + i * k
            br = b0 + r * k
            for j in range(k):
                C[ci + j] += a * B[br + j]


@njit(inline="always", **KERNEL)
def gemm_nn(A, a0, B, b0, C, c0, m, n, k, blas):
    """C (m, n) = A (m, k) @ B (k, n)."""
    if blas is not None and m * n * k >= SMALL_GEMM:
        np.dot(A[a0:a0 + m * k].reshape((m, k)), B[b0:b0 + k * n].reshape((k, n)),
               C[c0:c0 + m * n].reshape((m, n)))
        return
    for i in range(m):
        ci = c0 + i * n
        for j in range(n):
            C[ci + j] = 0.0
        for p in range(k):
            a = A[a0 + i * k + p]
            bp = b0 + p * n
            for j in range(n):
                C[ci + j] += a * B[bp + j]

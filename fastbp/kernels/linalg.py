"""Matrix products into preallocated outputs.

Large products go to BLAS through ``np.dot`` (Numba links SciPy's BLAS); tiny
ones run as plain loops, because a BLAS call costs more than the arithmetic of
a 2x2 product.
"""
import numpy as np
from numba import njit

from .codes import KERNEL

#: below this many multiply-adds a product runs as a plain loop
SMALL_GEMM = 4096


@njit(**KERNEL)
def gemm_nt(A, B, out):
    """out = A @ B.T for A (m, k), B (n, k), out (m, n)."""
    m, k = A.shape
    n = B.shape[0]
    if m * n * k >= SMALL_GEMM:
        np.dot(A, B.T, out)
        return
    for i in range(m):
        for j in range(n):
            s = 0.0
            for p in range(k):
                s += A[i, p] * B[j, p]
            out[i, j] = s


@njit(**KERNEL)
def gemm_tn(A, B, out):
    """out = A.T @ B for A (m, n), B (m, k), out (n, k)."""
    m, n = A.shape
    k = B.shape[1]
    if m * n * k >= SMALL_GEMM:
        np.dot(A.T, B, out)
        return
    for i in range(n):
        for j in range(k):
            out[i, j] = 0.0
    for r in range(m):
        for i in range(n):
            a = A[r, i]
            for j in range(k):
                out[i, j] += a * B[r, j]


@njit(**KERNEL)
def gemm_nn(A, B, out):
    """out = A @ B for A (m, k), B (k, n), out (m, n)."""
    m, k = A.shape
    n = B.shape[1]
    if m * n * k >= SMALL_GEMM:
        np.dot(A, B, out)
        return
    for i in range(m):
        for j in range(n):
            out[i, j] = 0.0
        for p in range(k):
            a = A[i, p]
            for j in range(n):
                out[i, j] += a * B[p, j]

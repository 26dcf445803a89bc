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
:data:`SMALL_GEMM` (see :func:`blas_flag`), else 1. An int above 1 asks the
``*_blocks`` products to split a BLAS product of more multiply-adds than that
into row blocks below it (see :data:`SMALL_KERNEL_MNK`); the other products
treat it as 1.
"""
import numpy as np
from numba import njit

from .codes import KERNEL

#: below this many multiply-adds a product runs as a plain loop
SMALL_GEMM = 4096

#: OpenBLAS's kernels for Skylake-X and later Intel cores multiply a product
#: of at most this many multiply-adds (M N K) with small-matrix kernels that
#: work on the operands in place; a larger one takes the packed path, which is
#: slower on skinny shapes. Measured on one thread, float32: the input
#: gradient (1280, 128)^T (1280, 8) 75 us as one product, 16 us as two row
#: blocks; dW_rec of an h128 T40 b32 step 348 -> 284 us in blocks of 61 rows.
#: The ``*_blocks`` products split at this limit when their caller passes it
#: as ``blas`` (see :func:`fastbp.threads.small_kernel_limit`).
SMALL_KERNEL_MNK = 1_000_000

#: row blocks of fewer rows are not split off (their calls would cost more)
MIN_BLOCK_ROWS = 32


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


@njit(inline="always", **KERNEL)
def block_rows(m, n, k, blas):
    """Rows per block of an (m, n, k) BLAS product for a ``blas`` limit (see
    the module docstring): m, one block, unless the product has more than
    ``blas`` > 1 multiply-adds and blocks of at least :data:`MIN_BLOCK_ROWS`
    rows fit under it."""
    if blas is None or blas <= 1 or m * n * k <= blas:
        return m
    rows = blas // (n * k)
    return rows if rows >= MIN_BLOCK_ROWS else m


@njit(**KERNEL)
def gemm_nn_blocks(A, a0, B, b0, C, c0, m, n, k, blas):
    """C (m, n) = A (m, k) @ B (k, n), as :func:`gemm_nn`, the rows of A and
    C taken in blocks of :func:`block_rows` (each row of C is the same sum,
    whichever block it falls in). Not inlined: one compiled copy for every
    caller (each inlined BLAS call costs compile time)."""
    step = m if blas is None or m * n * k < SMALL_GEMM else block_rows(m, n, k, blas)
    for r in range(0, m, step):
        gemm_nn(A, a0 + r * k, B, b0, C, c0 + r * n, min(step, m - r), n, k, blas)


@njit(**KERNEL)
def gemm_tn_blocks(A, a0, B, b0, C, c0, m, n, k, S, s0, blas):
    """C (n, k) = A (m, n).T @ B (m, k), as :func:`gemm_tn`, summed over
    blocks of :func:`block_rows` rows: the first block's product written to
    C, each later one's to the scratch S[s0:s0 + n * k] (an array of C's
    type, not overlapping C) and added. Not inlined, as
    :func:`gemm_nn_blocks`."""
    step = m if blas is None or m * n * k < SMALL_GEMM else block_rows(m, n, k, blas)
    for r in range(0, m, step):
        first = r == 0
        dst = C if first else S
        d0 = c0 if first else s0
        gemm_tn(A, a0 + r * n, B, b0 + r * k, dst, d0, min(step, m - r), n, k, blas)
        if not first:
            for j in range(n * k):
                C[np.uint64(c0 + j)] += S[np.uint64(s0 + j)]

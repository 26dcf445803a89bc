"""BLAS thread limits for a block of code, and what the BLAS can do."""
import contextlib
import functools
import re


def blas_limit(threads):
    """A context limiting BLAS to ``threads`` threads (threadpoolctl, which
    scikit-learn brings); a no-op for None or without threadpoolctl.

    Two BLAS threads per process look fast on an idle machine, but any other
    busy process on the two cores makes OpenBLAS's spinning threads wait on
    each other: epochs of the mnist1d MLP measured 0.6 s instead of 13 ms.
    One thread per run keeps the clock steady and is what Dask workers use.
    """
    if threads is None:
        return contextlib.nullcontext()
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(limits=threads, user_api="blas")


@functools.lru_cache(maxsize=None)
def blas_controllers():
    """threadpoolctl's controllers of every BLAS library loaded, SciPy's (the
    one Numba's kernels call) among them; empty without threadpoolctl or
    when it cannot read them. Found once per process.

    Returns
    -------
    tuple of threadpoolctl LibController
    """
    try:
        import scipy.linalg.cython_blas  # noqa: F401  (the BLAS Numba calls: loaded)
        from threadpoolctl import ThreadpoolController
        return tuple(c for c in ThreadpoolController().lib_controllers if c.user_api == "blas")
    except Exception:   # no threadpoolctl, or a library it cannot drive
        return ()


#: OpenBLAS core types whose kernels include small-matrix kernels (OpenBLAS
#: 0.3.16 and later; Cooperlake and Sapphire Rapids reuse Skylake-X's)
SMALL_KERNEL_CORES = ("skylakex", "cooperlake", "sapphirerapids")


@functools.lru_cache(maxsize=None)
def small_kernel_limit():
    """The ``blas`` argument under which recurrent kernels split their larger
    products into row blocks small enough for BLAS's small-matrix kernels:
    :data:`fastbp.kernels.linalg.SMALL_KERNEL_MNK` when every BLAS library
    loaded (SciPy's, which Numba calls, and NumPy's) is an OpenBLAS of at
    least 0.3.20 running one of :data:`SMALL_KERNEL_CORES` on this CPU; else
    1 (every product in one call), as without threadpoolctl, which reads
    those facts. Decided once per process.

    Returns
    -------
    int
    """
    from .kernels.linalg import SMALL_KERNEL_MNK
    libraries = [c.info() for c in blas_controllers()]
    if libraries and all(_has_small_kernels(lib) for lib in libraries):
        return SMALL_KERNEL_MNK
    return 1


def _has_small_kernels(library):
    """True for a threadpoolctl library record of an OpenBLAS >= 0.3.20 whose
    core type is one of :data:`SMALL_KERNEL_CORES`."""
    if library.get("internal_api") != "openblas":
        return False
    version = tuple(int(v) for v in re.findall(r"\d+", library.get("version") or "")[:3])
    core = (library.get("architecture") or "").lower()
    return version >= (0, 3, 20) and core in SMALL_KERNEL_CORES

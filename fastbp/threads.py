"""BLAS thread limits for a block of code."""
import contextlib


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

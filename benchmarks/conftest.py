"""Shared pieces of the benchmark suite.

Run with::

    python -m pytest benchmarks --benchmark-only --benchmark-group-by=group,param:dtype

or as plain tests (every benchmark body runs once, no timing)::

    python -m pytest benchmarks --benchmark-disable -q
"""
import os
import subprocess
import sys

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
# the baselines (numpy_mlp, torch_mlp, jax_mlp) and bench_utils are plain modules beside the
# tests; make them importable whatever --import-mode is used
if HERE not in sys.path:
    sys.path.insert(0, HERE)


@pytest.fixture(scope="session")
def blas_medians():
    """(workload, dtype) -> median seconds of the pure-GEMM reference, filled by
    the BLAS reference benchmarks that run before the training steps."""
    return {}


@pytest.fixture(scope="session")
def reference_losses():
    """Cache of NumPy-baseline loss trajectories, keyed by (workload, dtype)."""
    return {}


def _git_describe():
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=HERE,
                             capture_output=True, text=True, timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "fastbp"], cwd=HERE,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return rev + ("+uncommitted fastbp changes" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _blas_name(module):
    try:
        cfg = module.show_config(mode="dicts")
        blas = cfg["Build Dependencies"]["blas"]
        return f"{blas.get('name')} {blas.get('version')}"
    except Exception:  # show_config's layout is not a stable API
        return "unknown"


def _loadavg():
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


_LOAD_AT_START = []


def pytest_sessionstart(session):
    _LOAD_AT_START[:] = _loadavg() or []


def pytest_benchmark_update_machine_info(config, machine_info):
    """Versions, BLAS and machine load go into the saved JSON."""
    import numba
    import scipy

    import fastbp

    machine_info["versions"] = {"python": sys.version.split()[0], "numpy": np.__version__,
                                "numba": numba.__version__, "scipy": scipy.__version__,
                                "fastbp": fastbp.__version__, "fastbp_git": _git_describe()}
    # the peers, when their rows ran (imported by then; never imported here)
    for peer in ("torch", "jax", "jaxlib"):
        module = sys.modules.get(peer)
        if module is not None:
            machine_info["versions"][peer] = getattr(module, "__version__", "?")
    # NumPy's np.dot and fastbp's kernels (np.dot inside @njit) call two
    # different OpenBLAS builds: NumPy's own and SciPy's
    machine_info["blas"] = {"numpy": _blas_name(np), "scipy (numba np.dot)": _blas_name(scipy)}
    machine_info["cores"] = os.cpu_count()
    machine_info["threads_env"] = {k: os.environ[k] for k in
                                   ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                    "NUMBA_NUM_THREADS", "MKL_NUM_THREADS")
                                   if k in os.environ}
    # 1/5/15-minute load averages before and after the run (the run itself adds ~1)
    machine_info["loadavg_start"] = list(_LOAD_AT_START)
    machine_info["loadavg_end"] = _loadavg()


def pytest_xdist_auto_num_workers(config):
    """The test suite runs in parallel workers (pytest-xdist, ``-n auto`` in
    pyproject.toml); benchmarks time one thing at a time, in this process."""
    return 0

"""Fixtures shared by the test modules, and one BLAS thread per test worker."""
import os

import numpy as np
import pytest

if os.environ.get("PYTEST_XDIST_WORKER"):
    # the suite runs in one worker per core (pytest-xdist): a BLAS pool per
    # worker as large as the machine would oversubscribe the cores
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        pass
    else:
        _ONE_BLAS_THREAD = threadpool_limits(limits=1, user_api="blas")


@pytest.fixture(scope="session")
def digits():
    """scikit-learn's digits scaled to [0, 1] float32, split 75/25 (seed 0):
    (X_train, X_test, y_train, y_test). Skips without scikit-learn."""
    datasets = pytest.importorskip("sklearn.datasets")
    selection = pytest.importorskip("sklearn.model_selection")
    d = datasets.load_digits()
    X = (d.data / 16.0).astype(np.float32)
    return selection.train_test_split(X, d.target, test_size=0.25, random_state=0)


@pytest.fixture(autouse=True)
def _no_compile_ahead(request, monkeypatch):
    """`fastbp.compare` compiles the next trainer's kernels in a helper process
    when a second CPU is free; the suite's workers already use every core, so
    outside the tests of that feature a comparison here compiles in-process."""
    if request.module.__name__.rsplit(".", 1)[-1] != "test_compile_ahead":
        import fastbp.compile_ahead
        monkeypatch.setattr(fastbp.compile_ahead, "_usable_cpus", lambda: 1)

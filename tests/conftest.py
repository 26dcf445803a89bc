"""Fixtures shared by the test modules."""
import numpy as np
import pytest


@pytest.fixture(scope="session")
def digits():
    """scikit-learn's digits scaled to [0, 1] float32, split 75/25 (seed 0):
    (X_train, X_test, y_train, y_test). Skips without scikit-learn."""
    datasets = pytest.importorskip("sklearn.datasets")
    selection = pytest.importorskip("sklearn.model_selection")
    d = datasets.load_digits()
    X = (d.data / 16.0).astype(np.float32)
    return selection.train_test_split(X, d.target, test_size=0.25, random_state=0)

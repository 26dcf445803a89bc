"""The benchmarks' NumPy RNN baseline (benchmarks/numpy_rnn.py) computes the
same SGD step as fastbp, so the benchmark groups compare like with like."""
import os
import sys

import numpy as np
import pytest

import fastbp as fb

BENCHMARKS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                          "benchmarks")
if BENCHMARKS not in sys.path:
    sys.path.insert(0, BENCHMARKS)

from numpy_rnn import NumpyRNN  # noqa: E402


@pytest.mark.parametrize("loss, output_size, truncate", [
    ("cross_entropy", 4, None),
    ("mse", 2, None),
    ("cross_entropy", 4, 3),     # T = 7: windows of 3, 3, 1 steps
])
def test_one_sgd_step_matches_fastbp(loss, output_size, truncate):
    n, T, i, h, lr = 3, 7, 2, 5, 0.5
    rnn = fb.ElmanRNN(i, h, output_size, dtype=np.float64, seed=0)
    rng = np.random.default_rng(1)
    X = rng.standard_normal((n, T, i))
    y = (rng.integers(0, output_size, n) if loss == "cross_entropy"
         else rng.standard_normal((n, output_size)))
    before = [p.copy() for p in rnn.params]
    baseline = NumpyRNN(rnn.params, loss, lr, truncate=truncate)
    trainer = fb.BackpropTrainer(rnn, loss=loss, optimizer=fb.SGD(lr), truncate=truncate)

    loss_fb = trainer.step(X, y)
    loss_np = baseline.step(X, y)

    assert abs(loss_fb - loss_np) < 1e-10
    names = ["W_in", "W_rec", "b", "W_out", "b_out"]
    for name, p0, p_fb, p_np in zip(names, before, rnn.params, baseline.params):
        assert np.abs(p_fb - p0).max() > 1e-4, f"{name} did not move"
        np.testing.assert_allclose(p_np, p_fb, rtol=0, atol=1e-10, err_msg=name)

"""Kernel-level benchmarks: fastbp's compiled kernels called directly (no
validation, no Python objects) against the NumPy a user would write.

Groups (``--benchmark-group-by=group,param:dtype``):

* ``kernel-dense-256x256-b128``: forward and backward of one dense 256 -> 256
  layer (identity output, squared error) on a batch of 128 through
  ``fastbp.kernels.mlp.loss_gradients``: two GEMMs (forward, dW; a first layer
  needs no dX), the bias add and bias gradient, the loss.
* ``kernel-update-sgd-1M`` / ``kernel-update-adam-1M``:
  ``fastbp.kernels.optim.apply_update`` on 1,000,000 parameters.

Each fastbp kernel is checked against its NumPy twin before timing.
"""
import numpy as np
import pytest
from bench_utils import DTYPES, gemm_flops, median_seconds

import fastbp as fb
from fastbp.kernels.mlp import loss_gradients
from fastbp.kernels.optim import apply_update
from fastbp.losses import LOSSES

N_UPDATE = 1_000_000


# -- one dense layer -------------------------------------------------------------------
def dense_problem(dtype, n=256, batch=128):
    model = fb.MLP([n, n], output="identity", dtype=np.dtype(dtype), seed=0)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((batch, n)).astype(dtype)
    T = rng.standard_normal((batch, n)).astype(dtype)
    return model, X, T


def numpy_dense(W, b, X, T):
    """Loss sum and (dW, db) of 1/2 * sum (X W^T + b - T)^2 / batch."""
    err = X @ W.T + b - T
    loss_sum = 0.5 * np.sum(err * err)
    D = err / X.shape[0]
    return loss_sum, D.T @ X, D.sum(axis=0)


@pytest.mark.parametrize("impl", ["fastbp", "numpy"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_dense_layer(benchmark, dtype, impl):
    benchmark.group = "kernel-dense-256x256-b128"
    model, X, T = dense_problem(dtype)
    rows = X.shape[0]
    W, b = model.params
    if impl == "fastbp":
        x = X.reshape(-1)
        labels = np.empty(0, dtype=np.int64)
        grads = np.zeros(model.n_params, dtype=model.dtype)
        ws = np.empty(model.workspace_size(rows), dtype=model.dtype)
        args = (x, labels, T, rows, model.flat_params, grads, ws, model.layout,
                LOSSES["squared_error"], model.blas(rows))
        loss_gradients(*args)  # compiles
        ref_loss, ref_dW, ref_db = numpy_dense(W, b, X, T)
        rtol = 1e-4 if dtype == "float32" else 1e-10
        dW, db = model.views(grads)
        np.testing.assert_allclose(dW, ref_dW, rtol=rtol, atol=rtol * np.abs(ref_dW).max())
        np.testing.assert_allclose(db, ref_db, rtol=rtol, atol=rtol * np.abs(ref_db).max())
        loss_sum, _ = benchmark(loss_gradients, *args)
    else:
        numpy_dense(W, b, X, T)
        loss_sum, _, _ = benchmark(numpy_dense, W, b, X, T)
    benchmark.extra_info["loss"] = float(loss_sum) / rows
    flops = gemm_flops([(rows, 256, 256), (256, 256, rows)])
    benchmark.extra_info["flops"] = flops
    t = median_seconds(benchmark)
    if t is not None:
        benchmark.extra_info["gflops_per_s"] = flops / t / 1e9


# -- optimizer updates ------------------------------------------------------------------
def numpy_sgd(p, g, lr):
    p -= lr * g


class NumpyAdam:
    """Adam (Kingma & Ba 2015) with bias correction, written with in-place NumPy."""

    def __init__(self, n, dtype, lr=1e-3, b1=0.9, b2=0.999, eps=1e-8):
        self.m = np.zeros(n, dtype)
        self.v = np.zeros(n, dtype)
        self.lr, self.b1, self.b2, self.eps, self.t = lr, b1, b2, eps, 0

    def update(self, p, g):
        self.t += 1
        b1, b2 = self.b1, self.b2
        self.m *= b1
        self.m += (1.0 - b1) * g
        self.v *= b2
        self.v += (1.0 - b2) * (g * g)
        step = self.lr / (1.0 - b1 ** self.t)
        p -= step * self.m / (np.sqrt(self.v / (1.0 - b2 ** self.t)) + self.eps)


def update_problem(dtype):
    rng = np.random.default_rng(0)
    p = rng.standard_normal(N_UPDATE).astype(dtype)
    g = (1e-3 * rng.standard_normal(N_UPDATE)).astype(dtype)
    return p, g


@pytest.mark.parametrize("impl", ["fastbp", "numpy"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("rule", ["sgd", "adam"])
def test_update(benchmark, rule, dtype, impl):
    benchmark.group = f"kernel-update-{rule}-1M"
    p, g = update_problem(dtype)
    p0 = p.copy()
    opt = fb.SGD(0.01) if rule == "sgd" else fb.Adam(1e-3)
    twin = NumpyAdam(N_UPDATE, dtype) if rule == "adam" else None

    def numpy_update(p, g):
        if twin is None:
            numpy_sgd(p, g, 0.01)
        else:
            twin.update(p, g)

    if impl == "fastbp":
        opt.bind(N_UPDATE, np.dtype(dtype))
        state, hyper = opt.state, opt.hyper
        # compile, and check three updates against the NumPy twin
        for _ in range(3):
            apply_update(p, g, state, hyper)
        q = p0.copy()
        for _ in range(3):
            numpy_update(q, g)
        rtol = 1e-5 if dtype == "float32" else 1e-12
        np.testing.assert_allclose(p, q, rtol=rtol, atol=1e-7)
        benchmark(apply_update, p, g, state, hyper)
    else:
        numpy_update(p, g)
        benchmark(numpy_update, p, g)
    assert np.isfinite(p).all()
    benchmark.extra_info["n_params"] = N_UPDATE
    t = median_seconds(benchmark)
    if t is not None:
        benchmark.extra_info["ns_per_param"] = t / N_UPDATE * 1e9

"""Training-step benchmarks: fastbp against NumPy (and PyTorch / JAX when
installed) on the same model, batch and learning rate.

Groups (``--benchmark-group-by=group,param:dtype``):

* ``mlp-step-<sizes>[-b<batch>]``: one training step per round (forward,
  backward, SGD update). fastbp is timed through the public
  ``trainer.step(X, y)``, input validation included. The two large workloads
  also hold ``blas_reference``: only the matrix products of one step, which
  bounds what any implementation can reach.
* ``mlp-fit-<sizes>-b<batch>``: ``trainer.fit`` over a data set, where whole
  epochs run in one compiled call (for the small nets, a kernel generated for
  their exact shape: see ``fastbp.small_nets``); ``extra_info["us_per_step"]``
  is the time per update. The NumPy baseline is the Python loop a user
  writes; JAX's row is its fastest form, every epoch of the round in one
  ``jax.jit`` call (``lax.fori_loop`` over the batches of each epoch's
  permutation, see ``jax_mlp.JaxMLP.fit``).

Every implementation starts from the same parameters; a short fixed run before
timing (which also compiles) records ``loss_first`` and ``loss_after_k`` in
``extra_info``, and fastbp's run must match the NumPy baseline's, so a speed-up
cannot hide a wrong result.
"""
import numpy as np
import pytest
from bench_utils import (
    DTYPES,
    assert_same_trajectory,
    check_loss,
    fit_round,
    gemm_flops,
    loss_trajectory,
    median_seconds,
    run_timed,
    warm_up,
)
from numpy_mlp import NumpyMLP

import fastbp as fb

# name -> architecture, batch, loss, learning rate, how to time it
WORKLOADS = {
    "2-2-2": dict(sizes=[2, 2, 2], batch=1, activation="sigmoid", output="sigmoid",
                  loss="squared_error", lr=0.5, k=20, rounds=None),
    "2-4-2": dict(sizes=[2, 4, 2], batch=1, activation="tanh", output="softmax",
                  loss="cross_entropy", lr=0.1, k=20, rounds=None),
    "40-100-100-10-b32": dict(sizes=[40, 100, 100, 10], batch=32, activation="relu",
                              output="softmax", loss="cross_entropy", lr=0.05, k=20,
                              rounds=None),
    "784-256-256-10-b128": dict(sizes=[784, 256, 256, 10], batch=128, activation="relu",
                                output="softmax", loss="cross_entropy", lr=0.05, k=10,
                                rounds=200),
    "1024-1024-1024-1024-10-b256": dict(sizes=[1024, 1024, 1024, 1024, 10], batch=256,
                                        activation="relu", output="softmax",
                                        loss="cross_entropy", lr=0.05, k=3, rounds=20),
}
#: workloads whose step is dominated by matrix products: they get a BLAS reference
BLAS_WORKLOADS = ["784-256-256-10-b128", "1024-1024-1024-1024-10-b256"]
IMPLS = ["fastbp", "numpy", "torch", "jax"]

# The 2-2-2 example worked by hand in Matt Mazur's "A Step by Step
# Backpropagation Example": its first loss is 0.298371109.
MAZUR_PARAMS = [[[0.15, 0.20], [0.25, 0.30]], [0.35, 0.35],
                [[0.40, 0.45], [0.50, 0.55]], [0.60, 0.60]]
MAZUR_X = [[0.05, 0.10]]
MAZUR_Y = [[0.01, 0.99]]


def make_model(name, dtype):
    w = WORKLOADS[name]
    model = fb.MLP(w["sizes"], activation=w["activation"], output=w["output"],
                   dtype=np.dtype(dtype), seed=0)
    if name == "2-2-2":
        for p, v in zip(model.params, MAZUR_PARAMS):
            p[...] = v
    return model


def make_batch(name, dtype):
    w = WORKLOADS[name]
    if name == "2-2-2":
        return np.array(MAZUR_X, dtype=dtype), np.array(MAZUR_Y, dtype=dtype)
    rng = np.random.default_rng(1)
    X = rng.standard_normal((w["batch"], w["sizes"][0])).astype(dtype)
    y = rng.integers(0, w["sizes"][-1], size=w["batch"])
    return X, y


def make_impl(impl, model, w):
    """An object with ``step(X, y) -> loss`` starting from ``model``'s parameters."""
    if impl == "fastbp":
        return fb.BackpropTrainer(model.copy(), loss=w["loss"], optimizer=fb.SGD(w["lr"]))
    args = (model.params, w["activation"], w["output"], w["loss"], w["lr"])
    if impl == "numpy":
        return NumpyMLP(*args)
    if impl == "torch":
        pytest.importorskip("torch")
        from torch_mlp import TorchMLP
        return TorchMLP(*args)
    pytest.importorskip("jax")
    from jax_mlp import JaxMLP
    return JaxMLP(*args)


def reference_trajectory(cache, name, dtype):
    """The NumPy baseline's losses over the workload's k checking steps."""
    key = (name, dtype)
    if key not in cache:
        w = WORKLOADS[name]
        X, y = make_batch(name, dtype)
        cache[key] = loss_trajectory(make_impl("numpy", make_model(name, dtype), w).step,
                                     X, y, w["k"])
    return cache[key]


def step_gemm_shapes(sizes, batch):
    """(m, n, k) of the matrix products in one training step: per layer the
    forward product and dW, and dX for every layer but the first (no
    implementation computes the gradient of the input)."""
    shapes = []
    for l, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        shapes.append((batch, n_out, n_in))        # A = H W^T
        shapes.append((n_out, n_in, batch))        # dW = D^T H
        if l > 0:
            shapes.append((batch, n_in, n_out))    # dX = D W
    return shapes


# -- the matrix products alone ---------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("workload", BLAS_WORKLOADS)
def test_blas_reference(benchmark, blas_medians, workload, dtype):
    """The GEMMs of one training step (same shapes and transposes as the
    kernels: forward, dW, and dX except for the first layer) by np.dot into
    preallocated outputs: the time any implementation of the step must spend.
    ``pct_of_blas`` of a step = this median / the step's median."""
    w = WORKLOADS[workload]
    benchmark.group = f"mlp-step-{workload}"
    b = w["batch"]
    rng = np.random.default_rng(0)
    layers = []
    for l, (n_in, n_out) in enumerate(zip(w["sizes"][:-1], w["sizes"][1:])):
        H = rng.standard_normal((b, n_in)).astype(dtype)
        W = rng.standard_normal((n_out, n_in)).astype(dtype)
        D = rng.standard_normal((b, n_out)).astype(dtype)
        out = (np.empty((b, n_out), dtype), np.empty((n_out, n_in), dtype),
               np.empty((b, n_in), dtype) if l > 0 else None)
        layers.append((H, W, D) + out)

    def gemms():
        for H, W, D, A, dW, dX in layers:
            np.dot(H, W.T, out=A)
            np.dot(D.T, H, out=dW)
            if dX is not None:
                np.dot(D, W, out=dX)

    gemms()  # warm-up: BLAS threads started, buffers touched
    run_timed(benchmark, w, gemms)
    flops = gemm_flops(step_gemm_shapes(w["sizes"], b))
    benchmark.extra_info["flops"] = flops
    t = median_seconds(benchmark)
    if t is not None:
        blas_medians[(workload, dtype)] = t
        benchmark.extra_info["gflops_per_s"] = flops / t / 1e9
        benchmark.extra_info["pct_of_blas"] = 100.0


# -- one training step -------------------------------------------------------------------
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("workload", list(WORKLOADS))
def test_step(benchmark, blas_medians, reference_losses, workload, dtype, impl):
    w = WORKLOADS[workload]
    benchmark.group = f"mlp-step-{workload}"
    model = make_model(workload, dtype)
    X, y = make_batch(workload, dtype)
    net = make_impl(impl, model, w)
    ref = reference_trajectory(reference_losses, workload, dtype)

    # warm-up and check in one: k steps from the shared starting point (the
    # first one compiles fastbp's kernels or JAX's step; never timed)
    losses = warm_up(benchmark, net.step, X, y, w["k"])
    assert_same_trajectory(losses, ref, dtype, impl)
    if workload == "2-2-2":
        assert abs(losses[0] - 0.298371109) < 1e-6

    loss = check_loss(run_timed(benchmark, w, net.step, X, y))
    benchmark.extra_info["loss_last"] = loss
    assert loss < losses[0], "training on one batch should lower its loss"

    t = median_seconds(benchmark)
    if workload in BLAS_WORKLOADS:
        flops = gemm_flops(step_gemm_shapes(w["sizes"], w["batch"]))
        benchmark.extra_info["flops"] = flops
    if t is not None and workload in BLAS_WORKLOADS:
        benchmark.extra_info["gflops_per_s"] = flops / t / 1e9
        if (workload, dtype) in blas_medians:
            benchmark.extra_info["pct_of_blas"] = 100.0 * blas_medians[(workload, dtype)] / t


# -- whole epochs --------------------------------------------------------------------------
# workload, samples, batch size, epochs per round (the same for every implementation,
# so the medians compare directly as well as us_per_step)
FITS = {
    "2-2-2-b1": ("2-2-2", 1000, 1, 5),
    "2-4-2-b1": ("2-4-2", 1000, 1, 5),
    "40-100-100-10-b32": ("40-100-100-10-b32", 2048, 32, 2),
}


def make_dataset(workload, n, dtype):
    """A learnable data set: targets from a fixed random 'teacher'."""
    w = WORKLOADS[workload]
    rng = np.random.default_rng(2)
    n_in, n_out = w["sizes"][0], w["sizes"][-1]
    T = rng.standard_normal((n_in, n_out))
    if w["loss"] == "squared_error":
        X = rng.uniform(0.0, 1.0, (n, n_in))
        y = (1.0 / (1.0 + np.exp(-(X - 0.5) @ T))).astype(dtype)
    else:
        X = rng.standard_normal((n, n_in))
        y = np.argmax(X @ T, axis=1)
    return X.astype(dtype), y


def jax_fit_round(net, X, y, epochs, batch_size):
    """The timed body of JAX's fused fit: ``epochs`` epochs in one compiled
    call (compiled here, on the same shapes, outside the timing)."""
    rng = np.random.default_rng(0)
    net.fit(X, y, epochs, batch_size, rng)

    def run():
        return net.fit(X, y, epochs, batch_size, rng)
    return run


@pytest.mark.parametrize("impl", ["fastbp", "numpy", "jax"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("fit", list(FITS))
def test_fit(benchmark, fit, dtype, impl):
    workload, n, bs, epochs = FITS[fit]
    w = WORKLOADS[workload]
    benchmark.group = f"mlp-fit-{fit}"
    model = make_model(workload, dtype)
    X, y = make_dataset(workload, n, dtype)

    if impl == "jax":
        run = jax_fit_round(make_impl(impl, model, w), X, y, epochs, bs)
    else:
        run = fit_round(impl, make_impl(impl, model, w), X, y, epochs, bs)

    loss, steps = benchmark(run)
    benchmark.extra_info["steps_per_round"] = int(steps)
    benchmark.extra_info["loss_last_epoch"] = check_loss(loss)
    t = median_seconds(benchmark)
    if t is not None:
        benchmark.extra_info["us_per_step"] = t / steps * 1e6

"""Training-step benchmarks: fastbp against NumPy (and PyTorch / JAX when
installed) on the same model, batch and learning rate.

Groups (``--benchmark-group-by=group,param:dtype``):

* ``mlp-step-<sizes>[-b<batch>]``: one training step per round (forward,
  backward, SGD update). fastbp is timed through the public
  ``trainer.step(X, y)``, input validation included. The two large workloads
  also hold ``blas_reference``: only the matrix products of one step, which
  bounds what any implementation calling this BLAS can reach, and, with JAX
  installed, ``jax_products``: the same products through XLA's own.
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
    ModelFamily,
    baseline,
    class_batch,
    fit_round,
    record_blas_reference,
    record_flops,
    run_timed,
    step_test,
    time_fit,
)

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
    return class_batch(w["sizes"], w["batch"], dtype)


def make_impl(impl, name, dtype):
    """An object with ``step(X, y) -> loss`` starting from the workload's
    model (:func:`make_model`)."""
    w = WORKLOADS[name]
    model = make_model(name, dtype)
    if impl == "fastbp":
        return fb.BackpropTrainer(model, loss=w["loss"], optimizer=fb.SGD(w["lr"]))
    return baseline(impl, "mlp", model.params, w["activation"], w["output"], w["loss"],
                    w["lr"])


def step_gemm_shapes(w):
    """(m, n, k) of the matrix products in one training step: per layer the
    forward product and dW, and dX for every layer but the first (no
    implementation computes the gradient of the input)."""
    shapes = []
    batch = w["batch"]
    for l, (n_in, n_out) in enumerate(zip(w["sizes"][:-1], w["sizes"][1:])):
        shapes.append((batch, n_out, n_in))        # A = H W^T
        shapes.append((n_out, n_in, batch))        # dW = D^T H
        if l > 0:
            shapes.append((batch, n_in, n_out))    # dX = D W
    return shapes


MLP = ModelFamily("mlp", WORKLOADS, make_batch, make_impl, step_gemm_shapes, BLAS_WORKLOADS)


def check_mazur(workload, losses):
    """The 2-2-2 network's first loss is the one worked by hand."""
    if workload == "2-2-2":
        assert abs(losses[0] - 0.298371109) < 1e-6


# -- the matrix products alone ---------------------------------------------------------
def product_operands(w, dtype):
    """Per layer of workload ``w``: H (batch, n_in), W (n_out, n_in) and
    D (batch, n_out), standard normal in ``dtype`` (seed 0)."""
    rng = np.random.default_rng(0)
    return [tuple(rng.standard_normal(shape).astype(dtype)
                  for shape in ((w["batch"], n_in), (n_out, n_in), (w["batch"], n_out)))
            for n_in, n_out in zip(w["sizes"][:-1], w["sizes"][1:])]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("workload", BLAS_WORKLOADS)
def test_blas_reference(benchmark, blas_medians, workload, dtype):
    """The GEMMs of one training step (same shapes and transposes as the
    kernels: forward, dW, and dX except for the first layer) by np.dot into
    preallocated outputs: the time any implementation of the step must spend.
    ``pct_of_blas`` of a step = this median / the step's median."""
    w = WORKLOADS[workload]
    benchmark.group = f"mlp-step-{workload}"
    layers = [(H, W, D, np.empty((H.shape[0], W.shape[0]), dtype), np.empty(W.shape, dtype),
               np.empty(H.shape, dtype) if l > 0 else None)
              for l, (H, W, D) in enumerate(product_operands(w, dtype))]

    def gemms():
        for H, W, D, A, dW, dX in layers:
            np.dot(H, W.T, out=A)
            np.dot(D.T, H, out=dW)
            if dX is not None:
                np.dot(D, W, out=dX)

    gemms()  # warm-up: BLAS threads started, buffers touched
    run_timed(benchmark, w, gemms)
    record_blas_reference(benchmark, MLP, workload, dtype, blas_medians)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("workload", BLAS_WORKLOADS)
def test_jax_products(benchmark, blas_medians, workload, dtype):
    """The same products as :func:`test_blas_reference` in one ``jax.jit``
    call (XLA's own CPU matrix products, not NumPy's BLAS): when JAX's whole
    step takes less than the BLAS reference, this row shows whether its
    products are the reason. ``pct_of_blas`` = the reference's median over
    this row's (above 100: faster than the BLAS every other row uses)."""
    jax = pytest.importorskip("jax")
    jax.config.update("jax_enable_x64", True)   # as jax_mlp does; float32 stays float32
    w = WORKLOADS[workload]
    benchmark.group = f"mlp-step-{workload}"
    layers = [tuple(jax.numpy.asarray(a) for a in operands)
              for operands in product_operands(w, dtype)]

    @jax.jit
    def products(layers):
        out = []
        for l, (H, W, D) in enumerate(layers):
            out += [H @ W.T, D.T @ H] + ([D @ W] if l > 0 else [])
        return out

    def run():
        jax.block_until_ready(products(layers))

    run()  # compiles
    run_timed(benchmark, w, run)
    record_flops(benchmark, MLP.gemm_shapes(w), blas_medians.get(("mlp", workload, dtype)))


# -- one training step -------------------------------------------------------------------
# every workload x dtype x implementation through bench_utils.step_row: before the
# step is timed, its warm-up losses must equal the NumPy baseline's (and, for 2-2-2,
# start at the hand-worked loss)
test_step = step_test(MLP, check=check_mazur)


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
    benchmark.group = f"mlp-fit-{fit}"
    X, y = make_dataset(workload, n, dtype)
    runner = make_impl(impl, workload, dtype)
    if impl == "jax":
        run = jax_fit_round(runner, X, y, epochs, bs)
    else:
        run = fit_round(impl, runner, X, y, epochs, bs)
    time_fit(benchmark, run)

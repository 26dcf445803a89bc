"""Training-step benchmarks of the Elman RNN: fastbp against NumPy (and
PyTorch ``nn.RNN`` / a jitted JAX ``lax.scan`` step when installed) on the same
model, batch and learning rate.

Workloads (tanh, readout of the last state, plain SGD):

* ``h128-T40-b32``: input 1, hidden 128, T 40, batch 32, 10-class softmax
  cross-entropy; also with truncated BPTT, ``-tbptt10`` (truncate=10: the
  first 30 steps only advance the state, the gradient covers the last 10).
* ``h16-T100-b1``: input 1, hidden 16, T 100, batch 1, one regression output
  (mse).

Groups (``--benchmark-group-by=group,param:dtype``):

* ``rnn-step-<workload>``: one training step per round. fastbp is timed
  through the public ``trainer.step(X, y)``, input validation included.
* ``rnn-fit-<workload>``: ``trainer.fit`` over a small data set for a few
  epochs (whole epochs run in one compiled call); ``extra_info["us_per_step"]``
  is the time per update. The NumPy baseline is the Python loop a user writes.

Every implementation starts from fastbp's initial parameters; a short fixed
run before timing (which also compiles) records ``loss_first`` and
``loss_after_k`` in ``extra_info``, and every implementation's run must match
the NumPy baseline's, so a speed-up cannot hide a wrong result.
"""
import numpy as np
import pytest
from bench_utils import (
    DTYPES,
    assert_same_trajectory,
    check_loss,
    fit_round,
    loss_trajectory,
    median_seconds,
    warm_up,
)
from numpy_rnn import NumpyRNN

import fastbp as fb

WORKLOADS = {
    "h128-T40-b32": dict(input=1, hidden=128, T=40, batch=32, output=10,
                         loss="cross_entropy", lr=0.05, truncate=None, k=10),
    "h128-T40-b32-tbptt10": dict(input=1, hidden=128, T=40, batch=32, output=10,
                                 loss="cross_entropy", lr=0.05, truncate=10, k=10),
    "h16-T100-b1": dict(input=1, hidden=16, T=100, batch=1, output=1,
                        loss="mse", lr=0.002, truncate=None, k=20),
}
IMPLS = ["fastbp", "numpy", "torch", "jax"]


def make_model(name, dtype):
    w = WORKLOADS[name]
    return fb.ElmanRNN(w["input"], w["hidden"], w["output"], activation="tanh",
                       readout="last", dtype=np.dtype(dtype), seed=0)


def make_batch(name, dtype):
    w = WORKLOADS[name]
    rng = np.random.default_rng(1)
    X = rng.standard_normal((w["batch"], w["T"], w["input"])).astype(dtype)
    if w["loss"] == "cross_entropy":
        y = rng.integers(0, w["output"], size=w["batch"])
    else:
        y = rng.standard_normal((w["batch"], w["output"])).astype(dtype)
    return X, y


def make_impl(impl, model, w):
    """An object with ``step(X, y) -> loss`` starting from ``model``'s parameters."""
    if impl == "fastbp":
        return fb.BackpropTrainer(model.copy(), loss=w["loss"], optimizer=fb.SGD(w["lr"]),
                                  truncate=w["truncate"])
    args = (model.params, w["loss"], w["lr"], w["truncate"])
    if impl == "numpy":
        return NumpyRNN(*args)
    if impl == "torch":
        pytest.importorskip("torch")
        from torch_rnn import TorchRNN
        return TorchRNN(*args)
    pytest.importorskip("jax")
    from jax_rnn import JaxRNN
    return JaxRNN(*args)


def reference_trajectory(cache, name, dtype):
    """The NumPy baseline's losses over the workload's k checking steps."""
    key = ("rnn", name, dtype)
    if key not in cache:
        w = WORKLOADS[name]
        X, y = make_batch(name, dtype)
        cache[key] = loss_trajectory(make_impl("numpy", make_model(name, dtype), w).step,
                                     X, y, w["k"])
    return cache[key]


# -- one training step -------------------------------------------------------------------
@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("workload", list(WORKLOADS))
def test_step(benchmark, reference_losses, workload, dtype, impl):
    w = WORKLOADS[workload]
    benchmark.group = f"rnn-step-{workload}"
    model = make_model(workload, dtype)
    X, y = make_batch(workload, dtype)
    net = make_impl(impl, model, w)
    ref = reference_trajectory(reference_losses, workload, dtype)

    # warm-up and check in one: k steps from the shared starting point (the
    # first one compiles fastbp's kernels or JAX's step; never timed)
    losses = warm_up(benchmark, net.step, X, y, w["k"])
    assert_same_trajectory(losses, ref, dtype, impl)
    assert losses[-1] < losses[0], "k steps on one batch should lower its loss"

    loss = check_loss(benchmark(net.step, X, y))
    benchmark.extra_info["loss_last"] = loss
    assert loss < losses[0], "training on one batch should lower its loss"


# -- whole epochs --------------------------------------------------------------------------
# workload -> sequences, epochs per round (the same for every implementation, so
# the medians compare directly as well as us_per_step)
FITS = {
    "h128-T40-b32": (256, 2),
    "h128-T40-b32-tbptt10": (256, 2),
    "h16-T100-b1": (40, 3),
}


def make_dataset(workload, n, dtype):
    """A learnable data set of n sequences: the class is the decile of the
    sequence's sum (cross-entropy), the target its mean (mse)."""
    w = WORKLOADS[workload]
    rng = np.random.default_rng(2)
    X = rng.standard_normal((n, w["T"], w["input"]))
    s = X.sum(axis=(1, 2))
    if w["loss"] == "cross_entropy":
        y = np.searchsorted(np.quantile(s, np.linspace(0, 1, w["output"] + 1)[1:-1]), s)
    else:
        y = (s / (w["T"] * w["input"])).reshape(n, 1).astype(dtype)
    return X.astype(dtype), y


@pytest.mark.parametrize("impl", ["fastbp", "numpy"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("workload", list(FITS))
def test_fit(benchmark, workload, dtype, impl):
    n, epochs = FITS[workload]
    w = WORKLOADS[workload]
    bs = w["batch"]
    benchmark.group = f"rnn-fit-{workload}"
    model = make_model(workload, dtype)
    X, y = make_dataset(workload, n, dtype)

    run = fit_round(impl, make_impl(impl, model, w), X, y, epochs, bs)

    loss, steps = benchmark(run)
    assert steps == epochs * -(-n // bs), "one update per batch"
    benchmark.extra_info["steps_per_round"] = int(steps)
    benchmark.extra_info["loss_last_epoch"] = check_loss(loss)
    t = median_seconds(benchmark)
    if t is not None:
        benchmark.extra_info["us_per_step"] = t / steps * 1e6

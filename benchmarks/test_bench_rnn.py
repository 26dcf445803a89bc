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
  through the public ``trainer.step(X, y)``, input validation included. The
  h128 workloads also hold ``blas_reference``: only the matrix products of
  one BPTT step, which bounds what any implementation can reach;
  ``extra_info["pct_of_blas"]`` of a step row is that reference's median
  over the step's.
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
    ModelFamily,
    baseline,
    fit_round,
    record_blas_reference,
    step_test,
    time_fit,
)
from numba import njit

import fastbp as fb
from fastbp.kernels.linalg import gemm_tn_blocks
from fastbp.models import aligned_empty
from fastbp.threads import blas_limit, small_kernel_limit

# rounds=None: benchmark's automatic calibration (bench_utils.run_timed)
WORKLOADS = {
    "h128-T40-b32": dict(input=1, hidden=128, T=40, batch=32, output=10,
                         loss="cross_entropy", lr=0.05, truncate=None, k=10, rounds=None),
    "h128-T40-b32-tbptt10": dict(input=1, hidden=128, T=40, batch=32, output=10,
                                 loss="cross_entropy", lr=0.05, truncate=10, k=10,
                                 rounds=None),
    "h16-T100-b1": dict(input=1, hidden=16, T=100, batch=1, output=1,
                        loss="mse", lr=0.002, truncate=None, k=20, rounds=None),
}
#: workloads whose step is dominated by matrix products: they get a BLAS reference
BLAS_WORKLOADS = ["h128-T40-b32", "h128-T40-b32-tbptt10"]


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


def make_impl(impl, name, dtype):
    """An object with ``step(X, y) -> loss`` starting from the workload's
    model (:func:`make_model`)."""
    w = WORKLOADS[name]
    model = make_model(name, dtype)
    if impl == "fastbp":
        return fb.BackpropTrainer(model, loss=w["loss"], optimizer=fb.SGD(w["lr"]),
                                  truncate=w["truncate"])
    return baseline(impl, "rnn", model.params, w["loss"], w["lr"], w["truncate"])


def step_gemm_shapes(w):
    """(m, n, k) of the matrix products one BPTT step needs (readout "last",
    zero initial state), as (m, k) @ (k, n): the input projection of every
    step, the T - 1 recurrent products of the forward pass (h_0 = 0 needs
    none), the readout; backward through the steps the gradient covers (the
    last window under truncation), the readout's gradient into h_T, one carry
    per step into the step before, and dW_rec, dW_in, dW_out. The input
    gradient is not needed."""
    i, h, o, b, T = w["input"], w["hidden"], w["output"], w["batch"], w["T"]
    k = T if w["truncate"] is None else T - (T - 1) // w["truncate"] * w["truncate"]
    zero_start = k == T                      # the window starts from h_0 = 0
    shapes = [(T * b, h, i)]                 # x_t W_in^T, every step
    shapes += [(b, h, h)] * (T - 1)          # h_{t-1} W_rec^T
    shapes.append((b, o, h))                 # h_T W_out^T
    shapes.append((b, h, o))                 # dJ/dh_T = delta_out W_out
    shapes += [(b, h, h)] * (k - 1)          # delta_t W_rec
    shapes.append((h, h, (k - 1 if zero_start else k) * b))   # dW_rec = D^T H_prev
    shapes.append((h, i, k * b))             # dW_in = D^T X
    shapes.append((o, h, b))                 # dW_out = delta_out^T h_T
    return shapes


RNN = ModelFamily("rnn", WORKLOADS, make_batch, make_impl, step_gemm_shapes, BLAS_WORKLOADS)


def check_descent(workload, losses):
    assert losses[-1] < losses[0], "k steps on one batch should lower its loss"


@njit(cache=False)
def _gemms(XS, WT_in, H, WT_rec, Z, W_out, A, DO, W_rec, D, X_w, dW_rec, dW_in, dW_out,
           S_rec, S_in, zero_start, limit):
    """The products of :func:`step_gemm_shapes`, by np.dot into preallocated
    outputs with the kernels' layouts (W_in and W_rec pre-transposed for the
    forward pass, D^T as a transposed view): the same BLAS fastbp's kernels
    call, without Python between the calls. The two gradients summed over
    every step go through fastbp's own ``gemm_tn_blocks``, split in row
    blocks under BLAS's small-matrix limit as the kernels split them
    (:func:`fastbp.threads.small_kernel_limit`; one product when it is 1)."""
    T, b, h = H.shape[0] - 1, H.shape[1], H.shape[2]
    k = D.shape[0]
    np.dot(XS, WT_in, H[1:].reshape((T * b, h)))
    for t in range(1, T):
        np.dot(H[t], WT_rec, Z)
    np.dot(H[T], W_out.T, A)
    np.dot(DO, W_out, D[k - 1])
    for t in range(k - 1, 0, -1):
        np.dot(D[t], W_rec, Z)
    s = 1 if zero_start else 0
    i = X_w.shape[1]
    d, hs = D.reshape(k * b * h), H.reshape((T + 1) * b * h)
    gemm_tn_blocks(d, s * b * h, hs, (T - k + s) * b * h, dW_rec.reshape(h * h), 0,
                   (k - s) * b, h, h, S_rec.reshape(h * h), 0, limit)
    gemm_tn_blocks(d, 0, X_w.reshape(k * b * i), 0, dW_in.reshape(h * i), 0, k * b, h, i,
                   S_in.reshape(h * i), 0, limit)
    np.dot(DO.T, H[T], dW_out)


# -- the matrix products alone ---------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("workload", BLAS_WORKLOADS)
def test_blas_reference(benchmark, blas_medians, workload, dtype):
    """The matrix products of one BPTT step (:func:`step_gemm_shapes`) and
    nothing else, on one BLAS thread: the time an implementation of the step
    spends in them. ``pct_of_blas`` of a step = this median / the step's
    median."""
    w = WORKLOADS[workload]
    benchmark.group = f"rnn-step-{workload}"
    i, h, o, b, T = w["input"], w["hidden"], w["output"], w["batch"], w["T"]
    shapes = step_gemm_shapes(w)
    k = shapes[-2][2] // b                   # steps the gradient covers
    rng = np.random.default_rng(0)

    def rand(*shape):
        # on a 64-byte boundary, as fastbp's workspace: BLAS reads an aligned
        # operand faster, and the reference should be the fastest the calls go
        a = aligned_empty(int(np.prod(shape)), dtype).reshape(shape)
        a[...] = rng.standard_normal(shape)
        return a

    arrays = (rand(T * b, i), rand(i, h), rand(T + 1, b, h), rand(h, h), rand(b, h),
              rand(o, h), rand(b, o), rand(b, o), rand(h, h), rand(k, b, h),
              rand(k * b, i), rand(h, h), rand(h, i), rand(o, h), rand(h, h), rand(h, i),
              k == T, small_kernel_limit())
    _gemms(*arrays)  # compiles; BLAS threads started, buffers touched
    with blas_limit(1):   # as fastbp runs these products (see fastbp.backprop.ONE_THREAD_PRODUCT)
        benchmark(_gemms, *arrays)
    record_blas_reference(benchmark, RNN, workload, dtype, blas_medians)


# -- one training step -------------------------------------------------------------------
# every workload x dtype x implementation through bench_utils.step_row: before the
# step is timed, its warm-up losses must equal the NumPy baseline's (and fall)
test_step = step_test(RNN, check=check_descent)


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
    X, y = make_dataset(workload, n, dtype)
    run = fit_round(impl, make_impl(impl, workload, dtype), X, y, epochs, bs)
    _, steps = time_fit(benchmark, run)
    assert steps == epochs * -(-n // bs), "one update per batch"

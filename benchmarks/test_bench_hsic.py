"""Cost of one HSIC-bottleneck step beside backprop's, and beside the LAPACK
and BLAS calls an HSIC step cannot avoid (issue: the HSIC trainer).

Groups ``hsic-step-<sizes>-b<batch>``, rows:

* ``backprop``: ``fb.BackpropTrainer.step`` on the same model and batch;
* ``hsic``: ``alternatives.HSICTrainer.step`` (format="joint", defaults),
  input validation included;
* ``blas_reference``: only the library calls of one HSIC step, on
  preallocated buffers, from compiled code: per batch the Gram of X
  (dsyrk) and the factorisation and inverse of its K~ + eps m I (dpotrf,
  dpotri; R_Y of one-hot labels needs none, see alternatives._hsic_step.onehot_r);
  per hidden layer the forward product twice (before and after the
  layer's update), the Gram, dpotrf, dpotri, the two m x m products of
  M^-1 S M^-1, the product P Z and dW; the output layer's forward product
  and dW. ``extra_info["x_reference"]`` of the hsic row is its median over
  this one's (the target is <= 1.5).

Both trainers use Adam(1e-3) (plain SGD at backprop's learning rates
overshoots the HSIC objective, whose gradient grows with the batch).
``extra_info`` holds the losses before the first and after the k-th
warm-up step. One BLAS thread, as ``fastbp compare`` runs: OpenBLAS threads
dpotri at every size, which costs more than it saves at m = 100.
"""
import numpy as np
import pytest
from bench_utils import DTYPES, check_loss, median_seconds, run_timed, warm_up
from numba import njit

import fastbp as fb
from alternatives import HSICTrainer
from alternatives._hsic_kernels import cholesky_inplace, cholesky_inverse_inplace, gram_upper
from fastbp.threads import blas_limit

WORKLOADS = {
    "784-256-256-10-b100": dict(sizes=[784, 256, 256, 10], batch=100, rounds=None, k=10),
    "784-256-256-10-b256": dict(sizes=[784, 256, 256, 10], batch=256, rounds=50, k=10),
}
ROWS = ["blas_reference", "backprop", "hsic"]   # the reference first: the ratio needs it


@pytest.fixture(autouse=True, scope="module")
def one_blas_thread():
    with blas_limit(1):
        yield


@pytest.fixture(scope="module")
def medians():
    """(workload, dtype, row) -> median seconds, for the ratio."""
    return {}


def make_batch(workload, dtype):
    w = WORKLOADS[workload]
    rng = np.random.default_rng(1)
    X = rng.uniform(0.0, 1.0, (w["batch"], w["sizes"][0])).astype(dtype)
    y = rng.integers(0, w["sizes"][-1], size=w["batch"])
    return X, y


def make_trainer(name, workload, dtype):
    w = WORKLOADS[workload]
    model = fb.MLP(w["sizes"], activation="tanh", output="softmax", dtype=np.dtype(dtype),
                   seed=0)
    cls = fb.BackpropTrainer if name == "backprop" else HSICTrainer
    return cls(model, loss="cross_entropy", optimizer=fb.Adam(1e-3))


@njit(cache=True)
def hsic_library_calls(x64, hidden, zs, weights, deltas, grads, spd, S, B, C, P, PZ, K):
    """The LAPACK/BLAS calls of one HSIC step (see the module docstring).
    ``spd`` holds one symmetric positive definite m x m matrix per Gram; a
    dpotrf + dpotri pair maps it to its inverse, also SPD, so the calls can
    repeat without copies."""
    m = x64.shape[0]
    gram_upper(x64.reshape(x64.size), m, x64.shape[1], K)
    cholesky_inplace(spd[0], m)
    cholesky_inverse_inplace(spd[0], m)
    L = len(weights)
    for l in range(L):
        H = hidden[l]
        W = weights[l]
        np.dot(H, W.T, hidden[l + 1])
        if l < L - 1:
            np.dot(H, W.T, hidden[l + 1])          # again, from the updated layer
            Z = zs[l]
            gram_upper(Z.reshape(Z.size), m, Z.shape[1], K)
            cholesky_inplace(spd[1 + l], m)
            cholesky_inverse_inplace(spd[1 + l], m)
            Minv = spd[1 + l][:m * m].reshape((m, m))
            np.dot(S, Minv, B)
            np.dot(Minv, B, C)
            np.dot(P, Z, PZ[l])
        np.dot(deltas[l].T, H, grads[l])


def reference_buffers(workload, dtype):
    w = WORKLOADS[workload]
    sizes, m = w["sizes"], w["batch"]
    rng = np.random.default_rng(0)
    dt = np.dtype(dtype)
    hidden = tuple(rng.uniform(-1, 1, (m, n)).astype(dt) for n in sizes)
    weights = tuple(rng.normal(0, 0.05, (o, i)).astype(dt) for i, o in zip(sizes, sizes[1:]))
    deltas = tuple(rng.normal(size=(m, o)).astype(dt) for o in sizes[1:])
    grads = tuple(np.empty((o, i), dt) for i, o in zip(sizes, sizes[1:]))
    zs = tuple(rng.uniform(-1, 1, (m, n)) for n in sizes[1:-1])
    G = rng.normal(size=(m, m))
    spd = tuple((G @ G.T / m + np.eye(m)).ravel() for _ in range(len(sizes) - 1))
    x64 = hidden[0].astype(np.float64)
    S = rng.normal(size=(m, m))
    S = S + S.T
    P = rng.normal(size=(m, m))
    return (x64, hidden, zs, weights, deltas, grads, spd, S, np.empty((m, m)),
            np.empty((m, m)), P, tuple(np.empty_like(z) for z in zs), np.empty(m * m))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("row", ROWS)
@pytest.mark.parametrize("workload", list(WORKLOADS))
def test_hsic_step(benchmark, medians, workload, row, dtype):
    w = WORKLOADS[workload]
    benchmark.group = f"hsic-step-{workload}"
    benchmark.extra_info["row"] = row
    if row == "blas_reference":
        args = reference_buffers(workload, dtype)
        hsic_library_calls(*args)                    # compiles; BLAS buffers touched
        run_timed(benchmark, w, hsic_library_calls, *args)
    else:
        trainer = make_trainer(row, workload, dtype)
        X, y = make_batch(workload, dtype)
        losses = warm_up(benchmark, trainer.step, X, y, w["k"])    # compiles, then checks
        check_loss(run_timed(benchmark, w, trainer.step, X, y))
        assert losses[-1] < losses[0], f"{row} did not reduce the loss on a fixed batch"
    t = median_seconds(benchmark)
    if t is None:
        return
    medians[(workload, dtype, row)] = t
    ref = medians.get((workload, dtype, "blas_reference"))
    if row == "hsic" and ref is not None:
        benchmark.extra_info["x_reference"] = t / ref
    bp = medians.get((workload, dtype, "backprop"))
    if row == "hsic" and bp is not None:
        benchmark.extra_info["x_backprop"] = t / bp

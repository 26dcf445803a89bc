"""Helpers shared by the benchmark modules (imported from beside the tests)."""
import importlib
import math
from typing import Callable, NamedTuple

import numpy as np
import pytest

import fastbp as fb

DTYPES = ["float32", "float64"]
#: the implementations of a model family's step rows (fastbp and its baselines)
IMPLS = ["fastbp", "numpy", "torch", "jax"]


class ModelFamily(NamedTuple):
    """What the shared step rows (:func:`step_row`) need of a model family's
    benchmark module."""

    #: "mlp" or "rnn": the group prefix and the head of the cache keys
    name: str
    #: workload name -> dict with at least ``k`` (warm-up steps) and ``rounds``
    workloads: dict
    #: (workload, dtype) -> the fixed batch (X, y)
    make_batch: Callable
    #: (impl, workload, dtype) -> an object with ``step(X, y) -> loss`` from
    #: the workload's starting parameters
    make_impl: Callable
    #: workload dict -> the (m, n, k) matrix products of one step
    gemm_shapes: Callable
    #: the workloads whose step rows record flops against a BLAS reference
    blas_workloads: list


def tanh_mlp(sizes, dtype):
    """The tanh / softmax MLP of the trainer benchmarks, seed 0."""
    return fb.MLP(sizes, activation="tanh", output="softmax", dtype=np.dtype(dtype), seed=0)


def class_batch(sizes, rows, dtype, seed=1):
    """A batch of ``rows`` standard-normal inputs (rows, sizes[0]) of ``dtype``
    and integer labels in [0, sizes[-1])."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((rows, sizes[0])).astype(dtype)
    y = rng.integers(0, sizes[-1], size=rows)
    return X, y


def baseline(impl, family, *args):
    """The ``impl`` ("numpy", "torch" or "jax") baseline of a model ``family``
    ("mlp" or "rnn"): class ``<Impl><FAMILY>`` of the module ``<impl>_<family>``
    beside the tests, built from ``args``. Skips the row when ``impl`` is not
    installed."""
    pytest.importorskip(impl)
    module = importlib.import_module(f"{impl}_{family}")
    return getattr(module, impl.capitalize() + family.upper())(*args)


def median_seconds(benchmark):
    """Median seconds per call of a finished benchmark; None when timing is
    off (``--benchmark-disable``)."""
    stats = getattr(benchmark, "stats", None)
    if stats is None:
        return None
    return stats.stats.median


def loss_trajectory(step, X, y, k):
    """Losses of ``k`` successive ``step(X, y)`` calls (each returns the batch
    loss before its update)."""
    return [step(X, y) for _ in range(k)]


def record_trajectory(benchmark, losses):
    """Store the first and k-th step loss of a fixed-length run in extra_info:
    comparable across implementations started from the same parameters, so a
    speed-up that computes something else shows up as a different loss."""
    benchmark.extra_info["k_steps"] = len(losses)
    benchmark.extra_info["loss_first"] = float(losses[0])
    benchmark.extra_info["loss_after_k"] = float(losses[-1])


def warm_up(benchmark, step, X, y, k):
    """The untimed warm-up of a step benchmark: ``k`` steps from the shared
    starting parameters (the first one compiles), recorded with
    :func:`record_trajectory`. Returns the losses."""
    losses = loss_trajectory(step, X, y, k)
    record_trajectory(benchmark, losses)
    return losses


def assert_same_trajectory(losses, reference, dtype, impl):
    """An implementation's warm-up losses must equal the NumPy baseline's
    (rtol 1e-3 in float32, 1e-7 in float64) before its speed counts."""
    rtol = 1e-3 if dtype == "float32" else 1e-7
    np.testing.assert_allclose(losses, reference, rtol=rtol,
                               err_msg=f"{impl} and the NumPy baseline disagree")


def run_timed(benchmark, w, fn, *args):
    """benchmark's automatic calibration for small workloads; fixed rounds
    (``w["rounds"]``) for the large ones."""
    if w["rounds"] is None:
        return benchmark(fn, *args)
    return benchmark.pedantic(fn, args=args, rounds=w["rounds"], warmup_rounds=2)


def step_grid(workloads, row_arg, rows):
    """Parametrize a step benchmark over workload x row x dtype (its ids in
    that order); ``row_arg`` names the row's parameter (the trainer or
    variant, e.g. "variant")."""
    def mark(test):
        test = pytest.mark.parametrize("workload", list(workloads))(test)
        test = pytest.mark.parametrize(row_arg, list(rows))(test)
        return pytest.mark.parametrize("dtype", DTYPES)(test)
    return mark


def step_test(family, check=None):
    """The ``test_step`` of a model family's benchmark module: a
    :func:`step_row` for every workload x dtype x implementation (IMPLS)."""
    @pytest.mark.parametrize("impl", IMPLS)
    @pytest.mark.parametrize("dtype", DTYPES)
    @pytest.mark.parametrize("workload", list(family.workloads))
    def test_step(benchmark, blas_medians, reference_losses, workload, dtype, impl):
        step_row(benchmark, family, workload, dtype, impl, reference_losses, blas_medians,
                 check)
    return test_step


def step_row(benchmark, family, workload, dtype, impl, reference_losses, blas_medians,
             check=None):
    """One training step of ``impl`` on a workload of ``family`` (a
    :class:`ModelFamily`), group ``<family>-step-<workload>``.

    The untimed :func:`warm_up` of ``k`` steps from the workload's starting
    parameters (the first one compiles fastbp's kernels or JAX's step) must
    equal the NumPy baseline's losses (computed once per (family, workload,
    dtype) in the session cache ``reference_losses``) and pass
    ``check(workload, losses)`` before the step is timed by :func:`run_timed`;
    the last timed loss (``extra_info["loss_last"]``) must be below the first.
    The family's BLAS workloads record :func:`record_flops` against the
    reference median in ``blas_medians``.
    """
    w = family.workloads[workload]
    benchmark.group = f"{family.name}-step-{workload}"
    key = (family.name, workload, dtype)
    X, y = family.make_batch(workload, dtype)
    net = family.make_impl(impl, workload, dtype)
    if key not in reference_losses:
        numpy_net = family.make_impl("numpy", workload, dtype)
        reference_losses[key] = loss_trajectory(numpy_net.step, X, y, w["k"])
    losses = warm_up(benchmark, net.step, X, y, w["k"])
    assert_same_trajectory(losses, reference_losses[key], dtype, impl)
    if check is not None:
        check(workload, losses)

    loss = check_loss(run_timed(benchmark, w, net.step, X, y))
    benchmark.extra_info["loss_last"] = loss
    assert loss < losses[0], "training on one batch should lower its loss"
    if workload in family.blas_workloads:
        record_flops(benchmark, family.gemm_shapes(w), blas_medians.get(key))


def time_trainer_step(benchmark, w, trainer, X, y, name):
    """A trainer's step row: the :func:`warm_up` of ``w["k"]`` steps on the
    fixed batch (the first compiles), then ``trainer.step(X, y)`` timed by
    :func:`run_timed`; the warm-up must have lowered the loss. Returns the
    median seconds (None when timing is off)."""
    losses = warm_up(benchmark, trainer.step, X, y, w["k"])
    check_loss(run_timed(benchmark, w, trainer.step, X, y))
    assert losses[-1] < losses[0], f"{name} did not reduce the loss on a fixed batch"
    return median_seconds(benchmark)


def check_loss(value, name="loss"):
    value = float(value)
    assert math.isfinite(value), f"{name} is not finite: {value}"
    return value


def gemm_flops(shapes):
    """FLOPs (2 per multiply-add) of a list of (m, n, k) products."""
    return sum(2 * m * n * k for m, n, k in shapes)


def record_flops(benchmark, shapes, blas_seconds=None):
    """``extra_info`` of a row whose work is the matrix products ``shapes``
    ((m, n, k) each): ``flops``, ``gflops_per_s`` and, given the BLAS
    reference's median ``blas_seconds``, ``pct_of_blas`` = that over this
    row's median. Returns the median (None when timing is off)."""
    flops = gemm_flops(shapes)
    benchmark.extra_info["flops"] = flops
    t = median_seconds(benchmark)
    if t is not None:
        benchmark.extra_info["gflops_per_s"] = flops / t / 1e9
        if blas_seconds is not None:
            benchmark.extra_info["pct_of_blas"] = 100.0 * blas_seconds / t
    return t


def record_blas_reference(benchmark, family, workload, dtype, blas_medians):
    """``extra_info`` of a family's BLAS reference row (the matrix products
    of one step alone, just timed): :func:`record_flops` and
    ``pct_of_blas`` 100; its median goes to ``blas_medians`` for the step rows."""
    t = record_flops(benchmark, family.gemm_shapes(family.workloads[workload]))
    if t is not None:
        blas_medians[(family.name, workload, dtype)] = t
        benchmark.extra_info["pct_of_blas"] = 100.0


def fit_round(impl, runner, X, y, epochs, batch_size):
    """The timed body of a fused-``fit`` benchmark: ``epochs`` epochs over (X, y)
    in batches of ``batch_size``, returning (last epoch's mean loss, updates).

    impl "fastbp": ``runner`` is a trainer, whose ``fit`` is compiled first on
    two batches outside the timing. Otherwise ``runner`` is a baseline with
    ``step(X, y) -> loss``, looped in Python with a fresh permutation per
    epoch (what a NumPy user writes).
    """
    n = X.shape[0]
    if impl == "fastbp":
        runner.fit(X[:2 * batch_size], y[:2 * batch_size], epochs=1, batch_size=batch_size,
                   seed=0)  # compiles

        def run():
            hist = runner.fit(X, y, epochs=epochs, batch_size=batch_size, seed=0)
            return hist.loss[-1], hist.iterations
        return run
    rng = np.random.default_rng(0)
    runner.step(X[:batch_size], y[:batch_size])

    def run():
        total, steps = 0.0, 0
        for _ in range(epochs):
            order = rng.permutation(n)
            total = 0.0
            for start in range(0, n, batch_size):
                idx = order[start:start + batch_size]
                total += runner.step(X[idx], y[idx]) * len(idx)
                steps += 1
        return total / n, steps
    return run


def time_fit(benchmark, run):
    """Time a fit round (``run() -> (loss, updates)``, see :func:`fit_round`);
    records ``steps_per_round``, ``loss_last_epoch`` and ``us_per_step``.
    Returns (loss, updates) of the last round."""
    loss, steps = benchmark(run)
    benchmark.extra_info["steps_per_round"] = int(steps)
    benchmark.extra_info["loss_last_epoch"] = check_loss(loss)
    t = median_seconds(benchmark)
    if t is not None:
        benchmark.extra_info["us_per_step"] = t / steps * 1e6
    return loss, steps

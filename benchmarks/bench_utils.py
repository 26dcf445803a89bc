"""Helpers shared by the benchmark modules (imported from beside the tests)."""
import math

DTYPES = ["float32", "float64"]


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
    import numpy as np
    rtol = 1e-3 if dtype == "float32" else 1e-7
    np.testing.assert_allclose(losses, reference, rtol=rtol,
                               err_msg=f"{impl} and the NumPy baseline disagree")


def run_timed(benchmark, w, fn, *args):
    """benchmark's automatic calibration for small workloads; fixed rounds
    (``w["rounds"]``) for the large ones."""
    if w["rounds"] is None:
        return benchmark(fn, *args)
    return benchmark.pedantic(fn, args=args, rounds=w["rounds"], warmup_rounds=2)


def check_loss(value, name="loss"):
    value = float(value)
    assert math.isfinite(value), f"{name} is not finite: {value}"
    return value


def gemm_flops(shapes):
    """FLOPs (2 per multiply-add) of a list of (m, n, k) products."""
    return sum(2 * m * n * k for m, n, k in shapes)


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
    import numpy as np
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

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


def check_loss(value, name="loss"):
    value = float(value)
    assert math.isfinite(value), f"{name} is not finite: {value}"
    return value


def gemm_flops(shapes):
    """FLOPs (2 per multiply-add) of a list of (m, n, k) products."""
    return sum(2 * m * n * k for m, n, k in shapes)

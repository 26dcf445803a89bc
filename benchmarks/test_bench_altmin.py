"""Online alternating minimisation (alternatives.AltMinTrainer) on the clock,
beside backprop on the same workload.

Groups ``altmin-step-<sizes>-b<batch>`` (``--benchmark-group-by=group,param:dtype``),
the workloads of ``test_bench_trainers.py`` (tanh, softmax, cross-entropy,
Adam(1e-3), one ``trainer.step(X, y)`` per round, input validation included,
one BLAS thread); rows:

* ``backprop``;
* ``altmin-k1``, ``altmin-k5``: AM-Adam with 1 and 5 code steps;
* ``altmin-mem-k5``: AM-mem (decay 0.1, ridge 1) with 5 code steps.

``extra_info`` holds the loss before the first and after the k-th warm-up
step (the loss must fall), ``madd_ratio``: the multiply-adds of the step
over backprop's, from the layer sizes (see ``multiply_adds``), and
``issue_ratio`` = (6 + 4 code_steps) / 6, the estimate for equal layers;
the AM rows also hold ``ratio``, their median over backprop's (when the
backprop row of the group ran first, as it does in file order).

Run::

    python -m pytest benchmarks/test_bench_altmin.py --benchmark-only \
        --benchmark-group-by=group,param:dtype
"""
from bench_utils import step_grid, tanh_mlp, time_trainer_step
from test_bench_trainers import WORKLOADS, make_batch

import fastbp as fb
from alternatives import AltMinTrainer
from fastbp.threads import blas_limit

#: row -> trainer class and its options beyond the loss and optimizer
VARIANTS = {
    "backprop": (fb.BackpropTrainer, {}),
    "altmin-k1": (AltMinTrainer, dict(code_steps=1)),
    "altmin-k5": (AltMinTrainer, dict(code_steps=5)),
    "altmin-mem-k5": (AltMinTrainer, dict(code_steps=5, memory=0.1, ridge=1.0)),
}
_BACKPROP = {}


def multiply_adds(sizes, code_steps=None, memory=False, rows=1):
    """Multiply-adds of the matrix products of one step, per sample.

    With p_l = n_l n_{l-1} and F = sum p_l (a forward pass): backprop
    F + F + (F - p_1) (forward, dW, deltas below layer 1); AM
    F + 2 code_steps (F - p_1) (each code step runs layer l+1 forward and
    back) + 2 (F - p_1) + p_1 (every layer's residual and dW; layer 1's
    residual is the forward's). AM-mem replaces the hidden layers'
    residuals and dW by their memory sums, n_{l-1}^2 + p_l, and a sweep of
    n_l (n_{l-1} + 1)^2 per batch of ``rows``."""
    p = [a * b for a, b in zip(sizes[:-1], sizes[1:])]
    F = sum(p)
    if code_steps is None:
        return 3 * F - p[0]
    codes = F + 2 * code_steps * (F - p[0])
    if not memory:
        return codes + 2 * (F - p[0]) + p[0]
    hidden = sum(n_in * n_in + n_in * n_out + n_out * (n_in + 1) ** 2 / rows
                 for n_in, n_out in zip(sizes[:-2], sizes[1:-1]))
    return codes + 2 * p[-1] + hidden


@step_grid(WORKLOADS, "variant", VARIANTS)
def test_altmin_step(benchmark, workload, variant, dtype):
    benchmark.group = f"altmin-step-{workload}"
    w = WORKLOADS[workload]
    cls, opts = VARIANTS[variant]
    trainer = cls(tanh_mlp(w["sizes"], dtype), loss="cross_entropy", optimizer=fb.Adam(1e-3),
                  **opts)
    k = opts.get("code_steps")
    ratio = (multiply_adds(w["sizes"], k, "memory" in opts, w["batch"])
             / multiply_adds(w["sizes"]))
    benchmark.extra_info["madd_ratio"] = round(ratio, 3)
    if k is not None:
        benchmark.extra_info["issue_ratio"] = round((6 + 4 * k) / 6, 3)
    X, y = make_batch(workload, dtype)
    with blas_limit(1):
        seconds = time_trainer_step(benchmark, w, trainer, X, y, variant)
    if seconds is None:
        return
    if k is None:
        _BACKPROP[workload, dtype] = seconds
    elif (workload, dtype) in _BACKPROP:
        benchmark.extra_info["ratio"] = round(seconds / _BACKPROP[workload, dtype], 2)

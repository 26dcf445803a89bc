"""Cost of one training step of every registered trainer next to backprop's,
on the same model, batch and learning rate (issue: the alternatives' cost
relative to backprop on record).

Groups ``trainer-step-<sizes>-b<batch>``; rows are registry names
(``fastbp.TRAINERS`` after ``import alternatives``). Every row runs the public
``trainer.step(X, y)``, input validation included, with SGD. ``extra_info``
holds the loss before the first and after the k-th warm-up step, so a trainer
that stops learning shows up.
"""
import numpy as np
import pytest
from bench_utils import DTYPES, check_loss, run_timed, warm_up

import alternatives  # noqa: F401  (registers the alternative trainers)
import fastbp as fb

WORKLOADS = {
    "40-100-100-10-b32": dict(sizes=[40, 100, 100, 10], batch=32, rounds=None, k=20),
    "784-256-256-10-b128": dict(sizes=[784, 256, 256, 10], batch=128, rounds=100, k=10),
}
TRAINER_NAMES = ["backprop", "fa", "dfa", "dtp", "drl", "ddtp", "sg"]


def make_trainer(name, workload, dtype):
    if name not in fb.TRAINERS:
        pytest.skip(f"trainer {name!r} is not registered")
    w = WORKLOADS[workload]
    model = fb.MLP(w["sizes"], activation="tanh", output="softmax", dtype=np.dtype(dtype),
                   seed=0)
    return fb.TRAINERS[name](model, loss="cross_entropy", optimizer=fb.SGD(0.05))


def make_batch(workload, dtype):
    w = WORKLOADS[workload]
    rng = np.random.default_rng(1)
    X = rng.standard_normal((w["batch"], w["sizes"][0])).astype(dtype)
    y = rng.integers(0, w["sizes"][-1], size=w["batch"])
    return X, y


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", TRAINER_NAMES)
@pytest.mark.parametrize("workload", list(WORKLOADS))
def test_trainer_step(benchmark, workload, name, dtype):
    benchmark.group = f"trainer-step-{workload}"
    w = WORKLOADS[workload]
    trainer = make_trainer(name, workload, dtype)
    X, y = make_batch(workload, dtype)
    losses = warm_up(benchmark, trainer.step, X, y, w["k"])   # compiles, then checks
    benchmark.extra_info["trainer"] = name
    check_loss(run_timed(benchmark, w, trainer.step, X, y))
    assert losses[-1] < losses[0], f"{name} did not reduce the loss on a fixed batch"

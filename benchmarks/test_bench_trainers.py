"""Cost of one training step of every registered trainer next to backprop's,
on the same model, batch and learning rate (issue: the alternatives' cost
relative to backprop on record).

Groups ``trainer-step-<sizes>-b<batch>``; rows are registry names
(``fastbp.TRAINERS`` after ``import alternatives``). Every row runs the public
``trainer.step(X, y)``, input validation included, with SGD. ``extra_info``
holds the loss before the first and after the k-th warm-up step, so a trainer
that stops learning shows up.
"""
import pytest
from bench_utils import class_batch, step_grid, tanh_mlp, time_trainer_step

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
    model = tanh_mlp(WORKLOADS[workload]["sizes"], dtype)
    return fb.TRAINERS[name](model, loss="cross_entropy", optimizer=fb.SGD(0.05))


def make_batch(workload, dtype):
    w = WORKLOADS[workload]
    return class_batch(w["sizes"], w["batch"], dtype)


@step_grid(WORKLOADS, "name", TRAINER_NAMES)
def test_trainer_step(benchmark, workload, name, dtype):
    benchmark.group = f"trainer-step-{workload}"
    w = WORKLOADS[workload]
    trainer = make_trainer(name, workload, dtype)
    X, y = make_batch(workload, dtype)
    benchmark.extra_info["trainer"] = name
    time_trainer_step(benchmark, w, trainer, X, y, name)

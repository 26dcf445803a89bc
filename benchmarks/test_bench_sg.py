"""Synthetic gradients (alternatives.SyntheticGradientTrainer and its recurrent
variant) on the clock.

Groups (``--benchmark-group-by=group,param:dtype``):

* ``sg-step-<sizes>-b<batch>``: one ``trainer.step(X, y)`` (input validation
  included) of backprop and of the SG trainer with every hidden layer
  decoupled: DNI (linear modules), cDNI (linear, label-conditioned) and cDNI
  with a hidden module layer of 64 units. Same model, batch and SGD
  learning rate; ``extra_info`` holds the loss before the first and after
  the k-th warm-up step, and the loss must fall.
* ``sg-rnn-step-<workload>``: one ``trainer.step(X, y)`` of an ElmanRNN on the
  workloads of the recurrent benchmarks (``benchmarks/test_bench_rnn.py``:
  h128-T40-b32, 10 classes; h16-T100-b1, regression; tanh, readout of the
  last state, SGD), plain truncated BPTT against synthetic-gradient TBPTT
  with the same window of 10 steps (``sg_scale`` 0.1, M linear at SGD), and
  full BPTT. With a loss only at the last step, plain TBPTT backpropagates
  through the last window alone, while SG-TBPTT runs every window's backward
  pass (driven by M) plus M's forward and update at each boundary.
* ``sg-epoch-<workload>``: one ``fit`` epoch (16 batches of 128) of cDNI,
  locked against concurrent (one thread per layer group, staleness 1), on
  784-256-256-10 with one decoupled layer (2 groups, the first holding about
  3/4 of the work) and with both (3 groups), and on a 256x5-10 network cut
  into two groups of equal work. The locked
  rows run with BLAS's default threads and with one BLAS thread
  (``-blas1``); the concurrent schedule always uses one BLAS thread per call
  (its groups' threads already occupy the cores). ``extra_info`` holds the
  epoch's mean training loss.

Run::

    python -m pytest benchmarks/test_bench_sg.py --benchmark-only \
        --benchmark-group-by=group,param:dtype
"""
import pytest
from bench_utils import check_loss, class_batch, step_grid, tanh_mlp, time_trainer_step
from test_bench_rnn import WORKLOADS as RNN_WORKLOADS
from test_bench_rnn import make_batch as rnn_batch
from test_bench_rnn import make_model as rnn_model

import alternatives  # noqa: F401  (registers "sg")
import fastbp as fb
from alternatives import RecurrentSyntheticGradientTrainer, SyntheticGradientTrainer

STEP_WORKLOADS = {
    "40-100-100-10-b32": dict(sizes=[40, 100, 100, 10], batch=32, rounds=None, k=20),
    "784-256-256-10-b128": dict(sizes=[784, 256, 256, 10], batch=128, rounds=100, k=10),
}
VARIANTS = {
    "backprop": None,
    "sg-dni": dict(conditioned=False, sg_hidden=0),
    "sg-cdni": dict(conditioned=True, sg_hidden=0),
    "sg-cdni-h64": dict(conditioned=True, sg_hidden=64),
}


@step_grid(STEP_WORKLOADS, "variant", VARIANTS)
def test_sg_step(benchmark, workload, variant, dtype):
    benchmark.group = f"sg-step-{workload}"
    w = STEP_WORKLOADS[workload]
    model = tanh_mlp(w["sizes"], dtype)
    opts = VARIANTS[variant]
    if opts is None:
        trainer = fb.BackpropTrainer(model, loss="cross_entropy", optimizer=fb.SGD(0.05))
    else:
        trainer = SyntheticGradientTrainer(model, loss="cross_entropy", optimizer=fb.SGD(0.05),
                                           sg_optimizer=fb.SGD(0.05), sg_seed=0, **opts)
    X, y = class_batch(w["sizes"], w["batch"], dtype)
    benchmark.extra_info["trainer"] = variant
    time_trainer_step(benchmark, w, trainer, X, y, variant)


#: the recurrent benchmarks' workloads, without their built-in truncation
RNN_STEP_WORKLOADS = ["h128-T40-b32", "h16-T100-b1"]
RNN_WINDOW = 10


@step_grid(RNN_STEP_WORKLOADS, "variant", ["full-bptt", "tbptt10", "sg-tbptt10"])
def test_sg_rnn_step(benchmark, workload, variant, dtype):
    benchmark.group = f"sg-rnn-step-{workload}"
    w = RNN_WORKLOADS[workload]
    model = rnn_model(workload, dtype)
    X, y = rnn_batch(workload, dtype)
    if variant == "sg-tbptt10":
        trainer = RecurrentSyntheticGradientTrainer(model, loss=w["loss"],
                                                    optimizer=fb.SGD(w["lr"]),
                                                    truncate=RNN_WINDOW, sg_scale=0.1,
                                                    sg_optimizer=fb.SGD(w["lr"]))
    else:
        trainer = fb.BackpropTrainer(model, loss=w["loss"], optimizer=fb.SGD(w["lr"]),
                                     truncate=RNN_WINDOW if variant == "tbptt10" else None)
    benchmark.extra_info["trainer"] = variant
    time_trainer_step(benchmark, w, trainer, X, y, variant)   # w["rounds"] is None


#: epoch workloads: sizes, batch, decoupled layers (1 or 2 cuts: 2 or 3 groups)
EPOCH_WORKLOADS = {
    "784-256-256-10-b128-D1": ([784, 256, 256, 10], 128, [1]),
    "784-256-256-10-b128-Dall": ([784, 256, 256, 10], 128, "all"),
    # two groups of equal work: layers 1-2 (+ the module at h_2) and layers 3-5
    "256x5-10-b128-D2": ([256, 256, 256, 256, 256, 10], 128, [2]),
}
EPOCH_BATCHES = 16
SCHEDULES = {
    "locked": ("locked", None),
    "locked-blas1": ("locked", 1),
    "concurrent": ("concurrent", None),
}


@pytest.mark.parametrize("dtype", ["float32"])
@pytest.mark.parametrize("schedule", list(SCHEDULES))
@pytest.mark.parametrize("workload", list(EPOCH_WORKLOADS))
def test_sg_epoch_schedule(benchmark, workload, schedule, dtype):
    sizes, batch, decoupled = EPOCH_WORKLOADS[workload]
    benchmark.group = f"sg-epoch-{workload}"
    kind, blas_threads = SCHEDULES[schedule]
    if blas_threads is not None:
        pytest.importorskip("threadpoolctl")
    model = tanh_mlp(sizes, dtype)
    trainer = SyntheticGradientTrainer(
        model, loss="cross_entropy", optimizer=fb.SGD(0.02), sg_optimizer=fb.SGD(0.02),
        conditioned=True, decoupled=decoupled, schedule=kind, staleness=1)
    X, y = class_batch(sizes, EPOCH_BATCHES * batch, dtype)
    benchmark.extra_info.update(trainer=f"sg-cdni-{schedule}", groups=len(trainer.decoupled) + 1,
                                samples=EPOCH_BATCHES * batch)

    def epoch():
        return trainer.fit(X, y, epochs=1, batch_size=batch, seed=0).loss[-1]

    def run():
        if blas_threads is None:
            return epoch()
        from threadpoolctl import threadpool_limits
        with threadpool_limits(blas_threads, user_api="blas"):
            return epoch()

    first = run()                           # compiles
    loss = benchmark.pedantic(run, rounds=8, warmup_rounds=1)
    benchmark.extra_info["loss_first_epoch"] = float(first)
    benchmark.extra_info["loss_last_epoch"] = float(loss)
    check_loss(loss)
    assert loss < first, f"{schedule} did not reduce the training loss"

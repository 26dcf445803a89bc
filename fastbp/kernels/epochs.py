"""The one epoch driver: shuffle, batch, step and statistics, written once
for every trainer's fused ``fit``.

A trainer supplies only its per-batch step, a compiled function over a
namedtuple ``args`` of its own arrays, registered for that namedtuple class::

    Args = namedtuple("Args", "params grads state opt_hyper train_hyper ws layout blas")

    @njit(**KERNEL)
    def my_batch(args, X, labels, targets, order, xb, lb, tb, start, rows, phase):
        gather_batch(X, labels, targets, order, start, rows, xb, lb, tb)
        ...                                   # one update on xb, lb, tb
        return batch_result((objective, n_correct, status), rows)

    register_batch_step(Args, my_batch)

    @njit(**KERNEL)                           # cached in the trainer's own module
    def my_epochs(args, data, plan, stats):
        return run_epochs(args, data, plan, stats)

The step returns ``(loss_sum, n_correct, n_terms, n_updates, aux_sum,
aux_count, status)``: the objective summed over the loss terms it trained on
(each term weighted by the objective of the update it belongs to), the number
correct, the number of loss terms (samples, or sequence steps), the updates
applied, and optionally a second statistic (e.g. a synthetic-gradient module's
loss) summed over ``aux_count`` items. On failure it returns what it applied
before failing and the failure code, with the failing update not applied.

The driver finds the step through the type of ``args`` while compiling
(:func:`batch_step` is overloaded per registered class), so no function
object is passed at run time and the entry point stays in Numba's on-disk
cache (a function passed as an argument would keep it out). The driver
itself is not cached: it is compiled into each entry point, whose cache the
trainer's package guards (see :func:`fastbp.compile_cache.drop_stale_caches`).
"""
from collections import namedtuple

import numpy as np
from numba import njit
from numba.extending import overload

from .codes import KERNEL, OK, ZERO

#: The training set and the batch buffers: X (n, n_0) (or (n, T, i) for
#: sequences), labels int64 (n,) or (0,), targets (n, k) or (0, 0), order
#: int64 (n,) (shuffled in place), and the gather buffers xb, lb, tb of
#: :meth:`fastbp.Trainer.epoch_data`.
EpochData = namedtuple("EpochData", "X labels targets order xb lb tb")

#: What to run: n_epochs, shuffle (bool), seed (uint64), first_epoch (index of
#: this call's first epoch in the whole run), batch_size, and passes: the
#: passes over each epoch's order (the step gets the pass index as ``phase``;
#: the statistics are those of the last pass).
EpochPlan = namedtuple("EpochPlan", "n_epochs shuffle seed first_epoch batch_size passes")

_STEPS = {}


@njit(**KERNEL)
def splitmix64(state):
    """One step of the splitmix64 generator: (next state, output), both uint64."""
    z = state + np.uint64(0x9E3779B97F4A7C15)
    x = z
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    x = x ^ (x >> np.uint64(31))
    return z, x


@njit(**KERNEL)
def epoch_seed(seed, epoch):
    """Seed of epoch ``epoch``'s shuffle: position epoch of seed's splitmix64
    stream."""
    _, r = splitmix64(np.uint64(seed) + np.uint64(epoch) * np.uint64(0x9E3779B97F4A7C15))
    return r


@njit(**KERNEL)
def shuffle_in_place(order, seed):
    """Fisher-Yates shuffle of ``order`` driven by splitmix64 from ``seed``."""
    s = np.uint64(seed)
    for i in range(order.shape[0] - 1, 0, -1):
        s, r = splitmix64(s)
        j = np.int64(r % np.uint64(i + 1))
        t = order[i]
        order[i] = order[j]
        order[j] = t


@njit(**KERNEL)
def gather_batch(X, labels, targets, order, start, rows, xb, lb, tb):
    """Copy samples order[start:start + rows] into the batch buffers.

    X (n, n_0) rows go to the flat ``xb`` (row-major); integer labels to ``lb``
    when ``labels`` is non-empty, else target rows to ``tb`` (rows, k).
    """
    n_in = X.shape[1]
    use_labels = labels.shape[0] > 0
    for i in range(rows):
        src = order[start + i]
        for j in range(n_in):
            xb[i * n_in + j] = X[src, j]
        if use_labels:
            lb[i] = labels[src]
        else:
            for j in range(targets.shape[1]):
                tb[i, j] = targets[src, j]


def register_batch_step(args_class, step):
    """Make ``step`` the per-batch step :func:`run_epochs` calls for
    arguments of type ``args_class``.

    Parameters
    ----------
    args_class : a namedtuple class
        The bundle of arrays the step takes; one class per step.
    step : a compiled function (or its Python function)
        ``step(args, X, labels, targets, order, xb, lb, tb, start, rows,
        phase) -> (loss_sum, n_correct, n_terms, n_updates, aux_sum,
        aux_count, status)`` for the batch of samples order[start:start +
        rows] (see the module docstring). The driver compiles its Python
        source into each entry point with the kernel options
        (``fastbp.kernels.codes.KERNEL``), so the step is compiled on its own
        only if something else calls it.

    Returns
    -------
    step
    """
    _STEPS[args_class] = step
    return step


def batch_step(args, X, labels, targets, order, xb, lb, tb, start, rows, phase):
    """The step registered for ``type(args)`` (compiled code only)."""
    raise NotImplementedError("batch_step is dispatched while compiling run_epochs")


# The implementation is the registered step's own Python source, compiled
# here with the kernel options: a wrapper calling the step would be one more
# function that re-optimizes and re-emits all the step's code (see
# run_epochs), and an inline="always" overload is compiled in full just to
# type it. Not cached on its own: one index for every trainer's argument type
# would make loading it import every module that ever defined one (a plug-in
# run once would break later processes without it); it is linked into each
# trainer's cached entry point.
@overload(batch_step, jit_options={**KERNEL, "cache": False})
def _batch_step(args, X, labels, targets, order, xb, lb, tb, start, rows, phase):
    step = _STEPS.get(getattr(args, "instance_class", None))
    if step is None:
        return None
    return getattr(step, "py_func", step)


@njit(inline="always", **KERNEL)
def batch_result(step_result, rows):
    """The driver's 7-tuple for a step of one update over ``rows`` samples that
    returned ``(objective, n_correct, status)``: nothing counted on failure."""
    objective, correct, status = step_result
    if status != OK:
        return 0.0, 0.0, 0, 0, 0.0, 0, status
    return objective * rows, correct, rows, 1, 0.0, 0, OK


@njit(**KERNEL)
def record_epoch(stats, e, loss_acc, terms, correct, steps, aux_acc, aux_count):
    """stats[e] = (objective summed over ``terms`` / terms, number correct,
    updates applied, aux_acc / aux_count or NaN when aux_count is 0)."""
    stats[e, 0] = loss_acc / max(terms, 1)
    stats[e, 1] = correct
    stats[e, 2] = steps
    stats[e, 3] = aux_acc / aux_count if aux_count > 0 else np.nan


# inlined (Numba IR) into each trainer's entry point: every function compiled
# separately re-optimizes and re-emits the machine code of all it calls, so
# one layer less between the entry point and the step is one full pass over
# the step's code less at compile time
@njit(inline="always", error_model="numpy")
def run_epochs(args, data, plan, stats):
    """Train ``plan.n_epochs`` epochs with the step registered for ``type(args)``.

    Epoch e of the run (``plan.first_epoch`` + local index) visits the samples
    in ``data.order`` shuffled from (seed, e) alone (when ``plan.shuffle``),
    so a run's result does not depend on how its epochs are split into calls.
    Each epoch makes ``plan.passes`` passes over that order.

    Parameters
    ----------
    args : the step's namedtuple of arrays
    data : EpochData
    plan : EpochPlan
    stats : float64 (n_epochs, 4)
        Receives per epoch the mean objective over loss terms, the number
        correct, the number of updates applied and the mean of the step's
        second statistic (NaN when it has none), all of the last pass.

    Returns
    -------
    status : int
        OK, or the failure code of the step that stopped training.
    epochs_done : int
        Epochs completed (the failing one is not counted; its row of ``stats``
        holds what its pass did before failing).
    """
    X, labels, targets, order, xb, lb, tb = data
    n_epochs, shuffle, seed, first_epoch, batch_size, passes = plan
    n = X.shape[0]
    for e in range(n_epochs):
        if shuffle:
            shuffle_in_place(order, epoch_seed(seed, first_epoch + e))
        for phase in range(passes):
            loss_acc = 0.0
            correct = 0.0
            terms = ZERO
            steps = ZERO
            aux_acc = 0.0
            aux_count = ZERO
            for start in range(0, n, batch_size):
                rows = min(batch_size, n - start)
                l, c, t, u, a, ac, status = batch_step(args, X, labels, targets, order, xb, lb,
                                                       tb, start, rows, phase)
                loss_acc += l
                correct += c
                terms += t
                steps += u
                aux_acc += a
                aux_count += ac
                if status != OK:
                    record_epoch(stats, e, loss_acc, terms, correct, steps, aux_acc, aux_count)
                    return status, e
        record_epoch(stats, e, loss_acc, terms, correct, steps, aux_acc, aux_count)
    return OK, n_epochs

"""Kernels of the synthetic-gradient trainer's concurrent schedule: one
layer group per thread (see :mod:`alternatives._sg_concurrent`). The entry
points, :func:`lower_work` and :func:`top_work`, release the GIL. The
locked schedule's kernels, which these reuse, are in
:mod:`alternatives._sg_kernels`.

A group is layers a..b of the model run as a sub-MLP with its own flat buffer
(W_a..W_b then b_a..b_b, exactly the sub-MLP's layout), grads, optimizer
state and hyper vector: a :data:`GroupArgs`. A lower group's last layer is a
decoupled hidden layer; its module (a :data:`ModuleArgs`) belongs to it. Each
group gathers its batch's context (and the bottom group its inputs) into its
own buffers: the ``xb``, ``lb``, ``tb`` of its
:data:`fastbp.kernels.epochs.EpochData`. Its :data:`Channels` are the blocks
it exchanges with the groups next to it.

Python calls :func:`lower_work` (or :func:`top_work`) a few times per batch
with the group's bundles as ``parts``: a plain tuple of plain tuples (the
fields of an EpochData, a GroupArgs, a ModuleArgs and a Channels), which the
kernel names again. Numba types a plain tuple of arrays in C on every call
and a namedtuple in Python (about 1 us more per bundle and call), so only
the kernels see the names.
"""
from collections import namedtuple

from numba import njit

from fastbp.kernels.activations import backprop_activation
from fastbp.kernels.codes import KERNEL, OK, ZERO
from fastbp.kernels.epochs import EpochData, gather_batch
from fastbp.kernels.linalg import gemm_nn
from fastbp.kernels.losses import loss_and_delta
from fastbp.kernels.mlp import backward, forward, max_width, n_weights, output_offsets
from fastbp.kernels.optim import LOSS, finish_step

from ._sg_kernels import Module, module_backward, module_forward, residual

#: kernels run by the worker threads release the GIL
NOGIL = dict(KERNEL, nogil=True)

#: One layer group: the fields of its StepArrays (private copies of its
#: layers and their optimizer state), its workspace ``ws``, its sub-MLP
#: ``layout`` and ``blas``.
GroupArgs = namedtuple("GroupArgs", "params grads state opt_hyper train_hyper ws layout blas")

#: A lower group's module: the fields of its StepArrays, its width ``n``,
#: hidden units ``m`` and context width ``k`` (see
#: :data:`alternatives._sg_kernels.Module`), the prediction ``pbuf`` (rows, n)
#: of the batch going down, the prediction ``qbuf`` recomputed for the
#: module's update, the scratch blocks ``zbuf``, ``dzbuf`` (rows, m) and
#: ``rbuf`` (rows, n), and ``blas``.
ModuleArgs = namedtuple("ModuleArgs", "params grads state opt_hyper train_hyper n m k pbuf qbuf "
                                      "zbuf dzbuf rbuf blas")

#: A group's channels, each ``slots`` blocks of ``batch_size`` rows, batch t
#: in block t % slots: ``src`` its input (the output channel of the group
#: below; the bottom group's is its own ``xb``, one block), ``out`` its output
#: for the group above and ``targets`` its module's targets from the group
#: above (lower groups), ``grad`` the gradient at its input for the module of
#: the group below (not the bottom group's); ``bottom`` whether the group
#: starts at layer 1.
Channels = namedtuple("Channels", "src out targets grad batch_size slots bottom")


@njit(inline="always", **KERNEL)
def update(step, nw, data_loss):
    """:func:`fastbp.kernels.optim.finish_step` on the StepArrays fields of a
    bundle."""
    return finish_step(step.params, step.grads, step.state, step.opt_hyper, step.train_hyper,
                       nw, data_loss)


@njit(inline="always", **KERNEL)
def as_module(mod):
    """The :data:`alternatives._sg_kernels.Module` of a ModuleArgs."""
    return Module(mod.params, mod.grads, mod.n, mod.m, mod.k)


@njit(inline="always", **KERNEL)
def span(data, chan, t):
    """(start, rows) of batch t in data.order."""
    start = t * chan.batch_size
    return start, min(chan.batch_size, data.X.shape[0] - start)


@njit(inline="always", **KERNEL)
def block(chan, t, width):
    """Offset of batch t's block in a channel of ``width`` columns."""
    return (t % chan.slots) * chan.batch_size * width


@njit(inline="always", **KERNEL)
def input_offset(chan, t, width):
    """Offset of batch t's input in chan.src."""
    return ZERO if chan.bottom else block(chan, t, width)


@njit(inline="always", **KERNEL)
def gather_context(data, start, rows):
    """Labels (or target rows) of samples order[start:start + rows] into data.lb
    (data.tb)."""
    labels, targets, order, lb, tb = data.labels, data.targets, data.order, data.lb, data.tb
    if labels.shape[0] > 0:
        for i in range(rows):
            lb[i] = labels[order[start + i]]
    else:
        for i in range(rows):
            src = order[start + i]
            for j in range(targets.shape[1]):
                tb[i, j] = targets[src, j]


@njit(inline="always", **KERNEL)
def input_gradient(grp, down, d0, rows):
    """After fastbp's :func:`backward` on the group: down[d0:] (rows, n_in) =
    rows * delta_1 W_1, the per-sample gradient at the group's input."""
    layout, ws = grp.layout, grp.ws
    # backward swaps its two delta buffers once per layer below the top
    cur = output_offsets(layout, rows)[2]
    if (layout[0] - 1) % 2 == 1:
        cur += rows * max_width(layout)
    nin = layout[1]
    gemm_nn(ws, cur, grp.params, 0, down, d0, rows, nin, layout[2], grp.blas)
    scale = 1.0 * rows
    for j in range(rows * nin):
        down[d0 + j] *= scale


@njit(inline="always", **KERNEL)
def lower_forward(data, grp, mod, chan, t):
    """A lower group's forward half of batch t: its input (gathered from
    data.X into data.xb, which is chan.src, for the bottom group), its layers,
    its output h copied to batch t's block of chan.out for the group above,
    and its module's prediction into mod.pbuf (rows, n)."""
    start, rows = span(data, chan, t)
    if chan.bottom:
        gather_batch(data.X, data.labels, data.targets, data.order, start, rows, data.xb,
                     data.lb, data.tb)
    else:
        gather_context(data, start, rows)
    layout, ws = grp.layout, grp.ws
    forward(chan.src[input_offset(chan, t, layout[1]):], rows, grp.params, layout, ws, grp.blas)
    n = layout[layout[0] + 1]
    h_off = output_offsets(layout, rows)[0]
    up, u0 = chan.out, block(chan, t, n)
    for j in range(rows * n):
        up[u0 + j] = ws[h_off + j]
    module_forward(as_module(mod), up, u0, data.lb, data.tb, mod.pbuf, ZERO, mod.zbuf, ZERO, rows,
                   mod.blas)


@njit(inline="always", **KERNEL)
def lower_backward(grp, pbuf, chan, t, rows):
    """A lower group's backward half of batch t: the prediction in pbuf (per
    sample) divided by rows goes through f'(a) of the group's last layer and
    back through the group from its input; the group's input gradient (times
    rows) goes to batch t's block of chan.grad unless the group is the
    bottom one; then the group's update. Returns (objective: the group's
    weight penalty, status)."""
    layout, ws = grp.layout, grp.ws
    Lg = layout[0]
    nin, n = layout[1], layout[Lg + 1]
    h_off, _, d_off = output_offsets(layout, rows)
    inv_b = 1.0 / rows
    for j in range(rows * n):
        ws[d_off + j] = pbuf[j] * inv_b
    backprop_activation(ws, h_off, ws, d_off, rows, n, layout[2 * Lg + 1])
    backward(chan.src[input_offset(chan, t, nin):], rows, grp.params, grp.grads, layout, ws,
             grp.blas)
    if not chan.bottom:
        input_gradient(grp, chan.grad, block(chan, t, nin), rows)
    return update(grp, n_weights(layout), 0.0)


@njit(inline="always", **KERNEL)
def module_step(data, mod, chan, s):
    """One update of a lower group's module on the stored batch s: inputs
    (its block of chan.out) and context of its samples, target (its block of
    chan.targets), prediction recomputed with the module's current parameters.
    Returns (module loss, status)."""
    start, rows = span(data, chan, s)
    gather_context(data, start, rows)
    mm = as_module(mod)
    h0 = block(chan, s, mm.n)
    module_forward(mm, chan.out, h0, data.lb, data.tb, mod.qbuf, ZERO, mod.zbuf, ZERO, rows,
                   mod.blas)
    loss = residual(mod.qbuf, ZERO, chan.targets, h0, mod.rbuf, ZERO, rows, mm.n)
    module_backward(mm, chan.out, h0, data.lb, data.tb, mod.rbuf, ZERO, mod.zbuf, ZERO, mod.dzbuf,
                    rows, mod.blas)
    return update(mod, ZERO, loss)


@njit(**NOGIL)
def lower_work(parts, s, t, f):
    """A lower group's work between two messages, in this order: the update
    of its module on batch s, the backward half of batch t and the forward
    half of batch f (:func:`module_step`, :func:`lower_backward`,
    :func:`lower_forward`), each skipped when its batch is negative.

    Parameters
    ----------
    parts : tuple
        The fields of the group's EpochData, GroupArgs, ModuleArgs and
        Channels, each a plain tuple.
    s, t, f : int

    Returns
    -------
    (module loss summed over batch s's samples, objective summed over batch
    t's samples, status): on failure the sums of what was applied before it.
    """
    data, grp = EpochData(*parts[0]), GroupArgs(*parts[1])
    mod, chan = ModuleArgs(*parts[2]), Channels(*parts[3])
    sg_sum = 0.0
    obj_sum = 0.0
    if s >= 0:
        loss, status = module_step(data, mod, chan, s)
        if status != OK:
            return sg_sum, obj_sum, status
        sg_sum = loss * span(data, chan, s)[1]
    if t >= 0:
        rows = span(data, chan, t)[1]
        obj, status = lower_backward(grp, mod.pbuf, chan, t, rows)
        if status != OK:
            return sg_sum, obj_sum, status
        obj_sum = obj * rows
    if f >= 0:
        lower_forward(data, grp, mod, chan, f)
    return sg_sum, obj_sum, OK


@njit(**NOGIL)
def top_work(parts, t):
    """The top group's whole batch t: forward from its block of chan.src,
    loss, backward, the per-sample input gradient into its block of chan.grad
    (the target of the module below), update. ``parts`` holds the fields of
    its EpochData, GroupArgs and Channels, each a plain tuple.

    Returns (objective summed over the batch's samples, number correct,
    status)."""
    data, grp, chan = EpochData(*parts[0]), GroupArgs(*parts[1]), Channels(*parts[2])
    start, rows = span(data, chan, t)
    gather_context(data, start, rows)
    layout, ws = grp.layout, grp.ws
    x = chan.src[block(chan, t, layout[1]):]
    forward(x, rows, grp.params, layout, ws, grp.blas)
    h_off, a_off, d_off = output_offsets(layout, rows)
    Lg = layout[0]
    loss_sum, correct = loss_and_delta(ws, a_off, h_off, d_off, rows, layout[Lg + 1], data.lb,
                                       data.tb, int(grp.train_hyper[LOSS]), layout[2 * Lg + 1])
    backward(x, rows, grp.params, grp.grads, layout, ws, grp.blas)
    input_gradient(grp, chan.grad, block(chan, t, layout[1]), rows)
    obj, status = update(grp, n_weights(layout), loss_sum / rows)
    return obj * rows, correct, status

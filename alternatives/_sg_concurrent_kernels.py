"""Kernels of the synthetic-gradient trainer's concurrent schedule: one
layer group per thread (see :mod:`alternatives._sg_concurrent`). Every kernel
here releases the GIL. The locked schedule's kernels, which these reuse, are in
:mod:`alternatives._sg_kernels`.

A group is layers a..b of the model run as a sub-MLP with its own flat buffer
(W_a..W_b then b_a..b_b, exactly the sub-MLP's layout), grads, optimizer
state and hyper vector: a :data:`GroupArgs`. A lower group's last layer is a
decoupled hidden layer; its module (a :data:`ModuleArgs`) belongs to it. Each
group gathers its batch's context (and the bottom group its inputs) into its
own buffers: the ``xb``, ``lb``, ``tb`` of its
:data:`fastbp.kernels.epochs.EpochData`.
"""
from collections import namedtuple

from numba import njit

from fastbp.kernels.activations import backprop_activation
from fastbp.kernels.codes import KERNEL, ZERO
from fastbp.kernels.epochs import gather_batch
from fastbp.kernels.linalg import gemm_nn
from fastbp.kernels.losses import loss_and_delta
from fastbp.kernels.mlp import backward, forward, max_width, n_weights, output_offsets
from fastbp.kernels.optim import LOSS, finish_step

from ._sg_kernels import Module, module_backward, module_forward, residual

#: kernels run by the worker threads release the GIL
NOGIL = dict(KERNEL, nogil=True)

# The bundles are flat (the fields of a StepArrays first, then the rest):
# these kernels are called from Python several times per batch, and Numba
# types a nested namedtuple argument more slowly on every call.

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


@njit(**KERNEL)
def update(step, nw, data_loss):
    """:func:`fastbp.kernels.optim.finish_step` on the StepArrays fields of a
    bundle."""
    return finish_step(step.params, step.grads, step.state, step.opt_hyper, step.train_hyper,
                       nw, data_loss)


@njit(**KERNEL)
def as_module(mod):
    """The :data:`alternatives._sg_kernels.Module` of a ModuleArgs."""
    return Module(mod.params, mod.grads, mod.n, mod.m, mod.k)


@njit(**KERNEL)
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


@njit(**KERNEL)
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


@njit(**NOGIL)
def lower_forward(data, grp, mod, bottom, src, s0, up, u0, start, rows):
    """A lower group's forward half of one batch: its input (gathered from
    data.X into data.xb, which is ``src``, when ``bottom``, else src[s0:]),
    its layers, its output h copied to up[u0:] (rows, n) for the group above,
    and its module's prediction into mod.pbuf (rows, n)."""
    if bottom:
        gather_batch(data.X, data.labels, data.targets, data.order, start, rows, data.xb,
                     data.lb, data.tb)
    else:
        gather_context(data, start, rows)
    layout, ws = grp.layout, grp.ws
    forward(src[s0:], rows, grp.params, layout, ws, grp.blas)
    n = layout[layout[0] + 1]
    h_off = output_offsets(layout, rows)[0]
    for j in range(rows * n):
        up[u0 + j] = ws[h_off + j]
    module_forward(as_module(mod), up, u0, data.lb, data.tb, mod.pbuf, ZERO, mod.zbuf, ZERO, rows,
                   mod.blas)


@njit(**NOGIL)
def lower_backward(grp, pbuf, bottom, src, s0, down, d0, rows):
    """A lower group's backward half: the prediction in pbuf (per sample)
    divided by rows goes through f'(a) of the group's last layer and back
    through the group from its input src[s0:]; the group's input gradient
    (times rows) goes to down[d0:] unless ``bottom``; then the group's update.
    Returns (objective: the group's weight penalty, status)."""
    layout, ws = grp.layout, grp.ws
    Lg = layout[0]
    n = layout[Lg + 1]
    h_off, _, d_off = output_offsets(layout, rows)
    inv_b = 1.0 / rows
    for j in range(rows * n):
        ws[d_off + j] = pbuf[j] * inv_b
    backprop_activation(ws, h_off, ws, d_off, rows, n, layout[2 * Lg + 1])
    backward(src[s0:], rows, grp.params, grp.grads, layout, ws, grp.blas)
    if not bottom:
        input_gradient(grp, down, d0, rows)
    return update(grp, n_weights(layout), 0.0)


@njit(**NOGIL)
def top_step(data, grp, src, s0, down, d0, start, rows):
    """The top group's whole batch: forward from src[s0:], loss, backward, the
    per-sample input gradient into down[d0:] (the target of the module below),
    update. Returns (objective, number correct, status)."""
    gather_context(data, start, rows)
    layout, ws = grp.layout, grp.ws
    x = src[s0:]
    forward(x, rows, grp.params, layout, ws, grp.blas)
    h_off, a_off, d_off = output_offsets(layout, rows)
    Lg = layout[0]
    loss_sum, correct = loss_and_delta(ws, a_off, h_off, d_off, rows, layout[Lg + 1], data.lb,
                                       data.tb, int(grp.train_hyper[LOSS]), layout[2 * Lg + 1])
    backward(x, rows, grp.params, grp.grads, layout, ws, grp.blas)
    input_gradient(grp, down, d0, rows)
    obj, status = update(grp, n_weights(layout), loss_sum / rows)
    return obj, correct, status


@njit(**NOGIL)
def module_step(data, mod, h, h0, tgt, t0, start, rows):
    """One update of a lower group's module on a stored batch: inputs h[h0:]
    (rows, n) and context of samples order[start:start + rows], target
    tgt[t0:] (rows, n), prediction recomputed with the module's current
    parameters. Returns (module loss, status)."""
    gather_context(data, start, rows)
    mm = as_module(mod)
    module_forward(mm, h, h0, data.lb, data.tb, mod.qbuf, ZERO, mod.zbuf, ZERO, rows, mod.blas)
    loss = residual(mod.qbuf, ZERO, tgt, t0, mod.rbuf, ZERO, rows, mm.n)
    module_backward(mm, h, h0, data.lb, data.tb, mod.rbuf, ZERO, mod.zbuf, ZERO, mod.dzbuf, rows,
                    mod.blas)
    return update(mod, ZERO, loss)

"""Kernels of the synthetic-gradient trainer's concurrent schedule: one
layer group per thread (see :mod:`alternatives._sg_concurrent`). Every kernel
here releases the GIL. The locked schedule's kernels, which these reuse, are in
:mod:`alternatives._sg_kernels`.
"""
from numba import njit

from fastbp.kernels.activations import backprop_activation
from fastbp.kernels.codes import KERNEL
from fastbp.kernels.epochs import gather_batch
from fastbp.kernels.linalg import gemm_nn
from fastbp.kernels.losses import loss_and_delta
from fastbp.kernels.mlp import backward, forward, max_width, n_weights, output_offsets
from fastbp.kernels.optim import LOSS, finish_step

from ._sg_kernels import hidden_offset, module_backward, module_forward, residual

#: kernels run by the worker threads release the GIL
NOGIL = dict(KERNEL, nogil=True)

# -- the concurrent schedule: one layer group per thread ---------------------------------
# A group is layers a..b of the model run as a sub-MLP with its own flat buffer
# (W_a..W_b then b_a..b_b, exactly the sub-MLP's layout ``glayout``), grads,
# optimizer state and hyper vector. A lower group's last layer is a decoupled
# hidden layer; its module (params mp, grads mg, state ms, hyper mh) belongs to
# it. Every kernel here releases the GIL.

@njit(**KERNEL)
def gather_context(labels, targets, order, start, rows, lb, tb):
    """Labels (or target rows) of samples order[start:start + rows] into lb (tb)."""
    if labels.shape[0] > 0:
        for i in range(rows):
            lb[i] = labels[order[start + i]]
    else:
        for i in range(rows):
            src = order[start + i]
            for j in range(targets.shape[1]):
                tb[i, j] = targets[src, j]


@njit(**KERNEL)
def input_gradient(rows, gp, glayout, gws, down, d0, blas):
    """After fastbp's :func:`backward` on the group: down[d0:] (rows, n_in) =
    rows * delta_1 W_1, the per-sample gradient at the group's input."""
    Lg = glayout[0]
    total_h = hidden_offset(glayout, rows, Lg + 1)
    cur = total_h + rows * glayout[Lg + 1]
    if (Lg - 1) % 2 == 1:
        cur += rows * max_width(glayout)
    nin = glayout[1]
    gemm_nn(gws, cur, gp, 0, down, d0, rows, nin, glayout[2], blas)
    scale = 1.0 * rows
    for j in range(rows * nin):
        down[d0 + j] *= scale


@njit(**NOGIL)
def lower_forward(X, labels, targets, order, start, rows, bottom, src, s0, xb, lb, tb, gp, gws,
                  glayout, up, u0, mp, pbuf, zbuf, m, k, cond, blas):
    """A lower group's forward half of one batch: its input (gathered from X
    when ``bottom``, else src[s0:]), its layers, its output h copied to
    up[u0:] (rows, n) for the group above, and its module's prediction into
    pbuf (rows, n)."""
    Lg = glayout[0]
    n = glayout[Lg + 1]
    if bottom:
        gather_batch(X, labels, targets, order, start, rows, xb, lb, tb)
        forward(xb, rows, gp, glayout, gws, blas)
    else:
        gather_context(labels, targets, order, start, rows, lb, tb)
        forward(src[s0:], rows, gp, glayout, gws, blas)
    h_off, _, _ = output_offsets(glayout, rows)
    for j in range(rows * n):
        up[u0 + j] = gws[h_off + j]
    module_forward(up, u0, rows, n, mp, 0, m, k, cond, lb, tb, pbuf, 0, zbuf, 0, blas)


@njit(**NOGIL)
def lower_backward(rows, bottom, src, s0, xb, gp, gg, gs, gh, gtrain, gws, glayout, pbuf, down,
                   d0, blas):
    """A lower group's backward half: the prediction in pbuf (per sample)
    divided by rows goes through f'(a) of the group's last layer and back
    through the group; the group's input gradient (times rows) goes to
    down[d0:] unless ``bottom``; then the group's update. Returns (objective:
    the group's weight penalty, status)."""
    Lg = glayout[0]
    n = glayout[Lg + 1]
    h_off, _, d_off = output_offsets(glayout, rows)
    inv_b = 1.0 / rows
    for j in range(rows * n):
        gws[d_off + j] = pbuf[j] * inv_b
    backprop_activation(gws, h_off, gws, d_off, rows, n, glayout[2 * Lg + 1])
    if bottom:
        backward(xb, rows, gp, gg, glayout, gws, blas)
    else:
        backward(src[s0:], rows, gp, gg, glayout, gws, blas)
        input_gradient(rows, gp, glayout, gws, down, d0, blas)
    return finish_step(gp, gg, gs, gh, gtrain, n_weights(glayout), 0.0)


@njit(**NOGIL)
def top_step(labels, targets, order, start, rows, src, s0, lb, tb, gp, gg, gs, gh, gtrain, gws,
             glayout, down, d0, blas):
    """The top group's whole batch: forward from src[s0:], loss, backward, the
    per-sample input gradient into down[d0:] (the target of the module below),
    update. Returns (objective, number correct, status)."""
    gather_context(labels, targets, order, start, rows, lb, tb)
    x = src[s0:]
    forward(x, rows, gp, glayout, gws, blas)
    h_off, a_off, d_off = output_offsets(glayout, rows)
    Lg = glayout[0]
    loss_sum, correct = loss_and_delta(gws, a_off, h_off, d_off, rows, glayout[Lg + 1], lb, tb,
                                       int(gtrain[LOSS]), glayout[2 * Lg + 1])
    backward(x, rows, gp, gg, glayout, gws, blas)
    input_gradient(rows, gp, glayout, gws, down, d0, blas)
    obj, status = finish_step(gp, gg, gs, gh, gtrain, n_weights(glayout), loss_sum / rows)
    return obj, correct, status


@njit(**NOGIL)
def module_step(labels, targets, order, start, rows, h, h0, tgt, t0, n, mp, mg, ms, mh, mtrain,
                lb, tb, pbuf, zbuf, dzbuf, rbuf, m, k, cond, blas):
    """One update of a lower group's module on a stored batch: inputs h[h0:]
    (rows, n) and context of samples order[start:start + rows], target
    tgt[t0:] (rows, n), prediction recomputed with the module's current
    parameters. Returns (module loss, status)."""
    gather_context(labels, targets, order, start, rows, lb, tb)
    module_forward(h, h0, rows, n, mp, 0, m, k, cond, lb, tb, pbuf, 0, zbuf, 0, blas)
    loss = residual(pbuf, 0, tgt, t0, rbuf, 0, rows, n)
    module_backward(h, h0, rows, n, mp, mg, 0, m, k, cond, lb, tb, rbuf, 0, zbuf, 0, dzbuf, 0,
                    blas)
    return finish_step(mp, mg, ms, mh, mtrain, 0, loss)

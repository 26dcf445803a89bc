"""Kernels of synthetic-gradient truncated BPTT for Elman networks (Jaderberg
et al. 2017, section 3.1): the network kernels of :mod:`fastbp.kernels.rnn`
plus a synthetic-gradient module M, a small MLP (h -> [hidden ->] h) stored
with :mod:`fastbp.kernels.mlp`'s layout, that predicts the gradient of all
future losses with respect to a state.

Per window (t0, t1] of ``k`` steps, the state h_{t0} carried in::

    forward h_{t0+1}..h_{t1}; window loss J_w (mean over its loss terms)
    inject  dJ/dh_{t1} += scale * M(h_{t1}) / rows      (only when t1 < T and
                                                         the warm-up is over)
    BPTT    through the window; g_{t0} = dJ/dh_{t0} (the carry out)
    update  the network along the window's gradient
    train M on (h_{t0}, rows * g_{t0})   for t0 > 0: squared error, own optimizer

M predicts per-sequence gradients (the gradient of J_w times the batch size),
so its targets do not depend on the batch size. ``g_{t0}`` contains the
injected prediction at h_{t1} pushed back through the window: M's target is
bootstrapped in time. During the warm-up nothing is injected, so the network
update is exactly plain truncated BPTT's, and M learns the one-window
gradient.
"""
from collections import namedtuple

import numpy as np
from numba import njit

from fastbp.kernels.codes import KERNEL, OK, SQUARED_ERROR, ZERO
from fastbp.kernels.epochs import register_batch_step, run_epochs
from fastbp.kernels.mlp import forward as mlp_forward
from fastbp.kernels.mlp import loss_gradients as mlp_loss_gradients
from fastbp.kernels.mlp import output_offsets
from fastbp.kernels.optim import LOSS, finish_step, finish_steps
from fastbp.kernels.optim import T as STEP_COUNT
from fastbp.kernels.rnn import (
    HID,
    backward_window,
    forward_window,
    gather_sequences,
    n_weights,
    offsets,
    window_loss,
    zero_initial_state,
)

#: The arrays of a synthetic-gradient TBPTT step: the network's and M's
#: StepArrays, the workspace ``ws``, the ``layout``, the window ``truncate``,
#: M's workspace ``mws`` and layout ``mlayout``, its empty labels ``mlabels``,
#: its target rows ``mtargets`` (rows, h), the ``inject`` buffer (rows * h,),
#: the injection ``scale``, the ``warmup`` in network updates, ``blas`` and
#: M's ``mblas``.
SGTBPTTArgs = namedtuple("SGTBPTTArgs", "step m ws layout truncate mws mlayout mlabels "
                                        "mtargets inject scale warmup blas mblas")


@njit(**KERNEL)
def predict_gradient(states, rows, mparams, mlayout, mws, out, mblas):
    """out (rows * h,) = M(states) for a flat (rows, h) block of states."""
    mlp_forward(states, rows, mparams, mlayout, mws, mblas)
    h_off = output_offsets(mlayout, rows)[0]
    n = out.shape[0]
    for j in range(n):
        out[j] = mws[h_off + j]


# inlined: a call per window passing the whole argument bundle measured 8% on
# the h16-T100-b1 step
@njit(inline="always", **KERNEL)
def train_window(args, rows, T, t0, t1, lb, tb, apply, acc):
    """Window (t0, t1] of a gathered batch (see the module docstring), the
    state h_{t0} in the workspace. With ``apply`` False nothing is updated:
    the window's gradient (from the current parameters, injection included
    once the warm-up is over) is added to ``acc`` instead.

    Returns (objective times the window's loss terms, number correct, loss
    terms, network updates, M's squared error summed over rows, rows M
    trained on, status), nothing counted but the status on failure.
    """
    main, mset, ws, layout = args.step, args.m, args.ws, args.layout
    params, grads = main.params, main.grads
    h = layout[HID]
    blk = rows * h
    hs, z = offsets(layout, rows, T)[3:5]
    forward_window(params, layout, ws, rows, T, t0, t1, args.blas)
    loss, c, n = window_loss(ws, layout, rows, T, t0, t1, lb, tb, int(main.train_hyper[LOSS]))
    injecting = t1 < T and main.opt_hyper[STEP_COUNT] >= args.warmup
    train_m = apply and t0 > 0
    # the network learns from a window with a loss or an injected gradient
    learn = n > 0 or injecting
    if not learn and not train_m:
        return 0.0, 0.0, 0, 0, 0.0, 0, OK
    inject = args.inject[:blk if injecting else 0]
    if injecting:
        last = hs + t1 * blk
        predict_gradient(ws[last:last + blk], rows, mset.params, args.mlayout, args.mws, inject,
                         args.mblas)
        factor = args.scale / rows
        for j in range(blk):
            inject[j] *= factor
    backward_window(params, grads, layout, ws, rows, T, t0, t1, ZERO, inject, train_m,
                    args.blas)
    if not apply:
        if learn:
            for j in range(acc.shape[0]):
                acc[j] += grads[j]
        return 0.0, 0.0, 0, 0, 0.0, 0, OK
    m_loss = 0.0
    if train_m:
        mtargets = args.mtargets
        for r in range(rows):
            for j in range(h):
                mtargets[r, j] = rows * ws[z + r * h + j]
        first = hs + t0 * blk
        m_loss, _ = mlp_loss_gradients(ws[first:first + blk], args.mlabels, mtargets, rows,
                                       mset.params, mset.grads, args.mws, args.mlayout,
                                       np.int64(SQUARED_ERROR), args.mblas)
    # the network and M update together, all or nothing
    if learn:
        obj, status = finish_steps(main, n_weights(layout), loss / n if n > 0 else 0.0, mset,
                                   m_loss / rows, train_m)
    else:
        obj, status = finish_step(mset.params, mset.grads, mset.state, mset.opt_hyper,
                                  mset.train_hyper, ZERO, m_loss / rows)
    if status != OK:
        return 0.0, 0.0, 0, 0, 0.0, 0, status
    if not learn:
        return 0.0, 0.0, 0, 0, m_loss, rows, OK        # M alone trained
    return obj * n, c, n, 1, m_loss, rows if train_m else 0, OK


@njit(**KERNEL)
def train_batch(args, rows, T, lb, tb, apply, acc):
    """One gathered batch of synthetic-gradient truncated BPTT: its windows
    in order (:func:`train_window`), the state carried across.

    Returns the sums over the windows of :func:`train_window`'s counts, and
    the status (on failure, what the windows before the failing one did).
    """
    zero_initial_state(args.ws, args.layout, rows, T)
    k = args.truncate
    total = (0.0, 0.0, 0, 0, 0.0, 0)
    for t0 in range(0, T, k):
        r = train_window(args, rows, T, t0, min(t0 + k, T), lb, tb, apply, acc)
        if r[6] != OK:
            return total + (r[6],)
        total = (total[0] + r[0], total[1] + r[1], total[2] + r[2], total[3] + r[3],
                 total[4] + r[4], total[5] + r[5])
    return total + (OK,)


@njit(**KERNEL)
def train_step(args, X, labels, targets, order, lb, tb, apply, acc):
    """:func:`train_batch` on the batch X (rows, T, i) (``order`` (0,): in
    order). Returns (mean objective over loss terms, number correct, status,
    M's mean squared error over the rows it trained on, or -1 if none)."""
    rows, T = X.shape[0], X.shape[1]
    gather_sequences(X, labels, targets, order, ZERO, rows, args.ws,
                     offsets(args.layout, rows, T)[2], lb, tb)
    loss_acc, correct, terms, updates, m_err, m_rows, status = train_batch(
        args, rows, T, lb, tb, apply, acc)
    return loss_acc / max(terms, 1), correct, status, m_err / m_rows if m_rows else -1.0


@njit(**KERNEL)
def sg_tbptt_batch(args, X, labels, targets, order, xb, lb, tb, start, rows, phase):
    """The epoch driver's step (see :mod:`fastbp.kernels.epochs`); its second
    statistic is M's squared error per row."""
    T = X.shape[1]
    gather_sequences(X, labels, targets, order, start, rows, args.ws,
                     offsets(args.layout, rows, T)[2], lb, tb)
    return train_batch(args, rows, T, lb, tb, np.bool_(True), args.step.params[:0])


register_batch_step(SGTBPTTArgs, sg_tbptt_batch)


@njit(**KERNEL)
def train_epochs(args, data, plan, stats):
    """Whole epochs of synthetic-gradient TBPTT in one call: see
    :func:`fastbp.kernels.epochs.run_epochs`; ``stats[:, 3]`` receives M's mean
    squared error per row of each epoch (NaN when M did not train)."""
    return run_epochs(args, data, plan, stats)

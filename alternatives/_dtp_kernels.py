"""Numba kernels of difference target propagation (Lee et al. 2015), built on
fastbp's MLP kernels.

Conventions are those of :mod:`fastbp.kernels.mlp` (flat ``params``/``grads``
buffers, weights first then biases; flat row-major batch ``x``; the workspace
``ws`` holding H_1..H_L, A_L and the delta buffers; ``blas`` None or 1).

``inv`` is the trainer's flat buffer of inverse parameters for the hidden
layers l = 2..L-1: V_2..V_{L-1} first (V_l of shape (n_{l-1}, n_l), row-major),
then c_2..c_{L-1} (c_l of shape (n_{l-1},)). The inverse of layer l is
g_l(h) = f_inv(V_l h + c_l) with f_inv = tanh (or identity, ``inv_code``).

``tw`` is the trainer's target workspace of 4 * rows * max(n_1..n_L) entries:
four (rows, max width) blocks.

Per-sample equations (rows are samples; the loss L is the per-sample loss):

* top target  h^_{L-1} = h_{L-1} - target_step * dL/dh_{L-1}
* lower targets  h^_{l-1} = h_{l-1} + g_l(h^_l) - g_l(h_l)  (difference), or
  g_l(h^_l) (plain TP)
* hidden layer l minimises mean_batch 1/2 ||h_l - h^_l||^2 over (W_l, b_l)
  only: delta_l = (h_l - h^_l) / rows * f'(a_l), dW_l = delta_l^T H_{l-1};
  the output layer takes the gradient of the mean loss.
* inverse l minimises mean_batch 1/2 ||g_l(f_l(h_{l-1} + eps)) - (h_{l-1} + eps)||^2
  over (V_l, c_l), eps ~ N(0, sigma^2) drawn from the trainer's own generator.
"""
from collections import namedtuple

from numba import njit

from fastbp.kernels.activations import activate_inplace, backprop_activation
from fastbp.kernels.codes import KERNEL, SOFTMAX, ZERO
from fastbp.kernels.epochs import batch_result, gather_batch, register_batch_step
from fastbp.kernels.linalg import gemm_nn, gemm_nt, gemm_tn
from fastbp.kernels.losses import loss_and_delta
from fastbp.kernels.mlp import (add_bias, bias_activate, bias_gradient, forward, layer_gradient,
                                max_width, n_weights, output_offsets)
from fastbp.kernels.optim import LOSS, finish_step, finish_steps
from fastbp.kernels.random import standard_normal

#: The arrays of a DTP step: the model's and the inverses' StepArrays, the
#: workspace ``ws`` and the target workspace ``tw``, the ``layout``, the
#: target step eta_hat, ``difference`` (bool), the noise ``sigma``, the
#: inverses' activation code, ``alternate`` (bool: the epoch schedule), the
#: noise generator's state ``rng`` and ``blas``.
DTPArgs = namedtuple("DTPArgs", "step inverse ws tw layout target_step difference sigma "
                                "inv_code alternate rng blas")


@njit(**KERNEL)
def inverse_size(layout):
    """Entries of the inverse buffer: sum over l = 2..L-1 of n_{l-1} (n_l + 1)."""
    L = layout[0]
    n = 0
    for l in range(2, L):
        n += layout[l] * (layout[l + 1] + 1)
    return n


@njit(**KERNEL)
def _offsets(layout, rows, l):
    """(W_l offset, b_l offset, H_{l-1} offset (-1 for x), H_l offset) for layer l."""
    woff = 0
    boff = n_weights(layout)
    hoff = 0
    for j in range(1, l):
        woff += layout[j + 1] * layout[j]
        boff += layout[j + 1]
        hoff += rows * layout[j + 1]
    prev = -1 if l == 1 else hoff - rows * layout[l]
    return woff, boff, prev, hoff


@njit(**KERNEL)
def _inv_offsets(layout, l):
    """(V_l offset, c_l offset) in the inverse buffer, l in 2..L-1."""
    L = layout[0]
    nv = 0
    for j in range(2, L):
        nv += layout[j] * layout[j + 1]
    voff = 0
    coff = nv
    for j in range(2, l):
        voff += layout[j] * layout[j + 1]
        coff += layout[j]
    return voff, coff


@njit(**KERNEL)
def layer_apply(src, s0, P, woff, boff, dst, d0, rows, nout, nin, code, blas):
    """dst (rows, nout) = f(src (rows, nin) @ W.T + b), W (nout, nin) at P[woff],
    b at P[boff]; an elementwise f in the same pass as the bias."""
    gemm_nt(src, s0, P, woff, dst, d0, rows, nout, nin, blas)
    if code == SOFTMAX:
        add_bias(dst, d0, P, boff, rows, nout)
        activate_inplace(dst, d0, rows, nout, code)
    else:
        n = rows * nout
        bias_activate(dst[d0:d0 + n], ZERO, P[boff:boff + nout], ZERO, rows, nout, code)


@njit(inline="always", **KERNEL)
def forward_and_output_gradient(args, x, labels, targets, rows):
    """What every target-propagation variant starts with: the forward pass,
    the loss (its delta d(mean loss)/dA_L written at the output delta offset),
    and the output layer's own loss gradient into ``args.step.grads``.
    ``args`` is any step bundle with the fields ``step`` (the model's
    StepArrays), ``ws``, ``layout`` and ``blas``.

    Returns
    -------
    (loss summed over the batch, number correct, offset of the output delta in ws)
    """
    params, grads, ws, layout, blas = args.step.params, args.step.grads, args.ws, args.layout, \
        args.blas
    forward(x, rows, params, layout, ws, blas)
    h_off, a_off, d_off = output_offsets(layout, rows)
    L = layout[0]
    k = layout[L + 1]
    loss_sum, correct = loss_and_delta(ws, a_off, h_off, d_off, rows, k, labels, targets,
                                       int(args.step.train_hyper[LOSS]), layout[2 * L + 1])
    # output layer: gradient of the mean loss
    woff, boff, prev, _ = _offsets(layout, rows, L)
    if L == 1:
        layer_gradient(ws, d_off, x, ZERO, grads, woff, boff, rows, k, layout[L], blas)
    else:
        layer_gradient(ws, d_off, ws, prev, grads, woff, boff, rows, k, layout[L], blas)
    return loss_sum, correct, d_off


@njit(inline="always", **KERNEL)
def target_gradient(args, x, rows, l, tgt, t0, g0):
    """Hidden layer l's local gradient into ``args.step.grads``: with the
    target h^_l the (rows, n_l) block of ``tgt`` at t0, the gradient of
    mean_batch 1/2 ||h_l - h^_l||^2 over (W_l, b_l) only:
    delta_l = (h_l - h^_l) / rows * f'(a_l) (built in ``args.tw`` at g0),
    dW_l = delta_l^T H_{l-1}, db_l = column sums of delta_l."""
    ws, tw, layout = args.ws, args.tw, args.layout
    woff, boff, prev, hoff = _offsets(layout, rows, l)
    nout = layout[l + 1]
    nin = layout[l]
    inv_b = 1.0 / rows
    for i in range(rows * nout):
        tw[g0 + i] = (ws[hoff + i] - tgt[t0 + i]) * inv_b
    backprop_activation(ws, hoff, tw, g0, rows, nout, layout[layout[0] + 1 + l])
    if l == 1:
        layer_gradient(tw, g0, x, ZERO, args.step.grads, woff, boff, rows, nout, nin,
                       args.blas)
    else:
        layer_gradient(tw, g0, ws, prev, args.step.grads, woff, boff, rows, nout, nin,
                       args.blas)


@njit(inline="always", **KERNEL)
def forward_directions(args, x, labels, targets, rows):
    """Forward pass, loss, targets and local gradients of one batch:
    ``args.step.grads`` receives the DTP update direction of the forward
    parameters (no weight decay), from the inverses ``args.inverse.params``.
    Returns (loss summed over the batch, number correct)."""
    loss_sum, correct, d_off = forward_and_output_gradient(args, x, labels, targets, rows)
    params, inv, ws, tw, layout, blas = args.step.params, args.inverse.params, args.ws, \
        args.tw, args.layout, args.blas
    L = layout[0]
    if L == 1:
        return loss_sum, correct
    k = layout[L + 1]
    woff, _, prev, _ = _offsets(layout, rows, L)
    nin = layout[L]
    mw = max_width(layout)
    T = ZERO
    T2 = rows * mw
    G1 = 2 * rows * mw
    G2 = 3 * rows * mw
    # top target: h^_{L-1} = h_{L-1} - step * (per-sample dL/dh_{L-1}); the delta
    # holds d(mean loss)/dA_L, i.e. per-sample gradient / rows
    gemm_nn(ws, d_off, params, woff, tw, T, rows, nin, k, blas)
    scale = args.target_step * rows
    for i in range(rows * nin):
        tw[T + i] = ws[prev + i] - scale * tw[T + i]
    for l in range(L - 1, 0, -1):
        target_gradient(args, x, rows, l, tw, T, G1)
        if l >= 2:
            _, _, prev, hoff = _offsets(layout, rows, l)
            nout = layout[l + 1]
            nin = layout[l]
            voff, coff = _inv_offsets(layout, l)
            layer_apply(tw, T, inv, voff, coff, tw, G1, rows, nin, nout, args.inv_code, blas)
            m = rows * nin
            if args.difference:
                layer_apply(ws, hoff, inv, voff, coff, tw, G2, rows, nin, nout, args.inv_code,
                            blas)
                for i in range(m):
                    tw[T2 + i] = ws[prev + i] + tw[G1 + i] - tw[G2 + i]
            else:
                for i in range(m):
                    tw[T2 + i] = tw[G1 + i]
            T, T2 = T2, T
    return loss_sum, correct


@njit(**KERNEL)
def inverse_directions(args, rows):
    """Denoising gradients of every inverse after :func:`forward` filled
    ``args.ws``: ``args.inverse.grads`` receives d/d(V, c) of the mean
    reconstruction loss, the noise drawn from ``args.rng``. Returns that loss
    (summed over layers, mean over the batch)."""
    params, inv, igrads, ws, tw, layout, blas = args.step.params, args.inverse.params, \
        args.inverse.grads, args.ws, args.tw, args.layout, args.blas
    inv_code = args.inv_code
    L = layout[0]
    mw = max_width(layout)
    N = ZERO
    F = rows * mw
    R = 2 * rows * mw
    D = 3 * rows * mw
    inv_b = 1.0 / rows
    loss = 0.0
    for l in range(2, L):
        woff, boff, prev, hoff = _offsets(layout, rows, l)
        voff, coff = _inv_offsets(layout, l)
        nprev = layout[l]
        nl = layout[l + 1]
        m = rows * nprev
        for i in range(m):
            tw[N + i] = ws[prev + i] + args.sigma * standard_normal(args.rng)
        layer_apply(tw, N, params, woff, boff, tw, F, rows, nl, nprev, layout[L + 1 + l], blas)
        layer_apply(tw, F, inv, voff, coff, tw, R, rows, nprev, nl, inv_code, blas)
        for i in range(m):
            d = tw[R + i] - tw[N + i]
            loss += 0.5 * d * d
            tw[D + i] = d * inv_b
        backprop_activation(tw, R, tw, D, rows, nprev, inv_code)
        gemm_tn(tw, D, tw, F, igrads, voff, rows, nprev, nl, blas)
        bias_gradient(tw, D, igrads, coff, rows, nprev)
    return loss * inv_b


@njit(inline="always", **KERNEL)
def inverse_step(args, x, rows):
    """Forward pass, then one update of the inverses. Returns (loss, status)."""
    inverse = args.inverse
    forward(x, rows, args.step.params, args.layout, args.ws, args.blas)
    loss = inverse_directions(args, rows)
    return finish_step(inverse.params, inverse.grads, inverse.state, inverse.opt_hyper,
                       inverse.train_hyper, ZERO, loss)


@njit(**KERNEL)
def joint_step(args, x, labels, targets, rows, train_inverses):
    """One forward update and (when train_inverses and there is an inverse) one
    inverse update on one batch, both from the same forward pass (the targets use
    the inverses from before the step). Returns (objective, correct, status);
    nothing is updated unless both updates are finite."""
    loss_sum, correct = forward_directions(args, x, labels, targets, rows)
    with_inverse = train_inverses and args.inverse.params.shape[0] > 0
    iloss = 0.0
    if with_inverse:
        iloss = inverse_directions(args, rows)
    obj, status = finish_steps(args.step, n_weights(args.layout), loss_sum / rows, args.inverse,
                               iloss, with_inverse)
    return obj, correct, status


@njit(**KERNEL)
def dtp_batch(args, X, labels, targets, order, xb, lb, tb, start, rows, phase):
    """The epoch driver's step (see :mod:`fastbp.kernels.epochs`). With
    ``args.alternate`` the epoch makes two passes: phase 0 trains the
    inverses (counted in no statistic), phase 1 the forward weights;
    otherwise one pass updates both on every batch."""
    gather_batch(X, labels, targets, order, start, rows, xb, lb, tb)
    if args.alternate and phase == 0:
        _, status = inverse_step(args, xb, rows)
        return 0.0, 0.0, 0, 0, 0.0, 0, status
    return batch_result(joint_step(args, xb, lb, tb, rows, not args.alternate), rows)


register_batch_step(DTPArgs, dtp_batch)

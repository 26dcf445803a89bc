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
  over (V_l, c_l), eps ~ N(0, sigma^2) drawn with Numba's generator.
"""
import numpy as np
from numba import njit

from fastbp.kernels.activations import activate_inplace, backprop_activation
from fastbp.kernels.codes import (KERNEL, OK)
from fastbp.kernels.linalg import gemm_nn, gemm_nt, gemm_tn
from fastbp.kernels.losses import loss_and_delta
from fastbp.kernels.mlp import (add_bias, bias_gradient, epoch_seed, forward, gather_batch,
                                max_width, n_weights, output_offsets, record_epoch,
                                shuffle_in_place)
from fastbp.kernels.optim import LOSS, apply_update, check_step, finish_step


@njit(**KERNEL)
def seed_rng(seed):
    """Seed Numba's generator (the denoising noise)."""
    np.random.seed(seed)


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
    b at P[boff]."""
    gemm_nt(src, s0, P, woff, dst, d0, rows, nout, nin, blas)
    add_bias(dst, d0, P, boff, rows, nout)
    activate_inplace(dst, d0, rows, nout, code)


@njit(**KERNEL)
def forward_and_output_gradient(x, labels, targets, rows, params, grads, ws, layout,
                                loss_code, blas):
    """What every target-propagation variant starts with: the forward pass,
    the loss (its delta d(mean loss)/dA_L written at the output delta offset),
    and the output layer's own loss gradient into ``grads``.

    Returns
    -------
    (loss summed over the batch, number correct, offset of the output delta in ws)
    """
    forward(x, rows, params, layout, ws, blas)
    h_off, a_off, d_off = output_offsets(layout, rows)
    L = layout[0]
    k = layout[L + 1]
    loss_sum, correct = loss_and_delta(ws, a_off, h_off, d_off, rows, k, labels, targets,
                                       loss_code, layout[2 * L + 1])
    # output layer: gradient of the mean loss
    woff, boff, prev, hoff = _offsets(layout, rows, L)
    nin = layout[L]
    if L == 1:
        gemm_tn(ws, d_off, x, 0, grads, woff, rows, k, nin, blas)
    else:
        gemm_tn(ws, d_off, ws, prev, grads, woff, rows, k, nin, blas)
    bias_gradient(ws, d_off, grads, boff, rows, k)
    return loss_sum, correct, d_off


@njit(**KERNEL)
def forward_directions(x, labels, targets, rows, params, inv, grads, ws, tw, layout,
                       loss_code, target_step, difference, inv_code, blas):
    """Forward pass, loss, targets and local gradients of one batch: ``grads``
    receives the DTP update direction of the forward parameters (no weight
    decay). Returns (loss summed over the batch, number correct)."""
    loss_sum, correct, d_off = forward_and_output_gradient(x, labels, targets, rows, params,
                                                           grads, ws, layout, loss_code, blas)
    L = layout[0]
    k = layout[L + 1]
    woff, boff, prev, hoff = _offsets(layout, rows, L)
    nin = layout[L]
    if L == 1:
        return loss_sum, correct
    mw = max_width(layout)
    T = 0
    T2 = rows * mw
    G1 = 2 * rows * mw
    G2 = 3 * rows * mw
    # top target: h^_{L-1} = h_{L-1} - step * (per-sample dL/dh_{L-1}); the delta
    # holds d(mean loss)/dA_L, i.e. per-sample gradient / rows
    gemm_nn(ws, d_off, params, woff, tw, T, rows, nin, k, blas)
    scale = target_step * rows
    for i in range(rows * nin):
        tw[T + i] = ws[prev + i] - scale * tw[T + i]
    inv_b = 1.0 / rows
    for l in range(L - 1, 0, -1):
        woff, boff, prev, hoff = _offsets(layout, rows, l)
        nout = layout[l + 1]
        nin = layout[l]
        n = rows * nout
        for i in range(n):
            tw[G1 + i] = (ws[hoff + i] - tw[T + i]) * inv_b
        backprop_activation(ws, hoff, tw, G1, rows, nout, layout[L + 1 + l])
        if l == 1:
            gemm_tn(tw, G1, x, 0, grads, woff, rows, nout, nin, blas)
        else:
            gemm_tn(tw, G1, ws, prev, grads, woff, rows, nout, nin, blas)
        bias_gradient(tw, G1, grads, boff, rows, nout)
        if l >= 2:
            voff, coff = _inv_offsets(layout, l)
            layer_apply(tw, T, inv, voff, coff, tw, G1, rows, nin, nout, inv_code, blas)
            m = rows * nin
            if difference:
                layer_apply(ws, hoff, inv, voff, coff, tw, G2, rows, nin, nout, inv_code,
                            blas)
                for i in range(m):
                    tw[T2 + i] = ws[prev + i] + tw[G1 + i] - tw[G2 + i]
            else:
                for i in range(m):
                    tw[T2 + i] = tw[G1 + i]
            T, T2 = T2, T
    return loss_sum, correct


@njit(**KERNEL)
def inverse_directions(rows, params, inv, igrads, ws, tw, layout, sigma, inv_code, blas):
    """Denoising gradients of every inverse after :func:`forward` filled ``ws``:
    ``igrads`` receives d/d(V, c) of the mean reconstruction loss. Returns that
    loss (summed over layers, mean over the batch)."""
    L = layout[0]
    mw = max_width(layout)
    N = 0
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
            tw[N + i] = ws[prev + i] + sigma * np.random.standard_normal()
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


@njit(**KERNEL)
def inverse_step(x, rows, params, inv, igrads, istate, ihyper, itrain, ws, tw, layout,
                 sigma, inv_code, blas):
    """Forward pass, then one update of the inverses. Returns (loss, status)."""
    forward(x, rows, params, layout, ws, blas)
    loss = inverse_directions(rows, params, inv, igrads, ws, tw, layout, sigma, inv_code,
                              blas)
    return finish_step(inv, igrads, istate, ihyper, itrain, 0, loss)


@njit(**KERNEL)
def forward_step(x, labels, targets, rows, params, inv, grads, state, opt_hyper, train_hyper,
                 ws, tw, layout, target_step, difference, inv_code, blas):
    """One update of the forward parameters. Returns (objective, correct, status)."""
    loss_sum, correct = forward_directions(x, labels, targets, rows, params, inv, grads, ws,
                                           tw, layout, int(train_hyper[LOSS]), target_step,
                                           difference, inv_code, blas)
    obj, status = finish_step(params, grads, state, opt_hyper, train_hyper,
                              n_weights(layout), loss_sum / rows)
    return obj, correct, status


@njit(**KERNEL)
def joint_step(x, labels, targets, rows, params, inv, grads, igrads, state, opt_hyper,
               train_hyper, istate, ihyper, itrain, ws, tw, layout, target_step, difference,
               sigma, inv_code, train_inverses, blas):
    """One forward update and (when train_inverses and there is an inverse) one
    inverse update on one batch, both from the same forward pass (the targets use
    the inverses from before the step). Returns (objective, correct, status);
    nothing is updated unless both updates are finite."""
    loss_sum, correct = forward_directions(x, labels, targets, rows, params, inv, grads, ws,
                                           tw, layout, int(train_hyper[LOSS]), target_step,
                                           difference, inv_code, blas)
    do_inv = train_inverses and inv.shape[0] > 0
    if do_inv:
        iloss = inverse_directions(rows, params, inv, igrads, ws, tw, layout, sigma,
                                   inv_code, blas)
        _, aux_status = check_step(inv, igrads, istate, ihyper, itrain, 0, iloss)
        if aux_status != OK:
            return loss_sum / rows, correct, aux_status
    obj, status = finish_step(params, grads, state, opt_hyper, train_hyper,
                              n_weights(layout), loss_sum / rows)
    if status == OK and do_inv:
        apply_update(inv, igrads, istate, ihyper)
    return obj, correct, status


@njit(**KERNEL)
def train_epochs(X, labels, targets, order, n_epochs, shuffle, seed, first_epoch, batch_size,
                 params, inv, grads, igrads, state, opt_hyper, train_hyper, istate, ihyper,
                 itrain, ws, tw, layout, xb, lb, tb, stats, target_step, difference, sigma,
                 inv_code, alternate, blas):
    """``n_epochs`` epochs in one call, with the shuffling stream, ``stats`` and
    return values of :func:`fastbp.kernels.mlp.train_epochs`. ``alternate``:
    each epoch is one pass training the inverses, then one pass training the
    forward weights (same sample order); otherwise both on every batch. The
    stats are those of the forward updates."""
    n = X.shape[0]
    has_inv = inv.shape[0] > 0
    for e in range(n_epochs):
        if shuffle:
            shuffle_in_place(order, epoch_seed(seed, first_epoch + e))
        if alternate and has_inv:
            for start in range(0, n, batch_size):
                rows = min(batch_size, n - start)
                gather_batch(X, labels, targets, order, start, rows, xb, lb, tb)
                _, status = inverse_step(xb, rows, params, inv, igrads, istate, ihyper,
                                         itrain, ws, tw, layout, sigma, inv_code, blas)
                if status != OK:
                    stats[e, 0] = 0.0
                    stats[e, 1] = 0.0
                    stats[e, 2] = 0
                    return status, e
        loss_acc = 0.0
        correct_acc = 0.0
        steps = 0
        for start in range(0, n, batch_size):
            rows = min(batch_size, n - start)
            gather_batch(X, labels, targets, order, start, rows, xb, lb, tb)
            obj, c, status = joint_step(xb, lb, tb, rows, params, inv, grads, igrads, state,
                                        opt_hyper, train_hyper, istate, ihyper, itrain, ws,
                                        tw, layout, target_step, difference, sigma, inv_code,
                                        not alternate, blas)
            if status != OK:
                record_epoch(stats, e, loss_acc, start, correct_acc, steps)
                return status, e
            loss_acc += obj * rows
            correct_acc += c
            steps += 1
        record_epoch(stats, e, loss_acc, n, correct_acc, steps)
    return OK, n_epochs

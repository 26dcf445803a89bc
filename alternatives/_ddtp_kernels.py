"""Numba kernels of DDTP-linear (direct difference target propagation with
linear feedback, Meulemans et al. 2020), built on fastbp's MLP kernels and the
DTP helpers of :mod:`alternatives._dtp_kernels`.

Conventions are those of :mod:`fastbp.kernels.mlp` (flat ``params``/``grads``,
flat row-major batch ``x``, workspace ``ws`` with H_1..H_L, A_L and the output
delta; ``blas`` None or 1).

``fb`` is the trainer's flat feedback buffer: Q_1..Q_{L-1}, Q_l of shape
(n_l, n_L), row-major. ``tgt`` and ``eps`` hold rows * (n_1 + ... + n_{L-1})
entries: one (rows, n_l) block per hidden layer, in layer order (the hidden
targets and the feedback-training noise). ``tw`` holds 3 * rows * max width.

Per-sample equations (rows are samples, L the per-sample loss, e = dL/da_L):

* tau_L = a_L - target_step * e;  h^_l = h_l + Q_l tau_L - Q_l a_L
  = h_l - target_step * Q_l e  (l = 1..L-1);
* hidden layer l minimises mean_batch 1/2 ||f_l(W_l h_{l-1} + b_l) - h^_l||^2
  over (W_l, b_l) only; the output layer takes the gradient of the mean loss;
* Q_l minimises mean_batch 1/2 ||Q_l (a_L(h_l + eps) - a_L(h_l)) - eps||^2,
  eps ~ N(0, sigma^2) (Numba's generator), a_L(.) the output pre-activation
  with layers l+1..L applied to a (perturbed) h_l.
"""
import numpy as np
from numba import njit

from fastbp.kernels.activations import backprop_activation
from fastbp.kernels.codes import KERNEL, OK
from fastbp.kernels.linalg import gemm_nt, gemm_tn
from fastbp.kernels.mlp import (
    add_bias,
    bias_gradient,
    epoch_seed,
    forward,
    gather_batch,
    n_weights,
    output_offsets,
    record_epoch,
    shuffle_in_place,
)
from fastbp.kernels.optim import LOSS, apply_update, check_step, finish_step

from ._dtp_kernels import _offsets, forward_and_output_gradient, layer_apply, max_width


@njit(**KERNEL)
def hidden_total(layout):
    """n_1 + ... + n_{L-1}."""
    L = layout[0]
    n = 0
    for l in range(1, L):
        n += layout[l + 1]
    return n


@njit(**KERNEL)
def feedback_size(layout):
    """Entries of the feedback buffer: n_L * (n_1 + ... + n_{L-1})."""
    return layout[layout[0] + 1] * hidden_total(layout)


@njit(**KERNEL)
def _q_offset(layout, l):
    L = layout[0]
    k = layout[L + 1]
    off = 0
    for j in range(1, l):
        off += k * layout[j + 1]
    return off


@njit(**KERNEL)
def _block_offset(layout, rows, l):
    off = 0
    for j in range(1, l):
        off += rows * layout[j + 1]
    return off


@njit(**KERNEL)
def forward_directions(x, labels, targets, rows, params, fb, grads, ws, tgt, tw, layout,
                       loss_code, target_step, blas):
    """Forward pass, loss, hidden targets (into ``tgt``) and the DDTP direction
    of the forward parameters (into ``grads``, no weight decay). Returns (loss
    summed over the batch, number correct)."""
    loss_sum, correct, d_off = forward_and_output_gradient(x, labels, targets, rows, params,
                                                           grads, ws, layout, loss_code, blas)
    L = layout[0]
    k = layout[L + 1]
    G = 0
    # the delta holds d(mean loss)/dA_L = e / rows
    scale = target_step * rows
    inv_b = 1.0 / rows
    for l in range(1, L):
        woff, boff, prev, hoff = _offsets(layout, rows, l)
        nout = layout[l + 1]
        nin = layout[l]
        qoff = _q_offset(layout, l)
        t0 = _block_offset(layout, rows, l)
        n = rows * nout
        # Q_l e per sample: (rows, k) @ Q_l^T
        gemm_nt(ws, d_off, fb, qoff, tw, G, rows, nout, k, blas)
        for i in range(n):
            tgt[t0 + i] = ws[hoff + i] - scale * tw[G + i]
        for i in range(n):
            tw[G + i] = (ws[hoff + i] - tgt[t0 + i]) * inv_b
        backprop_activation(ws, hoff, tw, G, rows, nout, layout[L + 1 + l])
        if l == 1:
            gemm_tn(tw, G, x, 0, grads, woff, rows, nout, nin, blas)
        else:
            gemm_tn(tw, G, ws, prev, grads, woff, rows, nout, nin, blas)
        bias_gradient(tw, G, grads, boff, rows, nout)
    return loss_sum, correct


@njit(**KERNEL)
def draw_noise(eps, n, sigma):
    for i in range(n):
        eps[i] = sigma * np.random.standard_normal()


@njit(**KERNEL)
def feedback_directions(rows, params, fb, fgrads, ws, eps, tw, layout, blas):
    """Difference-reconstruction gradients of every Q_l after :func:`forward`
    filled ``ws``, with the noise blocks in ``eps``: ``fgrads`` receives
    d/dQ of the mean reconstruction loss. Returns that loss (summed over
    layers, mean over the batch)."""
    L = layout[0]
    k = layout[L + 1]
    mw = max_width(layout)
    P = 0
    P2 = rows * mw
    R = 2 * rows * mw
    _, a_off, _ = output_offsets(layout, rows)
    inv_b = 1.0 / rows
    loss = 0.0
    for l in range(1, L):
        _, _, _, hoff = _offsets(layout, rows, l)
        nl = layout[l + 1]
        e0 = _block_offset(layout, rows, l)
        qoff = _q_offset(layout, l)
        m = rows * nl
        for i in range(m):
            tw[P + i] = ws[hoff + i] + eps[e0 + i]
        src = P
        dst = P2
        for j in range(l + 1, L):
            woff, boff, _, _ = _offsets(layout, rows, j)
            layer_apply(tw, src, params, woff, boff, tw, dst, rows, layout[j + 1], layout[j],
                        layout[L + 1 + j], blas)
            src, dst = dst, src
        woff, boff, _, _ = _offsets(layout, rows, L)
        gemm_nt(tw, src, params, woff, tw, dst, rows, k, layout[L], blas)
        add_bias(tw, dst, params, boff, rows, k)
        for i in range(rows * k):
            tw[dst + i] -= ws[a_off + i]
        # reconstruction Q_l diff, residual, gradient residual^T diff / rows
        gemm_nt(tw, dst, fb, qoff, tw, R, rows, nl, k, blas)
        for i in range(m):
            d = tw[R + i] - eps[e0 + i]
            loss += 0.5 * d * d
            tw[R + i] = d * inv_b
        gemm_tn(tw, R, tw, dst, fgrads, qoff, rows, nl, k, blas)
    return loss * inv_b


@njit(**KERNEL)
def feedback_step(x, rows, params, fb, fgrads, fstate, fhyper, ftrain, ws, eps, tw, layout,
                  sigma, blas):
    """Forward pass, fresh noise, one update of the feedback. Returns (loss, status)."""
    forward(x, rows, params, layout, ws, blas)
    draw_noise(eps, rows * hidden_total(layout), sigma)
    loss = feedback_directions(rows, params, fb, fgrads, ws, eps, tw, layout, blas)
    return finish_step(fb, fgrads, fstate, fhyper, ftrain, 0, loss)


@njit(**KERNEL)
def joint_step(x, labels, targets, rows, params, fb, grads, fgrads, state, opt_hyper,
               train_hyper, fstate, fhyper, ftrain, ws, tgt, eps, tw, layout, target_step,
               sigma, blas):
    """One forward update and one feedback update on one batch, both from the
    same forward pass (the targets use the feedback from before the step).
    Returns (objective, correct, status); nothing is updated unless both
    updates are finite."""
    loss_sum, correct = forward_directions(x, labels, targets, rows, params, fb, grads, ws,
                                           tgt, tw, layout, int(train_hyper[LOSS]),
                                           target_step, blas)
    do_fb = fb.shape[0] > 0
    if do_fb:
        draw_noise(eps, rows * hidden_total(layout), sigma)
        floss = feedback_directions(rows, params, fb, fgrads, ws, eps, tw, layout, blas)
        _, aux_status = check_step(fb, fgrads, fstate, fhyper, ftrain, 0, floss)
        if aux_status != OK:
            return loss_sum / rows, correct, aux_status
    obj, status = finish_step(params, grads, state, opt_hyper, train_hyper,
                              n_weights(layout), loss_sum / rows)
    if status == OK and do_fb:
        apply_update(fb, fgrads, fstate, fhyper)
    return obj, correct, status


@njit(**KERNEL)
def train_epochs(X, labels, targets, order, n_epochs, shuffle, seed, first_epoch, batch_size,
                 params, fb, grads, fgrads, state, opt_hyper, train_hyper, fstate, fhyper,
                 ftrain, ws, tgt, eps, tw, layout, xb, lb, tb, stats, target_step, sigma,
                 pretrain, blas):
    """``pretrain`` feedback-only epochs, then ``n_epochs`` joint epochs (both
    updates on every batch), with the shuffling stream, ``stats`` and return
    values of :func:`fastbp.kernels.mlp.train_epochs`. A failing pretraining
    step returns (status, 0) with the first epoch's stats zeroed."""
    n = X.shape[0]
    if fb.shape[0] > 0:
        for p in range(pretrain):
            if shuffle:
                shuffle_in_place(order, epoch_seed(seed ^ np.uint64(0x5DEECE66D), p))
            for start in range(0, n, batch_size):
                rows = min(batch_size, n - start)
                gather_batch(X, labels, targets, order, start, rows, xb, lb, tb)
                _, status = feedback_step(xb, rows, params, fb, fgrads, fstate, fhyper, ftrain,
                                          ws, eps, tw, layout, sigma, blas)
                if status != OK:
                    stats[0, 0] = 0.0
                    stats[0, 1] = 0.0
                    stats[0, 2] = 0
                    return status, 0
    for e in range(n_epochs):
        if shuffle:
            shuffle_in_place(order, epoch_seed(seed, first_epoch + e))
        loss_acc = 0.0
        correct_acc = 0.0
        steps = 0
        for start in range(0, n, batch_size):
            rows = min(batch_size, n - start)
            gather_batch(X, labels, targets, order, start, rows, xb, lb, tb)
            obj, c, status = joint_step(xb, lb, tb, rows, params, fb, grads, fgrads, state,
                                        opt_hyper, train_hyper, fstate, fhyper, ftrain, ws,
                                        tgt, eps, tw, layout, target_step, sigma, blas)
            if status != OK:
                record_epoch(stats, e, loss_acc, start, correct_acc, steps)
                return status, e
            loss_acc += obj * rows
            correct_acc += c
            steps += 1
        record_epoch(stats, e, loss_acc, n, correct_acc, steps)
    return OK, n_epochs

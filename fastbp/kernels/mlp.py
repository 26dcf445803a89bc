"""Fully connected network kernels: forward, backward, one training step, and
whole training epochs in one call.

Conventions
-----------
``layout`` (int64) describes the architecture:
``[L, n_0, n_1, ..., n_L, act_1, ..., act_L]`` for L layers.

``params`` is the model's flat buffer: all weight matrices first
(W_l of shape (n_l, n_{l-1}), row-major, l = 1..L), then all biases (b_l,
(n_l,)). ``grads`` has the same layout.

``x`` is a batch of ``rows`` inputs, row-major and flat: x[i * n_0 + j].

``ws`` is a flat workspace. For a batch of ``rows`` = b it holds, in order:
H_1..H_L (b, n_l) (layer outputs; hidden ones double as pre-activation
storage during the forward pass), A_L (b, n_L) (output logits), and two delta
buffers of (b, max n_l) each. Its length for capacity B is
``B * (n_1 + ... + n_L + n_L + 2 * max(n_1..n_L))`` (see
:func:`fastbp.models.mlp_workspace_size`); any b <= B fits.

Everything indexes flat buffers at offsets; 2-D views are built only for BLAS
calls on large layers. ``blas`` (None or 1) is passed down to the matrix
products and selects the specialization without BLAS for tiny networks (see
:mod:`fastbp.kernels.linalg`).
"""
from collections import namedtuple

import numpy as np
from numba import njit

from .activations import ONE32, activate_inplace, add_tanh, backprop_activation, sigmoid_scalar
from .codes import KERNEL, LEAKY_RELU, LEAKY_SLOPE, RELU, SIGMOID, TANH, ZERO
from .epochs import batch_result, gather_batch, register_batch_step, run_epochs
from .linalg import copy_block, gemm_nn, gemm_nt, gemm_tn
from .losses import loss_and_delta
from .optim import LOSS, finish_step

#: The arrays of a backpropagation step: the model's flat ``params`` and
#: ``grads``, the optimizer's ``state`` and ``opt_hyper``, the trainer's
#: ``train_hyper``, the workspace ``ws``, the ``layout`` and ``blas``.
BackpropArgs = namedtuple("BackpropArgs",
                          "params grads state opt_hyper train_hyper ws layout blas")


@njit(**KERNEL)
def n_weights(layout):
    """Number of weight entries (the flat buffer's prefix before the biases)."""
    L = layout[0]
    n = 0
    for l in range(1, L + 1):
        n += layout[l] * layout[l + 1]
    return n


@njit(**KERNEL)
def _hidden_total(layout):
    """n_1 + ... + n_L."""
    total = 0
    for n in layout[2:layout[0] + 2]:
        total += n
    return total


@njit(**KERNEL)
def max_width(layout):
    """max(n_1, ..., n_L): the width of the workspace's delta buffers."""
    widest = 0
    for n in layout[2:layout[0] + 2]:
        widest = max(widest, n)
    return widest


@njit(**KERNEL)
def output_offsets(layout, rows):
    """Offsets in ``ws`` of the output block H_L, the logits A_L and the output
    delta, for a batch of ``rows``."""
    L = layout[0]
    k = layout[L + 1]
    a_off = rows * _hidden_total(layout)
    return a_off - rows * k, a_off, a_off + rows * k


@njit(**KERNEL)
def add_bias(Z, z0, params, b0, rows, cols):
    """Z[i, :] += params[b0:b0 + cols] for each of the block's rows."""
    for i in range(rows):
        r = z0 + i * cols
        for j in range(cols):
            Z[r + j] += params[b0 + j]


@njit(**KERNEL)
def bias_gradient(D, d0, grads, g0, rows, cols):
    """grads[g0:g0 + cols] = column sums of the (rows, cols) block of D."""
    for j in range(cols):
        grads[g0 + j] = 0.0
    for i in range(rows):
        r = d0 + i * cols
        for j in range(cols):
            grads[g0 + j] += D[r + j]


@njit(**KERNEL)
def bias_activate(Z, z0, params, b0, rows, cols, code):
    """Z = f(Z + b) on the (rows, cols) block at z0, b = params[b0:b0 + cols]
    added to every row, f a hidden layer's (elementwise) activation: the
    values :func:`add_bias` then
    :func:`fastbp.kernels.activations.activate_inplace` give, in one pass
    over the block instead of two. Indices are unsigned so that LLVM
    vectorizes the loops (see :mod:`fastbp.kernels.activations`)."""
    for i in range(rows):
        r = z0 + i * cols
        if code == SIGMOID:
            for j in range(cols):
                k = np.uint64(r + j)
                Z[k] = sigmoid_scalar(Z[k] + params[np.uint64(b0 + j)])
        elif code == TANH:
            add_tanh(Z, r, params, b0, cols)
        elif code == RELU:
            for j in range(cols):
                k = np.uint64(r + j)
                v = Z[k] + params[np.uint64(b0 + j)]
                Z[k] = v if v > 0 else 0.0
        elif code == LEAKY_RELU:
            for j in range(cols):
                k = np.uint64(r + j)
                v = Z[k] + params[np.uint64(b0 + j)]
                Z[k] = v if v > 0 else LEAKY_SLOPE * v
        else:
            for j in range(cols):
                k = np.uint64(r + j)
                Z[k] += params[np.uint64(b0 + j)]


@njit(**KERNEL)
def delta_and_bias_gradient(H, h0, D, d0, grads, g0, rows, cols, code):
    """D *= f'(a) on the (rows, cols) block at d0 (f' from the outputs H at
    h0, an elementwise hidden activation), and grads[g0:g0 + cols] = the
    column sums of the new D, in one pass: what
    :func:`fastbp.kernels.activations.backprop_activation` and
    :func:`bias_gradient` give in two, summed in the same (row) order."""
    for j in range(cols):
        grads[g0 + j] = 0.0
    for i in range(rows):
        rh = h0 + i * cols
        rd = d0 + i * cols
        if code == SIGMOID:
            for j in range(cols):
                k = np.uint64(rd + j)
                h = H[np.uint64(rh + j)]
                D[k] *= h * (ONE32 - h)
                grads[np.uint64(g0 + j)] += D[k]
        elif code == TANH:
            for j in range(cols):
                k = np.uint64(rd + j)
                h = H[np.uint64(rh + j)]
                D[k] *= ONE32 - h * h
                grads[np.uint64(g0 + j)] += D[k]
        elif code == RELU:
            for j in range(cols):
                k = np.uint64(rd + j)
                d = D[k]
                d = d if H[np.uint64(rh + j)] > 0 else 0.0
                D[k] = d
                grads[np.uint64(g0 + j)] += D[k]
        elif code == LEAKY_RELU:
            for j in range(cols):
                k = np.uint64(rd + j)
                d = D[k]
                D[k] = d if H[np.uint64(rh + j)] > 0 else LEAKY_SLOPE * d
                grads[np.uint64(g0 + j)] += D[k]
        else:
            for j in range(cols):
                grads[np.uint64(g0 + j)] += D[np.uint64(rd + j)]


@njit(**KERNEL)
def layer_gradient(ws, d, src, s0, grads, woff, boff, rows, nout, nin, blas):
    """dW_l = delta_l^T H_{l-1} into grads[woff:] and db_l = column sums of
    delta_l into grads[boff:], for the (rows, nout) delta at ws[d:] and the
    (rows, nin) layer input at src[s0:]."""
    gemm_tn(ws, d, src, s0, grads, woff, rows, nout, nin, blas)
    if blas is None:
        bias_gradient(ws, d, grads, boff, rows, nout)
    else:
        bias_gradient(ws[d:d + rows * nout], ZERO, grads[boff:boff + nout], ZERO, rows, nout)


@njit(**KERNEL)
def forward(x, rows, params, layout, ws, blas):
    """Forward pass of a batch; fills H_1..H_L and A_L in ``ws``.

    a_l = H_{l-1} W_l^T + b_l (rows are samples), H_l = f_l(a_l).
    """
    L = layout[0]
    woff = ZERO
    boff = n_weights(layout)
    hoff = ZERO
    a_out = rows * _hidden_total(layout)
    src_off = ZERO
    for l in range(1, L + 1):
        nin = layout[l]
        nout = layout[l + 1]
        a_off = a_out if l == L else hoff
        # two call sites instead of one with a reassigned array variable: that
        # keeps reference counting out of the loop (measurable on tiny nets)
        if l == 1:
            gemm_nt(x, 0, params, woff, ws, a_off, rows, nout, nin, blas)
        else:
            gemm_nt(ws, src_off, params, woff, ws, a_off, rows, nout, nin, blas)
        n = rows * nout
        # the output layer keeps its logits apart from its outputs (for the
        # loss); elementwise work takes separate slices when BLAS is in play
        # (see fastbp.kernels.activations); tiny networks index the buffer
        # directly
        if blas is None:
            if l == L:
                add_bias(ws, a_off, params, boff, rows, nout)
                for i in range(n):
                    ws[hoff + i] = ws[a_off + i]
            else:
                add_bias(ws, hoff, params, boff, rows, nout)
            activate_inplace(ws, hoff, rows, nout, layout[L + 1 + l])
        elif l == L:
            add_bias(ws[a_off:a_off + n], ZERO, params[boff:boff + nout], ZERO, rows, nout)
            copy_block(ws[a_off:a_off + n], ws[hoff:hoff + n])
            activate_inplace(ws[hoff:hoff + n], ZERO, rows, nout, layout[L + 1 + l])
        else:       # bias and activation in one pass over a large block
            bias_activate(ws[hoff:hoff + n], ZERO, params[boff:boff + nout], ZERO, rows, nout,
                          layout[L + 1 + l])
        src_off = hoff
        woff += nout * nin
        boff += nout
        hoff += rows * nout


@njit(**KERNEL)
def backward(x, rows, params, grads, layout, ws, blas):
    """Backward pass after :func:`forward` and the loss kernel wrote
    d(loss)/dA_L at the output delta offset; fills ``grads``.

    delta_l = (delta_{l+1} W_{l+1}) * f_l'(a_l);  dW_l = delta_l^T H_{l-1};
    db_l = column sums of delta_l (the row-per-sample form of the textbook
    delta_l = (W_{l+1}^T delta_{l+1}) * f'(a_l), dW_l = delta_l h_{l-1}^T).
    """
    L = layout[0]
    total_h = _hidden_total(layout)
    cur = rows * (total_h + layout[L + 1])
    other = cur + rows * max_width(layout)
    woff = n_weights(layout)
    boff = params.shape[0]
    hoff = rows * total_h
    for l in range(L, 0, -1):
        nin = layout[l]
        nout = layout[l + 1]
        woff -= nout * nin
        boff -= nout
        hoff -= rows * nout  # start of H_l
        prev_off = hoff - rows * nin
        # on the BLAS path a hidden layer's db was summed when its delta was
        # formed (below), so only dW is left for BLAS
        if blas is None or l == L:
            if l == 1:
                layer_gradient(ws, cur, x, ZERO, grads, woff, boff, rows, nout, nin, blas)
            else:
                layer_gradient(ws, cur, ws, prev_off, grads, woff, boff, rows, nout, nin, blas)
        elif l == 1:
            gemm_tn(ws, cur, x, 0, grads, woff, rows, nout, nin, blas)
        else:
            gemm_tn(ws, cur, ws, prev_off, grads, woff, rows, nout, nin, blas)
        if l > 1:
            gemm_nn(ws, cur, params, woff, ws, other, rows, nin, nout, blas)
            if blas is None:
                backprop_activation(ws, prev_off, ws, other, rows, nin, layout[L + l])
            else:
                n = rows * nin
                delta_and_bias_gradient(ws[prev_off:prev_off + n], ZERO, ws[other:other + n],
                                        ZERO, grads[boff - nin:boff], ZERO, rows, nin,
                                        layout[L + l])
            cur, other = other, cur


@njit(inline="always", **KERNEL)
def loss_gradients(x, labels, targets, rows, params, grads, ws, layout, loss_code, blas):
    """Forward, loss and backward for one batch; ``grads`` receives d(mean
    loss)/d(params). Returns (loss summed over the batch, number correct).

    Parameters
    ----------
    x : 1-D array, the batch's (rows, n_0) inputs row-major
    labels : int64 (>= rows,) or (0,);  targets : (>= rows, n_L) or (0, 0)
    """
    forward(x, rows, params, layout, ws, blas)
    h_off, a_off, d_off = output_offsets(layout, rows)
    L = layout[0]
    loss_sum, correct = loss_and_delta(ws, a_off, h_off, d_off, rows, layout[L + 1],
                                       labels, targets, loss_code, layout[2 * L + 1])
    backward(x, rows, params, grads, layout, ws, blas)
    return loss_sum, correct


@njit(inline="always", **KERNEL)
def backprop_step(args, x, labels, targets, rows):
    """One update on one batch (x flat, row-major). Returns (objective, number
    correct, status); parameters are unchanged unless status == OK.

    Parameters
    ----------
    args : BackpropArgs
    x : 1-D array, the batch's (rows, n_0) inputs row-major
    labels : int64 (>= rows,) or (0,);  targets : (>= rows, n_L) or (0, 0)
    rows : int
    """
    params, grads, state, opt_hyper, train_hyper, ws, layout, blas = args
    loss_sum, correct = loss_gradients(x, labels, targets, rows, params, grads, ws,
                                       layout, int(train_hyper[LOSS]), blas)
    objective, status = finish_step(params, grads, state, opt_hyper, train_hyper,
                                    n_weights(layout), loss_sum / rows)
    return objective, correct, status


@njit(inline="always", **KERNEL)
def backprop_batch(args, X, labels, targets, order, xb, lb, tb, start, rows, phase):
    """The epoch driver's step (see :mod:`fastbp.kernels.epochs`): gather the
    batch, then :func:`train_step`."""
    gather_batch(X, labels, targets, order, start, rows, xb, lb, tb)
    return batch_result(backprop_step(args, xb, lb, tb, rows), rows)


register_batch_step(BackpropArgs, backprop_batch)


@njit(**KERNEL)
def train_step(x, labels, targets, rows, params, grads, state, opt_hyper, train_hyper, ws,
               layout, blas):
    """:func:`backprop_step` called from Python with the arrays of a
    :data:`BackpropArgs` given one by one: a namedtuple argument costs the
    dispatcher about 2 us per call to type, a third of a tiny network's step."""
    return backprop_step(BackpropArgs(params, grads, state, opt_hyper, train_hyper, ws, layout,
                                      blas), x, labels, targets, rows)


@njit(**KERNEL)
def train_epochs(args, data, plan, stats):
    """Whole epochs of backpropagation in one call: see
    :func:`fastbp.kernels.epochs.run_epochs`."""
    return run_epochs(args, data, plan, stats)


@njit(**KERNEL)
def evaluate_chunked(X, labels, targets, params, ws, layout, loss_code, capacity, blas):
    """Loss summed over all rows of X (n, n_0) and number correct, ``capacity``
    rows per forward pass."""
    n, n_in = X.shape
    x = X.reshape(n * n_in)
    use_labels = labels.shape[0] > 0
    k = layout[layout[0] + 1]
    out_code = layout[2 * layout[0] + 1]
    loss = 0.0
    correct = 0.0
    for start in range(0, n, capacity):
        rows = min(capacity, n - start)
        forward(x[start * n_in:], rows, params, layout, ws, blas)
        h_off, a_off, d_off = output_offsets(layout, rows)
        if use_labels:
            l, c = loss_and_delta(ws, a_off, h_off, d_off, rows, k, labels[start:],
                                  targets, loss_code, out_code)
        else:
            l, c = loss_and_delta(ws, a_off, h_off, d_off, rows, k, labels,
                                  targets[start:], loss_code, out_code)
        loss += l
        correct += c
    return loss, correct


@njit(**KERNEL)
def predict_chunked(X, params, ws, layout, capacity, out, blas):
    """out (n, n_L) = network outputs for X (n, n_0), ``capacity`` rows per pass."""
    n, n_in = X.shape
    x = X.reshape(n * n_in)
    k = out.shape[1]
    for start in range(0, n, capacity):
        rows = min(capacity, n - start)
        forward(x[start * n_in:], rows, params, layout, ws, blas)
        h_off, a_off, d_off = output_offsets(layout, rows)
        for i in range(rows):
            for j in range(k):
                out[start + i, j] = ws[h_off + i * k + j]



"""Fully connected network kernels: forward, backward, one training step, and
whole training epochs in one call.

Conventions
-----------
``layout`` (int64) describes the architecture:
``[L, n_0, n_1, ..., n_L, act_1, ..., act_L]`` for L layers.

``params`` is the model's flat buffer: all weight matrices first
(W_l of shape (n_l, n_{l-1}), C order, l = 1..L), then all biases (b_l, (n_l,)).
``grads`` has the same layout.

``ws`` is a flat workspace. For a batch of b rows it holds, in order:
H_1..H_L (b, n_l) (layer outputs; hidden ones double as pre-activation
storage during the forward pass), A_L (b, n_L) (output logits), and two delta
buffers of (b, max n_l) each. Its size for capacity B is
``B * (n_1 + ... + n_L + n_L + 2 * max(n_1..n_L))`` (see
:func:`fastbp.models.mlp_workspace_size`); any b <= B fits.
"""
import numpy as np
from numba import njit

from .activations import activate, backprop_activation
from .codes import KERNEL, OK
from .linalg import gemm_nn, gemm_nt, gemm_tn
from .losses import loss_and_delta
from .optim import LOSS, finish_step


@njit(**KERNEL)
def n_weights(layout):
    """Number of weight entries (the flat buffer's prefix before the biases)."""
    L = layout[0]
    n = 0
    for l in range(1, L + 1):
        n += layout[l] * layout[l + 1]
    return n


@njit(**KERNEL)
def _max_width(layout):
    L = layout[0]
    m = 0
    for l in range(2, L + 2):
        if layout[l] > m:
            m = layout[l]
    return m


@njit(**KERNEL)
def forward(X, params, layout, ws):
    """Forward pass of a batch X (b, n_0); fills H_1..H_L and A_L in ``ws``."""
    L = layout[0]
    b = X.shape[0]
    woff = 0
    boff = n_weights(layout)
    hoff = 0
    total_h = 0
    for l in range(1, L + 1):
        total_h += layout[l + 1]
    aoff = b * total_h
    Hprev = X
    for l in range(1, L + 1):
        nin = layout[l]
        nout = layout[l + 1]
        code = layout[L + 1 + l]
        W = params[woff:woff + nout * nin].reshape((nout, nin))
        bias = params[boff:boff + nout]
        H = ws[hoff:hoff + b * nout].reshape((b, nout))
        if l == L:
            A = ws[aoff:aoff + b * nout].reshape((b, nout))
        else:
            A = H
        gemm_nt(Hprev, W, A)
        for i in range(b):
            for j in range(nout):
                A[i, j] += bias[j]
        activate(A, H, code)
        Hprev = H
        woff += nout * nin
        boff += nout
        hoff += b * nout


@njit(**KERNEL)
def backward(X, params, grads, layout, ws):
    """Backward pass after :func:`forward` and the loss kernel wrote
    d(loss)/dA_L into the first delta buffer; fills ``grads``.

    delta_l = (W_{l+1}^T delta_{l+1}) * f_l'(a_l);  dW_l = delta_l^T H_{l-1};
    db_l = sum over the batch of delta_l (rows are samples here, so the
    products are transposed relative to the column-vector textbook form).
    """
    L = layout[0]
    b = X.shape[0]
    nw = n_weights(layout)
    total_h = 0
    for l in range(1, L + 1):
        total_h += layout[l + 1]
    mw = _max_width(layout)
    d0 = b * (total_h + layout[L + 1])
    d1 = d0 + b * mw
    woff = nw
    boff = params.shape[0]
    hoff = b * total_h  # end of H_L
    cur = d0
    other = d1
    for l in range(L, 0, -1):
        nin = layout[l]
        nout = layout[l + 1]
        woff -= nout * nin
        boff -= nout
        hoff -= b * nout  # start of H_l
        D = ws[cur:cur + b * nout].reshape((b, nout))
        if l == 1:
            Hprev = X
        else:
            Hprev = ws[hoff - b * nin:hoff].reshape((b, nin))
        gW = grads[woff:woff + nout * nin].reshape((nout, nin))
        gemm_tn(D, Hprev, gW)
        gb = grads[boff:boff + nout]
        for j in range(nout):
            gb[j] = 0.0
        for i in range(b):
            for j in range(nout):
                gb[j] += D[i, j]
        if l > 1:
            W = params[woff:woff + nout * nin].reshape((nout, nin))
            Dprev = ws[other:other + b * nin].reshape((b, nin))
            gemm_nn(D, W, Dprev)
            backprop_activation(Hprev, Dprev, layout[L + l])
            cur, other = other, cur


@njit(**KERNEL)
def _output_views(layout, ws, b):
    L = layout[0]
    total_h = 0
    for l in range(1, L + 1):
        total_h += layout[l + 1]
    k = layout[L + 1]
    h_off = b * (total_h - k)
    a_off = b * total_h
    H = ws[h_off:h_off + b * k].reshape((b, k))
    A = ws[a_off:a_off + b * k].reshape((b, k))
    D = ws[a_off + b * k:a_off + 2 * b * k].reshape((b, k))
    return A, H, D


@njit(**KERNEL)
def loss_gradients(X, labels, targets, params, grads, ws, layout, loss_code):
    """Forward, loss and backward for one batch; ``grads`` receives d(mean
    loss)/d(params). Returns (loss summed over the batch, number correct)."""
    forward(X, params, layout, ws)
    A, H, D = _output_views(layout, ws, X.shape[0])
    L = layout[0]
    loss_sum, correct = loss_and_delta(A, H, labels, targets, loss_code,
                                       layout[2 * L + 1], D)
    backward(X, params, grads, layout, ws)
    return loss_sum, correct


@njit(**KERNEL)
def evaluate_batch(X, labels, targets, params, ws, layout, loss_code):
    """Forward and loss only. Returns (loss summed over the batch, correct)."""
    forward(X, params, layout, ws)
    A, H, D = _output_views(layout, ws, X.shape[0])
    L = layout[0]
    return loss_and_delta(A, H, labels, targets, loss_code, layout[2 * L + 1], D)


@njit(**KERNEL)
def predict_chunked(X, params, ws, layout, capacity, out):
    """out (n, n_L) = outputs for X (n, n_0), ``capacity`` rows at a time."""
    n = X.shape[0]
    k = out.shape[1]
    for start in range(0, n, capacity):
        stop = min(start + capacity, n)
        Xc = X[start:stop]
        forward(Xc, params, layout, ws)
        A, H, D = _output_views(layout, ws, stop - start)
        for i in range(stop - start):
            for j in range(k):
                out[start + i, j] = H[i, j]


@njit(**KERNEL)
def evaluate_chunked(X, labels, targets, params, ws, layout, loss_code, capacity):
    """Loss summed over all n rows and number correct, ``capacity`` rows at a time."""
    n = X.shape[0]
    use_labels = labels.shape[0] > 0
    loss = 0.0
    correct = 0.0
    for start in range(0, n, capacity):
        stop = min(start + capacity, n)
        if use_labels:
            l, c = evaluate_batch(X[start:stop], labels[start:stop], targets,
                                  params, ws, layout, loss_code)
        else:
            l, c = evaluate_batch(X[start:stop], labels, targets[start:stop],
                                  params, ws, layout, loss_code)
        loss += l
        correct += c
    return loss, correct


@njit(**KERNEL)
def train_step(X, labels, targets, params, grads, state, opt_hyper, train_hyper,
               ws, layout):
    """One update on one batch. Returns (objective, number correct, status);
    parameters are unchanged unless status == OK."""
    loss_sum, correct = loss_gradients(X, labels, targets, params, grads, ws,
                                       layout, int(train_hyper[LOSS]))
    objective, status = finish_step(params, grads, state, opt_hyper, train_hyper,
                                    n_weights(layout), loss_sum / X.shape[0])
    return objective, correct, status


@njit(**KERNEL)
def _splitmix64(state):
    z = state + np.uint64(0x9E3779B97F4A7C15)
    x = z
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    x = x ^ (x >> np.uint64(31))
    return z, x


@njit(**KERNEL)
def shuffle_in_place(order, seed):
    """Fisher-Yates shuffle driven by splitmix64 from ``seed``; returns the
    generator state to continue from."""
    s = np.uint64(seed)
    for i in range(order.shape[0] - 1, 0, -1):
        s, r = _splitmix64(s)
        j = np.int64(r % np.uint64(i + 1))
        t = order[i]
        order[i] = order[j]
        order[j] = t
    return s


@njit(**KERNEL)
def train_epochs(X, labels, targets, order, n_epochs, shuffle, seed, batch_size,
                 params, grads, state, opt_hyper, train_hyper, ws, layout,
                 xb, lb, tb, stats):
    """Train ``n_epochs`` epochs in one call: shuffle, gather batches, forward,
    backward, update.

    Parameters
    ----------
    X : (n, n_0) array; labels : int64 (n,) or (0,); targets : (n, k) or (0, 0)
    order : int64 (n,), sample order, shuffled in place each epoch when shuffle
    seed : uint64 seed of the shuffle stream
    xb, lb, tb : gather buffers of (batch_size, n_0), (batch_size,) or (0,),
        (batch_size, k) or (0, 0)
    stats : float64 (n_epochs, 3) receives per epoch the mean objective over
        samples, the number correct, and the number of updates applied

    Returns
    -------
    status : int
        OK, or the failure code of the step that stopped training.
    epochs_done : int
        Epochs completed (the failing one is not counted).
    """
    n = X.shape[0]
    use_labels = labels.shape[0] > 0
    s = np.uint64(seed)
    for e in range(n_epochs):
        if shuffle:
            s, r = _splitmix64(s)
            shuffle_in_place(order, r)
        loss_acc = 0.0
        correct_acc = 0.0
        steps = 0
        for start in range(0, n, batch_size):
            b = min(batch_size, n - start)
            for i in range(b):
                src = order[start + i]
                for j in range(X.shape[1]):
                    xb[i, j] = X[src, j]
                if use_labels:
                    lb[i] = labels[src]
                else:
                    for j in range(targets.shape[1]):
                        tb[i, j] = targets[src, j]
            if use_labels:
                obj, c, status = train_step(xb[:b], lb[:b], tb, params, grads, state,
                                            opt_hyper, train_hyper, ws, layout)
            else:
                obj, c, status = train_step(xb[:b], lb, tb[:b], params, grads, state,
                                            opt_hyper, train_hyper, ws, layout)
            if status != OK:
                stats[e, 0] = loss_acc / max(start, 1)
                stats[e, 1] = correct_acc
                stats[e, 2] = steps
                return status, e
            loss_acc += obj * b
            correct_acc += c
            steps += 1
        stats[e, 0] = loss_acc / n
        stats[e, 1] = correct_acc
        stats[e, 2] = steps
    return OK, n_epochs

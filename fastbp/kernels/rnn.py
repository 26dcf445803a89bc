"""Elman recurrent network kernels: the forward pass over a whole sequence,
backpropagation through time (full and truncated), one training step, and
whole training epochs in one call.

Model (one sequence; rows of a batch are independent)::

    h_0 = 0 (or a given state)
    h_t = f(W_in x_t + W_rec h_{t-1} + b)            t = 1..T
    y_t = g(W_out h_t + b_out)    readout "all": every t;  "last": t = T only

Conventions
-----------
``layout`` (int64): ``[n_in, n_hidden, n_out, act, out_act, readout_all]``.

``params`` is the model's flat buffer: the weights W_in (h, i), W_rec (h, h),
W_out (o, h) row-major, then the biases b (h,) and b_out (o,). ``grads`` has
the same layout.

Every per-step quantity is stored *time-major*: the (rows, width) block of
step t is contiguous, so each time step works on one dense block and the
products that do not depend on the recurrence cover all steps of a window at
once (the input projection before the time loop; the output layer and the
W_in, W_rec gradients after it). For a batch of ``rows`` sequences of
``T`` steps, ``ws`` holds, in order (see :func:`offsets`):

=========  ======================  =========================================
block      shape                   contents
=========  ======================  =========================================
WT_in      (i, h)                  W_in transposed (for axpy-form products);
                                   scratch of the backward pass
WT_rec     (h, h)                  W_rec transposed; scratch of the backward
                                   pass (each forward pass writes both anew)
XS         (T, rows, i)            the batch's inputs, time-major
H          (T + 1, rows, h)        states h_0..h_T
Z          (rows, h)               recurrent product / carried gradient
DELTA      (T, rows, h)            dJ/da_t for t = 1..T (a_t pre-activation)
A, HO, DO  (R, o) each             output logits, outputs, dJ/dlogits;
                                   R = T * rows ("all") or rows ("last")
W_REC      (h, h)                  a copy of W_rec for the backward pass
=========  ======================  =========================================

Each block starts on a multiple of :data:`ALIGN` entries.

Labels and targets are gathered time-major too: ``lb[t * rows + s]`` and
``tb[t * rows + s, :]`` belong to sequence s at step t (readout "all"), or
``lb[s]`` / ``tb[s]`` (readout "last").

Truncated BPTT with window k splits steps 1..T into windows
[1..k], [k+1..2k], ...: the state is carried forward across a window
boundary, but no gradient flows back across it (the state entering a window
is a constant for that window's backward pass).
"""
from collections import namedtuple

import numpy as np
from numba import njit

from .activations import (activate_inplace, add_activate, add_backprop_activation,
                          backprop_activation)
from .codes import KERNEL, OK, ZERO
from .epochs import register_batch_step, run_epochs
from .linalg import (SMALL_GEMM, copy_block, gemm_nn, gemm_nn_blocks, gemm_nt, gemm_tn,
                     gemm_tn_blocks)
from .losses import loss_and_delta
from .mlp import add_bias, bias_gradient
from .optim import LOSS, finish_step

IN, HID, OUT, ACT, OUT_ACT, ALL = 0, 1, 2, 3, 4, 5

#: The arrays of a BPTT step: the model's flat ``params`` and ``grads``, the
#: optimizer's ``state`` and ``opt_hyper``, the trainer's ``train_hyper``, the
#: workspace ``ws``, the ``layout``, the window ``truncate`` (0: full BPTT)
#: and ``blas``.
BPTTArgs = namedtuple("BPTTArgs",
                      "params grads state opt_hyper train_hyper ws layout truncate blas")


@njit(**KERNEL)
def n_weights(layout):
    """Number of weight entries: h*i + h*h + o*h (the buffer's prefix before
    the biases)."""
    i, h, o = layout[IN], layout[HID], layout[OUT]
    return h * i + h * h + o * h


@njit(**KERNEL)
def output_rows(layout, rows, T):
    """Rows of the output blocks: T * rows for readout "all", else rows."""
    return T * rows if layout[ALL] else rows


#: every block of ``ws`` starts on a multiple of this many entries: 64 bytes
#: in float32 (and 128 in float64) from the workspace's 64-byte aligned
#: start (see :class:`fastbp.models.Workspace`). BLAS reads an aligned B
#: operand faster: a (32, 128) x (128, 128) product takes 6.1 instead of
#: 9.4 us in float32, 12.5 instead of 19.2 in float64.
ALIGN = 16


@njit(**KERNEL)
def _up(n):
    """n rounded up to a multiple of :data:`ALIGN`."""
    return (n + ALIGN - 1) // ALIGN * ALIGN


@njit(**KERNEL)
def offsets(layout, rows, T):
    """Offsets in ``ws`` of WT_in, WT_rec, XS, H, Z, DELTA, A, HO, DO for a
    batch of ``rows`` sequences of ``T`` steps (see the module docstring),
    each a multiple of :data:`ALIGN`."""
    i, h, o = layout[IN], layout[HID], layout[OUT]
    wt_in = ZERO
    wt_rec = wt_in + _up(i * h)
    xs = wt_rec + _up(h * h)
    hs = xs + _up(T * rows * i)
    z = hs + _up((T + 1) * rows * h)
    delta = z + _up(rows * h)
    a = delta + _up(T * rows * h)
    r = output_rows(layout, rows, T)
    ho = a + _up(r * o)
    do = ho + _up(r * o)
    return wt_in, wt_rec, xs, hs, z, delta, a, ho, do


@njit(**KERNEL)
def w_rec_offset(layout, rows, T):
    """Offset in ``ws`` of W_REC, an aligned copy of W_rec (h, h) for the
    BLAS carry products of the backward pass, after DO."""
    do = offsets(layout, rows, T)[8]
    return do + _up(output_rows(layout, rows, T) * layout[OUT])


def workspace_size(n_in, n_hidden, n_out, readout_all, rows, T):
    """Length of ``ws`` for ``rows`` sequences of ``T`` steps (any smaller
    batch or shorter sequence fits in it too)."""
    def up(n):
        return (n + ALIGN - 1) // ALIGN * ALIGN
    r = T * rows if readout_all else rows
    return (up(n_in * n_hidden) + up(n_hidden * n_hidden) + up(T * rows * n_in)
            + up((T + 1) * rows * n_hidden) + up(rows * n_hidden) + up(T * rows * n_hidden)
            + 3 * up(r * n_out) + n_hidden * n_hidden)


@njit(**KERNEL)
def _transpose(src, s0, dst, d0, m, n):
    """dst (n, m) = src (m, n).T, both row-major blocks of flat buffers, in
    tiles of 16 x 16 (each tile's rows and columns stay in cache: 128 x 128
    float32 in 6.8 instead of 10.4 us column by column, 256 x 256 in 26
    instead of 78)."""
    for r0 in range(0, m, 16):
        r1 = min(r0 + 16, m)
        for c0 in range(0, n, 16):
            for c in range(c0, min(c0 + 16, n)):
                dc = d0 + c * m
                for r in range(r0, r1):
                    dst[np.uint64(dc + r)] = src[np.uint64(s0 + r * n + c)]


@njit(**KERNEL)
def gather_sequences(X, labels, targets, order, start, rows, ws, xs0, lb, tb):
    """Copy sequences order[start:start + rows] into the time-major blocks.

    Parameters
    ----------
    X : (n, T, i) array
    labels : int64 (n, Tl) (Tl = T for readout "all", 1 for "last"), or (0, 0)
    targets : (n, Tl, o) array, or (0, 0, 0)
    order : int64 (n,) sample order, or (0,) for samples start..start+rows-1
    ws, xs0 : workspace and the offset of its XS block (T, rows, i)
    lb : int64 (>= Tl * rows,) receives labels time-major when labels are used
    tb : (>= Tl * rows, o) receives target rows time-major when targets are used
    """
    T, n_in = X.shape[1], X.shape[2]
    use_labels = labels.shape[0] > 0
    for s in range(rows):
        src = order[start + s] if order.shape[0] > 0 else start + s
        for t in range(T):
            d = xs0 + (t * rows + s) * n_in
            for j in range(n_in):
                ws[d + j] = X[src, t, j]
        if use_labels:
            for t in range(labels.shape[1]):
                lb[t * rows + s] = labels[src, t]
        else:
            for t in range(targets.shape[1]):
                for j in range(targets.shape[2]):
                    tb[t * rows + s, j] = targets[src, t, j]


@njit(**KERNEL)
def zero_initial_state(ws, layout, rows, T):
    """H[0] = 0."""
    hs = offsets(layout, rows, T)[3]
    for j in range(rows * layout[HID]):
        ws[hs + j] = 0.0


@njit(**KERNEL)
def set_initial_state(ws, layout, rows, T, h0, start):
    """H[0] = rows start..start+rows-1 of h0 (n, h), or zeros when h0 is (0, 0)."""
    if h0.shape[0] == 0:
        zero_initial_state(ws, layout, rows, T)
        return
    hs = offsets(layout, rows, T)[3]
    h = layout[HID]
    for s in range(rows):
        for j in range(h):
            ws[hs + s * h + j] = h0[start + s, j]


@njit(**KERNEL)
def _is_zero(A, a0, n):
    """True when the n entries of A from a0 on are all zero."""
    for j in range(n):
        if A[np.uint64(a0 + j)] != 0.0:
            return False
    return True


@njit(**KERNEL)
def _add_to_block(D, d0, Z, n):
    """D[d0:d0 + n] += Z[:n]."""
    for j in range(n):
        D[np.uint64(d0 + j)] += Z[j]


@njit(**KERNEL)
def _zero_block(D, d0, n):
    """D[d0:d0 + n] = 0."""
    for j in range(n):
        D[np.uint64(d0 + j)] = 0.0


@njit(**KERNEL)
def _add_bias_rows(H, h0, bias, rows, cols):
    """Every row of the (rows, cols) block of H at h0 += b."""
    for r in range(rows):
        hr = h0 + r * cols
        for j in range(cols):
            H[np.uint64(hr + j)] += bias[j]


@njit(**KERNEL)
def _add_column_sums(D, d0, db, rows, cols):
    """db (cols,) += column sums of the (rows, cols) block of D at d0."""
    for r in range(rows):
        dr = d0 + r * cols
        for j in range(cols):
            db[j] += D[np.uint64(dr + j)]


@njit(**KERNEL)
def _project_scalar_inputs(XS, w, bias, H, h0, m, h):
    """Rows r = 0..m-1 of the (m, h) block of H at h0 = b + x_r w for scalar
    inputs x (m,) and w = W_in (h,): one pass (h128 T40 b32: 29 us as a
    product and a bias pass, BLAS or loops, against 15.5 us in float32)."""
    for r in range(m):
        x = XS[r]
        hr = h0 + r * h
        for j in range(h):
            H[np.uint64(hr + j)] = bias[j] + x * w[j]


@njit(**KERNEL)
def _input_gradient(D, X, G, m, h, i, S, s0, blas):
    """G (h, i) = D (m, h).T @ X (m, i), the W_in gradient of a window, with
    S[s0:s0 + h * i] as scratch (see :func:`fastbp.kernels.linalg.gemm_tn_blocks`).
    For scalar inputs (i = 1) G is the sum of the rows of D weighted by x, a
    loop over h per row (h16 T100: 2.6 us as a product, BLAS or loops,
    against 0.2 us)."""
    if i != 1:
        gemm_tn_blocks(D, 0, X, 0, G, 0, m, h, i, S, s0, blas)
        return
    for j in range(h):
        G[j] = 0.0
    for r in range(m):
        x = X[r]
        dr = r * h
        for j in range(h):
            G[j] += x * D[np.uint64(dr + j)]


@njit(**KERNEL)
def _product_add(A, a0, B, C, c0, m, n, k):
    """C block (m, n) at c0 += A block (m, k) at a0 @ B (k, n), as row updates
    that take four rows of B per pass over the row of C (a quarter of the
    loads and stores of C; h16, batch 1: 56 -> 42 ns per product).

    A and C may be the same array (distinct blocks). Indices are unsigned:
    with a signed index Numba adds a negative-index wrap-around test to every
    access, and LLVM then leaves the loop scalar."""
    for r in range(m):
        ar = a0 + r * k
        cr = c0 + r * n
        p = 0
        while p + 4 <= k:
            x0 = A[np.uint64(ar + p)]
            x1 = A[np.uint64(ar + p + 1)]
            x2 = A[np.uint64(ar + p + 2)]
            x3 = A[np.uint64(ar + p + 3)]
            b0 = p * n
            b1 = b0 + n
            b2 = b1 + n
            b3 = b2 + n
            for j in range(n):
                C[np.uint64(cr + j)] += ((x0 * B[np.uint64(b0 + j)] + x1 * B[np.uint64(b1 + j)])
                                         + (x2 * B[np.uint64(b2 + j)]
                                            + x3 * B[np.uint64(b3 + j)]))
            p += 4
        while p < k:
            x = A[np.uint64(ar + p)]
            bp = p * n
            for j in range(n):
                C[np.uint64(cr + j)] += x * B[np.uint64(bp + j)]
            p += 1


@njit(**KERNEL)
def forward_window(params, layout, ws, rows, T, t0, t1, blas):
    """States h_{t0+1}..h_{t1} from h_{t0} (already in H), and the outputs of
    those steps (readout "all") or of step T when t1 == T (readout "last").

    The input projection of all t1 - t0 steps is one matrix product before
    the time loop; each step then adds h_{t-1} W_rec^T (skipped when the
    window starts from a zero state) and b, and applies f in place. The
    products take W_in and W_rec transposed (copied here from the current
    parameters), so that loops run them as row updates (BLAS given the
    transposed views instead was slower: 386 -> 503 us for the forward pass
    of h128 T40 b32). A step's product below :data:`SMALL_GEMM` multiply-adds
    runs as a loop that accumulates straight into h_t; a larger one goes to
    BLAS through the Z block.

    The blocks are sliced once per window, not per step (the loops index
    them at offsets): a slice costs an atomic reference-count update on
    creation and release (two slices per step were a fifth of the h16,
    batch 1 forward pass).
    """
    i, h, o = layout[IN], layout[HID], layout[OUT]
    wt_in, wt_rec, xs, hs, z, delta, a, ho, do = offsets(layout, rows, T)
    nw = n_weights(layout)
    w_out = h * i + h * h
    act = layout[ACT]
    steps = t1 - t0
    blk = rows * h
    # offset 0 as an int64: the literal 0 would compile a specialization of
    # its own for each helper also called at run-time offsets
    bias = params[nw:nw + h]
    _transpose(params, ZERO, ws, wt_in, h, i)
    _transpose(params, h * i, ws, wt_rec, h, h)
    WT_rec = ws[wt_rec:wt_rec + h * h]
    Z = ws[z:z + blk]
    # block s of Hs is the state h_{t0+s}, s = 0..steps
    Hs = ws[hs + t0 * blk:hs + t1 * blk + blk]
    XS = ws[xs + t0 * rows * i:xs + t1 * rows * i]
    WT_in = ws[wt_in:wt_in + i * h]
    small = blas is None or blk * h < SMALL_GEMM
    zero_start = _is_zero(Hs, ZERO, blk)
    # a_t = b + x_t W_in^T for every step of the window, in blocks 1..steps
    if i == 1:
        _project_scalar_inputs(XS, WT_in, bias, Hs, blk, steps * rows, h)
    else:
        gemm_nn_blocks(XS, 0, WT_in, 0, Hs[blk:], 0, steps * rows, h, i, blas)
        _add_bias_rows(Hs, blk, bias, steps * rows, h)
    for s in range(1, steps + 1):
        cur = s * blk
        if s == 1 and zero_start:
            activate_inplace(Hs, cur, rows, h, act)
        elif small:
            _product_add(Hs, cur - blk, WT_rec, Hs, cur, rows, h, h)
            activate_inplace(Hs, cur, rows, h, act)
        else:
            gemm_nn(Hs[cur - blk:cur], 0, WT_rec, 0, Z, 0, rows, h, h, blas)
            add_activate(Hs, cur, Z, blk, act)
    # outputs: y_t = g(h_t W_out^T + b_out)
    if layout[ALL]:
        first, n_rows, out0 = t0 + 1, steps * rows, t0 * rows * o
    elif t1 == T:
        first, n_rows, out0 = T, rows, 0
    else:
        return
    n = n_rows * o
    A = ws[a + out0:a + out0 + n]
    HO = ws[ho + out0:ho + out0 + n]
    gemm_nt(ws[hs + first * blk:hs + first * blk + n_rows * h], 0, params[w_out:w_out + o * h],
            0, A, 0, n_rows, o, h, blas)
    add_bias(A, ZERO, params[nw + h:nw + h + o], ZERO, n_rows, o)
    copy_block(A, HO)
    activate_inplace(HO, ZERO, n_rows, o, layout[OUT_ACT])


@njit(**KERNEL)
def window_loss(ws, layout, rows, T, t0, t1, lb, tb, loss_code):
    """Loss of the outputs of window (t0, t1] and their delta d(mean loss)/dlogits
    (the mean over the window's loss terms) in DO. Returns (loss summed over
    the terms, number correct, number of terms); (0, 0, 0) for a window
    without outputs (readout "last" before the final window)."""
    o = layout[OUT]
    wt_in, wt_rec, xs, hs, z, delta, a, ho, do = offsets(layout, rows, T)
    if layout[ALL]:
        n_rows, out0, lab0 = (t1 - t0) * rows, t0 * rows * o, t0 * rows
    elif t1 == T:
        n_rows, out0, lab0 = rows, 0, 0
    else:
        return 0.0, 0.0, 0
    if lb.shape[0] > 0:
        loss, correct = loss_and_delta(ws, a + out0, ho + out0, do + out0, n_rows, o,
                                       lb[lab0:], tb, loss_code, layout[OUT_ACT])
    else:
        loss, correct = loss_and_delta(ws, a + out0, ho + out0, do + out0, n_rows, o,
                                       lb, tb[lab0:], loss_code, layout[OUT_ACT])
    return loss, correct, n_rows


@njit(**KERNEL)
def backward_window(params, grads, layout, ws, rows, T, t0, t1, truncate, inject, carry_out,
                    blas):
    """Backpropagation through time over window (t0, t1], after
    :func:`forward_window` and :func:`window_loss`; writes every entry of
    ``grads``.

    In the row-per-sequence form of a_t = W_in x_t + W_rec h_{t-1} + b::

        dJ/dh_t = dJ_t/dh_t + delta_{t+1} W_rec      (carry from step t + 1)
        delta_t = dJ/dh_t * f'(a_t)
        dW_rec  = sum_t delta_t^T h_{t-1},   dW_in = sum_t delta_t^T x_t,
        db      = sum_t colsums(delta_t),    dW_out = sum_t (dJ/dlogits_t)^T h_t

    The state entering the window is a constant: the carry into h_{t0} does
    not reach the parameters. ``truncate`` > 0 also drops the carry into
    every h_s with s a multiple of ``truncate``; over the whole sequence
    (t0 = 0, t1 = T) that gives the truncated-BPTT gradient of every window
    at fixed parameters, summed. 0 keeps every path inside the window.

    The carry delta_t W_rec goes straight into the DELTA block of step t - 1
    (loops: accumulated row by row; BLAS: written there when step t - 1 has
    no direct gradient, else through Z and added), and db is summed block by
    block while the block is in cache. A zero state entering the window
    (h_0 = 0) adds nothing to dW_rec: its rows are left out of the product.

    Hooks for synthetic gradients (``alternatives``): ``inject`` ((rows * h,)
    or (0,) for none) is added to dJ/dh_{t1} before the time loop (a
    prediction of the gradient from beyond the window); with ``carry_out``
    the Z block receives dJ/dh_{t0} = delta_{t0+1} W_rec afterwards, the
    gradient that arrives at the window's first state.
    """
    i, h, o = layout[IN], layout[HID], layout[OUT]
    wt_in, wt_rec, xs, hs, z, delta, a, ho, do = offsets(layout, rows, T)
    nw = n_weights(layout)
    w_rec = h * i
    w_out = w_rec + h * h
    act = layout[ACT]
    steps = t1 - t0
    blk = rows * h
    m = steps * rows
    DELTA = ws[delta + t0 * blk:delta + t1 * blk]
    # block s of Hs is the state h_{t0+s}, s = 0..steps
    Hs = ws[hs + t0 * blk:hs + t1 * blk + blk]
    W_rec = params[w_rec:w_rec + h * h]
    Z = ws[z:z + blk]
    db = grads[nw:nw + h]
    # output layer and the direct gradient into each state (readout "last":
    # only h_T has one)
    every_step = layout[ALL] != 0
    if every_step:
        first, n_rows, out0 = t0 + 1, m, t0 * rows * o
    elif t1 == T:
        first, n_rows, out0 = T, rows, 0
    else:
        first, n_rows, out0 = T + 1, 0, 0
    if n_rows > 0:
        DO = ws[do + out0:do + out0 + n_rows * o]
        H_out = ws[hs + first * blk:hs + first * blk + n_rows * h]
        if o <= h:      # the WT_rec block holds (o, h): scratch (see below)
            gemm_tn_blocks(DO, 0, H_out, 0, grads[w_out:w_out + o * h], 0, n_rows, o, h, ws,
                           wt_rec, blas)
        else:
            gemm_tn(DO, 0, H_out, 0, grads[w_out:w_out + o * h], 0, n_rows, o, h, blas)
        bias_gradient(DO, ZERO, grads[nw + h:nw + h + o], ZERO, n_rows, o)
        d_first = (first - 1 - t0) * blk
        gemm_nn_blocks(DO, 0, params[w_out:w_out + o * h], 0,
                       DELTA[d_first:d_first + n_rows * h], 0, n_rows, h, o, blas)
    else:
        grads[w_out:w_out + o * h] = 0.0
        grads[nw + h:nw + h + o] = 0.0
        _zero_block(DELTA, (steps - 1) * blk, blk)
    if inject.shape[0] > 0:
        _add_to_block(DELTA, (steps - 1) * blk, inject, blk)
    small = blas is None or blk * h < SMALL_GEMM
    if not small:
        # the carry products' B operand, 64-byte aligned (see ALIGN)
        wc = w_rec_offset(layout, rows, T)
        copy_block(W_rec, ws[wc:wc + h * h])
        W_rec = ws[wc:wc + h * h]
    db[:] = 0.0
    # the time loop: only the (rows, h) x (h, h) carry product is sequential;
    # block s - 1 of DELTA is step t0 + s
    carried = False     # Z holds the carry into the current step (BLAS path)
    for s in range(steps, 0, -1):
        d = (s - 1) * blk
        if carried:
            add_backprop_activation(Hs, s * blk, DELTA, d, Z, blk, act)
        else:
            backprop_activation(Hs, s * blk, DELTA, d, rows, h, act)
        _add_column_sums(DELTA, d, db, rows, h)
        carried = False
        if s == 1:
            break
        # the carry into h_{t-1} (t = t0 + s): a direct gradient is already
        # in its block for readout "all"; "last" has none before step T
        cut = truncate != 0 and (t0 + s - 1) % truncate == 0
        if cut:
            if not every_step:
                _zero_block(DELTA, d - blk, blk)
        elif small:
            if not every_step:
                _zero_block(DELTA, d - blk, blk)
            _product_add(DELTA, d, W_rec, DELTA, d - blk, rows, h, h)
        else:
            # into Z, added next step, or straight into the block
            carried = every_step
            dst = Z if carried else DELTA[d - blk:d]
            gemm_nn(DELTA[d:d + blk], 0, W_rec, 0, dst, 0, rows, h, h, blas)
    # weight gradients of the whole window as single products
    skip = rows if _is_zero(Hs, ZERO, blk) else 0
    # (the blocks of WT_rec and WT_in are free until the next forward pass:
    # scratch for products summed over row blocks, here and for dW_out above)
    if skip < m:
        gemm_tn_blocks(DELTA[skip * h:], 0, Hs[skip * h:], 0, grads[w_rec:w_rec + h * h], 0,
                       m - skip, h, h, ws, wt_rec, blas)
    else:
        grads[w_rec:w_rec + h * h] = 0.0
    _input_gradient(DELTA, ws[xs + t0 * rows * i:xs + t1 * rows * i], grads[:h * i], m, h, i,
                    ws, wt_in, blas)
    if carry_out:
        gemm_nn(DELTA[:blk], 0, W_rec, 0, Z, 0, rows, h, h, blas)


@njit(**KERNEL)
def sequence_gradients(X, labels, targets, params, grads, ws, layout, lb, tb, loss_code,
                       truncate, blas):
    """Gradient of the batch's mean loss with backpropagation through time,
    truncated at every multiple of ``truncate`` (0: full BPTT), at fixed
    parameters; X holds the whole batch, taken in order. Returns (loss sum,
    number correct, number of loss terms)."""
    rows, T = X.shape[0], X.shape[1]
    xs = offsets(layout, rows, T)[2]
    gather_sequences(X, labels, targets, lb[:0], ZERO, rows, ws, xs, lb, tb)
    zero_initial_state(ws, layout, rows, T)
    forward_window(params, layout, ws, rows, T, ZERO, T, blas)
    loss, correct, terms = window_loss(ws, layout, rows, T, ZERO, T, lb, tb, loss_code)
    backward_window(params, grads, layout, ws, rows, T, ZERO, T, truncate, params[:0],
                    np.bool_(False), blas)
    return loss, correct, terms


@njit(inline="always", **KERNEL)
def train_batch(args, rows, T, lb, tb):
    """Train on one gathered batch (inputs in XS, labels/targets in lb/tb):
    one update for full BPTT, or one update per window of ``args.truncate``
    steps that has a loss term (truncated BPTT, the state carried across
    windows).

    Returns
    -------
    loss_acc : float
        Sum over loss terms of the objective of the window they belong to.
    correct : float
    terms : int
        Loss terms of the batch (rows, or rows * T for readout "all").
    updates : int
        Updates applied.
    status : int
        OK, or the failure code of the window that stopped (its update, and
        those of later windows, are not applied).
    """
    params, grads, state, opt_hyper, train_hyper, ws, layout, truncate, blas = args
    loss_code = int(train_hyper[LOSS])
    nw = n_weights(layout)
    k = T if truncate == 0 else truncate
    zero_initial_state(ws, layout, rows, T)
    loss_acc = 0.0
    correct = 0.0
    terms = 0
    updates = 0
    first = ZERO
    if layout[ALL] == 0 and k < T:
        # readout "last": the windows before the one that ends at T have no
        # loss and no update between them, so their states come from one
        # forward pass (one transposition of the weights, one input product)
        first = (T - 1) // k * k
        forward_window(params, layout, ws, rows, T, ZERO, first, blas)
    for t0 in range(first, T, k):
        t1 = min(t0 + k, T)
        forward_window(params, layout, ws, rows, T, t0, t1, blas)
        loss, c, n = window_loss(ws, layout, rows, T, t0, t1, lb, tb, loss_code)
        if n == 0:
            continue
        backward_window(params, grads, layout, ws, rows, T, t0, t1, ZERO, params[:0],
                        np.bool_(False), blas)
        obj, status = finish_step(params, grads, state, opt_hyper, train_hyper, nw, loss / n)
        if status != OK:
            return loss_acc, correct, terms, updates, status
        loss_acc += obj * n
        correct += c
        terms += n
        updates += 1
    return loss_acc, correct, terms, updates, OK


@njit(**KERNEL)
def train_step(params, grads, state, opt_hyper, train_hyper, ws, layout, truncate, blas, X,
               labels, targets, lb, tb):
    """One training step on the batch X (rows, T, i), the sequences in order:
    see :func:`train_batch`, whose :data:`BPTTArgs` come as separate arrays
    (unboxing a namedtuple of arrays costs more, per call from Python, than
    the whole step of a small network).
    Returns (mean objective over loss terms, number correct, status)."""
    rows, T = X.shape[0], X.shape[1]
    gather_sequences(X, labels, targets, lb[:0], ZERO, rows, ws,
                     offsets(layout, rows, T)[2], lb, tb)
    args = BPTTArgs(params, grads, state, opt_hyper, train_hyper, ws, layout, truncate, blas)
    loss_acc, correct, terms, updates, status = train_batch(args, rows, T, lb, tb)
    return loss_acc / max(terms, 1), correct, status


@njit(**KERNEL)
def bptt_batch(args, X, labels, targets, order, xb, lb, tb, start, rows, phase):
    """The epoch driver's step (see :mod:`fastbp.kernels.epochs`): gather
    sequences order[start:start + rows] into the workspace, then
    :func:`train_batch`. ``xb`` is unused (the inputs go to the workspace)."""
    T = X.shape[1]
    gather_sequences(X, labels, targets, order, start, rows, args.ws,
                     offsets(args.layout, rows, T)[2], lb, tb)
    loss, c, terms, updates, status = train_batch(args, rows, T, lb, tb)
    return loss, c, terms, updates, 0.0, 0, status


register_batch_step(BPTTArgs, bptt_batch)


@njit(**KERNEL)
def train_epochs(args, data, plan, stats):
    """Whole epochs of (truncated) BPTT in one call: see
    :func:`fastbp.kernels.epochs.run_epochs`; X (n, T, i), labels (n, Tl) or
    (0, 0), targets (n, Tl, o) or (0, 0, 0), lb/tb batch buffers of
    batch_size * Tl rows; the statistics count loss terms."""
    return run_epochs(args, data, plan, stats)


@njit(**KERNEL)
def evaluate_chunked(X, labels, targets, order, params, ws, layout, lb, tb, loss_code,
                     capacity, blas):
    """Loss summed over every loss term of X (n, T, i) and number correct,
    ``capacity`` sequences per forward pass (zero initial state; ``order`` is
    (0,): in order)."""
    n, T = X.shape[0], X.shape[1]
    loss = 0.0
    correct = 0.0
    for start in range(0, n, capacity):
        rows = min(capacity, n - start)
        xs = offsets(layout, rows, T)[2]
        gather_sequences(X, labels, targets, order, start, rows, ws, xs, lb, tb)
        zero_initial_state(ws, layout, rows, T)
        forward_window(params, layout, ws, rows, T, ZERO, T, blas)
        l, c, terms = window_loss(ws, layout, rows, T, ZERO, T, lb, tb, loss_code)
        loss += l
        correct += c
    return loss, correct


@njit(**KERNEL)
def predict_chunked(X, h0, params, ws, layout, capacity, out, state_out, blas):
    """Outputs of X (n, T, i) into ``out`` ((n, o) for readout "last", (n, T, o)
    for "all", given flat as (n * rows_per_sample, o)) and the final states into
    ``state_out`` (n, h); h0 (n, h) is the initial state, or (0, 0) for zeros."""
    n, T, n_in = X.shape
    h, o = layout[HID], layout[OUT]
    for start in range(0, n, capacity):
        rows = min(capacity, n - start)
        wt_in, wt_rec, xs, hs, z, delta, a, ho, do = offsets(layout, rows, T)
        for s in range(rows):
            for t in range(T):
                d = xs + (t * rows + s) * n_in
                for j in range(n_in):
                    ws[d + j] = X[start + s, t, j]
        set_initial_state(ws, layout, rows, T, h0, start)
        forward_window(params, layout, ws, rows, T, ZERO, T, blas)
        last = hs + T * rows * h
        for s in range(rows):
            for j in range(h):
                state_out[start + s, j] = ws[last + s * h + j]
            if layout[ALL]:
                for t in range(T):
                    src = ho + (t * rows + s) * o
                    dst = (start + s) * T + t
                    for j in range(o):
                        out[dst, j] = ws[src + j]
            else:
                for j in range(o):
                    out[start + s, j] = ws[ho + s * o + j]

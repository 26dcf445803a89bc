"""Numba kernels of online alternating minimisation with auxiliary variables
(Choromanska et al., ICML 2019) for an MLP: codes, local weight gradients,
one training step, and the AM-mem memory with its Gauss-Seidel sweep.

Conventions are those of :mod:`fastbp.kernels.mlp`: ``layout`` =
[L, n_0..n_L, act_1..act_L]; flat ``params``/``grads`` (every W_l (n_l,
n_{l-1}) row-major, then every b_l); a flat row-major batch ``x`` of ``rows``
samples; the MLP workspace ``ws`` (H_1..H_L, A_L, two delta blocks D1, D2 of
rows * max(n_1..n_L)); ``blas`` None or 1.

Buffers (allocate with :func:`altmin_buffers` and :func:`memory_buffers`)
------------------------------------------------------------------------
``aux`` = :data:`AltMinBuffers` (hyper, ws, codes, codes0, vel):

* ``hyper`` float64 (6,): [mu, code_lr, code_momentum, code_steps, decay,
  ridge] (indices MU, CODE_LR, CODE_MOMENTUM, CODE_STEPS, DECAY, RIDGE; see
  :func:`make_hyper`). Read at every call, so it may be changed in place.
* ``ws``: the MLP workspace for ``capacity`` rows.
* ``codes``, ``codes0``: rows * (n_1 + ... + n_{L-1}) entries, one (rows, n_l)
  block per hidden layer in layer order, at the same offsets as H_l in ``ws``
  (:func:`code_offset`): the codes c_l being optimised and their initial values
  c0_l, the hidden pre-activations of the forward pass.
* ``vel``: rows * max(n_1..n_{L-1}), the velocity of the code being optimised.

During a step, H_l in ``ws`` holds f(c_l) (the forward pass's activations
first, f(c*_l) once code l is final); the output blocks (A_L, H_L, D1) serve
every evaluation of the output loss; D1 holds residuals and D2 code gradients.

``mem`` = :data:`Memory` (A, B, A_new, B_new, cand), for AM-mem only. Per hidden
layer l (n_in = n_{l-1}, n_out = n_l, a = [f(c*_{l-1}), 1], f(c*_0) = x):

* A block (:func:`memory_offsets`): sum a a^T stored as its parts
  [A_ww (n_in, n_in) row-major, A_w1 (n_in) = sum f(c*_{l-1}), A_11 = count]
  (n_in^2 + n_in + 1 entries);
* B block: sum c* a^T as [B_w (n_out, n_in) = sum c* f(c*_{l-1})^T,
  B_1 (n_out) = sum c*] (n_out * (n_in + 1) entries), laid out like [W_l b_l];
* ``A_new``, ``B_new``: the same layout, the candidates of one step;
* ``cand``: laid out like ``params``, the candidate [W_l b_l] of the sweep.

The memory dtype is the model's.

Equations (one mini-batch; nothing but optimizer state and the memory is
carried from one batch to the next)
------------------------------------------------------------------------
1. Forward pass: c0_l = a_l = W_l f(c0_{l-1}) + b_l (l < L), and the batch
   loss and number correct at the current parameters (what the step reports).
2. Codes, top hidden layer down, each from c_l = c0_l by ``code_steps`` steps of
   Nesterov momentum (the torch.optim.SGD nesterov convention, velocity 0 at
   the start of each code)::

       g = dJ_l/dc (c);  v = m v + g;  c = c - lr (g + m v)

   so the first step is c_1 = c0 - lr (1 + m) g(c0). The objectives (every
   squared distance a mean over its rows * width entries):

   top (l = L-1):  J = (1/mu) loss(W_L f(c) + b_L, y) + mean((c - c0)^2),
                   loss the model's loss, mean over the batch (as backprop's);
   lower (l < L-1): J = mean((W_{l+1} f(c) + b_{l+1} - c*_{l+1})^2)
                        + mean((c - c0)^2), c*_{l+1} the final code above.

3. Weights: the output layer gets d loss(W_L f(c*_{L-1}) + b_L, y)/d(W_L, b_L)
   (the batch mean, as backprop); hidden layer l gets the gradient of
   mean((W_l f(c*_{l-1}) + b_l - c*_l)^2) (f(c*_0) = x), which depends on no
   other layer's update. One optimizer step (:func:`finish_step`: weight
   decay, clipping, finiteness check) applies them all (:func:`altmin_step`).
4. AM-mem (:func:`altmin_mem_step`): the output layer as in 3; each hidden
   layer instead updates its memory and takes one Gauss-Seidel sweep on
   [W b] (A + ridge P) = B (P = I except 0 for the bias):

       A <- (1 - decay) A + sum_batch a a^T;  B <- (1 - decay) B + sum_batch c* a^T

   decay 0 accumulates every batch seen (the sweep's fixed point is then the
   least-squares fit over all of them); decay 1 keeps the current batch only;
   in between, batch t-k weighs (1 - decay)^k. (The reference code's filter
   eta, A <- (1 - eta) A + eta S, gives the same weights times eta, which
   cancels in W = B A^-1 and only rescales the ridge.)
   The sweep, for every output unit i and then the bias, coordinate j of row
   i of [W b] (rows of W are independent, so row by row equals the textbook
   column-by-column order):

       w_ij <- w_ij + (B_ij - sum_k w_ik A_kj - ridge w_ij) / (A_jj + ridge)

   the exact minimiser of tr(W A W^T) - 2 tr(W B^T) + ridge ||W||_F^2 in
   w_ij (the bias gets no ridge, as fastbp's weight decay spares biases). A
   coordinate whose denominator is 0 (an input that was 0 in every sample
   remembered, and ridge 0) is left unchanged. A is used as symmetric, which
   the memory update makes it.

Failures leave everything untouched: :func:`altmin_step` through
:func:`finish_step`; :func:`altmin_mem_step` computes the memory and the
swept weights into ``mem.A_new``, ``mem.B_new`` and ``mem.cand``, checks the
loss, the output-layer update and every candidate for finiteness, and only
then applies the optimizer step and copies the candidates in.
"""
from collections import namedtuple

import numpy as np
from numba import njit

from fastbp.kernels.activations import activate, activate_inplace, backprop_activation
from fastbp.kernels.codes import KERNEL, MSE, NONFINITE_UPDATE, OK, SQUARED_ERROR
from fastbp.kernels.linalg import gemm_nn, gemm_nt, gemm_tn
from fastbp.kernels.losses import loss_and_delta
from fastbp.kernels.mlp import add_bias, bias_gradient, max_width, n_weights, output_offsets
from fastbp.kernels.optim import LOSS, apply_update, check_step, finish_step
from fastbp.models import mlp_workspace_size

#: indices into ``hyper``
MU, CODE_LR, CODE_MOMENTUM, CODE_STEPS, DECAY, RIDGE = 0, 1, 2, 3, 4, 5

#: a step's buffers; see the module docstring
AltMinBuffers = namedtuple("AltMinBuffers", ["hyper", "ws", "codes", "codes0", "vel"])
#: AM-mem's memory and one step's candidates; see the module docstring
Memory = namedtuple("Memory", ["A", "B", "A_new", "B_new", "cand"])


# -- sizes and offsets (Python) ---------------------------------------------------------

def make_hyper(mu, code_lr, code_momentum, code_steps, decay=0.0, ridge=0.0):
    """The float64 ``hyper`` vector: [mu, code_lr, code_momentum, code_steps,
    decay, ridge]."""
    return np.array([mu, code_lr, code_momentum, code_steps, decay, ridge],
                    dtype=np.float64)


def code_size(sizes, capacity):
    """Entries of ``codes`` (and ``codes0``): capacity * (n_1 + ... + n_{L-1})."""
    return capacity * sum(sizes[1:-1])


def altmin_buffers(sizes, capacity, dtype, hyper, ws=None):
    """An :data:`AltMinBuffers` for batches of up to ``capacity`` rows of an MLP
    of layer ``sizes`` [n_0, ..., n_L]; ``ws`` an existing MLP workspace of at
    least that capacity, or None to allocate one."""
    if ws is None:
        ws = np.zeros(mlp_workspace_size(sizes, capacity), dtype=dtype)
    n = code_size(sizes, capacity)
    vel = np.zeros(capacity * max(sizes[1:-1], default=0), dtype=dtype)
    return AltMinBuffers(np.asarray(hyper, dtype=np.float64), ws, np.zeros(n, dtype=dtype),
                         np.zeros(n, dtype=dtype), vel)


def memory_sizes(sizes):
    """(entries of A, entries of B) of the memory of an MLP of layer ``sizes``."""
    a = sum(n_in * n_in + n_in + 1 for n_in in sizes[:-2])
    b = sum(n_out * (n_in + 1) for n_in, n_out in zip(sizes[:-2], sizes[1:-1]))
    return a, b


def memory_buffers(sizes, dtype):
    """A zeroed :data:`Memory` for an MLP of layer ``sizes``."""
    a, b = memory_sizes(sizes)
    n_params = sum((n_in + 1) * n_out for n_in, n_out in zip(sizes[:-1], sizes[1:]))
    return Memory(np.zeros(a, dtype=dtype), np.zeros(b, dtype=dtype), np.zeros(a, dtype=dtype),
                  np.zeros(b, dtype=dtype), np.zeros(n_params, dtype=dtype))


# -- offsets (kernels) ------------------------------------------------------------------

@njit(**KERNEL)
def code_offset(layout, rows, l):
    """Offset of hidden layer l's (rows, n_l) block in ``codes`` (and of H_l
    in ``ws``): rows * (n_1 + ... + n_{l-1})."""
    off = 0
    for j in range(1, l):
        off += rows * layout[j + 1]
    return off


@njit(**KERNEL)
def layer_offsets(layout, l):
    """(offset of W_l, offset of b_l) in ``params``."""
    L = layout[0]
    woff = 0
    boff = n_weights(layout)
    for j in range(1, l):
        woff += layout[j] * layout[j + 1]
        boff += layout[j + 1]
    return woff, boff


@njit(**KERNEL)
def memory_offsets(layout, l):
    """(offset of hidden layer l's block in A, in B)."""
    a = 0
    b = 0
    for j in range(1, l):
        n_in = layout[j]
        a += n_in * n_in + n_in + 1
        b += layout[j + 1] * (n_in + 1)
    return a, b


@njit(**KERNEL)
def _deltas(layout, rows):
    """Offsets of the workspace's delta blocks D1 (the output delta) and D2."""
    h_off, a_off, d_off = output_offsets(layout, rows)
    return d_off, d_off + rows * max_width(layout)


# -- forward pass and output loss -------------------------------------------------------

@njit(**KERNEL)
def output_loss(src, s0, rows, params, layout, ws, labels, targets, loss_code, blas):
    """A_L = src W_L^T + b_L into ``ws`` (src the (rows, n_{L-1}) block of
    ``src`` at ``s0``), then the loss and its delta d(mean loss)/dA_L at D1.
    H_L = f_out(A_L) is computed only for the losses that read it (squared_error,
    mse). Returns (loss summed over the batch, number correct)."""
    L = layout[0]
    nin = layout[L]
    k = layout[L + 1]
    woff, boff = layer_offsets(layout, L)
    h_off, a_off, d_off = output_offsets(layout, rows)
    gemm_nt(src, s0, params, woff, ws, a_off, rows, k, nin, blas)
    add_bias(ws, a_off, params, boff, rows, k)
    if loss_code == SQUARED_ERROR or loss_code == MSE:
        activate(ws, a_off, ws, h_off, rows, k, layout[2 * L + 1])
    return loss_and_delta(ws, a_off, h_off, d_off, rows, k, labels, targets, loss_code,
                          layout[2 * L + 1])


@njit(**KERNEL)
def _hidden_layer(src, s0, rows, params, l, layout, aux, blas):
    """c0_l = src W_l^T + b_l into codes0 and codes; H_l = f(c0_l) into ws."""
    nin = layout[l]
    nout = layout[l + 1]
    woff, boff = layer_offsets(layout, l)
    off = code_offset(layout, rows, l)
    n = rows * nout
    c0 = aux.codes0[off:off + n]
    gemm_nt(src, s0, params, woff, c0, 0, rows, nout, nin, blas)
    add_bias(c0, 0, params[boff:boff + nout], 0, rows, nout)
    aux.codes[off:off + n] = c0
    h = aux.ws[off:off + n]
    h[:] = c0
    activate_inplace(h, 0, rows, nout, layout[layout[0] + 1 + l])


@njit(**KERNEL)
def initial_codes(x, labels, targets, rows, params, layout, aux, loss_code, blas):
    """Forward pass keeping the hidden pre-activations: codes0 = codes = c0,
    H_l = f(c0_l) in ``ws`` (what :func:`fastbp.kernels.mlp.forward` leaves
    there), A_L and the output loss. fastbp's forward overwrites each a_l with
    f(a_l), and recovering a_l afterwards would cost one more product per
    hidden layer, so this pass runs the same per-layer products itself.

    Returns (loss summed over the batch, number correct) at the current
    parameters."""
    L = layout[0]
    for l in range(1, L):
        if l == 1:
            _hidden_layer(x, 0, rows, params, l, layout, aux, blas)
        else:
            _hidden_layer(aux.ws, code_offset(layout, rows, l - 1), rows, params, l, layout,
                          aux, blas)
    if L == 1:
        return output_loss(x, 0, rows, params, layout, aux.ws, labels, targets, loss_code,
                           blas)
    return output_loss(aux.ws, code_offset(layout, rows, L - 1), rows, params, layout, aux.ws,
                       labels, targets, loss_code, blas)


# -- code objectives, their gradients and descent -----------------------------------------

@njit(**KERNEL)
def top_code_gradient(c, c0, h, g, params, layout, ws, labels, targets, loss_code, mu, blas):
    """Objective and gradient of the top code c = c_{L-1}:
    J = (1/mu) loss(W_L f(c) + b_L, y) + mean((c - c0)^2).

    c, c0, h, g are (rows, n_{L-1}) blocks of exactly rows * n_{L-1} entries;
    h receives f(c), g receives dJ/dc. ``ws`` serves the output blocks (A_L,
    H_L, D1); ``h`` may be its H_{L-1} block. Returns J.
    """
    L = layout[0]
    n = layout[L]
    k = layout[L + 1]
    rows = c.shape[0] // n
    activate(c, 0, h, 0, rows, n, layout[L + L])
    loss_sum, _ = output_loss(h, 0, rows, params, layout, ws, labels, targets, loss_code, blas)
    woff, _ = layer_offsets(layout, L)
    d_off = output_offsets(layout, rows)[2]
    gemm_nn(ws, d_off, params, woff, g, 0, rows, n, k, blas)
    backprop_activation(h, 0, g, 0, rows, n, layout[L + L])
    inv_mu = 1.0 / mu
    s = 2.0 / (rows * n)
    dist = 0.0
    for i in range(rows * n):
        d = c[i] - c0[i]
        dist += d * d
        g[i] = g[i] * inv_mu + s * d
    return loss_sum / rows * inv_mu + dist / (rows * n)


@njit(**KERNEL)
def lower_code_gradient(l, c, c0, h, g, t, r, params, layout, blas):
    """Objective and gradient of a lower code c = c_l (1 <= l <= L-2):
    J = mean((W_{l+1} f(c) + b_{l+1} - t)^2) + mean((c - c0)^2), t = c*_{l+1}.

    c, c0, h, g are (rows, n_l) blocks of exactly rows * n_l entries (h
    receives f(c), g receives dJ/dc); t and r are (rows, n_{l+1}) (r receives
    the scaled residual 2 (W f(c) + b - t) / (rows n_{l+1})). Returns J.
    """
    L = layout[0]
    n = layout[l + 1]
    m = layout[l + 2]
    rows = c.shape[0] // n
    woff, boff = layer_offsets(layout, l + 1)
    activate(c, 0, h, 0, rows, n, layout[L + 1 + l])
    gemm_nt(h, 0, params, woff, r, 0, rows, m, n, blas)
    add_bias(r, 0, params[boff:boff + m], 0, rows, m)
    fit = 0.0
    sr = 2.0 / (rows * m)
    for i in range(rows * m):
        e = r[i] - t[i]
        fit += e * e
        r[i] = sr * e
    gemm_nn(r, 0, params, woff, g, 0, rows, n, m, blas)
    backprop_activation(h, 0, g, 0, rows, n, layout[L + 1 + l])
    s = 2.0 / (rows * n)
    dist = 0.0
    for i in range(rows * n):
        d = c[i] - c0[i]
        dist += d * d
        g[i] += s * d
    return fit / (rows * m) + dist / (rows * n)


@njit(**KERNEL)
def nesterov_step(c, v, g, lr, mom):
    """v = mom v + g;  c -= lr (g + mom v) (torch.optim.SGD, nesterov=True)."""
    for i in range(c.shape[0]):
        gi = g[i]
        vi = mom * v[i] + gi
        v[i] = vi
        c[i] -= lr * (gi + mom * vi)


@njit(**KERNEL)
def _code_blocks(layout, rows, aux, l):
    """Views of code l's blocks: c, c0, h (H_l in ws), g (D2), v."""
    n = rows * layout[l + 1]
    off = code_offset(layout, rows, l)
    d1, d2 = _deltas(layout, rows)
    return (aux.codes[off:off + n], aux.codes0[off:off + n], aux.ws[off:off + n],
            aux.ws[d2:d2 + n], aux.vel[:n])


@njit(**KERNEL)
def descend_top_code(rows, params, layout, aux, labels, targets, loss_code, blas):
    """code_steps Nesterov steps on the top code (in ``aux.codes``), from its
    current value with zero velocity; leaves H_{L-1} = f(c*_{L-1}) in ``ws``."""
    L = layout[0]
    hy = aux.hyper
    c, c0, h, g, v = _code_blocks(layout, rows, aux, L - 1)
    v[:] = 0.0
    for _ in range(int(hy[CODE_STEPS])):
        top_code_gradient(c, c0, h, g, params, layout, aux.ws, labels, targets, loss_code,
                          hy[MU], blas)
        nesterov_step(c, v, g, hy[CODE_LR], hy[CODE_MOMENTUM])
    activate(c, 0, h, 0, rows, layout[L], layout[L + L])


@njit(**KERNEL)
def descend_lower_code(l, rows, params, layout, aux, blas):
    """code_steps Nesterov steps on code l (1 <= l <= L-2) toward the final
    code l+1 above it; leaves H_l = f(c*_l) in ``ws``."""
    L = layout[0]
    hy = aux.hyper
    c, c0, h, g, v = _code_blocks(layout, rows, aux, l)
    m = rows * layout[l + 2]
    toff = code_offset(layout, rows, l + 1)
    t = aux.codes[toff:toff + m]
    d1, d2 = _deltas(layout, rows)
    r = aux.ws[d1:d1 + m]
    v[:] = 0.0
    for _ in range(int(hy[CODE_STEPS])):
        lower_code_gradient(l, c, c0, h, g, t, r, params, layout, blas)
        nesterov_step(c, v, g, hy[CODE_LR], hy[CODE_MOMENTUM])
    activate(c, 0, h, 0, rows, layout[l + 1], layout[L + 1 + l])


@njit(**KERNEL)
def update_codes(labels, targets, rows, params, layout, aux, loss_code, blas):
    """The codes step after :func:`initial_codes`: the top code, then each lower
    code down to c_1. Afterwards ``aux.codes`` holds c* and H_l = f(c*_l)."""
    L = layout[0]
    if L < 2:
        return
    descend_top_code(rows, params, layout, aux, labels, targets, loss_code, blas)
    for l in range(L - 2, 0, -1):
        descend_lower_code(l, rows, params, layout, aux, blas)


# -- weights ------------------------------------------------------------------------------

@njit(**KERNEL)
def _output_grads(src, s0, labels, targets, rows, params, grads, layout, ws, loss_code,
                  blas):
    L = layout[0]
    nin = layout[L]
    k = layout[L + 1]
    woff, boff = layer_offsets(layout, L)
    loss_sum, _ = output_loss(src, s0, rows, params, layout, ws, labels, targets, loss_code,
                              blas)
    d_off = output_offsets(layout, rows)[2]
    gemm_tn(ws, d_off, src, s0, grads, woff, rows, k, nin, blas)
    bias_gradient(ws[d_off:d_off + rows * k], 0, grads[boff:boff + k], 0, rows, k)
    return loss_sum


@njit(**KERNEL)
def output_layer_gradient(x, labels, targets, rows, params, grads, layout, ws, loss_code,
                          blas):
    """grads[W_L, b_L] = d loss(W_L f(c*_{L-1}) + b_L, y)/d(W_L, b_L), the batch
    mean, from H_{L-1} = f(c*_{L-1}) in ``ws`` (from x when L = 1). Returns
    the loss summed over the batch at the final codes."""
    L = layout[0]
    if L == 1:
        return _output_grads(x, 0, labels, targets, rows, params, grads, layout, ws,
                             loss_code, blas)
    return _output_grads(ws, code_offset(layout, rows, L - 1), labels, targets, rows, params,
                         grads, layout, ws, loss_code, blas)


@njit(**KERNEL)
def _local_grads(src, s0, l, rows, params, grads, layout, c, r, blas):
    nin = layout[l]
    nout = layout[l + 1]
    woff, boff = layer_offsets(layout, l)
    gemm_nt(src, s0, params, woff, r, 0, rows, nout, nin, blas)
    add_bias(r, 0, params[boff:boff + nout], 0, rows, nout)
    s = 2.0 / (rows * nout)
    for i in range(rows * nout):
        r[i] = s * (r[i] - c[i])
    gemm_tn(r, 0, src, s0, grads, woff, rows, nout, nin, blas)
    bias_gradient(r, 0, grads[boff:boff + nout], 0, rows, nout)


@njit(**KERNEL)
def hidden_layer_gradient(l, x, rows, params, grads, layout, aux, blas):
    """grads[W_l, b_l] = d mean((W_l f(c*_{l-1}) + b_l - c*_l)^2)/d(W_l, b_l)
    for hidden layer l, from ``aux.codes`` and H_{l-1} = f(c*_{l-1}) in ``ws``
    (x for l = 1). Reads no other layer's gradient and writes only its own
    slices of ``grads`` (and D1 as scratch), so layers may go in any order."""
    n = rows * layout[l + 1]
    off = code_offset(layout, rows, l)
    d1, d2 = _deltas(layout, rows)
    c = aux.codes[off:off + n]
    r = aux.ws[d1:d1 + n]
    if l == 1:
        _local_grads(x, 0, l, rows, params, grads, layout, c, r, blas)
    else:
        _local_grads(aux.ws, code_offset(layout, rows, l - 1), l, rows, params, grads, layout,
                     c, r, blas)


@njit(**KERNEL)
def weight_gradients(x, labels, targets, rows, params, grads, layout, aux, loss_code, blas):
    """Every layer's gradient into ``grads`` after :func:`update_codes`.
    Returns the loss summed over the batch at the final codes."""
    loss_sum = output_layer_gradient(x, labels, targets, rows, params, grads, layout, aux.ws,
                                     loss_code, blas)
    for l in range(1, layout[0]):
        hidden_layer_gradient(l, x, rows, params, grads, layout, aux, blas)
    return loss_sum


@njit(**KERNEL)
def altmin_step(x, labels, targets, rows, params, grads, state, opt_hyper, train_hyper, aux,
                layout, blas):
    """One AM step (gradient mode: AM-SGD / AM-Adam): :func:`initial_codes`,
    :func:`update_codes`, :func:`weight_gradients`, one :func:`finish_step`.

    Returns (objective, number correct, status) as
    :func:`fastbp.kernels.mlp.train_step`: the loss and accuracy of the
    forward pass at the parameters before the update (plus the weight decay
    penalty); parameters and optimizer state are unchanged unless status == OK.
    """
    loss_code = int(train_hyper[LOSS])
    loss_sum, correct = initial_codes(x, labels, targets, rows, params, layout, aux, loss_code,
                                      blas)
    update_codes(labels, targets, rows, params, layout, aux, loss_code, blas)
    weight_gradients(x, labels, targets, rows, params, grads, layout, aux, loss_code, blas)
    objective, status = finish_step(params, grads, state, opt_hyper, train_hyper,
                                    n_weights(layout), loss_sum / rows)
    return objective, correct, status


# -- AM-mem -------------------------------------------------------------------------------

@njit(**KERNEL)
def _memory_layer(src, s0, l, rows, layout, c, A, B, A_new, B_new, decay, blas):
    nin = layout[l]
    nout = layout[l + 1]
    a_off, b_off = memory_offsets(layout, l)
    na = nin * nin + nin + 1
    nb = nout * (nin + 1)
    gemm_tn(src, s0, src, s0, A_new, a_off, rows, nin, nin, blas)
    gemm_tn(c, 0, src, s0, B_new, b_off, rows, nout, nin, blas)
    bias_gradient(src, s0, A_new, a_off + nin * nin, rows, nin)     # column sums
    A_new[a_off + nin * nin + nin] = rows
    bias_gradient(c, 0, B_new, b_off + nout * nin, rows, nout)
    keep = 1.0 - decay
    for i in range(a_off, a_off + na):
        A_new[i] += keep * A[i]
    for i in range(b_off, b_off + nb):
        B_new[i] += keep * B[i]


@njit(**KERNEL)
def memory_update(l, x, rows, layout, aux, mem, blas):
    """Hidden layer l's memory candidates: mem.A_new = (1 - decay) mem.A +
    sum a a^T, mem.B_new = (1 - decay) mem.B + sum c* a^T (its blocks only),
    a = [f(c*_{l-1}), 1] from H_{l-1} in ``ws`` (x for l = 1), c* from
    ``aux.codes``, decay = aux.hyper[DECAY]. mem.A and mem.B are only read."""
    n = rows * layout[l + 1]
    off = code_offset(layout, rows, l)
    c = aux.codes[off:off + n]
    decay = aux.hyper[DECAY]
    if l == 1:
        _memory_layer(x, 0, l, rows, layout, c, mem.A, mem.B, mem.A_new, mem.B_new, decay,
                      blas)
    else:
        _memory_layer(aux.ws, code_offset(layout, rows, l - 1), l, rows, layout, c, mem.A,
                      mem.B, mem.A_new, mem.B_new, decay, blas)


@njit(**KERNEL)
def gauss_seidel_sweep(l, w, A, B, layout, ridge):
    """One Gauss-Seidel sweep on [W_l b_l] (A + ridge P) = B for hidden layer l,
    in place on ``w`` (laid out like ``params``), with memory blocks A and B
    (see the module docstring for the update and the zero-denominator rule)."""
    nin = layout[l]
    nout = layout[l + 1]
    woff, boff = layer_offsets(layout, l)
    a_off, b_off = memory_offsets(layout, l)
    a1 = a_off + nin * nin          # A_w1 (column sums), then A_11 (count)
    a11 = A[a1 + nin]
    for i in range(nout):
        wi = woff + i * nin
        bi = boff + i
        for j in range(nin):
            ajj = A[a_off + j * nin + j]
            den = ajj + ridge
            if den != 0.0:
                s = w[bi] * A[a1 + j]
                aj = a_off + j * nin
                for k in range(nin):
                    s += w[wi + k] * A[aj + k]
                w[wi + j] += (B[b_off + i * nin + j] - s - ridge * w[wi + j]) / den
        if a11 != 0.0:
            s = w[bi] * a11
            for k in range(nin):
                s += w[wi + k] * A[a1 + k]
            w[bi] += (B[b_off + nout * nin + i] - s) / a11


@njit(**KERNEL)
def all_finite(a):
    """True when every entry of the 1-D array ``a`` is finite."""
    bad = 0
    for i in range(a.shape[0]):
        bad += 0 if np.isfinite(a[i]) else 1
    return bad == 0


@njit(**KERNEL)
def copy_layer(l, src, dst, layout):
    """dst[W_l, b_l] = src[W_l, b_l] (both laid out like ``params``)."""
    woff, boff = layer_offsets(layout, l)
    nw = layout[l] * layout[l + 1]
    nb = layout[l + 1]
    dst[woff:woff + nw] = src[woff:woff + nw]
    dst[boff:boff + nb] = src[boff:boff + nb]


@njit(**KERNEL)
def hidden_candidates(x, rows, params, layout, aux, mem, blas):
    """For every hidden layer: the memory candidates (:func:`memory_update`) and
    the swept weights, mem.cand[W_l, b_l] = one :func:`gauss_seidel_sweep`
    from params[W_l, b_l] with the candidate memory. Writes only mem.A_new,
    mem.B_new, mem.cand (and D1 nothing: reads aux). Returns True when every
    candidate is finite."""
    ok = True
    ridge = aux.hyper[RIDGE]
    for l in range(1, layout[0]):
        memory_update(l, x, rows, layout, aux, mem, blas)
        copy_layer(l, params, mem.cand, layout)
        gauss_seidel_sweep(l, mem.cand, mem.A_new, mem.B_new, layout, ridge)
    if layout[0] > 1:
        ok = all_finite(mem.A_new) and all_finite(mem.B_new) and all_finite(mem.cand)
    return ok


@njit(**KERNEL)
def commit_hidden(params, layout, mem):
    """Copy the candidates in: mem.A = mem.A_new, mem.B = mem.B_new, and every
    hidden layer's params[W_l, b_l] = mem.cand[W_l, b_l]."""
    mem.A[:] = mem.A_new
    mem.B[:] = mem.B_new
    for l in range(1, layout[0]):
        copy_layer(l, mem.cand, params, layout)


@njit(**KERNEL)
def altmin_mem_step(x, labels, targets, rows, params, grads, state, opt_hyper, train_hyper,
                    aux, mem, layout, blas):
    """One AM-mem step: :func:`initial_codes`, :func:`update_codes`, the output
    layer's gradient and one optimizer step on it, and for the hidden layers
    :func:`hidden_candidates` (memory update and one sweep) in place of the
    optimizer.

    The optimizer, weight decay and clipping see the slice of the flat buffer
    from W_L on (W_L, then every bias), with zero gradients for the hidden
    biases, so they leave hidden weights, hidden biases and their optimizer
    state alone (a zero gradient on zero state moves nothing, under SGD and
    Adam alike); the objective's penalty is lambda/2 ||W_L||^2. Hidden layers
    are regularised by the sweep's ridge instead.

    Returns (objective, number correct, status) as :func:`altmin_step`. Unless
    status == OK, params, optimizer state and the memory (mem.A, mem.B) are as
    before; a non-finite memory or swept weight gives NONFINITE_UPDATE.
    """
    loss_code = int(train_hyper[LOSS])
    loss_sum, correct = initial_codes(x, labels, targets, rows, params, layout, aux, loss_code,
                                      blas)
    update_codes(labels, targets, rows, params, layout, aux, loss_code, blas)
    L = layout[0]
    woff, _ = layer_offsets(layout, L)
    nb = n_weights(layout)
    grads[nb:] = 0.0
    output_layer_gradient(x, labels, targets, rows, params, grads, layout, aux.ws, loss_code,
                          blas)
    p = params[woff:]
    gr = grads[woff:]
    st = state[:, woff:]
    objective, status = check_step(p, gr, st, opt_hyper, train_hyper, nb - woff,
                                   loss_sum / rows)
    if status != OK:
        return objective, correct, status
    if not hidden_candidates(x, rows, params, layout, aux, mem, blas):
        return objective, correct, NONFINITE_UPDATE
    apply_update(p, gr, st, opt_hyper)
    commit_hidden(params, layout, mem)
    return objective, correct, OK

"""Numba kernels of online alternating minimisation with auxiliary variables
(Choromanska et al., ICML 2019) for an MLP: codes, local weight gradients,
one training step, and the AM-mem memory with its Gauss-Seidel sweep.

Conventions are those of :mod:`fastbp.kernels.mlp`: ``layout`` =
[L, n_0..n_L, act_1..act_L]; flat ``params``/``grads`` (every W_l (n_l,
n_{l-1}) row-major, then every b_l); a flat row-major batch ``x`` of ``rows``
samples; the MLP workspace ``ws`` (H_1..H_L, A_L, two delta blocks D1, D2 of
rows * max(n_1..n_L)); ``blas`` None or 1.

Arguments
---------
Step kernels take ``(args, x, labels, targets, rows)`` like
:func:`fastbp.kernels.mlp.train_step`; ``args`` is an :data:`AltMinArgs`
(build it with :func:`altmin_args`, resize it with :func:`with_capacity`):

* ``params grads state opt_hyper train_hyper ws layout blas``: as in
  :data:`fastbp.kernels.mlp.BackpropArgs` (``ws`` the MLP workspace for at
  least ``rows`` rows).
* ``hyper`` float64 (6,): [mu, code_lr, code_momentum, code_steps, decay,
  ridge] (indices MU, CODE_LR, CODE_MOMENTUM, CODE_STEPS, DECAY, RIDGE; see
  :func:`make_hyper`). Read at every call, so it may be changed in place.
* ``codes``, ``codes0``: rows * (n_1 + ... + n_{L-1}) entries, one (rows, n_l)
  block per hidden layer in layer order, at the same offsets as H_l in ``ws``
  (:func:`code_offset`): the codes c_l being optimised and their initial values
  c0_l, the hidden pre-activations of the forward pass.
* ``vel``: rows * max(n_1..n_{L-1}), the velocity of the code being optimised.
* ``A B A_new B_new cand``: AM-mem only (empty arrays otherwise). Per hidden
  layer l (n_in = n_{l-1}, n_out = n_l, a = [f(c*_{l-1}), 1], f(c*_0) = x):
  A's block (:func:`memory_offsets`) is sum a a^T stored as its parts
  [A_ww (n_in, n_in) row-major, A_w1 (n_in) = sum f(c*_{l-1}), A_11 = count]
  (n_in^2 + n_in + 1 entries); B's block is sum c* a^T as [B_w (n_out, n_in)
  = sum c* f(c*_{l-1})^T, B_1 (n_out) = sum c*], laid out like [W_l b_l].
  ``A_new``, ``B_new`` (same layout) and ``cand`` (laid out like ``params``)
  hold one step's candidates. The memory has the model's dtype. A and B are
  the trainer's persistent state (save them with the model); the rest is
  scratch.

During a step, H_l in ``ws`` holds f(c_l) (the forward pass's activations
first, f(c*_l) once code l is final); the output blocks (A_L, H_L, D1) serve
every evaluation of the output loss; D1 holds residuals and D2 code gradients.

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

Calling sequence of a step (what :func:`altmin_step` and
:func:`altmin_mem_step` do; a trainer can call the pieces itself):
:func:`initial_codes` -> :func:`update_codes` (:func:`descend_top_code`, then
:func:`descend_lower_code` for l = L-2..1) -> gradient mode:
:func:`weight_gradients` (:func:`output_layer_gradient`,
:func:`hidden_layer_gradient` per hidden layer, any order) and
:func:`finish_step`; memory mode: :func:`output_layer_gradient`,
:func:`check_step` on the output slice, :func:`hidden_candidates`
(:func:`memory_update`, :func:`gauss_seidel_sweep` per hidden layer), then
:func:`apply_update` and :func:`commit_hidden` only if everything is finite.

Trainer entry points: :func:`step_directions` and :func:`mem_directions`
(a step's update direction, nothing updated), and the fused epochs
:func:`alternatives._kernels.train_epochs` (the package's entry point to
:func:`fastbp.kernels.epochs.run_epochs`), which runs :func:`altmin_step` for
an :data:`AltMinArgs` and :func:`altmin_mem_step` for an :data:`AltMinMemArgs`
(the same fields; the class picks the step).

Failures leave everything untouched: :func:`altmin_step` through
:func:`finish_step`; :func:`altmin_mem_step` computes the memory and the
swept weights into ``A_new``, ``B_new`` and ``cand``, checks the loss, the
output-layer update and every candidate for finiteness, and only then
applies the optimizer step and copies the candidates in.
"""
from collections import namedtuple

import numpy as np
from numba import njit

from fastbp.kernels.activations import activate, activate_inplace, backprop_activation
from fastbp.kernels.checks import all_finite_1d
from fastbp.kernels.codes import (KERNEL, MSE, NONFINITE_UPDATE, OK, REDUCTION, SQUARED_ERROR,
                                  ZERO)
from fastbp.kernels.epochs import batch_result, gather_batch, register_batch_step
from fastbp.kernels.linalg import copy_block, gemm_nn, gemm_nt, gemm_tn
from fastbp.kernels.losses import loss_and_delta
from fastbp.kernels.mlp import add_bias, bias_gradient, max_width, n_weights, output_offsets
from fastbp.kernels.optim import DECAY as WEIGHT_DECAY
from fastbp.kernels.optim import LOSS, apply_update, check_step
from fastbp.models import mlp_workspace_size

from ._kernels import finish_model_step

#: indices into ``hyper``
MU, CODE_LR, CODE_MOMENTUM, CODE_STEPS, DECAY, RIDGE = 0, 1, 2, 3, 4, 5

#: Every array of an AM step; the first eight fields are those of
#: :data:`fastbp.kernels.mlp.BackpropArgs`. See the module docstring.
AltMinArgs = namedtuple("AltMinArgs", "params grads state opt_hyper train_hyper ws layout blas "
                                      "hyper codes codes0 vel A B A_new B_new cand")
#: The same arrays for an AM-mem step: the epoch driver runs
#: :func:`altmin_mem_step` for this class (``AltMinMemArgs(*args)`` converts).
AltMinMemArgs = namedtuple("AltMinMemArgs", AltMinArgs._fields)


# -- allocation (Python) ---------------------------------------------------------------

def make_hyper(mu, code_lr, code_momentum, code_steps, decay=0.0, ridge=0.0):
    """The float64 ``hyper`` vector: [mu, code_lr, code_momentum, code_steps,
    decay, ridge]."""
    return np.array([mu, code_lr, code_momentum, code_steps, decay, ridge],
                    dtype=np.float64)


def _sizes(layout):
    return [int(n) for n in layout[1:layout[0] + 2]]


def memory_sizes(sizes):
    """(entries of A, entries of B) of the memory of an MLP of layer ``sizes``."""
    a = sum(n_in * n_in + n_in + 1 for n_in in sizes[:-2])
    b = sum(n_out * (n_in + 1) for n_in, n_out in zip(sizes[:-2], sizes[1:-1]))
    return a, b


def code_buffers(layout, capacity, dtype, ws=None):
    """(ws, codes, codes0, vel) for batches of up to ``capacity`` rows; ``ws``
    an MLP workspace of at least that capacity, or None to allocate one."""
    sizes = _sizes(layout)
    if ws is None:
        ws = np.zeros(mlp_workspace_size(sizes, capacity), dtype=dtype)
    n = capacity * sum(sizes[1:-1])
    return (ws, np.zeros(n, dtype=dtype), np.zeros(n, dtype=dtype),
            np.zeros(capacity * max(sizes[1:-1], default=0), dtype=dtype))


def memory_buffers(layout, dtype, n_params):
    """(A, B, A_new, B_new, cand), zeroed, for AM-mem."""
    a, b = memory_sizes(_sizes(layout))
    return (np.zeros(a, dtype=dtype), np.zeros(b, dtype=dtype), np.zeros(a, dtype=dtype),
            np.zeros(b, dtype=dtype), np.zeros(n_params, dtype=dtype))


def altmin_args(params, grads, state, opt_hyper, train_hyper, layout, blas, capacity, hyper,
                memory=False, ws=None):
    """An :data:`AltMinArgs` for batches of up to ``capacity`` rows: the
    model's and optimizer's arrays as given, fresh code buffers (and ``ws``
    unless given), and zeroed memory buffers when ``memory`` (else empty
    arrays; :func:`altmin_mem_step` needs them)."""
    dtype = params.dtype
    ws, codes, codes0, vel = code_buffers(layout, capacity, dtype, ws)
    if memory:
        mem = memory_buffers(layout, dtype, params.shape[0])
    else:
        mem = tuple(np.zeros(0, dtype=dtype) for _ in range(5))
    return AltMinArgs(params, grads, state, opt_hyper, train_hyper, ws, layout, blas,
                      np.asarray(hyper, dtype=np.float64), codes, codes0, vel, *mem)


def with_capacity(args, capacity, blas, ws=None):
    """``args`` with code buffers (and ``ws`` unless given) for ``capacity``
    rows and the ``blas`` flag for that batch size; the memory is kept."""
    ws, codes, codes0, vel = code_buffers(args.layout, capacity, args.params.dtype, ws)
    return args._replace(ws=ws, codes=codes, codes0=codes0, vel=vel, blas=blas)


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
    woff = 0
    boff = n_weights(layout)
    for j in range(1, l):
        woff += layout[j] * layout[j + 1]
        boff += layout[j + 1]
    return woff, boff


@njit(**KERNEL)
def layer_shape(layout, l):
    """(n_in, n_out, offset of W_l, offset of b_l) of layer l."""
    woff, boff = layer_offsets(layout, l)
    return layout[l], layout[l + 1], woff, boff


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
    d_off = output_offsets(layout, rows)[2]
    return d_off, d_off + rows * max_width(layout)


@njit(**KERNEL)
def _block(buf, layout, rows, l):
    """Hidden layer l's (rows, n_l) block of a codes-like buffer, flat."""
    off = code_offset(layout, rows, l)
    return buf[off:off + rows * layout[l + 1]]


# -- forward pass and output loss -------------------------------------------------------

@njit(**KERNEL)
def output_loss(src, s0, rows, params, layout, ws, labels, targets, loss_code, blas):
    """A_L = src W_L^T + b_L into ``ws`` (src the (rows, n_{L-1}) block of
    ``src`` at ``s0``), then the loss and its delta d(mean loss)/dA_L at D1.
    H_L = f_out(A_L) is computed only for the losses that read it (squared_error,
    mse). Returns (loss summed over the batch, number correct)."""
    L = layout[0]
    nin, k, woff, boff = layer_shape(layout, L)
    h_off, a_off, d_off = output_offsets(layout, rows)
    gemm_nt(src, s0, params, woff, ws, a_off, rows, k, nin, blas)
    add_bias(ws, a_off, params, boff, rows, k)
    if loss_code == SQUARED_ERROR or loss_code == MSE:
        activate(ws, a_off, ws, h_off, rows, k, layout[2 * L + 1])
    return loss_and_delta(ws, a_off, h_off, d_off, rows, k, labels, targets, loss_code,
                          layout[2 * L + 1])


@njit(**KERNEL)
def _hidden_layer(args, l, src, s0, rows):
    """c0_l = src W_l^T + b_l into codes0 and codes; H_l = f(c0_l) into ws."""
    layout = args.layout
    nin, nout, woff, boff = layer_shape(layout, l)
    c0 = _block(args.codes0, layout, rows, l)
    gemm_nt(src, s0, args.params, woff, c0, 0, rows, nout, nin, args.blas)
    add_bias(c0, ZERO, args.params[boff:boff + nout], ZERO, rows, nout)
    copy_block(c0, _block(args.codes, layout, rows, l))
    h = _block(args.ws, layout, rows, l)
    copy_block(c0, h)
    activate_inplace(h, ZERO, rows, nout, layout[layout[0] + 1 + l])


@njit(**KERNEL)
def initial_codes(args, x, labels, targets, rows):
    """Forward pass keeping the hidden pre-activations: codes0 = codes = c0,
    H_l = f(c0_l) in ``ws`` (what :func:`fastbp.kernels.mlp.forward` leaves
    there), A_L and the output loss. fastbp's forward overwrites each a_l with
    f(a_l), and recovering a_l afterwards would cost one more product per
    hidden layer, so this pass runs the same per-layer products itself.

    Returns (loss summed over the batch, number correct) at the current
    parameters."""
    layout = args.layout
    L = layout[0]
    loss_code = int(args.train_hyper[LOSS])
    for l in range(1, L):
        if l == 1:
            _hidden_layer(args, l, x, ZERO, rows)
        else:
            _hidden_layer(args, l, args.ws, code_offset(layout, rows, l - 1), rows)
    if L == 1:
        return output_loss(x, ZERO, rows, args.params, layout, args.ws, labels, targets,
                           loss_code, args.blas)
    return output_loss(args.ws, code_offset(layout, rows, L - 1), rows, args.params, layout,
                       args.ws, labels, targets, loss_code, args.blas)


# -- code objectives, their gradients and descent -----------------------------------------

@njit(inline="always", **KERNEL)
def top_code_gradient(c, c0, h, g, params, layout, ws, labels, targets, loss_code, mu, blas):
    """Objective and gradient of the top code c = c_{L-1}:
    J = (1/mu) loss(W_L f(c) + b_L, y) + mean((c - c0)^2).

    c, c0, h, g are (rows, n_{L-1}) blocks of exactly rows * n_{L-1} entries;
    h receives f(c), g receives dJ/dc. ``ws`` serves the output blocks (A_L,
    H_L, D1) for rows = c.size / n_{L-1}; ``h`` may be its H_{L-1} block.
    Returns J.
    """
    L = layout[0]
    n = layout[L]
    k = layout[L + 1]
    rows = c.shape[0] // n
    activate(c, ZERO, h, ZERO, rows, n, layout[L + L])
    loss_sum, _ = output_loss(h, ZERO, rows, params, layout, ws, labels, targets, loss_code,
                              blas)
    woff, _ = layer_offsets(layout, L)
    d_off = output_offsets(layout, rows)[2]
    gemm_nn(ws, d_off, params, woff, g, 0, rows, n, k, blas)
    backprop_activation(h, ZERO, g, ZERO, rows, n, layout[L + L])
    f = c.dtype.type
    inv_mu = f(1.0 / mu)
    s = f(2.0 / (rows * n))
    dist = 0.0
    for i in range(rows * n):
        d = c[i] - c0[i]
        dist += np.float64(d) * d
        g[i] = g[i] * inv_mu + s * d
    return loss_sum / rows / mu + dist / (rows * n)


@njit(inline="always", **KERNEL)
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
    activate(c, ZERO, h, ZERO, rows, n, layout[L + 1 + l])
    gemm_nt(h, 0, params, woff, r, 0, rows, m, n, blas)
    add_bias(r, ZERO, params[boff:boff + m], ZERO, rows, m)
    f = c.dtype.type
    fit = 0.0
    sr = f(2.0 / (rows * m))
    for i in range(rows * m):
        e = r[i] - t[i]
        fit += np.float64(e) * e
        r[i] = sr * e
    gemm_nn(r, 0, params, woff, g, 0, rows, n, m, blas)
    backprop_activation(h, ZERO, g, ZERO, rows, n, layout[L + 1 + l])
    s = f(2.0 / (rows * n))
    dist = 0.0
    for i in range(rows * n):
        d = c[i] - c0[i]
        dist += np.float64(d) * d
        g[i] += s * d
    return fit / (rows * m) + dist / (rows * n)


@njit(**KERNEL)
def nesterov_step(c, v, g, lr, mom):
    """v = mom v + g;  c -= lr (g + mom v) (torch.optim.SGD, nesterov=True),
    in the codes' dtype."""
    f = c.dtype.type
    lr = f(lr)
    mom = f(mom)
    for i in range(c.shape[0]):
        gi = g[i]
        vi = mom * v[i] + gi
        v[i] = vi
        c[i] -= lr * (gi + mom * vi)


@njit(inline="always", **KERNEL)
def descend_top_code(args, labels, targets, rows):
    """code_steps Nesterov steps on the top code (in ``codes``), from its
    current value with zero velocity; leaves H_{L-1} = f(c*_{L-1}) in ``ws``.
    Uses the output blocks and D2 of ``ws`` as scratch."""
    layout = args.layout
    L = layout[0]
    hy = args.hyper
    n = rows * layout[L]
    c = _block(args.codes, layout, rows, L - 1)
    c0 = _block(args.codes0, layout, rows, L - 1)
    h = _block(args.ws, layout, rows, L - 1)
    d2 = _deltas(layout, rows)[1]
    g = args.ws[d2:d2 + n]
    v = args.vel[:n]
    v[:] = 0.0
    loss_code = int(args.train_hyper[LOSS])
    for _ in range(int(hy[CODE_STEPS])):
        top_code_gradient(c, c0, h, g, args.params, layout, args.ws, labels, targets,
                          loss_code, hy[MU], args.blas)
        nesterov_step(c, v, g, hy[CODE_LR], hy[CODE_MOMENTUM])
    activate(c, ZERO, h, ZERO, rows, layout[L], layout[L + L])


@njit(inline="always", **KERNEL)
def descend_lower_code(args, l, rows):
    """code_steps Nesterov steps on code l (1 <= l <= L-2) toward the final
    code l+1 above it; leaves H_l = f(c*_l) in ``ws``. Uses D1 and D2 of
    ``ws`` as scratch."""
    layout = args.layout
    L = layout[0]
    hy = args.hyper
    n = rows * layout[l + 1]
    m = rows * layout[l + 2]
    c = _block(args.codes, layout, rows, l)
    c0 = _block(args.codes0, layout, rows, l)
    h = _block(args.ws, layout, rows, l)
    t = _block(args.codes, layout, rows, l + 1)
    d1, d2 = _deltas(layout, rows)
    r = args.ws[d1:d1 + m]
    g = args.ws[d2:d2 + n]
    v = args.vel[:n]
    v[:] = 0.0
    for _ in range(int(hy[CODE_STEPS])):
        lower_code_gradient(l, c, c0, h, g, t, r, args.params, layout, args.blas)
        nesterov_step(c, v, g, hy[CODE_LR], hy[CODE_MOMENTUM])
    activate(c, ZERO, h, ZERO, rows, layout[l + 1], layout[L + 1 + l])


@njit(**KERNEL)
def update_codes(args, labels, targets, rows):
    """The codes step after :func:`initial_codes`: the top code, then each lower
    code down to c_1. Afterwards ``codes`` holds c* and H_l = f(c*_l)."""
    L = args.layout[0]
    if L < 2:
        return
    descend_top_code(args, labels, targets, rows)
    for l in range(L - 2, 0, -1):
        descend_lower_code(args, l, rows)


# -- weights ------------------------------------------------------------------------------

@njit(**KERNEL)
def _output_grads(args, src, s0, labels, targets, rows):
    layout = args.layout
    nin, k, woff, boff = layer_shape(layout, layout[0])
    loss_sum, _ = output_loss(src, s0, rows, args.params, layout, args.ws, labels, targets,
                              int(args.train_hyper[LOSS]), args.blas)
    d_off = output_offsets(layout, rows)[2]
    gemm_tn(args.ws, d_off, src, s0, args.grads, woff, rows, k, nin, args.blas)
    bias_gradient(args.ws[d_off:d_off + rows * k], ZERO, args.grads[boff:boff + k], ZERO, rows,
                  k)
    return loss_sum


@njit(**KERNEL)
def output_layer_gradient(args, x, labels, targets, rows):
    """grads[W_L, b_L] = d loss(W_L f(c*_{L-1}) + b_L, y)/d(W_L, b_L), the batch
    mean, from H_{L-1} = f(c*_{L-1}) in ``ws`` (from x when L = 1). Returns
    the loss summed over the batch at the final codes."""
    L = args.layout[0]
    if L == 1:
        return _output_grads(args, x, ZERO, labels, targets, rows)
    return _output_grads(args, args.ws, code_offset(args.layout, rows, L - 1), labels, targets,
                         rows)


@njit(**KERNEL)
def _local_grads(args, l, src, s0, rows):
    """Layer l's local gradient from the residual r = W_l src + b_l - c*_l. For
    l = 1, W_1 x + b_1 is c0_1 (same products as initial_codes, same values),
    so the largest product of many networks is not computed twice."""
    layout = args.layout
    nin, nout, woff, boff = layer_shape(layout, l)
    c = _block(args.codes, layout, rows, l)
    d1 = _deltas(layout, rows)[0]
    n = rows * nout
    r = args.ws[d1:d1 + n]
    f = r.dtype.type
    s = f(2.0 / n)
    if l == 1:
        c0 = _block(args.codes0, layout, rows, l)
        for i in range(n):
            r[i] = s * (c0[i] - c[i])
    else:
        gemm_nt(src, s0, args.params, woff, r, 0, rows, nout, nin, args.blas)
        add_bias(r, ZERO, args.params[boff:boff + nout], ZERO, rows, nout)
        for i in range(n):
            r[i] = s * (r[i] - c[i])
    gemm_tn(r, 0, src, s0, args.grads, woff, rows, nout, nin, args.blas)
    bias_gradient(r, ZERO, args.grads[boff:boff + nout], ZERO, rows, nout)


@njit(inline="always", **KERNEL)
def hidden_layer_gradient(args, l, x, rows):
    """grads[W_l, b_l] = d mean((W_l f(c*_{l-1}) + b_l - c*_l)^2)/d(W_l, b_l)
    for hidden layer l, from ``codes`` and H_{l-1} = f(c*_{l-1}) in ``ws``
    (x for l = 1, where W_1 x + b_1 is read from ``codes0``: the parameters
    must be those :func:`initial_codes` ran with). Reads no other layer's
    gradient and writes only its own slices of ``grads`` (and D1 as
    scratch), so layers may go in any order."""
    if l == 1:
        _local_grads(args, l, x, ZERO, rows)
    else:
        _local_grads(args, l, args.ws, code_offset(args.layout, rows, l - 1), rows)


@njit(**KERNEL)
def weight_gradients(args, x, labels, targets, rows):
    """Every layer's gradient into ``grads`` after :func:`update_codes`.
    Returns the loss summed over the batch at the final codes."""
    loss_sum = output_layer_gradient(args, x, labels, targets, rows)
    for l in range(1, args.layout[0]):
        hidden_layer_gradient(args, l, x, rows)
    return loss_sum


@njit(**KERNEL)
def altmin_step(args, x, labels, targets, rows):
    """One AM step (gradient mode: AM-SGD / AM-Adam): :func:`initial_codes`,
    :func:`update_codes`, :func:`weight_gradients`, then one
    :func:`finish_step` on all parameters.

    Returns (objective, number correct, status) as
    :func:`fastbp.kernels.mlp.train_step`: the loss and accuracy of the
    forward pass at the parameters before the update (plus the weight decay
    penalty); parameters and optimizer state are unchanged unless status == OK.
    """
    loss_sum, correct = initial_codes(args, x, labels, targets, rows)
    update_codes(args, labels, targets, rows)
    weight_gradients(args, x, labels, targets, rows)
    return finish_model_step(args, loss_sum, correct, rows)


# -- AM-mem -------------------------------------------------------------------------------

@njit(**KERNEL)
def _memory_layer(args, l, src, s0, rows):
    layout = args.layout
    nin, nout, _, _ = layer_shape(layout, l)
    a_off, b_off = memory_offsets(layout, l)
    na = nin * nin + nin + 1
    nb = nout * (nin + 1)
    c = _block(args.codes, layout, rows, l)
    A, B, A_new, B_new = args.A, args.B, args.A_new, args.B_new
    gemm_tn(src, s0, src, s0, A_new, a_off, rows, nin, nin, args.blas)
    gemm_tn(c, 0, src, s0, B_new, b_off, rows, nout, nin, args.blas)
    bias_gradient(src, s0, A_new, a_off + nin * nin, rows, nin)     # column sums
    A_new[a_off + nin * nin + nin] = rows
    bias_gradient(c, ZERO, B_new, b_off + nout * nin, rows, nout)
    keep = 1.0 - args.hyper[DECAY]
    for i in range(a_off, a_off + na):
        A_new[i] += keep * A[i]
    for i in range(b_off, b_off + nb):
        B_new[i] += keep * B[i]


@njit(inline="always", **KERNEL)
def memory_update(args, l, x, rows):
    """Hidden layer l's memory candidates: A_new = (1 - decay) A + sum a a^T,
    B_new = (1 - decay) B + sum c* a^T (its blocks only), a = [f(c*_{l-1}), 1]
    from H_{l-1} in ``ws`` (x for l = 1), c* from ``codes``, decay =
    hyper[DECAY]. A and B are only read."""
    if l == 1:
        _memory_layer(args, l, x, 0, rows)
    else:
        _memory_layer(args, l, args.ws, code_offset(args.layout, rows, l - 1), rows)


@njit(**REDUCTION)
def gauss_seidel_sweep(l, w, A, B, layout, ridge):
    """One Gauss-Seidel sweep on [W_l b_l] (A + ridge P) = B for hidden layer l,
    in place on ``w`` (laid out like ``params``), with memory buffers A and B
    (see the module docstring for the update and the zero-denominator rule).

    n_out * (n_in + 1)^2 multiply-adds, in dot products of contiguous rows
    (row slices, so that LLVM sees two distinct arrays: indexing ``w`` and
    ``A`` at offsets kept the loop scalar, 6x slower), compiled with
    reassociation (fastbp's REDUCTION flags) so that the dot products
    vectorize; NaN and inf still propagate."""
    nin, nout, woff, boff = layer_shape(layout, l)
    a_off, b_off = memory_offsets(layout, l)
    a1 = A[a_off + nin * nin:a_off + nin * nin + nin]     # A_w1: sums of the inputs
    a11 = A[a_off + nin * nin + nin]                       # A_11: the count
    for i in range(nout):
        wr = w[woff + i * nin:woff + (i + 1) * nin]
        bi = boff + i
        br = b_off + i * nin
        for j in range(nin):
            ar = A[a_off + j * nin:a_off + (j + 1) * nin]
            den = ar[j] + ridge
            if den != 0.0:
                s = w[bi] * a1[j]
                for k in range(nin):
                    s += wr[k] * ar[k]
                wr[j] += (B[br + j] - s - ridge * wr[j]) / den
        if a11 != 0.0:
            s = w[bi] * a11
            for k in range(nin):
                s += wr[k] * a1[k]
            w[bi] += (B[b_off + nout * nin + i] - s) / a11


@njit(**KERNEL)
def copy_layer(l, src, dst, layout):
    """dst[W_l, b_l] = src[W_l, b_l] (both laid out like ``params``)."""
    woff, boff = layer_offsets(layout, l)
    nw = layout[l] * layout[l + 1]
    nb = layout[l + 1]
    copy_block(src[woff:woff + nw], dst[woff:woff + nw])
    copy_block(src[boff:boff + nb], dst[boff:boff + nb])


@njit(**KERNEL)
def hidden_candidates(args, x, rows):
    """For every hidden layer: the memory candidates (:func:`memory_update`) and
    the swept weights, cand[W_l, b_l] = one :func:`gauss_seidel_sweep` from
    params[W_l, b_l] on the candidate memory. Writes only A_new, B_new and
    cand (params, A and B are only read). Returns True when every candidate
    is finite."""
    layout = args.layout
    for l in range(1, layout[0]):
        memory_update(args, l, x, rows)
        copy_layer(l, args.params, args.cand, layout)
        gauss_seidel_sweep(l, args.cand, args.A_new, args.B_new, layout, args.hyper[RIDGE])
    if layout[0] == 1:
        return True
    woff, _ = layer_offsets(layout, layout[0])
    return (all_finite_1d(args.A_new) and all_finite_1d(args.B_new)
            and all_finite_1d(args.cand[:woff])
            and all_finite_1d(args.cand[n_weights(layout):]))


@njit(inline="always", **KERNEL)
def commit_hidden(args):
    """Copy the candidates in: A = A_new, B = B_new, and every hidden layer's
    params[W_l, b_l] = cand[W_l, b_l]."""
    copy_block(args.A_new, args.A)
    copy_block(args.B_new, args.B)
    for l in range(1, args.layout[0]):
        copy_layer(l, args.cand, args.params, args.layout)


@njit(**KERNEL)
def altmin_mem_step(args, x, labels, targets, rows):
    """One AM-mem step: :func:`initial_codes`, :func:`update_codes`, the output
    layer's gradient and one optimizer step on it, and for the hidden layers
    :func:`hidden_candidates` (memory update and one sweep) in place of the
    optimizer. Needs the memory buffers (``altmin_args(..., memory=True)``).

    The optimizer, weight decay and clipping see the slice of the flat buffer
    from W_L on (W_L, then every bias), with zero gradients for the hidden
    biases, so they leave hidden weights, hidden biases and their optimizer
    state alone (a zero gradient on zero state moves nothing, under SGD and
    Adam alike); the objective's penalty is lambda/2 ||W_L||^2. Hidden layers
    are regularised by the sweep's ridge instead. Afterwards ``grads`` holds
    the output layer's gradient (after decay and clipping), zero for the
    hidden biases, and stale values for the hidden weights.

    Returns (objective, number correct, status) as :func:`altmin_step`. Unless
    status == OK, params, optimizer state and the memory (A, B) are as
    before; a non-finite memory or swept weight gives NONFINITE_UPDATE.
    """
    loss_sum, correct = initial_codes(args, x, labels, targets, rows)
    update_codes(args, labels, targets, rows)
    layout = args.layout
    woff, _ = layer_offsets(layout, layout[0])
    nw = n_weights(layout)
    args.grads[nw:] = 0.0
    output_layer_gradient(args, x, labels, targets, rows)
    p = args.params[woff:]
    gr = args.grads[woff:]
    st = args.state[:, woff:]
    objective, status = check_step(p, gr, st, args.opt_hyper, args.train_hyper, nw - woff,
                                   loss_sum / rows)
    if status != OK:
        return objective, correct, status
    if not hidden_candidates(args, x, rows):
        return objective, correct, NONFINITE_UPDATE
    apply_update(p, gr, st, args.opt_hyper)
    commit_hidden(args)
    return objective, correct, OK


# -- trainer entry points ---------------------------------------------------------------------

@njit(**KERNEL)
def step_directions(args, x, labels, targets, rows):
    """The direction :func:`altmin_step` hands the optimizer, into ``grads``
    (no weight decay, no clipping), without updating anything: the codes
    pass and :func:`weight_gradients`. Returns (loss summed over the batch,
    number correct) at the current parameters."""
    loss_sum, correct = initial_codes(args, x, labels, targets, rows)
    update_codes(args, labels, targets, rows)
    weight_gradients(args, x, labels, targets, rows)
    return loss_sum, correct


@njit(**KERNEL)
def mem_directions(args, x, labels, targets, rows):
    """The update direction of :func:`altmin_mem_step` into ``grads``, without
    updating anything (only ``grads`` and the scratch A_new, B_new, cand are
    written): for W_L, b_L the output layer's gradient plus lambda W_L (the
    weight decay the optimizer would add; no clipping); for every hidden
    layer [W_l b_l] - (its swept value), the displacement of the sweep
    negated, so that it points the way a gradient does. Returns (loss summed
    over the batch, number correct) at the current parameters."""
    loss_sum, correct = initial_codes(args, x, labels, targets, rows)
    update_codes(args, labels, targets, rows)
    output_layer_gradient(args, x, labels, targets, rows)
    hidden_candidates(args, x, rows)
    layout = args.layout
    p, g, cand = args.params, args.grads, args.cand
    lam = args.train_hyper[WEIGHT_DECAY]
    woff, _ = layer_offsets(layout, layout[0])
    for i in range(woff, n_weights(layout)):
        g[i] += lam * p[i]
    for l in range(1, layout[0]):
        woff, boff = layer_offsets(layout, l)
        for i in range(woff, woff + layout[l] * layout[l + 1]):
            g[i] = p[i] - cand[i]
        for i in range(boff, boff + layout[l + 1]):
            g[i] = p[i] - cand[i]
    return loss_sum, correct


@njit(**KERNEL)
def altmin_batch(args, X, labels, targets, order, xb, lb, tb, start, rows, phase):
    """The epoch driver's step for :data:`AltMinArgs`: :func:`altmin_step`."""
    gather_batch(X, labels, targets, order, start, rows, xb, lb, tb)
    return batch_result(altmin_step(args, xb, lb, tb, rows), rows)


@njit(**KERNEL)
def altmin_mem_batch(args, X, labels, targets, order, xb, lb, tb, start, rows, phase):
    """The epoch driver's step for :data:`AltMinMemArgs`: :func:`altmin_mem_step`."""
    gather_batch(X, labels, targets, order, start, rows, xb, lb, tb)
    return batch_result(altmin_mem_step(args, xb, lb, tb, rows), rows)


register_batch_step(AltMinArgs, altmin_batch)
register_batch_step(AltMinMemArgs, altmin_mem_batch)

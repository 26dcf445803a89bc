"""Numba kernels of synthetic gradients / decoupled neural interfaces
(Jaderberg et al. 2017) for MLPs, built on fastbp's MLP kernels.

Conventions are those of :mod:`fastbp.kernels.mlp` (flat ``params``/``grads``
buffers, weights first then biases; flat row-major batch ``x``; the workspace
``ws`` holding H_1..H_L, A_L and two delta buffers; ``blas`` None or 1).
Elementwise loops index through ``np.uint64`` or take their blocks as slices
at offset ZERO, so that LLVM vectorizes them (see
:mod:`fastbp.kernels.activations`).

Modules
-------
``sgl`` (:data:`SGLayout`, built once per trainer) describes the
synthetic-gradient modules: ``table`` int64 (n_mod, 6), one row per module in
the order of the decoupled hidden layers 1 <= l_1 < ... < l_nmod <= L-1
(1-based: h_l is the output of W_l), with the columns :data:`LAYER` (l),
:data:`WIDTH` (n_l), :data:`PARAM` and :data:`SIZE` (the module's slice of the
module buffer), :data:`BLOCK` and :data:`HIDDEN` (per row of the batch: the
offset of its block in P and T, and of H_l in ``ws``); ``m`` hidden ReLU units
per module (0: linear modules) and ``k`` the width of the context c the
modules read (the one-hot label, or the target row when the targets are rows;
0: not conditioned).

``sgp`` is the trainer's flat module buffer: the modules one after the other,
each contiguous. Module i sits at h_l (n = n_l units) and reads (h_l, c):

* linear (m == 0):  Wh (n, n), Wc (n, k) [k > 0 only], b (n);
  prediction = h Wh^T + c Wc^T + b
* hidden (m > 0):   Ph (m, n), Pc (m, k) [k > 0 only], p (m), U (n, m), u (n);
  z = relu(h Ph^T + c Pc^T + p), prediction = z U^T + u

that is, one or two layers of :func:`context_layer`. Kernels see one module
as a :data:`Module`. Predictions and targets are per-sample gradients
d loss_i / d h_l (not divided by the batch size). With integer labels,
c Wc^T is a column gather and its gradient a scatter; no one-hot matrix is
ever built.

``sw`` is the trainer's module workspace for ``rows`` rows, S = sum of the
decoupled widths, M = max decoupled width:
P (rows * S: predictions, one (rows, n_l) block per module in order),
T (rows * S: targets, same blocks), Z (rows * m * n_mod: hidden activations),
DZ (rows * m), R (rows * M: residuals). See :func:`sw_offsets`.

Step semantics (locked schedule, one batch, everything from one forward pass
with the parameters before the step): the backward pass runs as in backprop
except at a decoupled layer l: the gradient arriving at h_l from above,
G_l = delta_{l+1} W_{l+1} (per sample), becomes module l's target T_l, and is
replaced by the prediction P_l before the pass continues through f_l'(a_l) and
layer l. Module l then minimises mean_batch 1/2 ||P_l - T_l||^2.
"""
from collections import namedtuple

import numpy as np
from numba import njit

from fastbp.kernels.codes import IDENTITY, KERNEL, OK, RELU, ZERO
from fastbp.kernels.epochs import gather_batch, register_batch_step, run_epochs
from fastbp.kernels.linalg import gemm_nn, gemm_nt, gemm_tn
from fastbp.kernels.losses import loss_and_delta
from fastbp.kernels.mlp import (bias_activate, delta_and_bias_gradient, forward, layer_gradient,
                                max_width, n_weights, output_offsets)
from fastbp.kernels.optim import LOSS, finish_steps

#: The arrays of a locked synthetic-gradient step: the model's and the
#: modules' StepArrays, the workspaces ``ws`` and ``sw``, the ``layout``, the
#: module layout ``sgl`` (:data:`SGLayout`) and ``blas``.
SGArgs = namedtuple("SGArgs", "step sg ws sw layout sgl blas")

#: The modules as kernels see them: ``table`` int64 (n_mod, 6) (columns
#: LAYER, WIDTH, PARAM, SIZE, BLOCK, HIDDEN), ``m`` and ``k`` (see above).
SGLayout = namedtuple("SGLayout", "table m k")
LAYER, WIDTH, PARAM, SIZE, BLOCK, HIDDEN = range(6)

#: One module: its ``params`` and ``grads`` (slices of the module buffers),
#: its width ``n``, hidden units ``m`` and context width ``k``.
Module = namedtuple("Module", "params grads n m k")


# -- sizes and offsets ------------------------------------------------------------------

@njit(inline="always", **KERNEL)
def sw_offsets(sgl, rows):
    """Offsets of P, T, Z, DZ, R in ``sw`` for ``rows`` rows."""
    table = sgl.table
    n_mod = table.shape[0]
    S = table[n_mod - 1, BLOCK] + table[n_mod - 1, WIDTH] if n_mod > 0 else 0
    t0 = rows * S
    z0 = 2 * rows * S
    dz0 = z0 + rows * sgl.m * n_mod
    return 0, t0, z0, dz0, dz0 + rows * sgl.m


@njit(inline="always", **KERNEL)
def module(sg, sgl, i):
    """Module i of the module buffers ``sg`` (StepArrays) as a :data:`Module`."""
    p0 = sgl.table[i, PARAM]
    p1 = p0 + sgl.table[i, SIZE]
    return Module(sg.params[p0:p1], sg.grads[p0:p1], sgl.table[i, WIDTH], sgl.m, sgl.k)


# -- one layer with the context, one module -----------------------------------------------

@njit(inline="always", **KERNEL)
def context_layer(X, x0, rows, nin, nout, P, labels, targets, k, out, o0, code, blas):
    """out[o0:] (rows, nout) = f(X[x0:] W^T + c Wc^T + b) for X (rows, nin),
    P = [W (nout, nin), Wc (nout, k), b (nout), ...] (no Wc when k is 0) and f
    the elementwise activation ``code`` (int64: identity or relu); c the
    one-hot rows of ``labels`` when labels are given, else the rows of
    ``targets``. Returns the entries of P the layer used."""
    gemm_nt(X, x0, P, 0, out, o0, rows, nout, nin, blas)
    q = nout * nin
    if k > 0:
        if labels.shape[0] > 0:
            for i in range(rows):
                c = labels[i]
                r = o0 + i * nout
                for o in range(nout):
                    out[np.uint64(r + o)] += P[np.uint64(q + o * k + c)]
        else:
            for i in range(rows):
                r = o0 + i * nout
                for o in range(nout):
                    s = 0.0
                    for j in range(k):
                        s += targets[i, j] * P[np.uint64(q + o * k + j)]
                    out[np.uint64(r + o)] += s
        q += nout * k
    bias_activate(out[o0:o0 + rows * nout], ZERO, P[q:q + nout], ZERO, rows, nout, code)
    return q + nout


@njit(inline="always", **KERNEL)
def context_layer_grad(D, H, X, x0, rows, nin, nout, G, labels, targets, k, code, blas):
    """The gradient of :func:`context_layer` into G = [dW, dWc, db, ...] given
    D (rows, nout) = d loss / d out and the layer's output H = out (both
    blocks at offset 0); D is multiplied by f' in place."""
    q = nout * (nin + k)
    delta_and_bias_gradient(H, ZERO, D, ZERO, G[q:q + nout], ZERO, rows, nout, code)
    gemm_tn(D, ZERO, X, x0, G, 0, rows, nout, nin, blas)
    if k > 0:
        q = nout * nin
        G[q:q + nout * k] = 0.0
        if labels.shape[0] > 0:
            for i in range(rows):
                c = labels[i]
                r = i * nout
                for o in range(nout):
                    G[np.uint64(q + o * k + c)] += D[np.uint64(r + o)]
        else:
            for i in range(rows):
                r = i * nout
                for o in range(nout):
                    d = D[np.uint64(r + o)]
                    for j in range(k):
                        G[np.uint64(q + o * k + j)] += d * targets[i, j]


@njit(**KERNEL)
def module_forward(mod, h, h0, labels, targets, out, o0, z, z0, rows, blas):
    """out[o0:] (rows, n) = the module's prediction from h[h0:] (rows, n) and the
    context; the hidden activations (m > 0) go to z[z0:] (rows, m)."""
    n, m = mod.n, mod.m
    if m == 0:
        context_layer(h, h0, rows, n, n, mod.params, labels, targets, mod.k, out, o0,
                      np.int64(IDENTITY), blas)
    else:
        q = context_layer(h, h0, rows, n, m, mod.params, labels, targets, mod.k, z, z0,
                          np.int64(RELU), blas)
        context_layer(z, z0, rows, m, n, mod.params[q:], labels, targets, ZERO, out, o0,
                      np.int64(IDENTITY), blas)


@njit(**KERNEL)
def module_backward(mod, h, h0, labels, targets, R, r0, z, z0, dz, rows, blas):
    """Gradient of the module's loss into mod.grads, given the residual R[r0:]
    (rows, n) = d loss / d prediction, the activations z[z0:] of its forward
    and a (rows, m) scratch block ``dz``."""
    n, m = mod.n, mod.m
    Rb = R[r0:r0 + rows * n]
    if m == 0:
        context_layer_grad(Rb, Rb, h, h0, rows, n, n, mod.grads, labels, targets, mod.k,
                           np.int64(IDENTITY), blas)
    else:
        q = m * (n + mod.k) + m
        context_layer_grad(Rb, Rb, z, z0, rows, m, n, mod.grads[q:], labels, targets, ZERO,
                           np.int64(IDENTITY), blas)
        gemm_nn(R, r0, mod.params, q, dz, 0, rows, m, n, blas)
        context_layer_grad(dz[:rows * m], z[z0:z0 + rows * m], h, h0, rows, n, m, mod.grads,
                           labels, targets, mod.k, np.int64(RELU), blas)


@njit(inline="always", **KERNEL)
def residual(P, p0, T, t0, R, r0, rows, n):
    """R (rows, n) = (P - T) / rows; returns sum of 1/2 (P - T)^2 / rows (the
    batch mean of the module's squared error)."""
    inv_b = 1.0 / rows
    loss = 0.0
    for i in range(rows * n):
        d = P[np.uint64(p0 + i)] - T[np.uint64(t0 + i)]
        loss += 0.5 * d * d
        R[np.uint64(r0 + i)] = d * inv_b
    return loss * inv_b


# -- the locked schedule: one batch, the whole network ------------------------------------

@njit(inline="always", **KERNEL)
def predict_all(args, labels, targets, rows):
    """Every module's prediction from the H_l in ``args.ws`` into sw's P blocks."""
    sgl, ws, sw = args.sgl, args.ws, args.sw
    p0, _, z0, _, _ = sw_offsets(sgl, rows)
    for i in range(sgl.table.shape[0]):
        t = sgl.table[i]
        module_forward(module(args.sg, sgl, i), ws, rows * t[HIDDEN], labels, targets, sw,
                       p0 + rows * t[BLOCK], sw, z0 + i * rows * sgl.m, rows, args.blas)


@njit(inline="always", **KERNEL)
def sg_backward(args, x, rows):
    """Backward pass after :func:`forward`, the loss kernel and the predictions:
    fastbp's :func:`backward`, except that at each decoupled layer l the
    gradient arriving at h_l is stored (times rows: per sample) as module l's
    target and replaced by the prediction (divided by rows) before it goes
    through f_l'(a_l). Fills ``args.step.grads`` and sw's T blocks.

    It mirrors :func:`backward` rather than calling a hooked version of it:
    a shared kernel measured 8% slower on backprop's 2-2-2 ``fit`` (the call
    is not inlined), or 1.3 s more cold compile with ``inline="always"``."""
    params, grads = args.step.params, args.step.grads
    layout, ws, sw, table, blas = args.layout, args.ws, args.sw, args.sgl.table, args.blas
    L = layout[0]
    _, hoff, cur = output_offsets(layout, rows)
    other = cur + rows * max_width(layout)
    woff = n_weights(layout)
    boff = params.shape[0]
    p0, t0, _, _, _ = sw_offsets(args.sgl, rows)
    i_mod = table.shape[0] - 1
    inv_b = 1.0 / rows
    scale = 1.0 * rows
    for l in range(L, 0, -1):
        nin = layout[l]
        nout = layout[l + 1]
        woff -= nout * nin
        boff -= nout
        hoff -= rows * nout
        prev_off = hoff - rows * nin
        src, s0 = (x, ZERO) if l == 1 else (ws, prev_off)
        if l == L:
            layer_gradient(ws, cur, src, s0, grads, woff, boff, rows, nout, nin, blas)
        else:   # db_l was summed when delta_l was formed (below)
            gemm_tn(ws, cur, src, s0, grads, woff, rows, nout, nin, blas)
        if l > 1:
            gemm_nn(ws, cur, params, woff, ws, other, rows, nin, nout, blas)
            if i_mod >= 0 and table[i_mod, LAYER] == l - 1:
                b0 = rows * table[i_mod, BLOCK]
                for j in range(rows * nin):
                    sw[np.uint64(t0 + b0 + j)] = ws[np.uint64(other + j)] * scale
                    ws[np.uint64(other + j)] = sw[np.uint64(p0 + b0 + j)] * inv_b
                i_mod -= 1
            n = rows * nin
            delta_and_bias_gradient(ws[prev_off:prev_off + n], ZERO, ws[other:other + n], ZERO,
                                    grads[boff - nin:boff], ZERO, rows, nin, layout[L + l])
            cur, other = other, cur


@njit(inline="always", **KERNEL)
def directions(args, x, labels, targets, rows, given):
    """Forward pass, loss, predictions (unless ``given``: then sw's P blocks
    already hold them), and the SG backward pass: ``args.step.grads`` receives
    the update direction of the mean loss (no weight decay), sw's T blocks the
    modules' targets. Returns (loss summed over the batch, number correct)."""
    main, layout, ws = args.step, args.layout, args.ws
    forward(x, rows, main.params, layout, ws, args.blas)
    h_off, a_off, d_off = output_offsets(layout, rows)
    L = layout[0]
    loss_sum, correct = loss_and_delta(ws, a_off, h_off, d_off, rows, layout[L + 1], labels,
                                       targets, int(main.train_hyper[LOSS]), layout[2 * L + 1])
    if not given:
        predict_all(args, labels, targets, rows)
    sg_backward(args, x, rows)
    return loss_sum, correct


@njit(inline="always", **KERNEL)
def module_directions(args, labels, targets, rows):
    """After :func:`directions` (with the modules' own predictions):
    ``args.sg.grads`` receives the gradient of every module's loss
    mean_batch 1/2 ||P_l - T_l||^2 (inputs h_l and targets held constant).
    Returns the loss summed over the modules."""
    sgl, ws, sw = args.sgl, args.ws, args.sw
    p0, t0, z0, dz0, r0 = sw_offsets(sgl, rows)
    m = sgl.m
    dz = sw[dz0:dz0 + rows * m]
    loss = 0.0
    for i in range(sgl.table.shape[0]):
        t = sgl.table[i]
        b0 = rows * t[BLOCK]
        loss += residual(sw, p0 + b0, sw, t0 + b0, sw, r0, rows, t[WIDTH])
        module_backward(module(args.sg, sgl, i), ws, rows * t[HIDDEN], labels, targets, sw,
                        r0, sw, z0 + i * rows * m, dz, rows, args.blas)
    return loss


@njit(**KERNEL)
def joint_step(args, x, labels, targets, rows):
    """One locked update of the model and of every module on one batch, both
    from the same forward pass (predictions and targets from the parameters
    before the step). Nothing is updated unless both updates are finite.

    Returns
    -------
    (objective, number correct, status, module loss)
    """
    # np.bool_, not the literal False: directions would compile once more
    loss_sum, correct = directions(args, x, labels, targets, rows, np.bool_(False))
    with_modules = args.sgl.table.shape[0] > 0
    sg_loss = 0.0
    if with_modules:
        sg_loss = module_directions(args, labels, targets, rows)
    obj, status = finish_steps(args.step, n_weights(args.layout), loss_sum / rows, args.sg,
                               sg_loss, with_modules)
    return obj, correct, status, sg_loss


@njit(**KERNEL)
def sg_batch(args, X, labels, targets, order, xb, lb, tb, start, rows, phase):
    """The epoch driver's step (see :mod:`fastbp.kernels.epochs`); its second
    statistic is the module loss, averaged over samples."""
    gather_batch(X, labels, targets, order, start, rows, xb, lb, tb)
    obj, c, status, sg_loss = joint_step(args, xb, lb, tb, rows)
    if status != OK:
        return 0.0, 0.0, 0, 0, 0.0, 0, status
    return obj * rows, c, rows, 1, sg_loss * rows, rows, OK


register_batch_step(SGArgs, sg_batch)


@njit(**KERNEL)
def train_epochs(args, data, plan, stats):
    """Locked epochs in one call: see :func:`fastbp.kernels.epochs.run_epochs`;
    ``stats[:, 3]`` receives each epoch's mean module loss."""
    return run_epochs(args, data, plan, stats)

"""Numba kernels of synthetic gradients / decoupled neural interfaces
(Jaderberg et al. 2017) for MLPs, built on fastbp's MLP kernels.

Conventions are those of :mod:`fastbp.kernels.mlp` (flat ``params``/``grads``
buffers, weights first then biases; flat row-major batch ``x``; the workspace
``ws`` holding H_1..H_L, A_L and two delta buffers; ``blas`` None or 1).

Modules
-------
``sgl`` (int64) describes the synthetic-gradient modules:
``[n_mod, m, cond, k, l_1, ..., l_nmod]``: n_mod modules, ``m`` hidden ReLU
units per module (0: linear modules), ``cond`` 1 when they read the context
c (the one-hot label, or the target row when the targets are rows), ``k``
the width of c (the model's n_outputs), and the decoupled hidden layers
1 <= l_1 < ... < l_nmod <= L-1 (1-based: h_l is the output of W_l).

``sgp`` is the trainer's flat module buffer: the modules one after the other,
each contiguous. Module i sits at h_l (n = n_l units) and reads (h_l, c):

* linear (m == 0):  Wh (n, n), Wc (n, k) [cond only], b (n);
  prediction = h Wh^T + c Wc^T + b
* hidden (m > 0):   Ph (m, n), Pc (m, k) [cond only], p (m), U (n, m), u (n);
  z = relu(h Ph^T + c Pc^T + p), prediction = z U^T + u

Predictions and targets are per-sample gradients d loss_i / d h_l (not
divided by the batch size). With integer labels, c Wc^T is a column gather
and its gradient a scatter; no one-hot matrix is ever built.

``sw`` is the trainer's module workspace for ``rows`` rows, S = sum of the
decoupled widths, M = max decoupled width:
P (rows * S: predictions, one (rows, n_l) block per module in order),
T (rows * S: targets, same blocks), Z (rows * m * n_mod: hidden activations),
DZ (rows * m), R (rows * M: residuals). See :func:`sw_size`.

Step semantics (locked schedule, one batch, everything from one forward pass
with the parameters before the step): the backward pass runs as in backprop
except at a decoupled layer l: the gradient arriving at h_l from above,
G_l = delta_{l+1} W_{l+1} (per sample), becomes module l's target T_l, and is
replaced by the prediction P_l before the pass continues through f_l'(a_l) and
layer l. Module l then minimises mean_batch 1/2 ||P_l - T_l||^2.
"""
from collections import namedtuple

from numba import njit

from fastbp.kernels.activations import activate_inplace, backprop_activation
from fastbp.kernels.codes import KERNEL, OK, RELU
from fastbp.kernels.epochs import gather_batch, register_batch_step, run_epochs
from fastbp.kernels.linalg import gemm_nn, gemm_nt, gemm_tn
from fastbp.kernels.losses import loss_and_delta
from fastbp.kernels.mlp import (add_bias, bias_gradient, forward, layer_gradient, max_width,
                                n_weights, output_offsets)
from fastbp.kernels.optim import LOSS, finish_steps

#: The arrays of a locked synthetic-gradient step: the model's and the
#: modules' StepArrays, the workspaces ``ws`` and ``sw``, the ``layout``, the
#: module layout ``sgl`` and ``blas``.
SGArgs = namedtuple("SGArgs", "step sg ws sw layout sgl blas")


# -- sizes and offsets ------------------------------------------------------------------

@njit(**KERNEL)
def module_size(n, m, k, cond):
    """Parameters of one module at a layer of n units."""
    ctx = k if cond else 0
    if m == 0:
        return n * (n + ctx) + n
    return m * (n + ctx) + m + n * m + n


@njit(**KERNEL)
def module_offset(sgl, layout, i):
    """Offset of module i in ``sgp``."""
    off = 0
    for j in range(i):
        off += module_size(layout[sgl[4 + j] + 1], sgl[1], sgl[3], sgl[2] != 0)
    return off


@njit(**KERNEL)
def sg_size(sgl, layout):
    """Entries of the module buffer."""
    return module_offset(sgl, layout, sgl[0])


@njit(**KERNEL)
def block_offset(sgl, layout, rows, i):
    """Offset of module i's (rows, n_l) block inside P or T."""
    off = 0
    for j in range(i):
        off += rows * layout[sgl[4 + j] + 1]
    return off


@njit(**KERNEL)
def decoupled_total(sgl, layout):
    """S: the sum of the decoupled layers' widths."""
    return block_offset(sgl, layout, 1, sgl[0])


@njit(**KERNEL)
def decoupled_max(sgl, layout):
    """M: the largest decoupled width (0 without modules)."""
    w = 0
    for j in range(sgl[0]):
        w = max(w, layout[sgl[4 + j] + 1])
    return w


@njit(**KERNEL)
def sw_offsets(sgl, layout, rows):
    """Offsets of P, T, Z, DZ, R in ``sw`` for ``rows`` rows."""
    S = decoupled_total(sgl, layout)
    m = sgl[1]
    p0 = 0
    t0 = rows * S
    z0 = 2 * rows * S
    dz0 = z0 + rows * m * sgl[0]
    r0 = dz0 + rows * m
    return p0, t0, z0, dz0, r0


@njit(**KERNEL)
def sw_size(sgl, layout, rows):
    """Entries of the module workspace for ``rows`` rows."""
    _, _, _, _, r0 = sw_offsets(sgl, layout, rows)
    return r0 + rows * decoupled_max(sgl, layout)


@njit(**KERNEL)
def hidden_offset(layout, rows, l):
    """Offset of H_l (rows, n_l) in the model workspace, l = 1..L."""
    off = 0
    for j in range(1, l):
        off += rows * layout[j + 1]
    return off


# -- the context c ------------------------------------------------------------------------

@njit(**KERNEL)
def context_forward(D, d0, rows, nout, P, q, k, labels, targets):
    """D (rows, nout) += c Wc^T with Wc (nout, k) at P[q]; c the one-hot rows of
    ``labels`` when labels are given, else the rows of ``targets``."""
    if labels.shape[0] > 0:
        for i in range(rows):
            c = labels[i]
            r = d0 + i * nout
            for o in range(nout):
                D[r + o] += P[q + o * k + c]
    else:
        for i in range(rows):
            r = d0 + i * nout
            for o in range(nout):
                s = 0.0
                for j in range(k):
                    s += targets[i, j] * P[q + o * k + j]
                D[r + o] += s


@njit(**KERNEL)
def context_grad(D, d0, rows, nout, G, q, k, labels, targets):
    """G[q:] (nout, k) = D (rows, nout)^T c: the gradient of Wc."""
    for i in range(nout * k):
        G[q + i] = 0.0
    if labels.shape[0] > 0:
        for i in range(rows):
            c = labels[i]
            r = d0 + i * nout
            for o in range(nout):
                G[q + o * k + c] += D[r + o]
    else:
        for i in range(rows):
            r = d0 + i * nout
            for o in range(nout):
                d = D[r + o]
                for j in range(k):
                    G[q + o * k + j] += d * targets[i, j]


# -- one module -----------------------------------------------------------------------------

@njit(**KERNEL)
def module_forward(h, h0, rows, n, sgp, po, m, k, cond, labels, targets, out, o0, z, z0,
                   blas):
    """out[o0:] (rows, n) = the module's prediction from h[h0:] (rows, n) and the
    context; the hidden activations (m > 0) go to z[z0:] (rows, m)."""
    if m == 0:
        gemm_nt(h, h0, sgp, po, out, o0, rows, n, n, blas)
        q = po + n * n
        if cond:
            context_forward(out, o0, rows, n, sgp, q, k, labels, targets)
            q += n * k
        add_bias(out, o0, sgp, q, rows, n)
    else:
        gemm_nt(h, h0, sgp, po, z, z0, rows, m, n, blas)
        q = po + m * n
        if cond:
            context_forward(z, z0, rows, m, sgp, q, k, labels, targets)
            q += m * k
        add_bias(z, z0, sgp, q, rows, m)
        activate_inplace(z, z0, rows, m, RELU)
        q += m
        gemm_nt(z, z0, sgp, q, out, o0, rows, n, m, blas)
        add_bias(out, o0, sgp, q + n * m, rows, n)


@njit(**KERNEL)
def module_backward(h, h0, rows, n, sgp, sgg, po, m, k, cond, labels, targets, R, r0, z, z0,
                    dz, dz0, blas):
    """Gradient of the module's loss into sgg[po:], given the residual R[r0:]
    (rows, n) = d loss / d prediction and the activations z of its forward."""
    if m == 0:
        gemm_tn(R, r0, h, h0, sgg, po, rows, n, n, blas)
        q = po + n * n
        if cond:
            context_grad(R, r0, rows, n, sgg, q, k, labels, targets)
            q += n * k
        bias_gradient(R, r0, sgg, q, rows, n)
    else:
        qu = po + m * n + (m * k if cond else 0) + m
        gemm_tn(R, r0, z, z0, sgg, qu, rows, n, m, blas)
        bias_gradient(R, r0, sgg, qu + n * m, rows, n)
        gemm_nn(R, r0, sgp, qu, dz, dz0, rows, m, n, blas)
        backprop_activation(z, z0, dz, dz0, rows, m, RELU)
        gemm_tn(dz, dz0, h, h0, sgg, po, rows, m, n, blas)
        q = po + m * n
        if cond:
            context_grad(dz, dz0, rows, m, sgg, q, k, labels, targets)
            q += m * k
        bias_gradient(dz, dz0, sgg, q, rows, m)


@njit(**KERNEL)
def residual(P, p0, T, t0, R, r0, rows, n):
    """R (rows, n) = (P - T) / rows; returns sum of 1/2 (P - T)^2 / rows (the
    batch mean of the module's squared error)."""
    inv_b = 1.0 / rows
    loss = 0.0
    for i in range(rows * n):
        d = P[p0 + i] - T[t0 + i]
        loss += 0.5 * d * d
        R[r0 + i] = d * inv_b
    return loss * inv_b


# -- the locked schedule: one batch, the whole network ------------------------------------

@njit(**KERNEL)
def predict_all(rows, sgp, ws, sw, layout, sgl, labels, targets, blas):
    """Every module's prediction from the H_l in ``ws`` into sw's P blocks."""
    k = sgl[3]
    m = sgl[1]
    cond = sgl[2] != 0
    p0, _, z0, _, _ = sw_offsets(sgl, layout, rows)
    for i in range(sgl[0]):
        l = sgl[4 + i]
        n = layout[l + 1]
        module_forward(ws, hidden_offset(layout, rows, l), rows, n, sgp,
                       module_offset(sgl, layout, i), m, k, cond, labels, targets, sw,
                       p0 + block_offset(sgl, layout, rows, i), sw, z0 + i * rows * m, blas)


@njit(**KERNEL)
def sg_backward(x, rows, params, grads, layout, ws, sw, sgl, blas):
    """Backward pass after :func:`forward`, the loss kernel and the predictions:
    fastbp's :func:`backward`, except that at each decoupled layer l the
    gradient arriving at h_l is stored (times rows: per sample) as module l's
    target and replaced by the prediction (divided by rows) before it goes
    through f_l'(a_l). Fills ``grads`` and sw's T blocks.

    It mirrors :func:`backward` rather than calling a hooked version of it:
    a shared kernel measured 8% slower on backprop's 2-2-2 ``fit`` (the call
    is not inlined), or 1.3 s more cold compile with ``inline="always"``."""
    L = layout[0]
    total_h = hidden_offset(layout, rows, L + 1)
    cur = total_h + rows * layout[L + 1]
    other = cur + rows * max_width(layout)
    woff = n_weights(layout)
    boff = params.shape[0]
    hoff = total_h
    p0, t0, _, _, _ = sw_offsets(sgl, layout, rows)
    i_mod = sgl[0] - 1
    inv_b = 1.0 / rows
    scale = 1.0 * rows
    for l in range(L, 0, -1):
        nin = layout[l]
        nout = layout[l + 1]
        woff -= nout * nin
        boff -= nout
        hoff -= rows * nout
        prev_off = hoff - rows * nin
        if l == 1:
            layer_gradient(ws, cur, x, 0, grads, woff, boff, rows, nout, nin, blas)
        else:
            layer_gradient(ws, cur, ws, prev_off, grads, woff, boff, rows, nout, nin, blas)
        if l > 1:
            gemm_nn(ws, cur, params, woff, ws, other, rows, nin, nout, blas)
            if i_mod >= 0 and sgl[4 + i_mod] == l - 1:
                b0 = block_offset(sgl, layout, rows, i_mod)
                for j in range(rows * nin):
                    sw[t0 + b0 + j] = ws[other + j] * scale
                    ws[other + j] = sw[p0 + b0 + j] * inv_b
                i_mod -= 1
            if blas is None:
                backprop_activation(ws, prev_off, ws, other, rows, nin, layout[L + l])
            else:
                n = rows * nin
                backprop_activation(ws[prev_off:prev_off + n], 0, ws[other:other + n], 0,
                                    rows, nin, layout[L + l])
            cur, other = other, cur


@njit(**KERNEL)
def directions(x, labels, targets, rows, params, grads, sgp, ws, sw, layout, sgl, loss_code,
               given, blas):
    """Forward pass, loss, predictions (unless ``given``: then sw's P blocks
    already hold them), and the SG backward pass: ``grads`` receives the update
    direction of the mean loss (no weight decay), sw's T blocks the modules'
    targets. Returns (loss summed over the batch, number correct)."""
    forward(x, rows, params, layout, ws, blas)
    h_off, a_off, d_off = output_offsets(layout, rows)
    L = layout[0]
    loss_sum, correct = loss_and_delta(ws, a_off, h_off, d_off, rows, layout[L + 1], labels,
                                       targets, loss_code, layout[2 * L + 1])
    if not given:
        predict_all(rows, sgp, ws, sw, layout, sgl, labels, targets, blas)
    sg_backward(x, rows, params, grads, layout, ws, sw, sgl, blas)
    return loss_sum, correct


@njit(**KERNEL)
def module_directions(rows, sgp, sgg, ws, sw, layout, sgl, labels, targets, blas):
    """After :func:`directions` (with the modules' own predictions): ``sgg``
    receives the gradient of every module's loss mean_batch 1/2 ||P_l - T_l||^2
    (inputs h_l and targets held constant). Returns the loss summed over the
    modules."""
    k = sgl[3]
    m = sgl[1]
    cond = sgl[2] != 0
    p0, t0, z0, dz0, r0 = sw_offsets(sgl, layout, rows)
    loss = 0.0
    for i in range(sgl[0]):
        l = sgl[4 + i]
        n = layout[l + 1]
        b0 = block_offset(sgl, layout, rows, i)
        loss += residual(sw, p0 + b0, sw, t0 + b0, sw, r0, rows, n)
        module_backward(ws, hidden_offset(layout, rows, l), rows, n, sgp, sgg,
                        module_offset(sgl, layout, i), m, k, cond, labels, targets, sw, r0,
                        sw, z0 + i * rows * m, sw, dz0, blas)
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
    main, sg, ws, sw, layout, sgl, blas = args
    loss_sum, correct = directions(x, labels, targets, rows, main.params, main.grads,
                                   sg.params, ws, sw, layout, sgl, int(main.train_hyper[LOSS]),
                                   False, blas)
    sg_loss = 0.0
    if sgl[0] > 0:
        sg_loss = module_directions(rows, sg.params, sg.grads, ws, sw, layout, sgl, labels,
                                    targets, blas)
    obj, status = finish_steps(main, n_weights(layout), loss_sum / rows, sg, sg_loss,
                               sgl[0] > 0)
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

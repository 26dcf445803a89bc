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
from numba import njit

from fastbp.kernels.activations import activate_inplace, backprop_activation
from fastbp.kernels.codes import KERNEL, OK, RELU
from fastbp.kernels.linalg import gemm_nn, gemm_nt, gemm_tn
from fastbp.kernels.losses import loss_and_delta
from fastbp.kernels.mlp import (add_bias, backward, bias_gradient, epoch_seed, forward,
                                gather_batch, max_width, n_weights, output_offsets,
                                record_epoch, shuffle_in_place)
from fastbp.kernels.optim import LOSS, apply_update, check_step, finish_step

#: kernels run by the concurrent schedule's worker threads release the GIL
NOGIL = dict(KERNEL, nogil=True)


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
            gemm_tn(ws, cur, x, 0, grads, woff, rows, nout, nin, blas)
        else:
            gemm_tn(ws, cur, ws, prev_off, grads, woff, rows, nout, nin, blas)
        if blas is None:
            bias_gradient(ws, cur, grads, boff, rows, nout)
        else:
            bias_gradient(ws[cur:cur + rows * nout], 0, grads[boff:boff + nout], 0,
                          rows, nout)
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
def joint_step(x, labels, targets, rows, params, grads, state, opt_hyper, train_hyper, sgp,
               sgg, sstate, shyper, strain, ws, sw, layout, sgl, blas):
    """One locked update of the model and of every module on one batch, both
    from the same forward pass (predictions and targets from the parameters
    before the step). Nothing is updated unless both updates are finite.

    Returns
    -------
    (objective, number correct, status, module loss)
    """
    loss_sum, correct = directions(x, labels, targets, rows, params, grads, sgp, ws, sw, layout,
                                   sgl, int(train_hyper[LOSS]), False, blas)
    has_mod = sgl[0] > 0
    sg_loss = 0.0
    if has_mod:
        sg_loss = module_directions(rows, sgp, sgg, ws, sw, layout, sgl, labels, targets, blas)
        _, aux = check_step(sgp, sgg, sstate, shyper, strain, 0, sg_loss)
        if aux != OK:
            return loss_sum / rows, correct, aux, sg_loss
    obj, status = finish_step(params, grads, state, opt_hyper, train_hyper, n_weights(layout),
                              loss_sum / rows)
    if status == OK and has_mod:
        apply_update(sgp, sgg, sstate, shyper)
    return obj, correct, status, sg_loss


@njit(**KERNEL)
def train_epochs(X, labels, targets, order, n_epochs, shuffle, seed, first_epoch, batch_size,
                 params, grads, state, opt_hyper, train_hyper, sgp, sgg, sstate, shyper, strain,
                 ws, sw, layout, sgl, xb, lb, tb, stats, sg_stats, blas):
    """``n_epochs`` locked epochs in one call, with the shuffling stream,
    ``stats`` and return values of :func:`fastbp.kernels.mlp.train_epochs`;
    ``sg_stats`` (n_epochs,) receives each epoch's mean module loss."""
    n = X.shape[0]
    for e in range(n_epochs):
        if shuffle:
            shuffle_in_place(order, epoch_seed(seed, first_epoch + e))
        loss_acc = 0.0
        correct_acc = 0.0
        sg_acc = 0.0
        steps = 0
        for start in range(0, n, batch_size):
            rows = min(batch_size, n - start)
            gather_batch(X, labels, targets, order, start, rows, xb, lb, tb)
            obj, c, status, sgl_loss = joint_step(xb, lb, tb, rows, params, grads, state,
                                                  opt_hyper, train_hyper, sgp, sgg, sstate,
                                                  shyper, strain, ws, sw, layout, sgl, blas)
            if status != OK:
                record_epoch(stats, e, loss_acc, start, correct_acc, steps)
                sg_stats[e] = sg_acc / max(start, 1)
                return status, e
            loss_acc += obj * rows
            sg_acc += sgl_loss * rows
            correct_acc += c
            steps += 1
        record_epoch(stats, e, loss_acc, n, correct_acc, steps)
        sg_stats[e] = sg_acc / n
    return OK, n_epochs


# -- the concurrent schedule: one layer group per thread ---------------------------------
# A group is layers a..b of the model run as a sub-MLP with its own flat buffer
# (W_a..W_b then b_a..b_b, exactly the sub-MLP's layout ``glayout``), grads,
# optimizer state and hyper vector. A lower group's last layer is a decoupled
# hidden layer; its module (params mp, grads mg, state ms, hyper mh) belongs to
# it. Every kernel here releases the GIL.

@njit(**KERNEL)
def gather_context(labels, targets, order, start, rows, lb, tb):
    """Labels (or target rows) of samples order[start:start + rows] into lb (tb)."""
    if labels.shape[0] > 0:
        for i in range(rows):
            lb[i] = labels[order[start + i]]
    else:
        for i in range(rows):
            src = order[start + i]
            for j in range(targets.shape[1]):
                tb[i, j] = targets[src, j]


@njit(**KERNEL)
def input_gradient(rows, gp, glayout, gws, down, d0, blas):
    """After fastbp's :func:`backward` on the group: down[d0:] (rows, n_in) =
    rows * delta_1 W_1, the per-sample gradient at the group's input."""
    Lg = glayout[0]
    total_h = hidden_offset(glayout, rows, Lg + 1)
    cur = total_h + rows * glayout[Lg + 1]
    if (Lg - 1) % 2 == 1:
        cur += rows * max_width(glayout)
    nin = glayout[1]
    gemm_nn(gws, cur, gp, 0, down, d0, rows, nin, glayout[2], blas)
    scale = 1.0 * rows
    for j in range(rows * nin):
        down[d0 + j] *= scale


@njit(**NOGIL)
def lower_forward(X, labels, targets, order, start, rows, bottom, src, s0, xb, lb, tb, gp, gws,
                  glayout, up, u0, mp, pbuf, zbuf, m, k, cond, blas):
    """A lower group's forward half of one batch: its input (gathered from X
    when ``bottom``, else src[s0:]), its layers, its output h copied to
    up[u0:] (rows, n) for the group above, and its module's prediction into
    pbuf (rows, n)."""
    Lg = glayout[0]
    n = glayout[Lg + 1]
    if bottom:
        gather_batch(X, labels, targets, order, start, rows, xb, lb, tb)
        forward(xb, rows, gp, glayout, gws, blas)
    else:
        gather_context(labels, targets, order, start, rows, lb, tb)
        forward(src[s0:], rows, gp, glayout, gws, blas)
    h_off, _, _ = output_offsets(glayout, rows)
    for j in range(rows * n):
        up[u0 + j] = gws[h_off + j]
    module_forward(up, u0, rows, n, mp, 0, m, k, cond, lb, tb, pbuf, 0, zbuf, 0, blas)


@njit(**NOGIL)
def lower_backward(rows, bottom, src, s0, xb, gp, gg, gs, gh, gtrain, gws, glayout, pbuf, down,
                   d0, blas):
    """A lower group's backward half: the prediction in pbuf (per sample)
    divided by rows goes through f'(a) of the group's last layer and back
    through the group; the group's input gradient (times rows) goes to
    down[d0:] unless ``bottom``; then the group's update. Returns (objective:
    the group's weight penalty, status)."""
    Lg = glayout[0]
    n = glayout[Lg + 1]
    h_off, _, d_off = output_offsets(glayout, rows)
    inv_b = 1.0 / rows
    for j in range(rows * n):
        gws[d_off + j] = pbuf[j] * inv_b
    backprop_activation(gws, h_off, gws, d_off, rows, n, glayout[2 * Lg + 1])
    if bottom:
        backward(xb, rows, gp, gg, glayout, gws, blas)
    else:
        backward(src[s0:], rows, gp, gg, glayout, gws, blas)
        input_gradient(rows, gp, glayout, gws, down, d0, blas)
    return finish_step(gp, gg, gs, gh, gtrain, n_weights(glayout), 0.0)


@njit(**NOGIL)
def top_step(labels, targets, order, start, rows, src, s0, lb, tb, gp, gg, gs, gh, gtrain, gws,
             glayout, down, d0, blas):
    """The top group's whole batch: forward from src[s0:], loss, backward, the
    per-sample input gradient into down[d0:] (the target of the module below),
    update. Returns (objective, number correct, status)."""
    gather_context(labels, targets, order, start, rows, lb, tb)
    x = src[s0:]
    forward(x, rows, gp, glayout, gws, blas)
    h_off, a_off, d_off = output_offsets(glayout, rows)
    Lg = glayout[0]
    loss_sum, correct = loss_and_delta(gws, a_off, h_off, d_off, rows, glayout[Lg + 1], lb, tb,
                                       int(gtrain[LOSS]), glayout[2 * Lg + 1])
    backward(x, rows, gp, gg, glayout, gws, blas)
    input_gradient(rows, gp, glayout, gws, down, d0, blas)
    obj, status = finish_step(gp, gg, gs, gh, gtrain, n_weights(glayout), loss_sum / rows)
    return obj, correct, status


@njit(**NOGIL)
def module_step(labels, targets, order, start, rows, h, h0, tgt, t0, n, mp, mg, ms, mh, mtrain,
                lb, tb, pbuf, zbuf, dzbuf, rbuf, m, k, cond, blas):
    """One update of a lower group's module on a stored batch: inputs h[h0:]
    (rows, n) and context of samples order[start:start + rows], target
    tgt[t0:] (rows, n), prediction recomputed with the module's current
    parameters. Returns (module loss, status)."""
    gather_context(labels, targets, order, start, rows, lb, tb)
    module_forward(h, h0, rows, n, mp, 0, m, k, cond, lb, tb, pbuf, 0, zbuf, 0, blas)
    loss = residual(pbuf, 0, tgt, t0, rbuf, 0, rows, n)
    module_backward(h, h0, rows, n, mp, mg, 0, m, k, cond, lb, tb, rbuf, 0, zbuf, 0, dzbuf, 0,
                    blas)
    return finish_step(mp, mg, ms, mh, mtrain, 0, loss)

"""Numba step kernels of the HSIC-bottleneck trainer (Ma, Lewis & Kleijn 2020),
built on fastbp's MLP kernels and the HSIC kernels of
:mod:`alternatives._hsic_kernels`.

Conventions are those of :mod:`fastbp.kernels.mlp` (flat ``params``/``grads``
buffers, every W_l then every b_l; flat row-major batch ``x``; the workspace
``ws`` holding H_1..H_L, the logits A_L and the delta buffers; ``blas`` None
or 1).

One step on a batch of m rows (X, labels or target rows; Y their one-hot
rows, or the target rows as given), in one pass up the network:

1. R_X (:func:`normalized_r`) and R_Y (:func:`label_r`), S = R_X - beta R_Y,
   once per batch;
2. for each hidden layer l = 1..L-1, from H_{l-1} as the layers below left it
   after their own update: H_l = f_l(H_{l-1} W_l^T + b_l);
   dJ_l/dH_l for J_l = tr(R_{H_l} S) = nHSIC(H_l, X) - beta nHSIC(H_l, Y),
   H_l seen at a spread of at most ``max_spread`` (:func:`capped_gradient`);
   delta_l = dJ_l/dH_l * f_l'(a_l),
   dW_l = delta_l^T H_{l-1}, db_l = column sums of delta_l; weight decay,
   clipping (of this layer's gradient), the finiteness check and the
   optimizer's update of (W_l, b_l) alone; then H_l again from the updated
   (W_l, b_l), the input of layer l + 1. No gradient crosses a layer;
3. the output ("format") layer: logits, loss and d(mean loss)/dA_L from
   H_{L-1}, and its own update (W_L, b_L) on that gradient.

``phase`` selects what a step trains: :data:`JOINT` (2 and 3), :data:`HSIC`
(2 only; the output layer is evaluated, not updated) or :data:`FORMAT` (3
only; the hidden layers are evaluated, not updated, and R_X, R_Y are not
formed).

Optimizer semantics: every layer's update is the optimizer's rule applied to
that layer's slices of params, grads and state with the update count
``opt_hyper[T]`` held at its value before the step, so each layer's update
is the one a single optimizer step over the whole buffer would give it; the
count advances by one per step. A step is all or nothing: each layer is
updated in place (the next layer's input is computed from it), its old
values and optimizer state written to a backup by the update's own pass; a
non-finite update, J_l or loss restores every layer the step changed from
the backup, so a failed step leaves the model and the optimizer exactly as
they were. The backup in the update's pass, not as a copy before it: Adam's
float64 update is bound by its divisions and square roots, so the extra
stores cost little, while a separate copy cost as much as the update.
"""
from collections import namedtuple

import numpy as np
from numba import njit

from fastbp.kernels.activations import activate_inplace
from fastbp.kernels.codes import (IDENTITY, KERNEL, NONFINITE_GRADIENT, NONFINITE_LOSS,
                                  NONFINITE_UPDATE, OK, ZERO)
from fastbp.kernels.epochs import gather_batch, register_batch_step, run_epochs
from fastbp.kernels.linalg import copy_block, gemm_tn
from fastbp.kernels.losses import loss_and_delta
from fastbp.kernels.mlp import bias_gradient, delta_and_bias_gradient, n_weights, output_offsets
from fastbp.kernels.optim import (CLIP, DECAY, LOSS, T, add_weight_decay, clip_by_global_norm,
                                  sum_squares, update_columns_saving)

from ._dtp_kernels import layer_apply
from ._hsic_kernels import (cholesky_inplace, cholesky_inverse_inplace, layer_gradient,
                            layer_nhsic, normalized_r, target_matrix)

#: phases: what a step trains
JOINT = 0
HSIC = 1
FORMAT = 2

#: The arrays of an HSIC step: the model's ``step`` arrays
#: (:data:`fastbp.kernels.optim.StepArrays`), the model workspace ``ws``, the
#: ``layout``, ``blas``, the float64 :class:`~alternatives._hsic_kernels.HSICWorkspace`
#: ``hws``, the flat float64 (m_max^2,) matrices ``rx``, ``ry``, ``s``, the
#: float64 (m_max, k) matrix ``y`` (Y's rows), the float64 scratch ``zs``
#: and ``gs`` (m_max * d_max,) of :func:`capped_gradient`, the backup of the
#: step's updates ``backup_params`` (n_params,) and ``backup_state``
#: (n_slots * n_params,), laid out like the parameters and the state, in the
#: model's dtype, ``info`` float64 (L - 1, 2) receiving nHSIC(H_l, X) and
#: nHSIC(H_l, Y) of each hidden layer in the last step that trained it (before
#: its update), sigma, beta, epsilon, ``max_spread`` (the cap of
#: :func:`capped_gradient`; inf for none) and the ``phase``.
HSICArgs = namedtuple("HSICArgs", "step ws layout blas hws rx ry s y zs gs backup_params "
                                  "backup_state info sigma beta epsilon max_spread phase")


@njit(inline="always", **KERNEL)
def capped_gradient(Z, S, sigma, epsilon, cap, hws, zs, gs, dZ):
    """J = tr(R_U S) and dZ <- dJ/dZ for the rows of Z (m, d), any float
    dtype, seen by the kernel as U = Z min(1, cap / s), s the spread of Z:
    s^2 = the mean over Z's entries of (z - its column mean)^2. Below the cap
    U = Z (:func:`layer_gradient` on Z itself); above it U has spread cap
    whatever Z's scale. zs, gs: float64 scratch of at least m d entries.

    The Gaussian kernel sees differences of rows only, so G = dJ/dU has zero
    column sums, and above the cap (N = m d, U centred)
    dJ/dZ = (cap / s) (G - U <G, U> / (N cap^2))."""
    m, d = Z.shape
    N = m * d
    U = zs[:N].reshape((m, d))
    G = gs[:N].reshape((m, d))
    # row by row into per-column sums: a walk down Z's columns strides by a
    # power of two at d = 256, and one running sum is a chain of dependent
    # additions; either cost more than the rest of this function
    mu = G[0]
    sq = G[1]
    for j in range(d):
        mu[j] = 0.0
        sq[j] = 0.0
    for i in range(m):
        for j in range(d):
            mu[j] += Z[i, j]
    for j in range(d):
        mu[j] /= m
    for i in range(m):
        for j in range(d):
            u = Z[i, j] - mu[j]
            sq[j] += u * u
    s2 = 0.0
    for j in range(d):
        s2 += sq[j]
    spread = np.sqrt(s2 / N)
    if not spread > cap:   # NaN too: layer_gradient reports it
        return layer_gradient(Z, S, sigma, epsilon, hws, dZ)
    f = cap / spread
    for i in range(m):
        for j in range(d):
            U[i, j] = (Z[i, j] - mu[j]) * f
    J = layer_gradient(U, S, sigma, epsilon, hws, G)
    c = 0.0
    for i in range(m):
        for j in range(d):
            c += G[i, j] * U[i, j]
    c /= N * cap * cap
    for i in range(m):
        for j in range(d):
            dZ[i, j] = f * (G[i, j] - U[i, j] * c)
    return J


@njit(inline="always", **KERNEL)
def fill_y(labels, targets, rows, y):
    """y[:rows] <- one-hot rows of the integer ``labels`` (when non-empty),
    else the ``targets`` rows as they are."""
    k = y.shape[1]
    if labels.shape[0] > 0:
        for i in range(rows):
            for j in range(k):
                y[i, j] = 0.0
            y[i, labels[i]] = 1.0
    else:
        for i in range(rows):
            for j in range(k):
                y[i, j] = targets[i, j]


@njit(inline="always", **KERNEL)
def onehot_r(labels, k, m, sigma, epsilon, ws, R):
    """R[:m*m] <- R_Y for Y the one-hot rows of ``labels[:m]`` over k classes
    (k <= m), in closed form: what :func:`normalized_r` gives for Y, at
    O(m^2 + k^3) instead of a factorisation of an m x m matrix.

    K_Y = q 1 1^T + (1 - q) E E^T (E the one-hot rows, q = exp(-1 / (sigma^2
    k)), the kernel of two different classes), so K~_Y = (1 - q) F F^T with
    F = H E, and by the push-through identity
    R_Y = F (F^T F + lambda I)^-1 F^T, lambda = epsilon m / (1 - q), where
    F^T F = diag(n) - n n^T / m (n the class counts) and
    F[i] = e_{c_i} - n / m. Uses ws.b (G^-1) and ws.v (n and G^-1 n).
    Returns 0, or LAPACK's info for G (positive definite: only NaN fails)."""
    G = ws.b
    v = ws.v
    for c in range(k):
        v[c] = 0.0
    for i in range(m):
        v[labels[i]] += 1.0
    lam = epsilon * m / -np.expm1(-1.0 / (sigma * sigma * k))
    for a in range(k):
        for b in range(k):
            G[a * k + b] = -v[a] * v[b] / m
        G[a * k + a] += v[a] + lam
    info = cholesky_inplace(G, k)
    if info != 0:
        return info
    info = cholesky_inverse_inplace(G, k)
    if info != 0:
        return info
    w = 0.0
    for a in range(k):
        u = 0.0
        for b in range(k):
            u += G[a * k + b] * v[b]
        v[k + a] = u / m
        w += u * v[a]
    w /= m * m
    for a in range(k):       # G^-1[a, b] - u[a] - u[b] + w, still k x k
        for b in range(k):
            G[a * k + b] += w - v[k + a] - v[k + b]
    for i in range(m):
        row = G[labels[i] * k:(labels[i] + 1) * k]
        for j in range(m):
            R[i * m + j] = row[labels[j]]
    return 0


@njit(inline="always", **KERNEL)
def label_r(labels, targets, rows, sigma, epsilon, ws, y, R):
    """R[:rows*rows] <- R_Y for the batch's labels (one-hot, in closed form
    when there are no more classes than rows: :func:`onehot_r`) or target
    rows (:func:`normalized_r` on them as they are). ``y`` (>= rows, k)
    float64 scratch. Returns 0 or the failing status."""
    k = y.shape[1]
    if labels.shape[0] > 0 and k <= rows:
        return onehot_r(labels, k, rows, sigma, epsilon, ws, R)
    fill_y(labels, targets, rows, y)
    return normalized_r(y[:rows], sigma, epsilon, ws, R)


@njit(**KERNEL)
def _restore_range(args, a, n):
    """Parameters and optimizer state of the columns a..a+n-1 back from the
    backup (:func:`_update_range` wrote it before changing them)."""
    params, state = args.step.params, args.step.state
    N = params.shape[0]
    copy_block(args.backup_params[a:a + n], params[a:a + n])
    for s in range(state.shape[0]):
        copy_block(args.backup_state[s * N + a:s * N + a + n], state[s, a:a + n])


#: entries per piece of :func:`_update_range`: an update that fails stops
#: at the end of its piece
CHUNK = 4096


@njit(**KERNEL)
def _update_range(args, a, n):
    """The optimizer's update of the columns a..a+n-1 of the parameters, in
    place, at the step's update count, CHUNK columns at a time, their old
    values and optimizer state stored in the backup (laid out like them) by
    the update's own pass
    (:func:`fastbp.kernels.optim.update_columns_saving`). Returns False, with
    the range as before, when an update is not finite."""
    params, grads, state, opt_hyper = (args.step.params, args.step.grads, args.step.state,
                                       args.step.opt_hyper)
    old_state = args.backup_state.reshape(state.shape)
    for c in range(a, a + n, CHUNK):
        cn = min(CHUNK, a + n - c)
        if not update_columns_saving(params, grads, state, opt_hyper, c, cn,
                                     args.backup_params, old_state):
            _restore_range(args, a, c + cn - a)
            return False
    return True


@njit(**KERNEL)
def layer_update(args, woff, nw, boff, nb):
    """Weight decay, clipping and the update of one layer's (W, b), in place,
    its gradient in ``grads``; the previous values go to the backup
    (:func:`_restore_layers` undoes the update). A failing update leaves the
    layer as it was.

    Returns (lambda/2 ||W||^2 before the update, status)."""
    grads, train_hyper = args.step.grads, args.step.train_hyper
    pw = args.step.params[woff:woff + nw]
    gw = grads[woff:woff + nw]
    gb = grads[boff:boff + nb]
    lam = train_hyper[DECAY]
    penalty = 0.0
    if lam > 0.0:
        penalty = add_weight_decay(pw, gw, nw, lam)
    clip = train_hyper[CLIP]
    if clip > 0.0:
        sq = sum_squares(gw) + sum_squares(gb)
        if not np.isfinite(sq):
            return penalty, NONFINITE_GRADIENT
        clip_by_global_norm(gw, sq, clip)
        clip_by_global_norm(gb, sq, clip)
    if _update_range(args, woff, nw):
        if _update_range(args, boff, nb):
            return penalty, OK
        _restore_range(args, woff, nw)
    if not np.isfinite(sum_squares(gw) + sum_squares(gb)):
        return penalty, NONFINITE_GRADIENT
    return penalty, NONFINITE_UPDATE


@njit(**KERNEL)
def _restore_layers(args, last):
    """Undo the updates of layers 1..last from the backup."""
    layout = args.layout
    woff = ZERO
    boff = n_weights(layout)
    for l in range(1, last + 1):
        nw = layout[l + 1] * layout[l]
        _restore_range(args, woff, nw)
        _restore_range(args, boff, layout[l + 1])
        woff += nw
        boff += layout[l + 1]


@njit(**KERNEL)
def _frozen_penalty(params, woff, nw, lam):
    """lambda/2 ||W||^2 of a layer that is not updated (0 without decay)."""
    if lam > 0.0:
        return 0.5 * lam * sum_squares(params[woff:woff + nw])
    return 0.0


@njit(**KERNEL)
def _layer_input(x, ws, l, prev):
    """(array, offset) of H_{l-1}: the batch x for l = 1, else ws at prev."""
    return (x, 0) if l == 1 else (ws, prev)


@njit(inline="always", **KERNEL)
def hsic_pass(args, x, labels, targets, rows, update):
    """One pass up the network on the batch ``x`` (rows, n_0) flat.

    ``update`` True: one training step of ``args.phase`` (see the module
    docstring). False: ``grads`` receives the direction of every layer at the
    current parameters (each hidden layer's HSIC gradient, the output layer's
    loss gradient; no decay, no clipping) and nothing else changes.

    Returns
    -------
    objective : float
        Mean loss of the batch as the output layer sees it (after this step's
        hidden updates, before its own) + lambda/2 sum_l ||W_l||^2 (each W_l
        before its update).
    n_correct : float
    status : int
        OK, or the failure code; then params and the optimizer are as before.
    j_sum : float
        sum over the hidden layers of J_l (0 in the format phase).
    """
    params, grads, state, opt_hyper, train_hyper = args.step
    layout, ws, blas, hws = args.layout, args.ws, args.blas, args.hws
    sigma, epsilon = args.sigma, args.epsilon
    L = layout[0]
    k = layout[L + 1]
    phase = JOINT if not update else args.phase
    hidden = phase != FORMAT
    lam = train_hyper[DECAY] if update else 0.0
    h_out, a_out, d_off = output_offsets(layout, rows)
    m = rows
    if hidden and L > 1:
        X2 = x[:rows * layout[1]].reshape((rows, layout[1]))
        if normalized_r(X2, sigma, epsilon, hws, args.rx) != 0 \
                or label_r(labels, targets, rows, sigma, epsilon, hws, args.y, args.ry) != 0:
            return np.nan, 0.0, NONFINITE_GRADIENT, np.nan
        target_matrix(args.rx, args.ry, args.beta, m, args.s)
    penalty = 0.0
    j_sum = 0.0
    woff = ZERO             # int64 offsets: a literal 0 compiles each callee again
    boff = n_weights(layout)
    hoff = ZERO
    prev = ZERO
    for l in range(1, L):
        nin = layout[l]
        nout = layout[l + 1]
        nw = nout * nin
        n = rows * nout
        code = layout[L + 1 + l]
        src, s0 = _layer_input(x, ws, l, prev)
        layer_apply(src, s0, params, woff, boff, ws, hoff, rows, nout, nin, code, blas)
        if hidden:
            Z = ws[hoff:hoff + n].reshape((rows, nout))
            dZ = ws[d_off:d_off + n].reshape((rows, nout))
            J = capped_gradient(Z, args.s, sigma, epsilon, args.max_spread, hws, args.zs,
                                args.gs, dZ)
            if not np.isfinite(J):
                if update:
                    _restore_layers(args, l - 1)
                return np.nan, 0.0, NONFINITE_GRADIENT, np.nan
            j_sum += J
            if update:
                args.info[l - 1, 0] = layer_nhsic(args.rx, m, epsilon, hws)
                args.info[l - 1, 1] = layer_nhsic(args.ry, m, epsilon, hws)
            delta_and_bias_gradient(ws[hoff:hoff + n], ZERO, ws[d_off:d_off + n], ZERO,
                                    grads[boff:boff + nout], ZERO, rows, nout, code)
            gemm_tn(ws, d_off, src, s0, grads, woff, rows, nout, nin, blas)
            if update:
                p, status = layer_update(args, woff, nw, boff, nout)
                penalty += p
                if status != OK:
                    _restore_layers(args, l - 1)
                    return np.nan, 0.0, status, np.nan
                # H_l again, from the updated layer: the input of layer l + 1
                layer_apply(src, s0, params, woff, boff, ws, hoff, rows, nout, nin, code, blas)
        else:
            penalty += _frozen_penalty(params, woff, nw, lam)
        prev = hoff
        woff += nw
        boff += nout
        hoff += n
    # the output (format) layer
    nin = layout[L]
    nw = k * nin
    src, s0 = _layer_input(x, ws, L, prev)
    layer_apply(src, s0, params, woff, boff, ws, a_out, rows, k, nin, np.int64(IDENTITY), blas)
    n = rows * k
    for i in range(n):
        ws[h_out + i] = ws[a_out + i]
    out_code = layout[2 * L + 1]
    activate_inplace(ws[h_out:h_out + n], ZERO, rows, k, out_code)
    loss_sum, correct = loss_and_delta(ws, a_out, h_out, d_off, rows, k, labels, targets,
                                       int(train_hyper[LOSS]), out_code)
    updated = L - 1 if update and hidden else 0     # hidden layers updated in place
    if not np.isfinite(loss_sum):
        _restore_layers(args, updated)
        return loss_sum / rows, correct, NONFINITE_LOSS, j_sum
    if phase != HSIC:
        gemm_tn(ws, d_off, src, s0, grads, woff, rows, k, nin, blas)
        bias_gradient(ws[d_off:d_off + n], ZERO, grads[boff:boff + k], ZERO, rows, k)
    if update:
        if phase == HSIC:
            penalty += _frozen_penalty(params, woff, nw, lam)
        else:
            p, status = layer_update(args, woff, nw, boff, k)
            penalty += p
            if status != OK:
                _restore_layers(args, updated)
                return loss_sum / rows + penalty, correct, status, j_sum
        opt_hyper[T] += 1.0
    return loss_sum / rows + penalty, correct, OK, j_sum


@njit(**KERNEL)
def train_step(args, x, labels, targets, rows):
    """One update of ``args.phase`` on one batch: (objective, number correct,
    status, sum of the layers' J)."""
    return hsic_pass(args, x, labels, targets, rows, np.bool_(True))


@njit(**KERNEL)
def hsic_batch(args, X, labels, targets, order, xb, lb, tb, start, rows, phase):
    """The epoch driver's step (see :mod:`fastbp.kernels.epochs`). A batch of
    one sample (the last of an epoch when n mod batch_size = 1) cannot be
    trained by HSIC: the batch before it takes that sample (the trainer's
    batch buffers hold batch_size + 1 rows), and its own call does nothing."""
    n = X.shape[0]
    if rows < 2:
        return 0.0, 0.0, 0, 0, 0.0, 0, OK
    if start + rows == n - 1:
        rows += 1
    gather_batch(X, labels, targets, order, start, rows, xb, lb, tb)
    obj, correct, status, j_sum = train_step(args, xb, lb, tb, rows)
    if status != OK:
        return 0.0, 0.0, 0, 0, 0.0, 0, status
    counted = 0 if args.phase == FORMAT else 1
    return obj * rows, correct, rows, 1, j_sum * counted, counted, OK


register_batch_step(HSICArgs, hsic_batch)


@njit(**KERNEL)
def train_epochs(args, data, plan, stats):
    """Whole epochs of ``args.phase`` in one call: see
    :func:`fastbp.kernels.epochs.run_epochs`; ``stats[:, 3]`` receives each
    epoch's mean over batches of sum_l J_l (NaN in the format phase)."""
    return run_epochs(args, data, plan, stats)

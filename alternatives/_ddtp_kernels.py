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
  eps ~ N(0, sigma^2) (the trainer's own generator), a_L(.) the output pre-activation
  with layers l+1..L applied to a (perturbed) h_l.
"""
from collections import namedtuple

from numba import njit

from fastbp.kernels.codes import KERNEL, ZERO
from fastbp.kernels.epochs import batch_result, gather_batch, register_batch_step
from fastbp.kernels.linalg import gemm_nt, gemm_tn
from fastbp.kernels.mlp import add_bias, forward, n_weights, output_offsets
from fastbp.kernels.optim import finish_step, finish_steps
from fastbp.kernels.random import fill_normal

from ._dtp_kernels import (_offsets, forward_and_output_gradient, layer_apply, max_width,
                           target_gradient)

#: The arrays of a DDTP step: the model's and the feedback's StepArrays, the
#: workspace ``ws``, the hidden targets ``tgt``, the noise ``eps``, the
#: scratch ``tw``, the ``layout``, the target step beta, the noise ``sigma``,
#: the noise generator's state ``rng``, ``blas``, and ``pretrain`` (bool: the
#: epoch driver's steps train the feedback alone).
DDTPArgs = namedtuple("DDTPArgs", "step feedback ws tgt eps tw layout target_step sigma rng "
                                  "blas pretrain")


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
def feedback_size(layout):
    """Entries of the feedback buffer: n_L * (n_1 + ... + n_{L-1}) (where a
    Q_L would start)."""
    return _q_offset(layout, layout[0])


@njit(inline="always", **KERNEL)
def forward_directions(args, x, labels, targets, rows):
    """Forward pass, loss, hidden targets (into ``args.tgt``) and the DDTP
    direction of the forward parameters (into ``args.step.grads``, no weight
    decay). Returns (loss summed over the batch, number correct)."""
    loss_sum, correct, d_off = forward_and_output_gradient(args, x, labels, targets, rows)
    ws, fb, tgt, tw, layout = args.ws, args.feedback.params, args.tgt, args.tw, args.layout
    L = layout[0]
    k = layout[L + 1]
    G = ZERO
    # the delta holds d(mean loss)/dA_L = e / rows
    scale = args.target_step * rows
    for l in range(1, L):
        hoff = _block_offset(layout, rows, l)    # H_l in ws, h^_l in tgt
        nout = layout[l + 1]
        # Q_l e per sample: (rows, k) @ Q_l^T
        gemm_nt(ws, d_off, fb, _q_offset(layout, l), tw, G, rows, nout, k, args.blas)
        for i in range(rows * nout):
            tgt[hoff + i] = ws[hoff + i] - scale * tw[G + i]
        target_gradient(args, x, rows, l, tgt, hoff, G)
    return loss_sum, correct


@njit(**KERNEL)
def feedback_directions(args, rows):
    """Difference-reconstruction gradients of every Q_l after :func:`forward`
    filled ``args.ws``, with the noise blocks in ``args.eps``:
    ``args.feedback.grads`` receives d/dQ of the mean reconstruction loss.
    Returns that loss (summed over layers, mean over the batch)."""
    params, fb, fgrads, ws, eps, tw, layout, blas = args.step.params, args.feedback.params, \
        args.feedback.grads, args.ws, args.eps, args.tw, args.layout, args.blas
    L = layout[0]
    k = layout[L + 1]
    mw = max_width(layout)
    P = ZERO
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


@njit(inline="always", **KERNEL)
def feedback_step(args, x, rows):
    """Forward pass, fresh noise, one update of the feedback. Returns (loss, status)."""
    fb = args.feedback
    forward(x, rows, args.step.params, args.layout, args.ws, args.blas)
    fill_normal(args.eps, _block_offset(args.layout, rows, args.layout[0]), args.sigma,
                args.rng)
    loss = feedback_directions(args, rows)
    return finish_step(fb.params, fb.grads, fb.state, fb.opt_hyper, fb.train_hyper,
                       ZERO, loss)


@njit(**KERNEL)
def joint_step(args, x, labels, targets, rows):
    """One forward update and one feedback update on one batch, both from the
    same forward pass (the targets use the feedback from before the step).
    Returns (objective, correct, status); nothing is updated unless both
    updates are finite."""
    loss_sum, correct = forward_directions(args, x, labels, targets, rows)
    with_feedback = args.feedback.params.shape[0] > 0
    floss = 0.0
    if with_feedback:
        fill_normal(args.eps, _block_offset(args.layout, rows, args.layout[0]), args.sigma,
                args.rng)
        floss = feedback_directions(args, rows)
    obj, status = finish_steps(args.step, n_weights(args.layout), loss_sum / rows,
                               args.feedback, floss, with_feedback)
    return obj, correct, status


@njit(**KERNEL)
def ddtp_batch(args, X, labels, targets, order, xb, lb, tb, start, rows, phase):
    """The epoch driver's step: with ``args.pretrain`` a feedback-only update
    (counted in no statistic), else a joint DDTP update."""
    gather_batch(X, labels, targets, order, start, rows, xb, lb, tb)
    if args.pretrain:
        _, status = feedback_step(args, xb, rows)
        return 0.0, 0.0, 0, 0, 0.0, 0, status
    return batch_result(joint_step(args, xb, lb, tb, rows), rows)


register_batch_step(DDTPArgs, ddtp_batch)

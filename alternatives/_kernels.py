"""Numba kernels of the feedback-alignment trainers, built on fastbp's MLP kernels.

Conventions are those of :mod:`fastbp.kernels.mlp` (flat ``params``/``grads``
buffers, weights first then biases; flat row-major batch ``x``; the workspace
``ws`` holding H_1..H_L, A_L and two delta buffers; ``blas`` None or 1).

``feedback`` is the trainer's flat buffer of fixed feedback matrices; ``mode``
selects how it is read:

* ``FA`` (feedback alignment, Lillicrap et al. 2016): laid out exactly like
  ``params``; the slot of W_l (n_l, n_{l-1}) holds B_l of the same shape, bias
  slots are unused. The backward pass is fastbp's :func:`backward` with
  ``feedback`` in place of ``params`` (``backward`` reads ``params`` only to
  propagate deltas through W_l), so a step costs what a backprop step costs:
  delta_{l-1} = (delta_l B_l) * f'(a_{l-1}).
* ``DFA`` (direct feedback alignment, Nokland 2016): B_1..B_{L-1}, B_l of
  shape (n_L, n_l), row-major and concatenated; e = dL/dA_L (the output delta
  the loss kernel writes), delta_L = e, delta_l = (e B_l) * f'(a_l) for l < L.

Both then set dW_l = delta_l^T H_{l-1}, db_l = column sums of delta_l (rows are
samples, so this is the textbook dW_l = delta_l h_{l-1}^T summed over the batch).
"""
from collections import namedtuple

from numba import njit

from fastbp.kernels.activations import backprop_activation
from fastbp.kernels.codes import KERNEL, ZERO
from fastbp.kernels.epochs import batch_result, gather_batch, register_batch_step, run_epochs
from fastbp.kernels.linalg import gemm_nn
from fastbp.kernels.losses import loss_and_delta
from fastbp.kernels.mlp import (backward, forward, layer_gradient, max_width, n_weights,
                                output_offsets)
from fastbp.kernels.optim import LOSS, finish_step

from ._ddtp_kernels import _q_offset
from ._dtp_kernels import _offsets

FA = 0
DFA = 1

#: The arrays of a feedback-alignment step: those of
#: :data:`fastbp.kernels.mlp.BackpropArgs` plus the flat ``feedback`` buffer
#: and the ``mode`` (FA or DFA).
FeedbackArgs = namedtuple("FeedbackArgs", "params grads state opt_hyper train_hyper feedback "
                                          "ws layout mode blas")


# the package's one entry point: the step is the one registered for type(args)
# (this module's, DTP's, DDTP's or AltMin's); cached like any kernel, and the
# package's caches are dropped whenever any of its modules changes
@njit(**KERNEL)
def train_epochs(args, data, plan, stats):
    """Whole epochs of FA, DFA, DTP, DDTP or AltMin, whichever ``args`` (a
    FeedbackArgs, DTPArgs, DDTPArgs, AltMinArgs or AltMinMemArgs) belongs
    to: see :func:`fastbp.kernels.epochs.run_epochs`."""
    return run_epochs(args, data, plan, stats)


@njit(**KERNEL)
def dfa_backward(x, rows, feedback, grads, layout, ws, blas):
    """DFA backward pass after :func:`forward` and the loss kernel wrote
    e = d(loss)/dA_L at the output delta offset; fills ``grads``.

    Parameters
    ----------
    x : 1-D array, the batch's (rows, n_0) inputs row-major
    rows : int
    feedback : 1-D array of n_L * (n_1 + ... + n_{L-1}) entries, B_1..B_{L-1}
        with B_l (n_L, n_l) row-major
    grads : 1-D array laid out like the model's flat parameters
    layout, ws, blas : as in :mod:`fastbp.kernels.mlp`

    The output delta e stays in the first delta buffer; each hidden layer's
    delta is built in the second one: delta_l = (e B_l) * f_l'(a_l).
    """
    L = layout[0]
    k = layout[L + 1]
    e_off = output_offsets(layout, rows)[2]
    other = e_off + rows * max_width(layout)
    for l in range(L, 0, -1):
        woff, boff, prev, hoff = _offsets(layout, rows, l)
        nout = layout[l + 1]
        d = e_off
        if l < L:
            # delta_l (rows, n_l) = e (rows, k) @ B_l (k, n_l), then * f'(a_l);
            # B_l sits where DDTP keeps Q_l (the same sizes, transposed)
            d = other
            gemm_nn(ws, e_off, feedback, _q_offset(layout, l), ws, other, rows, nout, k, blas)
            if blas is None:
                backprop_activation(ws, hoff, ws, other, rows, nout, layout[L + 1 + l])
            else:
                n = rows * nout
                backprop_activation(ws[hoff:hoff + n], ZERO, ws[other:other + n], ZERO,
                                    rows, nout, layout[L + 1 + l])
        if l == 1:
            layer_gradient(ws, d, x, ZERO, grads, woff, boff, rows, nout, layout[l], blas)
        else:
            layer_gradient(ws, d, ws, prev, grads, woff, boff, rows, nout, layout[l], blas)


@njit(**KERNEL)
def loss_directions(args, x, labels, targets, rows):
    """Forward pass, loss and feedback backward pass for one batch;
    ``args.grads`` receives the update direction of the mean loss (no weight
    decay). Returns (loss summed over the batch, number correct).

    Parameters
    ----------
    args : FeedbackArgs
        ``feedback`` laid out as ``mode`` requires (see the module docstring).
    x : 1-D array, the batch's (rows, n_0) inputs row-major
    labels : int64 (>= rows,) or (0,);  targets : (>= rows, n_L) or (0, 0)
    rows : int
    """
    params, grads, _, _, train_hyper, feedback, ws, layout, mode, blas = args
    forward(x, rows, params, layout, ws, blas)
    h_off, a_off, d_off = output_offsets(layout, rows)
    L = layout[0]
    loss_sum, correct = loss_and_delta(ws, a_off, h_off, d_off, rows, layout[L + 1],
                                       labels, targets, int(train_hyper[LOSS]),
                                       layout[2 * L + 1])
    if mode == FA:
        backward(x, rows, feedback, grads, layout, ws, blas)
    else:
        dfa_backward(x, rows, feedback, grads, layout, ws, blas)
    return loss_sum, correct


@njit(**KERNEL)
def finish_model_step(args, loss_sum, correct, rows):
    """The tail of a step that updates the model alone:
    :func:`fastbp.kernels.optim.finish_step` on ``args.params`` (with its
    ``grads``, ``state``, ``opt_hyper``, ``train_hyper`` and ``layout``) for
    the mean loss ``loss_sum / rows``. Returns (objective, correct, status)."""
    objective, status = finish_step(args.params, args.grads, args.state, args.opt_hyper,
                                    args.train_hyper, n_weights(args.layout), loss_sum / rows)
    return objective, correct, status


@njit(**KERNEL)
def train_step(args, x, labels, targets, rows):
    """One update on one batch. Returns (objective, number correct, status);
    parameters are unchanged unless status == OK."""
    loss_sum, correct = loss_directions(args, x, labels, targets, rows)
    return finish_model_step(args, loss_sum, correct, rows)


@njit(**KERNEL)
def feedback_batch(args, X, labels, targets, order, xb, lb, tb, start, rows, phase):
    """The epoch driver's step (see :mod:`fastbp.kernels.epochs`)."""
    gather_batch(X, labels, targets, order, start, rows, xb, lb, tb)
    return batch_result(train_step(args, xb, lb, tb, rows), rows)


register_batch_step(FeedbackArgs, feedback_batch)

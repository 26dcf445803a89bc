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
from fastbp.kernels.codes import KERNEL
from fastbp.kernels.epochs import batch_result, gather_batch, register_batch_step, run_epochs
from fastbp.kernels.linalg import gemm_nn
from fastbp.kernels.losses import loss_and_delta
from fastbp.kernels.mlp import backward, forward, layer_gradient, n_weights, output_offsets
from fastbp.kernels.optim import LOSS, finish_step

FA = 0
DFA = 1

#: The arrays of a feedback-alignment step: those of
#: :data:`fastbp.kernels.mlp.BackpropArgs` plus the flat ``feedback`` buffer
#: and the ``mode`` (FA or DFA).
FeedbackArgs = namedtuple("FeedbackArgs", "params grads state opt_hyper train_hyper feedback "
                                          "ws layout mode blas")


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
    h_out, a_out, e_off = output_offsets(layout, rows)
    width = 0
    for l in range(2, L + 2):
        if layout[l] > width:
            width = layout[l]
    other = e_off + rows * width
    woff = n_weights(layout)
    boff = grads.shape[0]
    hoff = h_out + rows * k        # end of H_L
    foff = feedback.shape[0]       # end of B_{L-1}
    for l in range(L, 0, -1):
        nin = layout[l]
        nout = layout[l + 1]
        woff -= nout * nin
        boff -= nout
        hoff -= rows * nout        # start of H_l
        prev_off = hoff - rows * nin
        if l == L:
            d = e_off
        else:
            # delta_l (rows, n_l) = e (rows, k) @ B_l (k, n_l), then * f'(a_l)
            foff -= k * nout
            d = other
            gemm_nn(ws, e_off, feedback, foff, ws, other, rows, nout, k, blas)
            if blas is None:
                backprop_activation(ws, hoff, ws, other, rows, nout, layout[L + 1 + l])
            else:
                n = rows * nout
                backprop_activation(ws[hoff:hoff + n], 0, ws[other:other + n], 0,
                                    rows, nout, layout[L + 1 + l])
        if l == 1:
            layer_gradient(ws, d, x, 0, grads, woff, boff, rows, nout, nin, blas)
        else:
            layer_gradient(ws, d, ws, prev_off, grads, woff, boff, rows, nout, nin, blas)


@njit(**KERNEL)
def loss_directions(x, labels, targets, rows, params, feedback, grads, ws, layout,
                    loss_code, mode, blas):
    """Forward pass, loss and feedback backward pass for one batch; ``grads``
    receives the update direction of the mean loss (no weight decay).
    Returns (loss summed over the batch, number correct).

    Parameters
    ----------
    x : 1-D array, the batch's (rows, n_0) inputs row-major
    labels : int64 (>= rows,) or (0,);  targets : (>= rows, n_L) or (0, 0)
    params, grads : 1-D arrays laid out like the model's flat parameters
    feedback : 1-D array, laid out as ``mode`` requires (see module docstring)
    mode : FA or DFA
    """
    forward(x, rows, params, layout, ws, blas)
    h_off, a_off, d_off = output_offsets(layout, rows)
    L = layout[0]
    loss_sum, correct = loss_and_delta(ws, a_off, h_off, d_off, rows, layout[L + 1],
                                       labels, targets, loss_code, layout[2 * L + 1])
    if mode == FA:
        backward(x, rows, feedback, grads, layout, ws, blas)
    else:
        dfa_backward(x, rows, feedback, grads, layout, ws, blas)
    return loss_sum, correct


@njit(**KERNEL)
def train_step(args, x, labels, targets, rows):
    """One update on one batch. Returns (objective, number correct, status);
    parameters are unchanged unless status == OK."""
    params, grads, state, opt_hyper, train_hyper, feedback, ws, layout, mode, blas = args
    loss_sum, correct = loss_directions(x, labels, targets, rows, params, feedback, grads,
                                        ws, layout, int(train_hyper[LOSS]), mode, blas)
    objective, status = finish_step(params, grads, state, opt_hyper, train_hyper,
                                    n_weights(layout), loss_sum / rows)
    return objective, correct, status


@njit(**KERNEL)
def feedback_batch(args, X, labels, targets, order, xb, lb, tb, start, rows, phase):
    """The epoch driver's step (see :mod:`fastbp.kernels.epochs`)."""
    gather_batch(X, labels, targets, order, start, rows, xb, lb, tb)
    return batch_result(train_step(args, xb, lb, tb, rows), rows)


register_batch_step(FeedbackArgs, feedback_batch)


@njit(**KERNEL)
def train_epochs(args, data, plan, stats):
    """Whole epochs with the feedback pass of ``args.mode``: see
    :func:`fastbp.kernels.epochs.run_epochs`."""
    return run_epochs(args, data, plan, stats)

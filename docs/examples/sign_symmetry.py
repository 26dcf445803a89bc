"""Sign-symmetric feedback (Liao, Leibo & Poggio 2016) as a fastbp plug-in.

The backward pass carries deltas through sign(W_l) instead of W_l:
delta_{l-1} = (delta_l sign(W_l)) * f'(a_{l-1}), dW_l = delta_l^T h_{l-1}.
Written from fastbp's public names only; register it with an entry point::

    [project.entry-points."fastbp.trainers"]
    sign = "sign_symmetry:SignSymmetryTrainer"
"""
from collections import namedtuple

import numpy as np
from numba import njit

import fastbp as fb
from fastbp.kernels.codes import KERNEL
from fastbp.kernels.epochs import batch_result, gather_batch, register_batch_step, run_epochs
from fastbp.kernels.losses import loss_and_delta
from fastbp.kernels.mlp import backward, forward, n_weights, output_offsets
from fastbp.kernels.optim import LOSS, finish_step

SignArgs = namedtuple("SignArgs", "params grads state opt_hyper train_hyper signs ws layout blas")


@njit(**KERNEL)
def sign_directions(x, labels, targets, rows, args):
    """grads = the sign-symmetric direction of the mean loss on one batch;
    returns (loss summed over the batch, number correct)."""
    params, grads, _, _, train_hyper, signs, ws, layout, blas = args
    for i in range(n_weights(layout)):
        signs[i] = np.sign(params[i])
    forward(x, rows, params, layout, ws, blas)
    h, a, d = output_offsets(layout, rows)
    L = layout[0]
    loss_sum, correct = loss_and_delta(ws, a, h, d, rows, layout[L + 1], labels, targets,
                                       int(train_hyper[LOSS]), layout[2 * L + 1])
    backward(x, rows, signs, grads, layout, ws, blas)   # deltas travel through sign(W)
    return loss_sum, correct


@njit(**KERNEL)
def sign_step(args, x, labels, targets, rows):
    loss_sum, correct = sign_directions(x, labels, targets, rows, args)
    objective, status = finish_step(args.params, args.grads, args.state, args.opt_hyper,
                                    args.train_hyper, n_weights(args.layout), loss_sum / rows)
    return objective, correct, status


@njit(**KERNEL)
def sign_batch(args, X, labels, targets, order, xb, lb, tb, start, rows, phase):
    gather_batch(X, labels, targets, order, start, rows, xb, lb, tb)
    return batch_result(sign_step(args, xb, lb, tb, rows), rows)


register_batch_step(SignArgs, sign_batch)


@njit(**KERNEL)
def sign_epochs(args, data, plan, stats):
    return run_epochs(args, data, plan, stats)


class SignSymmetryTrainer(fb.Trainer):
    """Backprop with sign(W_l) in place of W_l on the way back (fb.MLP only)."""

    name = "sign"

    def __init__(self, model, loss=None, optimizer=None, weight_decay=0.0, clip_norm=None):
        super().__init__(model, loss, optimizer, weight_decay, clip_norm)
        self.signs = np.zeros(model.n_params, dtype=model.dtype)   # sign(W), every step

    def kernel_args(self, rows):
        m = self.model
        return SignArgs(*self.step_arrays, self.signs, self.workspace(rows), m.layout,
                        m.blas(rows))

    def train_batch(self, X, labels, targets):
        rows = X.shape[0]
        return sign_step(self.kernel_args(rows), X.reshape(-1), labels, targets, rows)

    def fit_epochs(self, data, plan, stats):
        return sign_epochs(self.kernel_args(plan.batch_size), data, plan, stats)

    def update_directions(self, X, y):
        X, labels, targets = self.prepare(X, y)
        rows = X.shape[0]
        sign_directions(X.reshape(-1), labels, targets, rows, self.kernel_args(rows))
        return self.directions_from_grads()

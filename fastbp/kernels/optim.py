"""In-place optimizer updates over one flat parameter buffer, plus the gradient
post-processing every trainer shares (L2 weight decay, global-norm clipping).

``opt_hyper`` is a float64 array owned by the optimizer object:
``[kind, lr, a, b, eps, t]`` where for SGD a = momentum, b = nesterov (0/1)
and for Adam a = beta1, b = beta2; ``t`` counts the updates applied.
``state`` is (n_slots, n_params): velocity for SGD with momentum, first and
second moments for Adam, nothing for plain SGD.
"""
import numpy as np
from numba import njit

from .codes import KERNEL, REDUCTION, ADAM, NONFINITE_GRADIENT, NONFINITE_LOSS, OK

KIND, LR, A, B, EPS, T = 0, 1, 2, 3, 4, 5
# train_hyper: [loss code, weight decay lambda, clip norm (0 = off)]
LOSS, DECAY, CLIP = 0, 1, 2


@njit(**REDUCTION)
def sum_squares(x):
    """Sum of squares of a 1-D array, accumulated in float64."""
    s = 0.0
    for i in range(x.shape[0]):
        v = x[i]
        s += v * v
    return s


@njit(**KERNEL)
def apply_update(params, grads, state, opt_hyper):
    """params -= update(grads), the rule chosen by opt_hyper[0]; advances t.

    SGD (torch.optim.SGD convention): v = mu v + g; p -= lr v, or with Nesterov
    p -= lr (g + mu v). Adam (Kingma & Ba 2015, Algorithm 1) with bias
    correction folded into the step size.
    """
    n = params.shape[0]
    lr = opt_hyper[LR]
    opt_hyper[T] += 1.0
    if opt_hyper[KIND] == ADAM:
        # constants in the parameters' dtype: float32 Adam then runs in float32
        # vector lanes (as torch does), 4x faster than promoting to float64
        f = params.dtype.type
        b1 = f(opt_hyper[A])
        b2 = f(opt_hyper[B])
        t = opt_hyper[T]
        step = f(lr / (1.0 - opt_hyper[A] ** t))
        inv_c2 = f(1.0 / (1.0 - opt_hyper[B] ** t))
        eps = f(opt_hyper[EPS])
        one_b1 = f(1.0 - opt_hyper[A])
        one_b2 = f(1.0 - opt_hyper[B])
        for i in range(n):
            g = grads[i]
            mi = b1 * state[0, i] + one_b1 * g
            vi = b2 * state[1, i] + one_b2 * g * g
            state[0, i] = mi
            state[1, i] = vi
            params[i] -= step * mi / (np.sqrt(vi * inv_c2) + eps)
    else:
        mu = opt_hyper[A]
        if mu == 0.0:
            for i in range(n):
                params[i] -= lr * grads[i]
        else:
            nesterov = opt_hyper[B] != 0.0
            for i in range(n):
                g = grads[i]
                v = mu * state[0, i] + g
                state[0, i] = v
                if nesterov:
                    params[i] -= lr * (g + mu * v)
                else:
                    params[i] -= lr * v


@njit(**KERNEL)
def add_weight_decay(params, grads, n_weights, lam):
    """grads[:n_weights] += lam * params[:n_weights] and return the penalty
    lam/2 * sum(params[:n_weights]^2).

    Models store every weight matrix before every bias in their flat buffer, so
    "weights, not biases" is the prefix of length ``n_weights``.
    """
    pen = 0.0
    for i in range(n_weights):
        p = params[i]
        grads[i] += lam * p
        pen += p * p
    return 0.5 * lam * pen


@njit(**KERNEL)
def clip_by_global_norm(grads, sq_norm, clip_norm):
    """Scale grads so that their global L2 norm is at most clip_norm."""
    norm = np.sqrt(sq_norm)
    if norm > clip_norm:
        scale = clip_norm / (norm + 1e-12)
        for i in range(grads.shape[0]):
            grads[i] *= scale


@njit(**KERNEL)
def finish_step(params, grads, state, opt_hyper, train_hyper, n_weights, data_loss):
    """Shared tail of every training step: decay, finiteness check, clip, update.

    The parameters and optimizer state are touched only when the loss and the
    gradient are finite, so a diverging step leaves the model as it was.

    Returns
    -------
    objective : float
        data_loss + lambda/2 * sum ||W||_F^2 (the penalty only when lambda > 0).
    status : int
        OK, NONFINITE_LOSS or NONFINITE_GRADIENT (then nothing was updated).
    """
    if not np.isfinite(data_loss):
        return data_loss, NONFINITE_LOSS
    lam = train_hyper[DECAY]
    objective = data_loss
    if lam > 0.0:
        objective += add_weight_decay(params, grads, n_weights, lam)
    sq = sum_squares(grads)
    if not np.isfinite(sq):
        return objective, NONFINITE_GRADIENT
    clip = train_hyper[CLIP]
    if clip > 0.0:
        clip_by_global_norm(grads, sq, clip)
    apply_update(params, grads, state, opt_hyper)
    return objective, OK

"""Plain NumPy twins of the synthetic-gradient kernels (Jaderberg et al. 2017),
written from the equations in float64. Nothing here imports fastbp or
alternatives; the activation and loss helpers come from ``naive``.

Notation: samples are rows; layers l = 1..L with W_l (n_l, n_{l-1});
H_0 = X, A_l = H_{l-1} W_l^T + b_l, H_l = f_l(A_l). The decoupled layers D
are 1-based hidden-layer indices (H_l is the post-activation output of
layer l). The modules' predictions and targets are per-sample gradients
dL_i/dH_l; the batch loss is the mean of the L_i.
"""
import numpy as np

import naive


def _f64(a):
    return np.asarray(a, dtype=np.float64)


def context(y, k):
    """The module context c: one-hot rows of integer labels, or the target rows."""
    y = np.asarray(y)
    return naive.one_hot(y, k) if y.ndim == 1 else _f64(y)


def module_predict(params, H, C, hidden):
    """One module's prediction (and hidden activations Z or None).

    params: [Wh, (Wc,) b] (linear) or [Ph, (Pc,) p, U, u] (hidden); C is the
    context or None for an unconditioned module."""
    params = [_f64(p) for p in params]
    if C is None:
        pre = H @ params[0].T + params[1]
        rest = params[2:]
    else:
        pre = H @ params[0].T + C @ params[1].T + params[2]
        rest = params[3:]
    if not hidden:
        return pre, None
    Z = np.maximum(pre, 0.0)
    U, u = rest
    return Z @ U.T + u, Z


def module_gradients(params, H, C, hidden, target):
    """Gradients (same order as params) of mean_i 1/2 ||M(H_i, C_i) - T_i||^2 and
    that loss."""
    P, Z = module_predict(params, H, C, hidden)
    n = H.shape[0]
    R = (P - _f64(target)) / n
    loss = 0.5 * float(np.sum((P - _f64(target)) ** 2)) / n
    if not hidden:
        grads = [R.T @ H] + ([R.T @ C] if C is not None else []) + [R.sum(axis=0)]
        return grads, loss
    U = _f64(params[-2])
    dU, du = R.T @ Z, R.sum(axis=0)
    DZ = (R @ U) * (Z > 0)
    grads = [DZ.T @ H] + ([DZ.T @ C] if C is not None else []) + [DZ.sum(axis=0), dU, du]
    return grads, loss


def sg_step_quantities(Ws, bs, activations, output, loss, X, y, decoupled, modules, hidden,
                       conditioned, synthetic=None, lam=0.0):
    """Everything one locked synthetic-gradient step computes on one batch.

    Parameters
    ----------
    Ws, bs : the model's layers; activations: hidden names; output, loss: names
    decoupled : ascending 1-based hidden-layer indices
    modules : one parameter list per decoupled layer (see module_predict)
    synthetic : None, or per decoupled layer the (n, n_l) gradients to use
        instead of the modules' predictions

    Returns
    -------
    directions : [dW_1, db_1, ..., dW_L, db_L] of the mean loss (+ lam W)
    predictions, targets : per decoupled layer, per-sample gradients
    module_grads, module_loss : the modules' gradients and summed loss
    """
    Ws = [_f64(W) for W in Ws]
    bs = [_f64(b) for b in bs]
    X = _f64(X)
    L = len(Ws)
    n = X.shape[0]
    k = Ws[-1].shape[0]
    acts = list(activations) + [output]
    As, Hs = naive.mlp_forward(list(zip(Ws, bs)), acts, X)
    H = [X] + Hs                       # H[l] = output of layer l
    C = context(y, k) if conditioned else None
    preds = {}
    for i, l in enumerate(decoupled):
        if synthetic is not None:
            preds[l] = _f64(synthetic[i])
        else:
            preds[l] = module_predict(modules[i], H[l], C, hidden)[0]
    # per-sample gradient at the output pre-activation
    delta = naive.loss_delta(loss, As[-1], y, output) * n
    directions = [None] * (2 * L)
    targets = {}
    for l in range(L, 0, -1):
        directions[2 * (l - 1)] = delta.T @ H[l - 1] / n + lam * Ws[l - 1]
        directions[2 * (l - 1) + 1] = delta.sum(axis=0) / n
        if l > 1:
            G = delta @ Ws[l - 1]          # per-sample dL_i/dH_{l-1} from above
            if (l - 1) in preds:
                targets[l - 1] = G
                G = preds[l - 1]
            delta = G * naive.activation_derivative(acts[l - 2], As[l - 2])
    mgrads, mloss = [], 0.0
    for i, l in enumerate(decoupled):
        g, v = module_gradients(modules[i], H[l], C, hidden, targets[l])
        mgrads.append(g)
        mloss += v
    return (directions, [preds[l] for l in decoupled], [targets[l] for l in decoupled],
            mgrads, mloss)


def true_hidden_gradients(Ws, bs, activations, output, loss, X, y, layers):
    """Backprop's per-sample dL_i/dH_l for each l in ``layers`` (the perfect oracle)."""
    Ws = [_f64(W) for W in Ws]
    bs = [_f64(b) for b in bs]
    acts = list(activations) + [output]
    As, Hs = naive.mlp_forward(list(zip(Ws, bs)), acts, X)
    n = X.shape[0]
    delta = naive.loss_delta(loss, As[-1], y, output) * n
    out = {}
    for l in range(len(Ws), 1, -1):
        G = delta @ Ws[l - 1]
        out[l - 1] = G
        delta = G * naive.activation_derivative(acts[l - 2], As[l - 2])
    return [out[l] for l in layers]

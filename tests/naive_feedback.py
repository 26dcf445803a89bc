"""Plain-NumPy twins of the feedback-alignment family (float64, samples as
rows), written from the papers' equations: FA, DFA, and any fixed or
weight-derived feedback (sign symmetry uses FA's with B_l = sign(W_l))."""
import numpy as np

import naive


def twin_forward(Ws, bs, activations, output, X):
    """Pre-activations A_1..A_L and outputs H_0 = X, H_1..H_L (float64)."""
    H = [np.asarray(X, dtype=np.float64)]
    A = []
    acts = list(activations) + [output]
    for W, b, act in zip(Ws, bs, acts):
        a = H[-1] @ np.asarray(W, np.float64).T + np.asarray(b, np.float64)
        A.append(a)
        H.append(naive.activation(act, a))
    return A, H


def twin_fa(Ws, bs, Bs, activations, output, loss, X, y, lam=0.0):
    """Feedback alignment, written from Lillicrap et al. 2016 with samples as rows:
    delta_L = dL/dA_L; delta_{l-1} = (delta_l B_l) * f'(A_{l-1});
    dW_l = delta_l^T H_{l-1} + lam W_l; db_l = sum over rows of delta_l."""
    A, H = twin_forward(Ws, bs, activations, output, X)
    L = len(Ws)
    delta = naive.loss_delta(loss, A[-1], y, output)
    out = [None] * (2 * L)
    for l in range(L, 0, -1):  # layer l is index l - 1
        out[2 * (l - 1)] = delta.T @ H[l - 1] + lam * np.asarray(Ws[l - 1], np.float64)
        out[2 * (l - 1) + 1] = delta.sum(axis=0)
        if l > 1:
            delta = (delta @ np.asarray(Bs[l - 1], np.float64)) \
                * naive.activation_derivative(activations[l - 2], A[l - 2])
    return out


def twin_dfa(Ws, bs, Bs, activations, output, loss, X, y, lam=0.0):
    """Direct feedback alignment, written from Nokland 2016 with samples as rows:
    e = dL/dA_L; delta_L = e; delta_l = (e B_l) * f'(A_l), B_l (n_L, n_l);
    dW_l = delta_l^T H_{l-1} + lam W_l; db_l = sum over rows of delta_l."""
    A, H = twin_forward(Ws, bs, activations, output, X)
    L = len(Ws)
    e = naive.loss_delta(loss, A[-1], y, output)
    out = []
    for l in range(1, L + 1):
        if l == L:
            delta = e
        else:
            delta = (e @ np.asarray(Bs[l - 1], np.float64)) \
                * naive.activation_derivative(activations[l - 1], A[l - 1])
        out.append(delta.T @ H[l - 1] + lam * np.asarray(Ws[l - 1], np.float64))
        out.append(delta.sum(axis=0))
    return out

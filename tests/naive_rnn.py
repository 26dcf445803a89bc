"""Plain NumPy twins of the Elman RNN kernels (float64, batch-major, written
for obviousness, not speed): forward pass, loss, backpropagation through time
(full and truncated) and truncated-BPTT training with per-window SGD updates.

params: [W_in (h, i), W_rec (h, h), b (h,), W_out (o, h), b_out (o,)].
"""
import naive
import numpy as np


def _f64(params):
    return [np.asarray(p, np.float64) for p in params]


def forward(params, X, act, readout, h0=None):
    """Pre-activations, states and logits of X (n, T, i).

    Returns
    -------
    A : (n, T + 1, h), A[:, t] = W_in x_t + W_rec h_{t-1} + b (A[:, 0] unused)
    H : (n, T + 1, h), H[:, 0] = h0 (zeros by default)
    logits : (n, o) for readout 'last', (n, T, o) for 'all'
    """
    W_in, W_rec, b, W_out, b_out = _f64(params)
    X = np.asarray(X, np.float64)
    n, T, _ = X.shape
    A = np.zeros((n, T + 1, W_rec.shape[0]))
    H = np.zeros_like(A)
    if h0 is not None:
        H[:, 0] = h0
    for t in range(1, T + 1):
        A[:, t] = X[:, t - 1] @ W_in.T + H[:, t - 1] @ W_rec.T + b
        H[:, t] = naive.activation(act, A[:, t])
    if readout == "last":
        return A, H, H[:, T] @ W_out.T + b_out
    return A, H, H[:, 1:] @ W_out.T + b_out


def _terms(y, logits, readout):
    """(logits, targets) with one row per loss term, as naive.loss_value takes them."""
    y = np.asarray(y)
    if readout == "last":
        return logits, y
    n, T, o = logits.shape
    if y.ndim == 2 and not np.issubdtype(y.dtype, np.integer):
        y = y[:, :, None]                      # real targets of a single output
    return logits.reshape(n * T, o), y.reshape((n * T,) + y.shape[2:])


def loss(params, X, y, act, readout, loss_name, output, h0=None):
    """Mean loss over the loss terms (sequences, or sequences x steps)."""
    _, _, logits = forward(params, X, act, readout, h0)
    return naive.loss_value(loss_name, *_terms(y, logits, readout), output)


def gradients(params, X, y, act, readout, loss_name, output, truncate=None, h0=None):
    """BPTT gradients of :func:`loss`, aligned with params. With ``truncate=k``
    the gradient into every state h_s with s a multiple of k is dropped (the
    truncated gradient at fixed parameters)."""
    W_in, W_rec, b, W_out, b_out = _f64(params)
    X = np.asarray(X, np.float64)
    n, T, _ = X.shape
    A, H, logits = forward(params, X, act, readout, h0)
    D = naive.loss_delta(loss_name, *_terms(y, logits, readout), output)
    dh_out = np.zeros_like(H)                  # dJ/dh_t through the outputs
    if readout == "last":
        dW_out = D.T @ H[:, T]
        db_out = D.sum(axis=0)
        dh_out[:, T] = D @ W_out
    else:
        D = D.reshape(n, T, -1)
        dW_out = np.einsum("nto,nth->oh", D, H[:, 1:])
        db_out = D.sum(axis=(0, 1))
        dh_out[:, 1:] = D @ W_out
    dW_in, dW_rec, db = np.zeros_like(W_in), np.zeros_like(W_rec), np.zeros_like(b)
    carry = np.zeros_like(H[:, 0])             # dJ/dh_t through h_{t+1}
    for t in range(T, 0, -1):
        delta = (dh_out[:, t] + carry) * naive.activation_derivative(act, A[:, t])
        dW_in += delta.T @ X[:, t - 1]
        dW_rec += delta.T @ H[:, t - 1]
        db += delta.sum(axis=0)
        carry = delta @ W_rec
        if truncate and (t - 1) % truncate == 0:
            carry = np.zeros_like(carry)
    return [dW_in, dW_rec, db, dW_out, db_out]


def final_state(params, X, act, h0=None):
    """h_T of X (n, T, i) from h0."""
    _, H, _ = forward(params, X, act, "last", h0)
    return H[:, -1]


def truncated_sgd(params, X, y, act, readout, loss_name, output, k, lr):
    """Truncated BPTT as fastbp defines it, with plain SGD: windows of k steps
    in order, the state carried forward; each window with a loss term (every
    window for readout 'all', the final one for 'last') is a sequence of its
    own starting from the carried (constant) state, and updates the
    parameters once along the gradient of its mean loss. Returns the new
    params and the window losses."""
    params = _f64(params)
    X = np.asarray(X, np.float64)
    n, T, _ = X.shape
    state = np.zeros((n, params[1].shape[0]))
    losses = []
    for t0 in range(0, T, k):
        t1 = min(t0 + k, T)
        Xw = X[:, t0:t1]
        next_state = final_state(params, Xw, act, state)
        if readout == "all" or t1 == T:
            yw = np.asarray(y)[:, t0:t1] if readout == "all" else y
            losses.append(loss(params, Xw, yw, act, readout, loss_name, output, state))
            grads = gradients(params, Xw, yw, act, readout, loss_name, output, h0=state)
            params = [p - lr * g for p, g in zip(params, grads)]
        state = next_state
    return params, losses

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
    return window_gradients(params, X, y, act, readout, loss_name, output, h0,
                            truncate=truncate)[0]


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


def window_gradients(params, Xw, yw, act, readout, loss_name, output, h0, inject=None,
                     truncate=None):
    """BPTT through a window started from the constant state h0 (n, h) (zeros
    when None): the gradients of its mean loss (none when ``yw`` is None: a
    window without loss terms), with ``inject`` (n, h) added to dJ/dh at the
    window's last state; ``truncate`` as in :func:`gradients`. Returns (grads
    aligned with params, dJ/dh0 (n, h))."""
    W_in, W_rec, b, W_out, b_out = _f64(params)
    Xw = np.asarray(Xw, np.float64)
    n, T, _ = Xw.shape
    A, H, logits = forward(params, Xw, act, readout, h0)
    dh = np.zeros_like(H)                      # dJ/dh_t through the outputs
    dW_out, db_out = np.zeros_like(W_out), np.zeros_like(b_out)
    if yw is not None:
        D = naive.loss_delta(loss_name, *_terms(yw, logits, readout), output)
        if readout == "last":
            dW_out, db_out = D.T @ H[:, T], D.sum(axis=0)
            dh[:, T] = D @ W_out
        else:
            D = D.reshape(n, T, -1)
            dW_out = np.einsum("nto,nth->oh", D, H[:, 1:])
            db_out = D.sum(axis=(0, 1))
            dh[:, 1:] = D @ W_out
    if inject is not None:
        dh[:, T] += inject
    dW_in, dW_rec, db = np.zeros_like(W_in), np.zeros_like(W_rec), np.zeros_like(b)
    carry = np.zeros_like(H[:, 0])             # dJ/dh_t through h_{t+1}
    for t in range(T, 0, -1):
        delta = (dh[:, t] + carry) * naive.activation_derivative(act, A[:, t])
        dW_in += delta.T @ Xw[:, t - 1]
        dW_rec += delta.T @ H[:, t - 1]
        db += delta.sum(axis=0)
        carry = delta @ W_rec
        if truncate and (t - 1) % truncate == 0:
            carry = np.zeros_like(carry)
    return [dW_in, dW_rec, db, dW_out, db_out], carry


def synthetic_gradient_sgd(params, module, X, y, act, readout, loss_name, output, k, lr,
                           m_lr, scale):
    """One batch of synthetic-gradient truncated BPTT (Jaderberg et al. 2017,
    section 3.1), plain SGD for the network and for M, written out window by
    window. ``module`` is M as [(W, b), ...] of an MLP h -> [relu ->] h.

    Per window (t0, t1] from the carried state s: M(h_{t1}) * scale / n is
    added to dJ/dh_{t1} when t1 < T; BPTT gives the network's gradient and
    g = dJ/ds; for t0 > 0, M's gradient is that of the mean over sequences of
    1/2 ||M(s) - n g||^2 (the bootstrapped target); the network then steps
    when the window has a loss or an injection, and M steps. Returns
    (params, module)."""
    params = _f64(params)
    module = [(np.array(W, np.float64), np.array(b, np.float64)) for W, b in module]
    acts = ["relu"] * (len(module) - 1) + ["identity"]
    X = np.asarray(X, np.float64)
    n, T, _ = X.shape
    state = np.zeros((n, params[1].shape[0]))
    for t0 in range(0, T, k):
        t1 = min(t0 + k, T)
        Xw = X[:, t0:t1]
        _, H, _ = forward(params, Xw, act, "last", state)
        yw = (np.asarray(y)[:, t0:t1] if readout == "all"
              else (y if t1 == T else None))
        inject = None
        if t1 < T:
            inject = naive.mlp_forward(module, acts, H[:, -1])[1][-1] * scale / n
        grads, g = window_gradients(params, Xw, yw, act, readout, loss_name, output, state,
                                    inject)
        m_grads = None
        if t0 > 0:
            m_grads = naive.mlp_loss_gradients(module, acts, state, n * g, "squared_error")[2]
        if yw is not None or inject is not None:
            params = [p - lr * d for p, d in zip(params, grads)]
        if m_grads is not None:
            module = [(W - m_lr * dW, b - m_lr * db) for (W, b), (dW, db) in zip(module, m_grads)]
        state = H[:, -1]
    return params, module

"""Slow, obvious NumPy twins of fastbp's kernels, written from the equations.

Nothing here imports fastbp: every function is a direct transcription of the
mathematics, computed in float64, so a kernel and its twin can only agree
when the kernel is right. Matrices use the textbook layout W of shape
(n_out, n_in); batches are rows: A = H_prev @ W.T + b.

Activation names: 'identity', 'sigmoid', 'tanh', 'relu', 'leaky_relu'
(slope 0.01), 'softmax' (row-wise).
Loss names: 'squared_error', 'mse', 'cross_entropy', 'binary_cross_entropy'.
"""
import numpy as np

LEAKY_SLOPE = 0.01

# Kernel integer codes, restated here from the design (not imported) so that
# a renumbering in fastbp.kernels.codes shows up as a test failure.
ACTIVATION_CODES = {"identity": 0, "sigmoid": 1, "tanh": 2, "relu": 3, "leaky_relu": 4,
                    "softmax": 5}
LOSS_CODES = {"squared_error": 0, "mse": 1, "cross_entropy": 2, "binary_cross_entropy": 3}
HIDDEN = ("identity", "sigmoid", "tanh", "relu", "leaky_relu")
OUTPUTS = ("identity", "sigmoid", "softmax")


def _f64(a):
    return np.asarray(a, dtype=np.float64)


# -- activations -------------------------------------------------------------------

def sigmoid(a):
    a = _f64(a)
    out = np.empty_like(a)
    pos = a >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-a[pos]))
    e = np.exp(a[~pos])
    out[~pos] = e / (1.0 + e)
    return out


def softmax(A):
    """Row-wise softmax of a 2-D array."""
    A = _f64(A)
    E = np.exp(A - A.max(axis=1, keepdims=True))
    return E / E.sum(axis=1, keepdims=True)


def activation(name, A):
    """f(A) for a 2-D block A (rows = samples)."""
    A = _f64(A)
    if name == "identity":
        return A.copy()
    if name == "sigmoid":
        return sigmoid(A)
    if name == "tanh":
        return np.tanh(A)
    if name == "relu":
        return np.where(A > 0, A, 0.0)
    if name == "leaky_relu":
        return np.where(A > 0, A, LEAKY_SLOPE * A)
    if name == "softmax":
        return softmax(A)
    raise ValueError(name)


def activation_derivative(name, A):
    """Elementwise f'(A) (not for softmax, whose Jacobian is not diagonal)."""
    A = _f64(A)
    if name == "identity":
        return np.ones_like(A)
    if name == "sigmoid":
        s = sigmoid(A)
        return s * (1.0 - s)
    if name == "tanh":
        return 1.0 - np.tanh(A) ** 2
    if name == "relu":
        return np.where(A > 0, 1.0, 0.0)
    if name == "leaky_relu":
        return np.where(A > 0, 1.0, LEAKY_SLOPE)
    raise ValueError(name)


def softmax_jacobian(a):
    """J[i, j] = d softmax(a)_i / d a_j for one row a."""
    p = softmax(_f64(a)[None, :])[0]
    return np.diag(p) - np.outer(p, p)


def backprop_through(name, A, D):
    """d(loss)/dA given D = d(loss)/dH and H = f(A), row by row."""
    A = _f64(A)
    D = _f64(D)
    if name == "softmax":
        out = np.empty_like(D)
        for i in range(A.shape[0]):
            out[i] = softmax_jacobian(A[i]).T @ D[i]
        return out
    return D * activation_derivative(name, A)


# -- losses ------------------------------------------------------------------------

def one_hot(labels, k):
    T = np.zeros((len(labels), k))
    T[np.arange(len(labels)), labels] = 1.0
    return T


def _target_rows(y, k):
    y = np.asarray(y)
    if y.ndim == 1:
        return one_hot(y, k)
    return _f64(y)


def loss_value(loss, A, y, output):
    """Mean over the batch of the per-sample loss, from the output logits A.

    y: target rows (b, k), or integer labels (b,) for cross_entropy.
    """
    A = _f64(A)
    b, k = A.shape
    if loss in ("squared_error", "mse"):
        H = activation(output, A)
        R = H - _f64(y)
        per_sample = 0.5 * np.sum(R * R, axis=1) if loss == "squared_error" \
            else np.mean(R * R, axis=1)
        return float(np.mean(per_sample))
    if loss == "cross_entropy":
        T = _target_rows(y, k)
        log_p = A - np.logaddexp.reduce(A, axis=1, keepdims=True)
        return float(np.mean(-np.sum(T * log_p, axis=1)))
    if loss == "binary_cross_entropy":
        T = _f64(y)
        # -t log s(a) - (1 - t) log(1 - s(a)) = log(1 + e^a) - t a
        return float(np.mean(np.sum(np.logaddexp(0.0, A) - T * A, axis=1)))
    raise ValueError(loss)


def loss_delta(loss, A, y, output):
    """d(mean loss)/dA (b, k)."""
    A = _f64(A)
    b, k = A.shape
    if loss in ("squared_error", "mse"):
        H = activation(output, A)
        dH = (H - _f64(y)) if loss == "squared_error" else 2.0 * (H - _f64(y)) / k
        return backprop_through(output, A, dH) / b
    if loss == "cross_entropy":
        T = _target_rows(y, k)
        # d/da_j of -sum_i t_i (a_i - logsumexp(a)) = -t_j + p_j sum_i t_i
        P = softmax(A)
        return (P * T.sum(axis=1, keepdims=True) - T) / b
    if loss == "binary_cross_entropy":
        return (sigmoid(A) - _f64(y)) / b
    raise ValueError(loss)


def n_correct(loss, A, y):
    """Correct predictions: argmax agreement (cross_entropy; for target rows the
    row's argmax is the class), outputs on the right side of 0.5 in probability
    (binary_cross_entropy), 0 for regression losses."""
    A = _f64(A)
    if loss == "cross_entropy":
        y = np.asarray(y)
        cls = y if y.ndim == 1 else np.argmax(y, axis=1)
        return float(np.sum(np.argmax(A, axis=1) == cls))
    if loss == "binary_cross_entropy":
        return float(np.sum((A > 0) == (_f64(y) > 0.5)))
    return 0.0


# -- the MLP -----------------------------------------------------------------------

def mlp_forward(layers, activations, X):
    """layers: [(W, b), ...] with W (n_out, n_in); activations: one name per layer
    (hidden ones then the output). Returns (pre-activations, outputs) lists."""
    H = _f64(X)
    As, Hs = [], []
    for (W, b), act in zip(layers, activations):
        A = H @ _f64(W).T + _f64(b)
        H = activation(act, A)
        As.append(A)
        Hs.append(H)
    return As, Hs


def mlp_backward(layers, activations, X, As, Hs, dA_out):
    """Gradients [(dW, db), ...] given d(loss)/dA of the last layer."""
    L = len(layers)
    grads = [None] * L
    delta = _f64(dA_out)
    for l in range(L - 1, -1, -1):
        H_prev = _f64(X) if l == 0 else Hs[l - 1]
        grads[l] = (delta.T @ H_prev, delta.sum(axis=0))
        if l > 0:
            dH_prev = delta @ _f64(layers[l][0])
            delta = backprop_through(activations[l - 1], As[l - 1], dH_prev)
    return grads


def mlp_loss_gradients(layers, activations, X, y, loss):
    """(mean loss, n_correct, [(dW, db), ...]) of one batch."""
    As, Hs = mlp_forward(layers, activations, X)
    out = activations[-1]
    value = loss_value(loss, As[-1], y, out)
    dA = loss_delta(loss, As[-1], y, out)
    return value, n_correct(loss, As[-1], y), mlp_backward(layers, activations, X, As, Hs, dA)


def flatten(layers):
    """The flat buffer layout: every W row-major first, then every b."""
    return np.concatenate([_f64(W).ravel() for W, _ in layers]
                          + [_f64(b).ravel() for _, b in layers])


def unflatten(flat, sizes):
    flat = _f64(flat)
    layers, woff = [], 0
    boff = sum(sizes[l] * sizes[l + 1] for l in range(len(sizes) - 1))
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        W = flat[woff:woff + n_in * n_out].reshape(n_out, n_in).copy()
        b = flat[boff:boff + n_out].copy()
        layers.append((W, b))
        woff += n_in * n_out
        boff += n_out
    return layers


# -- optimizers and gradient post-processing ----------------------------------------

def sgd_step(p, g, v, lr, momentum=0.0, nesterov=False):
    """torch.optim.SGD (dampening 0): v = mu v + g; p -= lr v, or with
    Nesterov p -= lr (g + mu v). Returns new (p, v)."""
    p, g = _f64(p), _f64(g)
    if momentum == 0.0:
        return p - lr * g, v
    v = momentum * _f64(v) + g
    step = g + momentum * v if nesterov else v
    return p - lr * step, v


def adam_step(p, g, m, v, t, lr, beta1=0.9, beta2=0.999, eps=1e-8):
    """torch.optim.Adam: t is the index of this update (1 for the first).
    Returns new (p, m, v)."""
    p, g = _f64(p), _f64(g)
    m = beta1 * _f64(m) + (1 - beta1) * g
    v = beta2 * _f64(v) + (1 - beta2) * g * g
    m_hat = m / (1 - beta1 ** t)
    v_hat = v / (1 - beta2 ** t)
    return p - lr * m_hat / (np.sqrt(v_hat) + eps), m, v


def weight_decay_penalty(weights, lam):
    """lambda/2 * sum_l ||W_l||_F^2."""
    return 0.5 * lam * sum(float(np.sum(_f64(W) ** 2)) for W in weights)


def weight_decay_gradient(weights, lam):
    """d penalty / d W_l = lambda W_l."""
    return [lam * _f64(W) for W in weights]


def clip_global_norm(grads, max_norm):
    """Scale a list of gradient arrays so their joint L2 norm is <= max_norm."""
    grads = [_f64(g) for g in grads]
    norm = np.sqrt(sum(float(np.sum(g * g)) for g in grads))
    if norm <= max_norm:
        return grads
    return [g * (max_norm / norm) for g in grads]


def training_step(flat_params, flat_grads, n_weights, lam, clip, optimizer, state):
    """Decay, clip and update, on flat float64 vectors, as one training step.

    optimizer: ('sgd', lr, momentum, nesterov) or ('adam', lr, beta1, beta2, eps)
    state: dict holding 'v' (SGD) or 'm', 'v', 't' (Adam); updated in place.
    Returns the new parameters.
    """
    p = _f64(flat_params).copy()
    g = _f64(flat_grads).copy()
    if lam > 0:
        g[:n_weights] += weight_decay_gradient([p[:n_weights]], lam)[0]
    if clip > 0:
        g = clip_global_norm([g], clip)[0]
    state["t"] = state.get("t", 0) + 1
    if optimizer[0] == "sgd":
        _, lr, mu, nesterov = optimizer
        p, state["v"] = sgd_step(p, g, state.get("v", np.zeros_like(p)), lr, mu, nesterov)
    else:
        _, lr, b1, b2, eps = optimizer
        p, state["m"], state["v"] = adam_step(p, g, state.get("m", np.zeros_like(p)),
                                              state.get("v", np.zeros_like(p)), state["t"],
                                              lr, b1, b2, eps)
    return p


def update_stays_finite(flat_params, flat_grads, optimizer, state, dtype):
    """True when one update (no decay, no clipping) leaves every parameter and
    optimizer state entry finite once stored in ``dtype``. ``state`` is not
    modified."""
    st = {k: (np.array(v, dtype=np.float64) if k != "t" else v) for k, v in state.items()}
    with np.errstate(over="ignore", invalid="ignore"):
        p = training_step(flat_params, flat_grads, 0, 0.0, 0.0, optimizer, st)
        values = [np.asarray(p, dtype=dtype)] + [np.asarray(st[k], dtype=dtype)
                                                  for k in ("m", "v") if k in st]
    return all(bool(np.all(np.isfinite(v))) for v in values)


def central_differences(objective, arrays, step=1e-6):
    """Central differences (f(p + h) - f(p - h)) / 2h of ``objective()`` with
    respect to every entry of every array in ``arrays``, one entry at a time,
    perturbing the arrays in place (give views of the model's parameters).

    Returns a list of float64 arrays shaped like ``arrays``."""
    out = []
    for p in arrays:
        g = np.zeros(p.shape, dtype=np.float64)
        for idx in np.ndindex(p.shape):
            old = p[idx]
            p[idx] = old + step
            up = objective()
            p[idx] = old - step
            down = objective()
            p[idx] = old
            g[idx] = (up - down) / (2 * step)
        out.append(g)
    return out

"""Plain NumPy twins of the online alternating-minimisation kernels
(Choromanska et al., ICML 2019), written from the equations in float64.
Nothing here imports fastbp or alternatives; activations, losses and the
optimizer step come from ``naive``.

Notation: samples are rows; layers l = 1..L with W_l (n_l, n_{l-1}); codes
c_l (rows, n_l) for the hidden layers l = 1..L-1 (index l-1 in the lists
below); F_l = f_l(c_l), F_0 = X. ``acts`` names every layer's activation,
the output's last. Every "mean" is over all entries of its array.

Code objectives (minimised from c0 by Nesterov momentum, torch convention
v = m v + g; c -= lr (g + m v), v = 0 at the start):

    top:    J = (1/mu) loss(F_{L-1} W_L^T + b_L, y) + mean((c - c0)^2)
    lower:  J = mean((F_l W_{l+1}^T + b_{l+1} - c*_{l+1})^2) + mean((c - c0)^2)

Weight gradients: the output layer's loss gradient at F*_{L-1}; hidden
layer l: d mean((F*_{l-1} W_l^T + b_l - c*_l)^2) / d(W_l, b_l).

AM-mem in augmented form: a = [F*_{l-1}, 1], A <- (1 - decay) A + a^T a,
B <- (1 - decay) B + c*^T a; one Gauss-Seidel sweep over the columns j of
[W b]: w_j <- (B_j - sum_{k != j} w_k A_kj) / (A_jj + ridge_j), ridge_j =
ridge for weight columns and 0 for the bias column, a zero denominator
leaving w_j as it is.
"""
import numpy as np

import naive


def _f64(a):
    return np.asarray(a, dtype=np.float64)


# -- forward and codes -----------------------------------------------------------------

def initial_codes(layers, acts, X):
    """(c0 list of the hidden pre-activations, output logits A_L)."""
    As, _ = naive.mlp_forward(layers, acts, X)
    return [A.copy() for A in As[:-1]], As[-1]


def top_objective(c, c0, W, b, act, out, loss, y, mu):
    A = naive.activation(act, c) @ _f64(W).T + _f64(b)
    return naive.loss_value(loss, A, y, out) / mu + np.mean((_f64(c) - c0) ** 2)


def top_gradient(c, c0, W, b, act, out, loss, y, mu):
    c = _f64(c)
    W = _f64(W)
    A = naive.activation(act, c) @ W.T + _f64(b)
    dF = naive.loss_delta(loss, A, y, out) @ W
    return naive.backprop_through(act, c, dF) / mu + 2.0 * (c - c0) / c.size


def lower_objective(c, c0, W, b, act, t):
    R = naive.activation(act, c) @ _f64(W).T + _f64(b) - _f64(t)
    return np.mean(R * R) + np.mean((_f64(c) - c0) ** 2)


def lower_gradient(c, c0, W, b, act, t):
    c = _f64(c)
    W = _f64(W)
    R = naive.activation(act, c) @ W.T + _f64(b) - _f64(t)
    dF = (2.0 / R.size) * R @ W
    return naive.backprop_through(act, c, dF) + 2.0 * (c - c0) / c.size


def nesterov(grad, c0, lr, momentum, steps):
    """``steps`` Nesterov steps on grad from c0 with zero velocity."""
    c = _f64(c0).copy()
    v = np.zeros_like(c)
    for _ in range(steps):
        g = grad(c)
        v = momentum * v + g
        c = c - lr * (g + momentum * v)
    return c


def update_codes(layers, acts, X, y, loss, mu, lr, momentum, steps):
    """(c0 list, c* list): the codes step of one batch."""
    c0, _ = initial_codes(layers, acts, X)
    L = len(layers)
    codes = [None] * (L - 1)
    if L < 2:
        return c0, codes
    W, b = layers[-1]
    top = L - 2
    codes[top] = nesterov(lambda c: top_gradient(c, c0[top], W, b, acts[top], acts[-1], loss,
                                                 y, mu), c0[top], lr, momentum, steps)
    for i in range(L - 3, -1, -1):
        W, b = layers[i + 1]
        t = codes[i + 1]
        codes[i] = nesterov(lambda c: lower_gradient(c, c0[i], W, b, acts[i], t),
                            c0[i], lr, momentum, steps)
    return c0, codes


# -- weights -------------------------------------------------------------------------

def _inputs(acts, X, codes, l):
    """F*_{l-1} for layer index l (0-based): X, or f(c*) of the layer below."""
    return _f64(X) if l == 0 else naive.activation(acts[l - 1], codes[l - 1])


def output_gradient(layers, acts, X, y, loss, codes):
    """(dW_L, db_L) of the batch-mean loss at F*_{L-1}."""
    W, b = layers[-1]
    F = _inputs(acts, X, codes, len(layers) - 1)
    dA = naive.loss_delta(loss, F @ _f64(W).T + _f64(b), y, acts[-1])
    return dA.T @ F, dA.sum(axis=0)


def hidden_gradient(layers, acts, X, codes, l):
    """(dW, db) of mean((F*_{l-1} W^T + b - c*_l)^2) for hidden layer index l."""
    W, b = layers[l]
    F = _inputs(acts, X, codes, l)
    R = F @ _f64(W).T + _f64(b) - codes[l]
    G = (2.0 / R.size) * R
    return G.T @ F, G.sum(axis=0)


def weight_gradients(layers, acts, X, y, loss, codes, order=None):
    """[(dW, db), ...] aligned with layers; hidden layers taken in ``order``
    (0-based indices; default bottom up)."""
    L = len(layers)
    grads = [None] * L
    grads[-1] = output_gradient(layers, acts, X, y, loss, codes)
    for l in (range(L - 1) if order is None else order):
        grads[l] = hidden_gradient(layers, acts, X, codes, l)
    return grads


def step(layers, acts, X, y, loss, code_hyper, optimizer, state, lam=0.0, clip=0.0):
    """One AM step with one optimizer step on every layer.

    code_hyper: (mu, lr, momentum, steps); optimizer, state: as
    naive.training_step. Returns (new layers, objective, n_correct)."""
    c0, codes = update_codes(layers, acts, X, y, loss, *code_hyper)
    _, A_out = initial_codes(layers, acts, X)
    value = naive.loss_value(loss, A_out, y, acts[-1])
    correct = naive.n_correct(loss, A_out, y)
    grads = weight_gradients(layers, acts, X, y, loss, codes)
    flat_g = naive.flatten(grads)
    nw = sum(W.size for W, _ in layers)
    objective = value + (naive.weight_decay_penalty([W for W, _ in layers], lam)
                         if lam > 0 else 0.0)
    p = naive.training_step(naive.flatten(layers), flat_g, nw, lam, clip, optimizer, state)
    return naive.unflatten(p, [layers[0][0].shape[1]] + [W.shape[0] for W, _ in layers]), \
        objective, correct


# -- AM-mem ---------------------------------------------------------------------------

def augmented(F):
    """[F, 1]: the inputs with a column of ones for the bias."""
    F = _f64(F)
    return np.hstack([F, np.ones((F.shape[0], 1))])


def memory_update(A, B, F, c, decay):
    """(A, B) after one batch: (1 - decay) A + a^T a, (1 - decay) B + c^T a."""
    a = augmented(F)
    return (1.0 - decay) * _f64(A) + a.T @ a, (1.0 - decay) * _f64(B) + _f64(c).T @ a


def gauss_seidel_sweep(Wb, A, B, ridge):
    """One sweep over the columns of Wb = [W b] (n_out, n_in + 1) on
    Wb (A + ridge diag(1, ..., 1, 0)) = B."""
    Wb = _f64(Wb).copy()
    m = Wb.shape[1]
    for j in range(m):
        r = ridge if j < m - 1 else 0.0
        den = A[j, j] + r
        if den == 0.0:
            continue
        others = Wb @ A[:, j] - Wb[:, j] * A[j, j]
        Wb[:, j] = (B[:, j] - others) / den
    return Wb


def mem_step(layers, acts, X, y, loss, code_hyper, decay, ridge, memory, optimizer, state,
             lam=0.0, clip=0.0):
    """One AM-mem step. memory: [(A, B), ...] per hidden layer, augmented form.

    The output layer takes one optimizer step on its own [W_L, b_L] (weight
    decay on W_L, clipping by its own gradient norm); every hidden layer takes
    its memory update and one sweep from its current [W b]. Returns (new
    layers, new memory, objective, n_correct)."""
    c0, codes = update_codes(layers, acts, X, y, loss, *code_hyper)
    _, A_out = initial_codes(layers, acts, X)
    value = naive.loss_value(loss, A_out, y, acts[-1])
    correct = naive.n_correct(loss, A_out, y)
    W, b = layers[-1]
    dW, db = output_gradient(layers, acts, X, y, loss, codes)
    objective = value + (naive.weight_decay_penalty([W], lam) if lam > 0 else 0.0)
    p = naive.training_step(np.concatenate([_f64(W).ravel(), _f64(b)]),
                            np.concatenate([dW.ravel(), db]), W.size, lam, clip, optimizer,
                            state)
    new_layers = [None] * len(layers)
    new_layers[-1] = (p[:W.size].reshape(W.shape), p[W.size:])
    new_memory = []
    for l in range(len(layers) - 1):
        A, B = memory_update(*memory[l], _inputs(acts, X, codes, l), codes[l], decay)
        Wl, bl = layers[l]
        Wb = gauss_seidel_sweep(np.hstack([_f64(Wl), _f64(bl)[:, None]]), A, B, ridge)
        new_layers[l] = (Wb[:, :-1], Wb[:, -1])
        new_memory.append((A, B))
    return new_layers, new_memory, objective, correct


# -- the kernels' memory layout --------------------------------------------------------

def pack_memory(memory):
    """Flat (A, B) in the kernels' layout from [(A, B), ...] augmented:
    per layer A as [A_ww row-major, A_w1, A_11], B as [B_w row-major, B_1]."""
    a_parts, b_parts = [], []
    for A, B in memory:
        n = A.shape[0] - 1
        a_parts += [A[:n, :n].ravel(), A[n, :n], A[n, n:]]
        b_parts += [B[:, :n].ravel(), B[:, n]]
    return np.concatenate(a_parts), np.concatenate(b_parts)


def unpack_memory(flat_a, flat_b, sizes):
    """[(A, B), ...] augmented from the kernels' flat layout, for layer sizes
    [n_0, ..., n_L] (hidden layers only)."""
    flat_a, flat_b = _f64(flat_a), _f64(flat_b)
    memory, ia, ib = [], 0, 0
    for n, m in zip(sizes[:-2], sizes[1:-1]):
        A = np.empty((n + 1, n + 1))
        A[:n, :n] = flat_a[ia:ia + n * n].reshape(n, n)
        A[n, :n] = A[:n, n] = flat_a[ia + n * n:ia + n * n + n]
        A[n, n] = flat_a[ia + n * n + n]
        ia += n * n + n + 1
        B = np.empty((m, n + 1))
        B[:, :n] = flat_b[ib:ib + m * n].reshape(m, n)
        B[:, n] = flat_b[ib + m * n:ib + m * n + m]
        ib += m * (n + 1)
        memory.append((A, B))
    return memory

"""Kernels of online alternating minimisation (alternatives._altmin_kernels)
against their definitions and the NumPy twin in ``naive_altmin``."""
import numpy as np
import pytest

import fastbp as fb
import naive
import naive_altmin as twin
from alternatives import _altmin_kernels as K
from fastbp.kernels.codes import NONFINITE_UPDATE, OK
from fastbp.kernels.mlp import forward

EMPTY_T = {np.float32: np.empty((0, 0), np.float32), np.float64: np.empty((0, 0))}
NO_LABELS = np.empty(0, dtype=np.int64)


class Net:
    """A model, its twin's view, a batch and every buffer the kernels take."""

    def __init__(self, sizes, hidden="tanh", output="softmax", loss="cross_entropy",
                 dtype=np.float64, rows=6, seed=0, optimizer=None, lam=0.0, clip=0.0,
                 hyper=(0.5, 0.3, 0.9, 5), decay=0.0, ridge=0.0, blas=None):
        rng = np.random.default_rng(seed)
        self.sizes, self.rows, self.dtype, self.loss, self.blas = sizes, rows, dtype, loss, blas
        self.model = fb.MLP(sizes, activation=hidden, output=output, dtype=dtype, seed=seed)
        self.acts = [hidden] * (len(sizes) - 2) + [output]
        self.X = rng.normal(size=(rows, sizes[0])).astype(dtype)
        k = sizes[-1]
        if loss == "cross_entropy":
            self.y = rng.integers(0, k, rows)
            self.labels, self.targets = self.y.astype(np.int64), EMPTY_T[dtype]
        else:
            self.y = rng.normal(size=(rows, k)).astype(dtype)
            self.labels, self.targets = NO_LABELS, self.y
        self.opt = optimizer if optimizer is not None else fb.SGD(0.1)
        self.opt.bind(self.model.n_params, dtype)
        self.train_hyper = np.array([naive.LOSS_CODES[loss], lam, clip])
        self.grads = np.zeros(self.model.n_params, dtype=dtype)
        self.args = K.altmin_args(self.model.flat_params, self.grads, self.opt.state,
                                  self.opt.hyper, self.train_hyper, self.model.layout, blas,
                                  rows, K.make_hyper(*hyper, decay, ridge), memory=True)

    @property
    def x(self):
        return self.X.reshape(-1)

    @property
    def layers(self):
        return naive.unflatten(self.model.flat_params, self.sizes)

    @property
    def layout(self):
        return self.model.layout

    def code(self, buf, l):
        """Hidden layer l's (rows, n_l) block of a codes-like buffer (1-based l)."""
        off = K.code_offset(self.layout, self.rows, l)
        return buf[off:off + self.rows * self.sizes[l]].reshape(self.rows, self.sizes[l])

    def codes_pass(self):
        """initial_codes then update_codes; returns (loss_sum, correct)."""
        out = K.initial_codes(self.args, self.x, self.labels, self.targets, self.rows)
        K.update_codes(self.args, self.labels, self.targets, self.rows)
        return out

    def step(self):
        return K.altmin_step(self.args, self.x, self.labels, self.targets, self.rows)

    def mem_step(self):
        return K.altmin_mem_step(self.args, self.x, self.labels, self.targets, self.rows)


def _twin_opt(opt):
    h = opt.hyper
    if opt.hyper[0] == 0:
        return ("sgd", h[1], h[2], bool(h[3]))
    return ("adam", h[1], h[2], h[3], h[4])


# -- forward pass ------------------------------------------------------------------------

def test_initial_codes_are_preactivations_and_forward_is_fastbps():
    net = Net([4, 6, 5, 3], loss="mse", output="identity")
    loss_sum, correct = K.initial_codes(net.args, net.x, net.labels, net.targets, net.rows)
    c0, A_out = twin.initial_codes(net.layers, net.acts, net.X)
    for l in (1, 2):
        np.testing.assert_allclose(net.code(net.args.codes0, l), c0[l - 1], rtol=1e-13)
        np.testing.assert_array_equal(net.code(net.args.codes, l), net.code(net.args.codes0, l))
    assert loss_sum / net.rows == pytest.approx(naive.loss_value("mse", A_out, net.y,
                                                                 "identity"), rel=1e-13)
    # H_1..H_L and A_L exactly as fastbp's own forward pass leaves them
    ws = np.zeros_like(net.args.ws)
    forward(net.x, net.rows, net.model.flat_params, net.layout, ws, None)
    n = net.rows * (sum(net.sizes[1:]) + net.sizes[-1])
    np.testing.assert_array_equal(net.args.ws[:n], ws[:n])


# -- codes ---------------------------------------------------------------------------------

def test_first_code_step_is_the_nesterov_step():
    """With one step from c0 (velocity 0): v = g, c1 = c0 - lr (g + m v)
    = c0 - lr (1 + m) g(c0), top code and lower codes alike."""
    mu, lr, m = 0.2, 0.7, 0.9
    net = Net([3, 5, 4, 6, 2], hyper=(mu, lr, m, 1))
    net.codes_pass()
    layers = net.layers
    c0 = [net.code(net.args.codes0, l) for l in (1, 2, 3)]
    c1 = [net.code(net.args.codes, l) for l in (1, 2, 3)]
    W, b = layers[3]
    g = twin.top_gradient(c0[2], c0[2], W, b, "tanh", "softmax", net.loss, net.y, mu)
    np.testing.assert_allclose(c1[2], c0[2] - lr * (1 + m) * g, rtol=1e-12, atol=1e-15)
    for l in (0, 1):
        W, b = layers[l + 1]
        g = twin.lower_gradient(c0[l], c0[l], W, b, "tanh", c1[l + 1])
        np.testing.assert_allclose(c1[l], c0[l] - lr * (1 + m) * g, rtol=1e-12, atol=1e-15)
        assert np.abs(c1[l] - c0[l]).max() > 1e-6   # the step did move


@pytest.mark.parametrize("hidden,output,loss", [("tanh", "softmax", "cross_entropy"),
                                                ("sigmoid", "identity", "mse"),
                                                ("tanh", "sigmoid", "binary_cross_entropy")])
def test_code_gradients_match_central_differences(hidden, output, loss):
    net = Net([3, 5, 4, 2], hidden=hidden, output=output, loss=loss, rows=3)
    if loss == "binary_cross_entropy":
        net.targets[...] = (net.y > 0)
        net.y = net.targets
    net.codes_pass()
    rng = np.random.default_rng(1)
    mu = 0.3
    p, L = net.model.flat_params, net.layout
    ws = net.args.ws
    code = naive.LOSS_CODES[loss]

    def top(c, c0):
        g = np.empty_like(c)
        h = np.empty_like(c)
        J = K.top_code_gradient(c, c0, h, g, p, L, ws, net.labels, net.targets, code, mu, None)
        return J, g

    def lower(c, c0):
        g, h = np.empty_like(c), np.empty_like(c)
        t = net.code(net.args.codes, 2).ravel().copy()
        r = np.empty_like(t)
        return K.lower_code_gradient(1, c, c0, h, g, t, r, p, L, None), g

    layers = net.layers
    for fn, n, l in ((top, 4, 2), (lower, 5, 1)):
        c = rng.normal(size=net.rows * n)
        c0 = rng.normal(size=net.rows * n)
        J, g = fn(c, c0)
        W, b = layers[l]
        C, C0 = c.reshape(net.rows, n), c0.reshape(net.rows, n)
        want = (twin.top_objective(C, C0, W, b, hidden, output, loss, net.y, mu) if l == 2 else
                twin.lower_objective(C, C0, W, b, hidden, net.code(net.args.codes, 2)))
        assert J == pytest.approx(want, rel=1e-12)
        eps = 1e-6
        fd = np.empty_like(c)
        for i in range(c.size):
            e = np.zeros_like(c)
            e[i] = eps
            fd[i] = (fn(c + e, c0)[0] - fn(c - e, c0)[0]) / (2 * eps)
        np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-9)


def test_identity_codes_converge_to_the_closed_form_minimiser():
    """Identity activations make both code objectives quadratic; per row:
    top (mse loss, k outputs, n units): (W^T W / (mu k) + I / n) c = W^T (y - b) / (mu k) + c0 / n;
    lower (m units above): (W^T W / m + I / n) c = W^T (t - b) / m + c0 / n."""
    mu, rows = 0.5, 4
    sizes = [3, 4, 5, 2]
    net = Net(sizes, hidden="identity", output="identity", loss="mse", rows=rows)
    layers = net.layers
    W3, b3 = layers[2]
    W2, b2 = layers[1]
    k, n2, n1 = 2, 5, 4
    H_top = 2.0 / rows * (W3.T @ W3 / (mu * k) + np.eye(n2) / n2)
    H_low = 2.0 / rows * (W2.T @ W2 / n2 + np.eye(n1) / n1)
    lr = 1.0 / max(np.linalg.eigvalsh(H_top).max(), np.linalg.eigvalsh(H_low).max())
    net.args.hyper[:4] = (mu, lr, 0.5, 3000)
    net.codes_pass()
    c0 = [net.code(net.args.codes0, l) for l in (1, 2)]
    top = np.linalg.solve(W3.T @ W3 / (mu * k) + np.eye(n2) / n2,
                          (W3.T @ (net.y - b3).T) / (mu * k) + c0[1].T / n2).T
    np.testing.assert_allclose(net.code(net.args.codes, 2), top, rtol=1e-9, atol=1e-11)
    t = net.code(net.args.codes, 2)
    low = np.linalg.solve(W2.T @ W2 / n2 + np.eye(n1) / n1,
                          (W2.T @ (t - b2).T) / n2 + c0[0].T / n1).T
    np.testing.assert_allclose(net.code(net.args.codes, 1), low, rtol=1e-9, atol=1e-11)


# -- weights -------------------------------------------------------------------------------

def test_huge_mu_moves_only_the_output_layer_by_the_backprop_step():
    """mu -> infinity: the top code stays at c0, so every lower code does too,
    every hidden residual is 0, and the output layer takes backprop's step."""
    net = Net([4, 6, 5, 3], hyper=(1e12, 0.3, 0.9, 5), optimizer=fb.SGD(0.1), rows=8)
    before = net.model.copy()
    bp = fb.BackpropTrainer(before.copy(), loss="cross_entropy", optimizer=fb.SGD(0.1))
    g_out = bp.gradients(net.X, net.y)[-2:]
    objective, correct, status = net.step()
    assert status == OK
    after, start = net.model.params, before.params
    for i in range(4):
        np.testing.assert_allclose(after[i], start[i], rtol=0, atol=1e-9)
    for i, g in zip((4, 5), g_out):
        np.testing.assert_allclose(after[i], start[i] - 0.1 * g, rtol=1e-9, atol=1e-12)
        assert np.abs(g).max() > 1e-3


def test_hidden_layer_gradients_do_not_depend_on_the_order():
    net = Net([3, 5, 4, 6, 2], rows=5, hyper=(0.1, 0.5, 0.9, 4))
    net.codes_pass()
    grads = []
    for order in ((1, 2, 3), (3, 1, 2), (3, 2, 1)):
        g = np.zeros_like(net.grads)
        for l in order:
            K.hidden_layer_gradient(net.args._replace(grads=g), l, net.x, net.rows)
        grads.append(g)
    assert np.abs(grads[0]).max() > 1e-6
    for g in grads[1:]:
        assert np.array_equal(g, grads[0])
    codes = [net.code(net.args.codes, l) for l in (1, 2, 3)]
    up = twin.weight_gradients(net.layers, net.acts, net.X, net.y, net.loss, codes, (0, 1, 2))
    down = twin.weight_gradients(net.layers, net.acts, net.X, net.y, net.loss, codes, (2, 1, 0))
    assert all(np.array_equal(u, d) for a, b in zip(up, down) for u, d in zip(a, b))
    kernel = net.model.views(grads[0])
    for l in range(3):
        np.testing.assert_allclose(kernel[2 * l], up[l][0], rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(kernel[2 * l + 1], up[l][1], rtol=1e-12, atol=1e-15)


# -- whole steps against the twin ------------------------------------------------------------

# float64 cases run the specialization without BLAS, float32 ones the BLAS one
# (blas=1; products below linalg.SMALL_GEMM still take the loops at run time),
# so the file compiles two variants of every kernel, not four.
CASES = {
    "f64-ce-nesterov-decay": dict(dtype=np.float64, loss="cross_entropy", output="softmax",
                                  opt=lambda: fb.SGD(0.2, momentum=0.9, nesterov=True),
                                  lam=0.01, clip=0.0),
    "f64-mse-adam-clip": dict(dtype=np.float64, loss="mse", output="identity",
                              opt=lambda: fb.Adam(0.01), lam=0.0, clip=0.05),
    "f32-ce-adam": dict(dtype=np.float32, loss="cross_entropy", output="softmax",
                        opt=lambda: fb.Adam(0.01), lam=0.001, clip=0.0),
}


def _net(case, sizes=(4, 6, 5, 3), rows=6, **kw):
    c = CASES[case]
    return Net(list(sizes), output=c["output"], loss=c["loss"], dtype=c["dtype"],
               optimizer=c["opt"](), lam=c["lam"], clip=c["clip"], rows=rows,
               blas=1 if c["dtype"] == np.float32 else None, **kw)


def _tol(dtype):
    return dict(rtol=1e-10, atol=1e-12) if dtype == np.float64 else dict(rtol=2e-4, atol=2e-5)


@pytest.mark.parametrize("case", sorted(CASES))
def test_step_matches_twin(case):
    net = _net(case, hyper=(0.05, 0.5, 0.9, 5))
    layers, state = net.layers, {}
    for _ in range(3):
        objective, correct, status = net.step()
        assert status == OK
        layers, want_obj, want_correct = twin.step(
            layers, net.acts, net.X, net.y, net.loss, (0.05, 0.5, 0.9, 5), _twin_opt(net.opt),
            state, CASES[case]["lam"], CASES[case]["clip"])
        tol = _tol(net.dtype)
        assert objective == pytest.approx(want_obj, rel=tol["rtol"] * 10, abs=tol["atol"])
        assert correct == want_correct
        np.testing.assert_allclose(net.model.flat_params, naive.flatten(layers), **tol)
        layers = net.layers       # continue from the kernel's parameters
    assert net.model.flat_params.dtype == net.dtype


@pytest.mark.parametrize("case", sorted(CASES))
def test_mem_step_matches_twin(case):
    decay, ridge = (0.0, 0.0) if case.startswith("f64-ce") else (0.3, 0.05)
    net = _net(case, hyper=(0.05, 0.5, 0.9, 3), decay=decay, ridge=ridge)
    layers, state = net.layers, {}
    memory = twin.unpack_memory(net.args.A, net.args.B, net.sizes)
    for _ in range(3):
        objective, correct, status = net.mem_step()
        assert status == OK
        layers, memory, want_obj, want_correct = twin.mem_step(
            layers, net.acts, net.X, net.y, net.loss, (0.05, 0.5, 0.9, 3), decay, ridge, memory,
            _twin_opt(net.opt), state, CASES[case]["lam"], CASES[case]["clip"])
        tol = _tol(net.dtype)
        assert objective == pytest.approx(want_obj, rel=tol["rtol"] * 10, abs=tol["atol"])
        assert correct == want_correct
        np.testing.assert_allclose(net.model.flat_params, naive.flatten(layers), **tol)
        a, b = twin.pack_memory(memory)
        np.testing.assert_allclose(net.args.A, a, **tol)
        np.testing.assert_allclose(net.args.B, b, **tol)
        layers = net.layers
        memory = twin.unpack_memory(net.args.A, net.args.B, net.sizes)


def test_blas_products_match_twin():
    """Layers large enough that every product goes to BLAS (rows * n_out *
    n_in >= linalg.SMALL_GEMM), float32."""
    case = "f32-ce-adam"
    hyper = (0.05, 0.5, 0.9, 3)
    tol = _tol(np.float32)
    net = _net(case, sizes=(20, 30, 25, 40), rows=16, hyper=hyper)
    layers = net.layers
    assert net.step()[2] == OK
    layers, _, _ = twin.step(layers, net.acts, net.X, net.y, net.loss, hyper,
                             _twin_opt(net.opt), {}, CASES[case]["lam"], 0.0)
    np.testing.assert_allclose(net.model.flat_params, naive.flatten(layers), **tol)
    net = _net(case, sizes=(20, 30, 25, 40), rows=16, hyper=hyper, ridge=0.01)
    layers, memory = net.layers, twin.unpack_memory(net.args.A, net.args.B, net.sizes)
    assert net.mem_step()[2] == OK
    layers, memory, _, _ = twin.mem_step(layers, net.acts, net.X, net.y, net.loss, hyper, 0.0,
                                         0.01, memory, _twin_opt(net.opt), {},
                                         CASES[case]["lam"], 0.0)
    np.testing.assert_allclose(net.model.flat_params, naive.flatten(layers), **tol)
    a, b = twin.pack_memory(memory)
    np.testing.assert_allclose(net.args.A, a, **tol)
    np.testing.assert_allclose(net.args.B, b, **tol)


# -- AM-mem ------------------------------------------------------------------------------------

def test_memory_with_decay_0_sweeps_to_the_least_squares_fit_of_every_batch():
    sizes = [3, 4, 3, 2]
    net = Net(sizes, rows=8, hyper=(0.1, 0.5, 0.9, 3))
    rng = np.random.default_rng(5)
    seen = {1: ([], []), 2: ([], [])}
    for batch in range(4):
        net.X[...] = rng.normal(size=net.X.shape)
        net.y[...] = rng.integers(0, 2, net.rows)
        net.labels[...] = net.y
        assert net.mem_step()[2] == OK
        for l in (1, 2):
            F = net.X if l == 1 else np.tanh(net.code(net.args.codes, 1))
            seen[l][0].append(twin.augmented(F))
            seen[l][1].append(net.code(net.args.codes, l).copy())
    memory = twin.unpack_memory(net.args.A, net.args.B, sizes)
    w = net.model.flat_params.copy()
    for l in (1, 2):
        a, c = np.vstack(seen[l][0]), np.vstack(seen[l][1])
        np.testing.assert_allclose(memory[l - 1][0], a.T @ a, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(memory[l - 1][1], c.T @ a, rtol=1e-12, atol=1e-12)
        for _ in range(2000):
            K.gauss_seidel_sweep(l, w, net.args.A, net.args.B, net.layout, 0.0)
        fit = np.linalg.lstsq(a, c, rcond=None)[0].T      # [W b], (n_out, n_in + 1)
        views = net.model.views(w)
        np.testing.assert_allclose(np.hstack([views[2 * l - 2], views[2 * l - 1][:, None]]),
                                   fit, rtol=1e-8, atol=1e-10)


def test_memory_decay_weighs_batch_t_minus_k_by_one_minus_decay_to_the_k():
    d = 0.25
    net = Net([3, 4, 2], rows=5, decay=d)
    rng = np.random.default_rng(2)
    sums = []
    for _ in range(3):
        net.X[...] = rng.normal(size=net.X.shape)
        assert net.mem_step()[2] == OK
        a = twin.augmented(net.X)
        c = net.code(net.args.codes, 1)
        sums.append((a.T @ a, c.T @ a))
    A, B = twin.unpack_memory(net.args.A, net.args.B, net.sizes)[0]
    np.testing.assert_allclose(A, sum((1 - d) ** (2 - t) * s[0] for t, s in enumerate(sums)),
                               rtol=1e-12)
    np.testing.assert_allclose(B, sum((1 - d) ** (2 - t) * s[1] for t, s in enumerate(sums)),
                               rtol=1e-12)


def test_sweep_leaves_a_never_active_input_alone_and_matches_the_column_order():
    rng = np.random.default_rng(3)
    sizes = [4, 3, 2]
    net = Net(sizes)
    F = rng.normal(size=(10, 4))
    F[:, 2] = 0.0                                         # input 2 never active
    A = twin.augmented(F).T @ twin.augmented(F)
    B = rng.normal(size=(3, 10)) @ twin.augmented(F)
    flat_a, flat_b = twin.pack_memory([(A, B)])
    w = net.model.flat_params.copy()
    K.gauss_seidel_sweep(1, w, flat_a, flat_b, net.layout, 0.0)
    W, b = net.layers[0]
    want = twin.gauss_seidel_sweep(np.hstack([W, b[:, None]]), A, B, 0.0)
    views = net.model.views(w)
    np.testing.assert_allclose(np.hstack([views[0], views[1][:, None]]), want, rtol=1e-12)
    np.testing.assert_array_equal(views[0][:, 2], W[:, 2])
    for got, was in zip(views[2:], net.model.params[2:]):      # the output layer untouched
        np.testing.assert_array_equal(got, was)


# -- failures ----------------------------------------------------------------------------------

def test_failed_steps_change_nothing():
    # mu = 1e-310: 1/mu overflows, the codes turn inf/nan, the gradients too
    for mem in (False, True):
        net = Net([4, 6, 5, 3], optimizer=fb.SGD(0.1, momentum=0.9), hyper=(1e-310, 0.3, 0.9, 2))
        net.opt.state[...] = 0.5
        p, s, t = net.model.flat_params.copy(), net.opt.state.copy(), net.opt.t
        A, B = net.args.A.copy(), net.args.B.copy()
        status = (net.mem_step() if mem else net.step())[2]
        assert status != OK
        np.testing.assert_array_equal(net.model.flat_params, p)
        np.testing.assert_array_equal(net.opt.state, s)
        assert net.opt.t == t
        np.testing.assert_array_equal(net.args.A, A)
        np.testing.assert_array_equal(net.args.B, B)
    # a finite output-layer update but a non-finite memory candidate
    net = Net([4, 6, 5, 3], optimizer=fb.SGD(0.1, momentum=0.9))
    net.args.A[3] = np.inf
    p, s, A, B = (net.model.flat_params.copy(), net.opt.state.copy(), net.args.A.copy(),
                  net.args.B.copy())
    assert net.mem_step()[2] == NONFINITE_UPDATE
    np.testing.assert_array_equal(net.model.flat_params, p)
    np.testing.assert_array_equal(net.opt.state, s)
    assert net.opt.t == 0
    np.testing.assert_array_equal(net.args.A, A)
    np.testing.assert_array_equal(net.args.B, B)


def test_single_layer_network_is_plain_backprop():
    """No hidden layer: no codes, and the step is backprop's step."""
    net = Net([4, 3], rows=5, optimizer=fb.SGD(0.1))
    bp = fb.BackpropTrainer(net.model.copy(), loss="cross_entropy", optimizer=fb.SGD(0.1))
    want = net.model.flat_params - 0.1 * np.concatenate(
        [g.ravel() for g in bp.gradients(net.X, net.y)])
    assert net.step()[2] == OK
    np.testing.assert_allclose(net.model.flat_params, want, rtol=1e-13)


def test_batches_smaller_than_the_capacity_and_with_capacity():
    """Offsets follow ``rows``: a batch below the capacity, then buffers grown
    by with_capacity for a larger one, each step as the twin's."""
    net = Net([4, 6, 5, 3], rows=7, optimizer=fb.SGD(0.1), hyper=(0.05, 0.5, 0.9, 3))
    for rows, capacity in ((4, None), (12, 12)):
        if capacity:
            net.args = K.with_capacity(net.args, capacity, None)
        X = np.random.default_rng(rows).normal(size=(rows, 4))
        y = np.arange(rows) % 3
        layers = net.layers
        out = K.altmin_step(net.args, X.reshape(-1), y.astype(np.int64), EMPTY_T[np.float64],
                            rows)
        assert out[2] == OK
        layers, objective, _ = twin.step(layers, net.acts, X, y, net.loss, (0.05, 0.5, 0.9, 3),
                                         ("sgd", 0.1, 0.0, False), {})
        assert out[0] == pytest.approx(objective, rel=1e-12)
        np.testing.assert_allclose(net.model.flat_params, naive.flatten(layers), rtol=1e-10,
                                   atol=1e-12)

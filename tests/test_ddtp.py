"""DDTP-linear (alternatives.DDTPTrainer).

* forward and feedback-training directions against a plain-NumPy twin written
  from Meulemans et al. 2020 (float64), loop and BLAS paths;
* every parameter of every layer (W, b and every Q_l) moves after a few steps;
* a network without hidden nonlinearity and one hidden layer with Q_1 = W_2^+
  gives the Gauss-Newton hidden target;
* step is all-or-nothing; registry and validation;
* digits: >= 0.92 test accuracy (marked slow).
"""
import numpy as np
import pytest

import fastbp as fb
from alternatives import DDTPTrainer


def _softmax(a):
    e = np.exp(a - a.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _forward(Ws, bs, X, act=np.tanh):
    H, A = [np.asarray(X, np.float64)], None
    L = len(Ws)
    for l in range(L):
        a = H[-1] @ Ws[l].T + bs[l]
        if l == L - 1:
            A = a
        H.append(act(a) if l < L - 1 else _softmax(a))
    return H, A


def twin_ddtp(Ws, bs, Qs, X, y, target_step):
    """DDTP-linear directions for a tanh MLP with softmax + cross-entropy output,
    samples as rows. e = per-sample dl/da_L; tau_L = A_L - step * e;
    H^_l = H_l + tau_L Q_l^T - A_L Q_l^T; hidden layer l: gradient over (W_l, b_l)
    of mean_i 1/2 ||H_l - H^_l||^2 (H^_l, H_{l-1} constant); output layer:
    gradient of the mean loss. Returns (directions, hidden targets)."""
    Ws = [np.asarray(W, np.float64) for W in Ws]
    bs = [np.asarray(b, np.float64) for b in bs]
    H, A = _forward(Ws, bs, X)
    L = len(Ws)
    n = X.shape[0]
    e = H[L] - np.eye(Ws[-1].shape[0])[y]
    tau = A - target_step * e
    out = [None] * (2 * L)
    out[2 * (L - 1)] = (e / n).T @ H[L - 1]
    out[2 * (L - 1) + 1] = (e / n).sum(axis=0)
    targets = []
    for l in range(1, L):
        Q = np.asarray(Qs[l - 1], np.float64)
        t = H[l] + tau @ Q.T - A @ Q.T
        targets.append(t)
        d = (H[l] - t) / n * (1.0 - H[l] ** 2)
        out[2 * (l - 1)] = d.T @ H[l - 1]
        out[2 * (l - 1) + 1] = d.sum(axis=0)
    return out, targets


def twin_feedback(Ws, bs, Qs, X, noise):
    """Gradients over Q_l of mean_i 1/2 ||Q_l (a_L(H_l + eps) - a_L(H_l)) - eps||^2."""
    Ws = [np.asarray(W, np.float64) for W in Ws]
    bs = [np.asarray(b, np.float64) for b in bs]
    H, A = _forward(Ws, bs, X)
    L = len(Ws)
    n = X.shape[0]
    grads, loss = [], 0.0
    for l in range(1, L):
        h = H[l] + noise[l - 1]
        for j in range(l, L - 1):
            h = np.tanh(h @ Ws[j].T + bs[j])
        diff = h @ Ws[L - 1].T + bs[L - 1] - A
        r = diff @ np.asarray(Qs[l - 1], np.float64).T - noise[l - 1]
        loss += 0.5 * (r ** 2).sum() / n
        grads.append((r / n).T @ diff)
    return grads, loss


def _trainer(sizes, dtype=np.float64, seed=0, **kw):
    model = fb.MLP(sizes, activation="tanh", output="softmax", dtype=dtype, seed=seed)
    return DDTPTrainer(model, feedback_seed=seed, **kw)


@pytest.mark.parametrize("sizes,rows", [([3, 5, 4, 4, 2], 7), ([20, 40, 30, 30, 5], 200),
                                        ([4, 3], 5)])
def test_directions_match_numpy_twin(sizes, rows):
    rng = np.random.default_rng(1)
    tr = _trainer(sizes, target_step=0.3)
    X = rng.normal(size=(rows, sizes[0]))
    y = rng.integers(0, sizes[-1], rows)
    got = tr.update_directions(X, y)
    p = tr.model.params
    want, targets = twin_ddtp(p[0::2], p[1::2], tr.feedback, X, y, 0.3)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.shape == w.shape
        np.testing.assert_allclose(g, w, rtol=1e-9, atol=1e-12)
    for g, w in zip(tr.hidden_targets(X, y), targets):
        np.testing.assert_allclose(g, w, rtol=1e-9, atol=1e-12)
    # feedback-training direction with given noise
    noise = [rng.normal(0, 0.1, (rows, n)) for n in sizes[1:-1]]
    fgot, floss = tr.feedback_directions(X, noise)
    fwant, fl = twin_feedback(p[0::2], p[1::2], tr.feedback, X, noise)
    assert len(fgot) == len(fwant) == len(sizes) - 2
    for g, w in zip(fgot, fwant):
        assert g.shape == w.shape
        np.testing.assert_allclose(g, w, rtol=1e-9, atol=1e-12)
    assert floss == pytest.approx(fl, rel=1e-9)


def test_float32_close_to_float64():
    rng = np.random.default_rng(2)
    sizes = [6, 8, 7, 3]
    X = rng.normal(size=(9, 6))
    y = rng.integers(0, 3, 9)
    t64 = _trainer(sizes, target_step=0.5)
    t32 = _trainer(sizes, dtype=np.float32, target_step=0.5)
    for g32, g64 in zip(t32.update_directions(X.astype(np.float32), y),
                        t64.update_directions(X, y)):
        assert g32.dtype == np.float32
        np.testing.assert_allclose(g32, g64, rtol=1e-3, atol=1e-5)


def test_directions_do_not_update_and_decay_on_weights_only():
    rng = np.random.default_rng(3)
    tr = _trainer([5, 6, 6, 3], weight_decay=0.1)
    X = rng.normal(size=(8, 5))
    y = rng.integers(0, 3, 8)
    before = tr.model.flat_params.copy(), tr.feedback_params.copy()
    got = tr.update_directions(X, y)
    tr.feedback_directions(X)
    np.testing.assert_array_equal(tr.model.flat_params, before[0])
    np.testing.assert_array_equal(tr.feedback_params, before[1])
    tr0 = _trainer([5, 6, 6, 3])
    plain = tr0.update_directions(X, y)
    for g, g0, p in zip(got, plain, tr.model.params):
        want = g0 + 0.1 * p if p.ndim == 2 else g0
        np.testing.assert_allclose(g, want, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("use_fit", [False, True])
def test_every_parameter_moves(use_fit):
    rng = np.random.default_rng(4)
    tr = _trainer([6, 8, 7, 7, 3], optimizer=fb.Adam(1e-2), pretrain_epochs=1)
    X = rng.normal(size=(40, 6))
    y = rng.integers(0, 3, 40)
    p0 = [p.copy() for p in tr.model.params]
    q0 = [q.copy() for q in tr.feedback]
    if use_fit:
        tr.fit(X, y, epochs=2, batch_size=10, seed=0)
    else:
        for i in range(3):
            obj = tr.step(X[i * 10:(i + 1) * 10], y[i * 10:(i + 1) * 10])
            assert np.isfinite(obj)
    for a, b in zip(p0, tr.model.params):
        assert np.all(np.abs(a - b).max(axis=-1) > 0)
    assert len(q0) == 3
    for a, b in zip(q0, tr.feedback):
        assert b.shape[1] == 3
        assert np.all(np.abs(a - b) > 0)


def test_pseudoinverse_feedback_gives_gauss_newton_target():
    # linear hidden layer, one hidden layer: a_2 = W_2 h_1 + b_2 is linear in h_1,
    # W_2 (k, n_1) of full row rank; the Gauss-Newton target of h_1 is
    # h_1 - beta (J^T J)^+ J^T e = h_1 - beta W_2^+ e (J = W_2), and W_2 h^_1 + b_2 = tau_2.
    rng = np.random.default_rng(5)
    model = fb.MLP([4, 6, 3], activation="identity", output="softmax", dtype=np.float64,
                   seed=0)
    tr = DDTPTrainer(model, target_step=0.4, feedback_seed=0)
    W1, b1, W2, b2 = [np.asarray(p, np.float64) for p in model.params]
    assert np.linalg.matrix_rank(W2) == 3
    tr.feedback[0][...] = np.linalg.pinv(W2)
    X = rng.normal(size=(10, 4))
    y = rng.integers(0, 3, 10)
    h1 = X @ W1.T + b1
    a2 = h1 @ W2.T + b2
    e = _softmax(a2) - np.eye(3)[y]
    J = W2
    gn = h1 - 0.4 * e @ (np.linalg.pinv(J.T @ J) @ J.T).T
    (got,) = tr.hidden_targets(X, y)
    np.testing.assert_allclose(got, gn, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(got @ W2.T + b2, a2 - 0.4 * e, rtol=1e-10, atol=1e-12)
    # and W_2^+ is a stationary point of the expected reconstruction loss:
    # sigma^2 (Q W_2 - I) W_2^T = 0
    Q = tr.feedback[0]
    np.testing.assert_allclose((Q @ W2 - np.eye(6)) @ W2.T, 0.0, atol=1e-12)


def test_feedback_training_reduces_reconstruction_loss():
    rng = np.random.default_rng(6)
    tr = _trainer([6, 10, 10, 4], sigma=0.1, feedback_optimizer=fb.Adam(1e-2))
    X = rng.normal(size=(64, 6))
    noise = [rng.normal(0, 0.1, (64, 10)) for _ in range(2)]
    _, before = tr.feedback_directions(X, noise)
    for _ in range(200):
        tr.train_feedback(X)
    _, after = tr.feedback_directions(X, noise)
    assert after < 0.5 * before


def test_step_is_all_or_nothing():
    tr = _trainer([3, 4, 4, 2])
    X = np.ones((3, 3))
    y = np.array([0, 1, 0])
    tr.feedback[0][0, 0] = np.inf
    p0, q0 = tr.model.flat_params.copy(), tr.feedback_params.copy()
    with pytest.raises(fb.DivergenceError):
        tr.step(X, y)
    np.testing.assert_array_equal(tr.model.flat_params, p0)
    np.testing.assert_array_equal(tr.feedback_params, q0)


def test_registry_and_validation():
    assert fb.TRAINERS["ddtp"] is DDTPTrainer
    model = fb.MLP([3, 4, 2], seed=0)
    with pytest.raises(ValueError):
        DDTPTrainer(model, target_step=0.0)
    with pytest.raises(ValueError):
        DDTPTrainer(model, sigma=-1.0)
    with pytest.raises(ValueError):
        DDTPTrainer(model, pretrain_epochs=-1)
    opt = fb.Adam(1e-3)
    with pytest.raises(ValueError):
        DDTPTrainer(model, optimizer=opt, feedback_optimizer=opt)
    tr = DDTPTrainer(model)
    assert "ddtp" in repr(tr).lower() or "DDTPTrainer" in repr(tr)


def _digits():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    d = load_digits()
    X = (d.data / 16.0).astype(np.float32)
    return train_test_split(X, d.target, test_size=0.25, random_state=0)


@pytest.mark.slow
def test_digits_ddtp_learns():
    # 64-128-128-10 tanh, float32, Adam(3e-3) forward, Adam(1e-3) feedback,
    # target_step 0.5, sigma 0.1, 1 feedback pretraining epoch, 20 epochs of
    # batch 32: 0.976 test accuracy (under a second after compilation)
    Xtr, Xte, ytr, yte = _digits()
    model = fb.MLP([64, 128, 128, 10], activation="tanh", output="softmax",
                   dtype=np.float32, seed=0)
    tr = DDTPTrainer(model, optimizer=fb.Adam(3e-3), target_step=0.5, sigma=0.1,
                     feedback_seed=0, pretrain_epochs=1)
    hist = tr.fit(Xtr, ytr, epochs=20, batch_size=32, seed=0)
    assert not hist.diverged
    assert tr.evaluate(Xte, yte)["accuracy"] >= 0.92

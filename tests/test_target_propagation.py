"""Difference target propagation (alternatives.DTPTrainer).

* update directions against a plain-NumPy twin written from Lee et al. 2015
  (float64), with and without the difference correction, loop and BLAS paths;
* every parameter of every layer (and every inverse) moves after a few steps;
* a linear network with exact linear inverses: hidden-layer directions are
  parallel to the backprop gradient;
* the denoising inverse loss goes down; the fused epoch kernel and ``step``
  agree for the joint schedule; registry and validation;
* digits: DTP reaches >= 0.90 test accuracy and beats plain TP (marked slow).
"""
import numpy as np
import pytest

import alternatives
import fastbp as fb
from alternatives import DTPTrainer


# -- NumPy twin -----------------------------------------------------------------------

def _softmax(a):
    e = np.exp(a - a.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def twin_dtp(Ws, bs, Vs, cs, X, y, target_step, difference, inv_act=np.tanh):
    """DTP directions for a tanh MLP with a softmax + cross-entropy output, samples as
    rows. Per-sample loss l_i; top target H^_{L-1} = H_{L-1} - step * dl_i/dH_{L-1};
    H^_{l-1} = H_{l-1} + g_l(H^_l) - g_l(H_l) (or g_l(H^_l)), g_l(h) = tanh(h V_l^T + c_l);
    hidden layer l: gradient over (W_l, b_l) of mean_i 1/2 ||H_l - H^_l||^2 with H^_l
    and H_{l-1} constant; output layer: gradient of the mean loss."""
    Ws = [np.asarray(W, np.float64) for W in Ws]
    bs = [np.asarray(b, np.float64) for b in bs]
    H = [np.asarray(X, np.float64)]
    L = len(Ws)
    for l in range(L):
        a = H[-1] @ Ws[l].T + bs[l]
        H.append(np.tanh(a) if l < L - 1 else _softmax(a))
    n = X.shape[0]
    onehot = np.eye(Ws[-1].shape[0])[y]
    e = H[L] - onehot                       # per-sample dl/da_L
    out = [None] * (2 * L)
    out[2 * (L - 1)] = (e / n).T @ H[L - 1]
    out[2 * (L - 1) + 1] = (e / n).sum(axis=0)
    target = H[L - 1] - target_step * (e @ Ws[L - 1])
    for l in range(L - 1, 0, -1):          # layer l: Ws[l - 1], output H[l]
        d = (H[l] - target) / n * (1.0 - H[l] ** 2)
        out[2 * (l - 1)] = d.T @ H[l - 1]
        out[2 * (l - 1) + 1] = d.sum(axis=0)
        if l >= 2:
            V, c = np.asarray(Vs[l - 2], np.float64), np.asarray(cs[l - 2], np.float64)
            g = lambda h: inv_act(h @ V.T + c)  # noqa: E731
            target = H[l - 1] + g(target) - g(H[l]) if difference else g(target)
    return out


def _trainer(sizes, dtype=np.float64, seed=0, **kw):
    model = fb.MLP(sizes, activation="tanh", output="softmax", dtype=dtype, seed=seed)
    return DTPTrainer(model, seed=seed, **kw)


@pytest.mark.parametrize("difference", [True, False])
@pytest.mark.parametrize("sizes,rows", [([3, 5, 4, 4, 2], 7), ([20, 40, 30, 30, 5], 200)])
def test_directions_match_numpy_twin(difference, sizes, rows):
    rng = np.random.default_rng(1)
    tr = _trainer(sizes, target_step=0.3, difference=difference)
    for p in tr.inverses[1::2]:              # nonzero inverse biases
        p[...] = rng.normal(0, 0.3, p.shape)
    X = rng.normal(size=(rows, sizes[0]))
    y = rng.integers(0, sizes[-1], rows)
    got = tr.update_directions(X, y)
    p = tr.model.params
    want = twin_dtp(p[0::2], p[1::2], tr.inverses[0::2], tr.inverses[1::2], X, y, 0.3,
                    difference)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.shape == w.shape
        np.testing.assert_allclose(g, w, rtol=1e-9, atol=1e-12)


def test_directions_float32_close_to_float64():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(16, 6))
    y = rng.integers(0, 3, 16)
    d64 = _trainer([6, 8, 7, 3], np.float64).update_directions(X, y)
    d32 = _trainer([6, 8, 7, 3], np.float32).update_directions(X.astype(np.float32), y)
    for a, b in zip(d32, d64):
        assert a.dtype == np.float32
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5)


def test_update_directions_does_not_update():
    tr = _trainer([6, 8, 7, 3])
    before = tr.model.flat_params.copy(), tr.inverse_params.copy()
    X = np.random.default_rng(0).normal(size=(10, 6))
    tr.update_directions(X, np.arange(10) % 3)
    np.testing.assert_array_equal(tr.model.flat_params, before[0])
    np.testing.assert_array_equal(tr.inverse_params, before[1])


def test_weight_decay_added_to_weights_only():
    rng = np.random.default_rng(3)
    X, y = rng.normal(size=(10, 6)), rng.integers(0, 3, 10)
    plain = _trainer([6, 8, 7, 3]).update_directions(X, y)
    tr = _trainer([6, 8, 7, 3], weight_decay=0.1)
    decayed = tr.update_directions(X, y)
    for i, (a, b, p) in enumerate(zip(decayed, plain, tr.model.params)):
        np.testing.assert_allclose(a, b + (0.1 * p if i % 2 == 0 else 0), rtol=1e-12,
                                   atol=1e-14)


@pytest.mark.parametrize("schedule", ["joint", "alternate"])
def test_every_parameter_moves(schedule):
    """The reference code never updated two of its tensors: here every entry of
    every W_l, b_l, V_l, c_l changes."""
    rng = np.random.default_rng(4)
    tr = _trainer([6, 8, 7, 5, 3], schedule=schedule, optimizer=fb.Adam(1e-2),
                  inverse_optimizer=fb.Adam(1e-2))
    X, y = rng.normal(size=(40, 6)), rng.integers(0, 3, 40)
    before = [p.copy() for p in tr.model.params]
    inv_before = [p.copy() for p in tr.inverses]
    assert len(inv_before) == 4              # V_2, c_2, V_3, c_3
    tr.fit(X, y, epochs=3, batch_size=10, seed=0)
    for b, p in zip(before + inv_before, list(tr.model.params) + list(tr.inverses)):
        assert np.all(b != p)


def test_step_moves_every_parameter_and_returns_objective():
    rng = np.random.default_rng(5)
    tr = _trainer([6, 8, 7, 3], optimizer=fb.Adam(1e-2))
    X, y = rng.normal(size=(20, 6)), rng.integers(0, 3, 20)
    before = tr.model.flat_params.copy(), tr.inverse_params.copy()
    obj = tr.step(X, y)
    assert np.isfinite(obj)
    assert np.all(tr.model.flat_params != before[0])
    assert np.all(tr.inverse_params != before[1])


def _orthogonal(rng, n):
    q, r = np.linalg.qr(rng.normal(size=(n, n)))
    return q * np.sign(np.diag(r))


def _angle(a, b):
    a, b = a.ravel(), b.ravel()
    c = a @ b / (np.linalg.norm(a) * np.linalg.norm(b))
    return np.degrees(np.arccos(np.clip(c, -1.0, 1.0)))


def test_linear_network_with_exact_inverses_is_parallel_to_backprop():
    rng = np.random.default_rng(6)
    n = 8
    model = fb.MLP([n, n, n, n, 4], activation="identity", output="softmax",
                   dtype=np.float64, seed=0)
    for l in range(3):
        model.params[2 * l][...] = _orthogonal(rng, n)
        model.params[2 * l + 1][...] = 0.0
    tr = DTPTrainer(model, target_step=1e-3, inverse_activation="identity", seed=0)
    tr.set_exact_linear_inverses()
    for l, W in enumerate(model.params[2:6:2]):
        np.testing.assert_allclose(tr.inverses[2 * l], W.T, atol=1e-12)
    X, y = rng.normal(size=(32, n)), rng.integers(0, 4, 32)
    bp = fb.BackpropTrainer(model).gradients(X, y)
    dtp = tr.update_directions(X, y)
    for i in range(len(bp)):
        assert _angle(dtp[i], bp[i]) < 1.0, i
    # the output layer uses the loss gradient itself
    np.testing.assert_allclose(dtp[-2], bp[-2], rtol=1e-12, atol=1e-14)


def test_inverse_training_reduces_reconstruction_loss():
    rng = np.random.default_rng(7)
    tr = _trainer([10, 12, 12, 3], sigma=0.1, inverse_optimizer=fb.Adam(1e-2))
    X = rng.normal(size=(64, 10))
    first = tr.train_inverses(X)
    for _ in range(200):
        last = tr.train_inverses(X)
    assert last < 0.5 * first


def test_joint_fit_equals_steps():
    rng = np.random.default_rng(8)
    X, y = rng.normal(size=(24, 6)), rng.integers(0, 3, 24)
    a = _trainer([6, 8, 7, 3], schedule="joint", seed=3, sigma=0.0)
    b = _trainer([6, 8, 7, 3], schedule="joint", seed=3, sigma=0.0)
    a.fit(X, y, epochs=1, batch_size=8, shuffle=False)
    for s in range(0, 24, 8):
        b.step(X[s:s + 8], y[s:s + 8])
    np.testing.assert_allclose(a.model.flat_params, b.model.flat_params, rtol=1e-12)
    np.testing.assert_allclose(a.inverse_params, b.inverse_params, rtol=1e-12)


def test_no_hidden_inverse_networks():
    rng = np.random.default_rng(9)
    X, y = rng.normal(size=(10, 4)), rng.integers(0, 3, 10)
    for sizes in ([4, 3], [4, 6, 3]):
        tr = _trainer(sizes)
        assert tr.inverse_params.shape == (0,)
        tr.fit(X, y, epochs=2, batch_size=5)
        if len(sizes) == 2:   # no hidden layer: DTP is backprop
            g = fb.BackpropTrainer(tr.model).gradients(X, y)
            for u, v in zip(tr.update_directions(X, y), g):
                np.testing.assert_allclose(u, v, rtol=1e-12)


def test_divergence_raises_and_leaves_params():
    model = fb.MLP([4, 5, 5, 3], activation="tanh", output="identity", dtype=np.float64,
                   seed=0)
    tr = DTPTrainer(model, loss="mse", seed=0)
    X = np.ones((4, 4))
    before = tr.model.flat_params.copy(), tr.inverse_params.copy()
    with pytest.raises(fb.DivergenceError):
        tr.step(X, np.full((4, 3), 1e200))
    np.testing.assert_array_equal(tr.model.flat_params, before[0])
    np.testing.assert_array_equal(tr.inverse_params, before[1])   # step is all or nothing
    with pytest.raises(fb.DivergenceError):
        tr.fit(X, np.full((4, 3), 1e200), epochs=1, batch_size=2)
    # (the alternate schedule's completed inverse pass may have moved the inverses)
    np.testing.assert_array_equal(tr.model.flat_params, before[0])


def test_registry_and_validation():
    assert fb.get_trainer("dtp") is DTPTrainer
    assert alternatives.DTPTrainer is DTPTrainer
    model = fb.MLP([4, 5, 3], activation="tanh", output="softmax")
    with pytest.raises(ValueError):
        DTPTrainer(model, schedule="sometimes")
    with pytest.raises(ValueError):
        DTPTrainer(model, target_step=0.0)
    with pytest.raises(ValueError):
        DTPTrainer(model, inverse_activation="relu")
    with pytest.raises(ValueError):
        DTPTrainer(model).set_exact_linear_inverses()
    assert "DTPTrainer" in repr(DTPTrainer(model))


# -- learning -----------------------------------------------------------------------------

def _digits():
    from sklearn import datasets
    from sklearn.model_selection import train_test_split
    d = datasets.load_digits()
    X = (d.data / 16).astype(np.float32)
    return train_test_split(X, d.target, test_size=0.25, random_state=0)


def _digits_accuracy(difference, schedule="alternate"):
    Xtr, Xte, ytr, yte = _digits()
    model = fb.MLP([64, 128, 128, 10], activation="tanh", output="softmax", seed=0)
    tr = DTPTrainer(model, optimizer=fb.Adam(1e-3), inverse_optimizer=fb.Adam(1e-3),
                    target_step=0.1, sigma=0.1, difference=difference, schedule=schedule,
                    seed=0)
    tr.fit(Xtr, ytr, epochs=20, batch_size=32, seed=0)
    return tr.evaluate(Xte, yte)["accuracy"]


@pytest.mark.slow
def test_digits_dtp_learns_and_beats_plain_tp():
    dtp = _digits_accuracy(True)
    tp = _digits_accuracy(False)
    assert dtp >= 0.90
    assert dtp > tp


@pytest.mark.slow
def test_digits_dtp_joint_schedule_learns():
    assert _digits_accuracy(True, "joint") >= 0.90

"""The HSIC-bottleneck trainer (alternatives.HSICTrainer), checked against its
definitions.

* a step against a NumPy twin (tests/naive_hsic.py) written from Ma et al.
  2020: each hidden layer follows the gradient of its own objective
  J_l = nHSIC(Z_l, X) - beta nHSIC(Z_l, Y), from the output of the layers
  below as they are after their own update; the output layer follows its
  loss gradient from the last hidden output. With and without the cap on
  Z's spread (max_spread), SGD and Adam (one step count per step), weight
  decay;
* the capped objective's gradient against central differences;
* update_directions at the current parameters;
* format="after": the format phase leaves the hidden layers bit for bit, the
  HSIC phase the output layer;
* fit's fused epochs take bit-identical steps to step() / format_step() over
  the same batches (a leftover single sample joins the last batch);
* divergence leaves parameters and optimizer state as before the step;
  save/resume is exact; bad input; float32 and float64;
* digits: >= 0.90 test accuracy after formatting (marked slow).
"""
import ast
import os
import sys

import numpy as np
import pytest

import alternatives
import fastbp as fb
import naive_hsic as nv
from alternatives import HSICTrainer
from alternatives import _hsic_kernels as hk
from alternatives import _hsic_step as K
from fastbp.threads import blas_limit


@pytest.fixture(autouse=True, scope="module")
def one_blas_thread():
    """OpenBLAS threads dpotri even for tiny matrices: on a busy machine two
    threads make each call wait (see tests/test_hsic_measure.py)."""
    with blas_limit(1):
        yield


SIGMA, BETA, EPS = 1.5, 4.0, 1e-3


# -- NumPy twin ------------------------------------------------------------------------

def _softmax(a):
    e = np.exp(a - a.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


CAP = 0.05     # max_spread of most tests: below every tanh layer's spread here


def spread(Z):
    """s: the root mean square of Z's entries about their column means."""
    return np.sqrt(((Z - Z.mean(axis=0)) ** 2).mean())


def capped(Z, cap):
    """What the kernel sees: Z min(1, cap / s)."""
    return Z if cap is None or spread(Z) <= cap else Z * cap / spread(Z)


def capped_value(Z, S, cap):
    """J of the capped Z, from the definitions."""
    return nv.layer_value(capped(Z, cap), S, SIGMA, EPS)


def layer_direction(Z, S, cap):
    """dJ/dZ of J(capped(Z)): the plain layer gradient below the cap, else by
    the chain rule through U = cap (Z - mean) / s."""
    s = spread(Z)
    if cap is None or s <= cap:
        return nv.layer_gradient(Z, S, SIGMA, EPS)
    U = cap * (Z - Z.mean(axis=0)) / s
    G = nv.layer_gradient(U, S, SIGMA, EPS)
    return cap / s * (G - U * (G * U).sum() / (U.size * cap ** 2))


class Adam:
    """Adam at update count t + 1 (the count held for every layer of a step)."""

    def __init__(self, lr, shapes, b1=0.9, b2=0.999, eps=1e-8):
        self.lr, self.b1, self.b2, self.eps, self.t = lr, b1, b2, eps, 0
        self.m = [np.zeros(s) for s in shapes]
        self.v = [np.zeros(s) for s in shapes]

    def update(self, i, p, g):
        t = self.t + 1
        self.m[i] = self.b1 * self.m[i] + (1 - self.b1) * g
        self.v[i] = self.b2 * self.v[i] + (1 - self.b2) * g * g
        mh = self.m[i] / (1 - self.b1 ** t)
        vh = self.v[i] / (1 - self.b2 ** t)
        return p - self.lr * mh / (np.sqrt(vh) + self.eps)


class SGD:
    def __init__(self, lr):
        self.lr = lr

    def update(self, i, p, g):
        return p - self.lr * g


ACTIVATIONS = {"tanh": (np.tanh, lambda h: 1.0 - h ** 2),
               "relu": (lambda a: np.maximum(a, 0.0), lambda h: (h > 0).astype(float))}


def twin_step(params, X, y, k, opt, cap=CAP, decay=0.0, below_updated=True, acts=None):
    """One joint HSIC step on an MLP (tanh hidden layers, or ``acts``) with a
    softmax + cross-entropy output: returns (new params, objective).
    ``cap``: max_spread (None: none). ``below_updated=False``
    feeds each layer the output of the layers below *before* their update (a
    wrong variant, to show the test can tell)."""
    params = [np.asarray(p, np.float64).copy() for p in params]
    L = len(params) // 2
    X = np.asarray(X, np.float64)
    Y = np.eye(k)[y]
    S = nv.target_matrix(nv.normalized_r(X, SIGMA, EPS), nv.normalized_r(Y, SIGMA, EPS), BETA)
    acts = acts or ["tanh"] * (L - 1)
    H, H_old = X, X
    penalty = 0.0
    for l in range(L - 1):
        W, b = params[2 * l], params[2 * l + 1]
        f, df = ACTIVATIONS[acts[l]]
        src = H if below_updated else H_old
        Z = f(src @ W.T + b)
        delta = layer_direction(Z, S, cap) * df(Z)
        dW = delta.T @ src + decay * W
        penalty += 0.5 * decay * (W ** 2).sum()
        params[2 * l] = opt.update(2 * l, W, dW)
        params[2 * l + 1] = opt.update(2 * l + 1, b, delta.sum(axis=0))
        H_old = Z
        H = f(H @ params[2 * l].T + params[2 * l + 1])
    W, b = params[-2], params[-1]
    P = _softmax(H @ W.T + b)
    m = X.shape[0]
    loss = -np.log(P[np.arange(m), y]).mean()
    e = (P - Y) / m
    penalty += 0.5 * decay * (W ** 2).sum()
    params[-2] = opt.update(2 * L - 2, W, e.T @ H + decay * W)
    params[-1] = opt.update(2 * L - 1, b, e.sum(axis=0))
    if isinstance(opt, Adam):
        opt.t += 1
    return params, loss + penalty


def make(sizes=(6, 9, 7, 3), dtype=np.float64, seed=0, optimizer=None, activation="tanh",
         **kw):
    model = fb.MLP(list(sizes), activation=activation, output="softmax", dtype=dtype,
                   seed=seed, init="uniform")   # nonzero biases
    kw = dict(dict(sigma=SIGMA, beta=BETA, epsilon=EPS, max_spread=CAP), **kw)
    return HSICTrainer(model, optimizer=optimizer or fb.SGD(0.1), **kw)


def batch(m=12, n_in=6, k=3, seed=1, dtype=np.float64):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(m, n_in)).astype(dtype), rng.integers(0, k, m)


# -- the objective's gradient -------------------------------------------------------------

def test_capped_gradient_matches_central_differences():
    rng = np.random.default_rng(0)
    X, y = batch()
    Z = np.tanh(rng.normal(size=(12, 5)))
    S = nv.target_matrix(nv.normalized_r(X, SIGMA, EPS),
                         nv.normalized_r(np.eye(3)[y], SIGMA, EPS), BETA)
    cap = 0.3
    assert spread(Z) > cap
    G = layer_direction(Z, S, cap)
    h = 1e-6
    for i, j in [(0, 0), (3, 2), (11, 4), (7, 1)]:
        Zp, Zm = Z.copy(), Z.copy()
        Zp[i, j] += h
        Zm[i, j] -= h
        fd = (capped_value(Zp, S, cap) - capped_value(Zm, S, cap)) / (2 * h)
        assert G[i, j] == pytest.approx(fd, rel=1e-6, abs=1e-8)
    # above the cap, J ignores the scale and offset of Z
    assert capped_value(3.0 * Z + 1.0, S, cap) == pytest.approx(capped_value(Z, S, cap),
                                                                 rel=1e-10)


# -- one step against the twin ---------------------------------------------------------------

@pytest.mark.parametrize("cap", [CAP, None])
@pytest.mark.parametrize("sizes,m", [((6, 9, 7, 3), 12), ((6, 9, 7, 5, 3), 10),
                                     ((30, 64, 48, 4), 40)])   # the last takes BLAS paths
def test_step_matches_twin_sgd(cap, sizes, m):
    tr = make(sizes, max_spread=cap, weight_decay=1e-2)
    X, y = batch(m, sizes[0], sizes[-1])
    before = [p.copy() for p in tr.model.params]
    obj = tr.step(X, y)
    want, want_obj = twin_step(before, X, y, sizes[-1], SGD(0.1), cap, decay=1e-2)
    for got, w in zip(tr.model.params, want):
        np.testing.assert_allclose(got, w, rtol=1e-9, atol=1e-12)
    assert obj == pytest.approx(want_obj, rel=1e-10)
    # every parameter moved; feeding each layer the pre-update output below is
    # a different step (layers above the first see updated layers)
    assert all(np.all(b != p) for b, p in zip(before, tr.model.params))
    wrong, _ = twin_step(before, X, y, sizes[-1], SGD(0.1), cap, decay=1e-2,
                         below_updated=False)
    assert not np.allclose(wrong[2], want[2], rtol=1e-6, atol=0)


def test_default_cap_binds_on_a_wide_relu_layer_only():
    """max_spread=1 (the default): a relu layer of spread > 1 is seen at
    spread 1; a tanh layer's spread is below 1, so it is seen as it is."""
    tr = make(activation=["relu", "tanh"], max_spread=1.0)
    tr.model.params[0][...] *= 8.0
    X, y = batch()
    before = [p.copy() for p in tr.model.params]
    Z1 = np.maximum(X @ before[0].T + before[1], 0.0)
    assert spread(Z1) > 1.0 > spread(np.tanh(Z1 @ before[2].T + before[3]))
    tr.step(X, y)
    want, _ = twin_step(before, X, y, 3, SGD(0.1), 1.0, acts=["relu", "tanh"])
    for got, w in zip(tr.model.params, want):
        np.testing.assert_allclose(got, w, rtol=1e-9, atol=1e-12)


def test_steps_match_twin_adam_one_count_per_step():
    tr = make(optimizer=fb.Adam(1e-2))
    X, y = batch()
    shapes = [p.shape for p in tr.model.params]
    params = [p.copy() for p in tr.model.params]
    opt = Adam(1e-2, shapes)
    for _ in range(3):
        tr.step(X, y)
        params, _ = twin_step(params, X, y, 3, opt)
    assert tr.optimizer.t == 3
    for got, w in zip(tr.model.params, params):
        np.testing.assert_allclose(got, w, rtol=1e-8, atol=1e-11)


def test_update_directions_at_current_parameters():
    tr = make(weight_decay=0.1)
    X, y = batch()
    before = tr.model.flat_params.copy()
    got = tr.update_directions(X, y)
    np.testing.assert_array_equal(tr.model.flat_params, before)
    assert tr.optimizer.t == 0
    p = [q.astype(np.float64) for q in tr.model.params]
    S = nv.target_matrix(nv.normalized_r(X, SIGMA, EPS),
                         nv.normalized_r(np.eye(3)[y], SIGMA, EPS), BETA)
    H = X
    for l in range(2):
        Z = np.tanh(H @ p[2 * l].T + p[2 * l + 1])
        delta = layer_direction(Z, S, CAP) * (1.0 - Z ** 2)
        np.testing.assert_allclose(got[2 * l], delta.T @ H + 0.1 * p[2 * l], rtol=1e-9,
                                   atol=1e-12)
        np.testing.assert_allclose(got[2 * l + 1], delta.sum(axis=0), rtol=1e-9, atol=1e-12)
        H = Z
    e = (_softmax(H @ p[4].T + p[5]) - np.eye(3)[y]) / len(y)
    np.testing.assert_allclose(got[4], e.T @ H + 0.1 * p[4], rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(got[5], e.sum(axis=0), rtol=1e-10, atol=1e-13)


def test_float32_step_close_to_float64():
    # BLAS-sized (12 x 80 x 90 products), as the restore tests below: the
    # suite compiles the float32 step for one of the two product paths only
    X, y = batch(n_in=80)
    a, b = make((80, 90, 7, 3), dtype=np.float64), make((80, 90, 7, 3), dtype=np.float32)
    a.step(X, y)
    b.step(X.astype(np.float32), y)
    for p, q in zip(a.model.params, b.model.params):
        assert q.dtype == np.float32
        np.testing.assert_allclose(q, p, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("m,k,sigma", [(12, 3, SIGMA), (100, 10, 5.0), (7, 7, 0.3)])
def test_label_r_in_closed_form_matches_the_definition(m, k, sigma):
    """R_Y of one-hot labels without a factorisation (classes absent from the
    batch included), and the general path for more classes than rows."""
    labels = np.random.default_rng(m).integers(0, k, m)
    labels[labels == k - 1] = 0                  # class k - 1 absent
    ws = hk.hsic_workspace(m, k)
    R, y = np.zeros(m * m), np.zeros((m, k))
    assert K.label_r(labels, np.zeros((0, 0)), m, sigma, EPS, ws, y, R) == 0
    want = nv.normalized_r(np.eye(k)[labels], sigma, EPS)
    np.testing.assert_allclose(R.reshape(m, m), want, rtol=0, atol=1e-11)
    R3 = np.zeros(9)
    assert K.label_r(labels[:3], np.zeros((0, 0)), 3, sigma, EPS, ws, y, R3) == 0
    np.testing.assert_allclose(R3.reshape(3, 3), nv.normalized_r(np.eye(k)[labels[:3]], sigma,
                                                                 EPS), rtol=0, atol=1e-11)


def test_target_rows_act_as_labels():
    X, y = batch()
    a, b = make(), make()
    a.step(X, y)
    b.step(X, np.eye(3)[y])      # R_Y by factorisation instead of in closed form
    np.testing.assert_allclose(a.model.flat_params, b.model.flat_params, rtol=1e-9,
                               atol=1e-12)


def test_records_nhsic_and_objectives():
    tr = make()
    X, y = batch()
    assert np.isnan(tr.last_nhsic).all() and tr.last_nhsic.shape == (2, 2)
    tr.step(X, y)
    info = tr.last_nhsic          # of the capped Z_l, before the layer's update
    p = [q.copy() for q in tr.model.params]
    assert np.all((info > 0) & (info < len(y)))
    hist = tr.fit(X, y, epochs=2, batch_size=6, shuffle=False)
    assert len(tr.hsic_objectives) == 2 and np.all(np.isfinite(tr.hsic_objectives))
    assert hist.iterations == 4 and p[0].shape == tr.model.params[0].shape


# -- format modes ------------------------------------------------------------------------------

def test_after_mode_phases_freeze_the_other_layers():
    """format='after', 5 epochs, format_epochs=2: epochs 1-3 move only the
    hidden layers, epochs 4-5 only the output layer (the hidden layers stay
    bit for bit)."""
    rng = np.random.default_rng(3)
    X, y = rng.normal(size=(40, 6)), rng.integers(0, 3, 40)
    tr = make(optimizer=fb.Adam(1e-2), format="after", format_epochs=2)
    snapshots = [tr.model.flat_params.copy()]
    tr.fit(X, y, epochs=5, batch_size=8, seed=0,
           callbacks=[lambda t, e, h: snapshots.append(t.model.flat_params.copy())])
    n_hidden = sum(p.size for p in tr.model.params[:4])
    views = [tr.model.views(s) for s in snapshots]

    def hidden(v):
        return np.concatenate([q.ravel() for q in v[:4]])

    def output(v):
        return np.concatenate([q.ravel() for q in v[4:]])
    assert n_hidden == hidden(views[0]).size
    for e in range(1, 4):
        assert not np.array_equal(hidden(views[e]), hidden(views[e - 1]))
        np.testing.assert_array_equal(output(views[e]), output(views[0]))
    for e in (4, 5):
        np.testing.assert_array_equal(hidden(views[e]), hidden(views[3]))
        assert not np.array_equal(output(views[e]), output(views[e - 1]))
    assert np.isnan(tr.hsic_objectives[3:]).all() and np.isfinite(tr.hsic_objectives[:3]).all()


def test_after_mode_keeps_one_hsic_epoch_and_fit_format_only_formats():
    rng = np.random.default_rng(4)
    X, y = rng.normal(size=(20, 6)), rng.integers(0, 3, 20)
    tr = make(format="after", format_epochs=5)
    before = tr.model.flat_params.copy()
    tr.fit(X, y, epochs=1, batch_size=10, seed=0)     # one HSIC epoch, no format epoch
    v0, v1 = tr.model.views(before), tr.model.params
    assert not np.array_equal(v0[0], v1[0])
    np.testing.assert_array_equal(v0[4], v1[4])
    hidden = [p.copy() for p in tr.model.params[:4]]
    tr.fit_format(X, y, epochs=2, batch_size=10, seed=0)
    for a, b in zip(hidden, tr.model.params[:4]):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(v0[4], tr.model.params[4])


def _fused_and_steps(fmt, loss="cross_entropy"):
    rng = np.random.default_rng(5)
    n, bs = 33, 8                    # 33 = 4 * 8 + 1: the leftover joins the last batch
    X = rng.normal(size=(n, 6))
    y = rng.integers(0, 3, n) if loss == "cross_entropy" else rng.normal(size=(n, 3))
    output = "softmax" if loss == "cross_entropy" else "identity"
    trainers = []
    for _ in range(2):
        model = fb.MLP([6, 9, 7, 3], activation="tanh", output=output, dtype=np.float64,
                       seed=0)
        trainers.append(HSICTrainer(model, loss=loss, optimizer=fb.Adam(1e-2), sigma=SIGMA,
                                    beta=BETA, epsilon=EPS, weight_decay=1e-3, clip_norm=0.5,
                                    format=fmt, format_epochs=1))
    a, b = trainers
    hist = a.fit(X, y, epochs=3, batch_size=bs, shuffle=False)
    bounds = [(0, 8), (8, 16), (16, 24), (24, 33)]
    objectives = []
    for epoch in range(3):
        for s, e in bounds:
            step = b.format_step if fmt == "after" and epoch == 2 else b.step
            objectives.append(step(X[s:e], y[s:e]))
    return a, b, hist, np.array(objectives).reshape(3, 4), bounds


@pytest.mark.parametrize("fmt,loss", [("joint", "cross_entropy"), ("after", "cross_entropy"),
                                      ("joint", "mse")])
def test_fused_epochs_take_the_steps_of_step(fmt, loss):
    a, b, hist, objectives, bounds = _fused_and_steps(fmt, loss)
    np.testing.assert_array_equal(a.model.flat_params, b.model.flat_params)
    np.testing.assert_array_equal(a.optimizer.state, b.optimizer.state)
    assert a.optimizer.t == b.optimizer.t == 12
    assert hist.iterations == 12
    sizes = np.array([e - s for s, e in bounds])
    np.testing.assert_allclose(hist.loss, (objectives * sizes).sum(axis=1) / 33, rtol=1e-12)


def test_no_allocation_per_step():
    """One fused call of 8 epochs allocates what a call of 1 epoch does (the
    meminfos of its array arguments): nothing per step. Numba's allocation
    counters are switched on through its runtime module, when it has them."""
    nrt = pytest.importorskip("numba.core.runtime._nrt_python")
    from numba.core.runtime import rtsys
    from fastbp.kernels.epochs import EpochPlan
    if not hasattr(nrt, "memsys_enable_stats"):
        pytest.skip("this Numba cannot count allocations at run time")
    rng = np.random.default_rng(9)
    X, y = rng.normal(size=(33, 6)), rng.integers(0, 3, 33)
    tr = make(optimizer=fb.Adam(1e-3))
    data = tr.epoch_data(*tr.prepare(X, y), np.arange(33), 8)
    counts = []
    enabled = nrt.memsys_stats_enabled()
    nrt.memsys_enable_stats()
    try:
        for epochs in (1, 1, 8):
            before = rtsys.get_allocation_stats().alloc
            status, ran = tr.fit_epochs(data, EpochPlan(epochs, True, np.uint64(0), 0, 8, 1),
                                        np.zeros((epochs, 4)))
            counts.append(rtsys.get_allocation_stats().alloc - before)
            assert status == 0 and ran == epochs
    finally:
        if not enabled:
            nrt.memsys_disable_stats()
    assert counts[0] > 0 and counts[1] == counts[2], counts   # counting, and flat


# -- divergence, state, input ----------------------------------------------------------------------

def test_divergence_leaves_everything_as_before():
    """A non-finite loss shows up after the hidden layers were updated (the
    output layer's logits overflow): they are restored, with the optimizer's
    moments and count."""
    rng = np.random.default_rng(6)
    model = fb.MLP([4, 5, 5, 3], activation="tanh", output="identity", dtype=np.float64, seed=0)
    tr = HSICTrainer(model, loss="mse", optimizer=fb.Adam(1e-2), sigma=SIGMA, beta=BETA)
    X, Y = rng.normal(size=(6, 4)), rng.normal(size=(6, 3))
    tr.step(X, Y)                               # moments and count not zero
    model.params[-2][...] = 1e308
    before = (model.flat_params.copy(), tr.optimizer.state.copy(), tr.optimizer.hyper.copy())
    with pytest.raises(fb.DivergenceError, match="non-finite loss"):
        tr.step(X, Y)
    with pytest.warns(RuntimeWarning):
        hist = tr.fit(X, Y, epochs=2, batch_size=3, on_divergence="stop")
    assert hist.diverged
    np.testing.assert_array_equal(model.flat_params, before[0])
    np.testing.assert_array_equal(tr.optimizer.state, before[1])
    np.testing.assert_array_equal(tr.optimizer.hyper, before[2])


def test_overflowing_update_leaves_everything_as_before():
    """float32, a huge learning rate: the output layer's update overflows after
    the hidden layers were updated (their directions are below 1e-2, the
    output layer's above 1e3)."""
    rng = np.random.default_rng(7)
    model = fb.MLP([40, 50, 3], activation="tanh", output="identity", seed=0)
    tr = HSICTrainer(model, loss="mse", optimizer=fb.SGD(1e36), sigma=SIGMA, beta=BETA)
    X = rng.normal(size=(6, 40)).astype(np.float32)
    before = model.flat_params.copy()
    with pytest.raises(fb.DivergenceError, match="overflows"):
        tr.step(X, rng.normal(size=(6, 3)).astype(np.float32) * 1e4)
    np.testing.assert_array_equal(model.flat_params, before)
    assert tr.optimizer.t == 0


@pytest.mark.parametrize("where", [K.CHUNK + 500, 80 * 90 + 10])
def test_update_failing_mid_layer_or_in_a_later_layer_restores_everything(where):
    """Layers are updated in place chunk by chunk: an update that overflows
    in the second chunk of W_1 (its first chunk already updated), or in W_2
    (W_1 and b_1 already updated), leaves parameters, velocity and count as
    before the step."""
    rng = np.random.default_rng(3)
    model = fb.MLP([80, 90, 7, 3], activation="tanh", output="softmax", dtype=np.float32,
                   seed=0)
    tr = HSICTrainer(model, optimizer=fb.SGD(1e3, momentum=0.9), sigma=SIGMA, beta=BETA)
    X, y = rng.normal(size=(12, 80)).astype(np.float32), rng.integers(0, 3, 12)
    tr.step(X, y)
    assert 80 * 90 > K.CHUNK + 500
    tr.optimizer.state[0, where] = 3e38
    before, state, t = model.flat_params.copy(), tr.optimizer.state.copy(), tr.optimizer.t
    with pytest.raises(fb.DivergenceError, match="overflows"):
        tr.step(X, y)
    np.testing.assert_array_equal(model.flat_params, before)
    np.testing.assert_array_equal(tr.optimizer.state, state)
    assert tr.optimizer.t == t


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("where", [K.CHUNK + 500, 80 * 90 + 90 * 7 + 7 * 3 + 90 + 1])
def test_adam_update_failing_restores_both_moments(dtype, where):
    """The backup is written by the update's own pass (Adam: parameters and
    both moments): a non-finite second moment in the second chunk of W_1, or
    in b_2 (W_1, b_1 and W_2 already updated), leaves parameters,
    both moments and the count bit for bit as before the step."""
    rng = np.random.default_rng(4)
    model = fb.MLP([80, 90, 7, 3], activation="tanh", output="softmax", dtype=dtype, seed=0)
    tr = HSICTrainer(model, optimizer=fb.Adam(1e-2), sigma=SIGMA, beta=BETA)
    X, y = rng.normal(size=(12, 80)).astype(dtype), rng.integers(0, 3, 12)
    tr.step(X, y)
    tr.step(X, y)
    tr.optimizer.state[1, where] = np.inf
    before, state, t = model.flat_params.copy(), tr.optimizer.state.copy(), tr.optimizer.t
    with pytest.raises(fb.DivergenceError):
        tr.step(X, y)
    np.testing.assert_array_equal(model.flat_params, before)
    np.testing.assert_array_equal(tr.optimizer.state, state)
    assert tr.optimizer.t == t
    tr.optimizer.state[1, where] = state[1, where - 1]     # finite again: the step runs
    tr.step(X, y)
    assert tr.optimizer.t == t + 1


def test_update_columns_saving_is_update_columns_plus_a_backup():
    """fastbp.kernels.optim.update_columns_saving: the values of update_columns,
    and the range's old parameters and state in the backup, nothing else
    written there; for SGD, momentum and Adam in both dtypes."""
    from fastbp.kernels import optim as ko
    rng = np.random.default_rng(5)
    n, a, cn = 50, 7, 30
    for dtype in (np.float32, np.float64):
        for opt in (fb.SGD(0.1), fb.SGD(0.1, momentum=0.9, nesterov=True), fb.Adam(1e-2)):
            opt.bind(n, np.dtype(dtype))
            opt.state[...] = np.abs(rng.normal(size=opt.state.shape))
            hyper = opt.hyper.copy()
            hyper[ko.T] = 3.0
            p = rng.normal(size=n).astype(dtype)
            g = rng.normal(size=n).astype(dtype)
            p1, s1 = p.copy(), opt.state.copy()
            assert ko.update_columns(p1, g, s1, hyper, a, cn)
            p2, s2 = p.copy(), opt.state.copy()
            old_p, old_s = np.full_like(p, 7.0), np.full_like(s2, 7.0)
            assert ko.update_columns_saving(p2, g, s2, hyper, a, cn, old_p, old_s)
            np.testing.assert_array_equal(p2, p1)
            np.testing.assert_array_equal(s2, s1)
            np.testing.assert_array_equal(old_p[a:a + cn], p[a:a + cn])
            np.testing.assert_array_equal(old_s[:, a:a + cn], opt.state[:, a:a + cn])
            outside = np.r_[0:a, a + cn:n]
            assert (old_p[outside] == 7.0).all() and (old_s[:, outside] == 7.0).all()
            g[a + 3] = np.inf
            assert not ko.update_columns_saving(p.copy(), g, opt.state.copy(), hyper, a, cn,
                                                old_p, old_s)


def test_save_and_resume_exactly(tmp_path):
    rng = np.random.default_rng(8)
    X, y = rng.normal(size=(30, 6)), rng.integers(0, 3, 30)
    a = make(optimizer=fb.Adam(1e-2))
    a.fit(X, y, epochs=2, batch_size=10, seed=0)
    a.save_state(tmp_path / "hsic.npz")
    a.fit(X, y, epochs=2, batch_size=10, seed=1)
    b = make(seed=3, optimizer=fb.Adam(1e-2))
    b.load_state(tmp_path / "hsic.npz")
    b.fit(X, y, epochs=2, batch_size=10, seed=1)
    np.testing.assert_array_equal(a.model.flat_params, b.model.flat_params)
    np.testing.assert_array_equal(a.optimizer.state, b.optimizer.state)


@pytest.mark.parametrize("kwargs,match", [
    (dict(sigma=0.0), "sigma"), (dict(sigma=-1.0), "sigma"), (dict(epsilon=0.0), "epsilon"),
    (dict(beta=-0.5), "beta"), (dict(format="before"), "format"),
    (dict(format_epochs=0), "format_epochs"), (dict(max_spread=0.0), "max_spread")])
def test_bad_settings_name_the_argument(kwargs, match):
    model = fb.MLP([3, 4, 2], activation="tanh", output="softmax", seed=0)
    before = model.flat_params.copy()
    opt = fb.Adam(1e-3)
    with pytest.raises(ValueError, match=match):
        HSICTrainer(model, optimizer=opt, **kwargs)
    np.testing.assert_array_equal(model.flat_params, before)
    HSICTrainer(model, optimizer=opt)           # the failed constructor did not bind it


def test_bad_input():
    rnn = fb.ElmanRNN(2, 4, 2)
    with pytest.raises(TypeError, match="HSICTrainer trains fb.MLP"):
        HSICTrainer(rnn)
    tr = make()
    before = tr.model.flat_params.copy()
    X, y = batch()
    with pytest.raises(ValueError, match="at least 2 samples"):
        tr.step(X[:1], y[:1])
    with pytest.raises(ValueError, match="batch_size=1"):
        tr.fit(X, y, batch_size=1)
    with pytest.raises(ValueError, match="X has 1 sample"):
        tr.fit(X[:1], y[:1])
    with pytest.raises(ValueError, match="at least 2 samples"):
        tr.update_directions(X[:1], y[:1])
    with pytest.raises(ValueError):
        tr.step(np.full_like(X, np.nan), y)
    with pytest.raises(ValueError):
        tr.step(X, y + 5)
    np.testing.assert_array_equal(tr.model.flat_params, before)
    assert tr.optimizer.t == 0


def test_registered_and_repr():
    assert fb.get_trainer("hsic") is HSICTrainer is alternatives.HSICTrainer
    assert alternatives.nhsic is alternatives.hsic_measure.nhsic
    assert not HSICTrainer.supports(fb.ElmanRNN(2, 4, 2))
    text = repr(make(format="after"))
    assert "HSICTrainer" in text and "format='after'" in text and "sigma=1.5" in text


def test_entry_point_in_pyproject():
    tomllib = pytest.importorskip("tomllib")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with open(os.path.join(root, "pyproject.toml"), "rb") as f:
        groups = tomllib.load(f)["project"]["entry-points"]
    assert groups["fastbp.trainers"]["hsic"] == "alternatives:HSICTrainer"


def test_written_on_the_public_surface():
    """The trainer and its step kernels import no private fastbp module or
    name, and the trainer reads no underscore attribute but its own."""
    base = {k for k in dir(fb.Trainer) if k.startswith("_") and not k.startswith("__")}
    base |= {k for k in vars(fb.Trainer(fb.MLP([2, 2]))) if k.startswith("_")}
    for module in (HSICTrainer.__module__, "alternatives._hsic_step"):
        tree = ast.parse(open(sys.modules[module].__file__).read())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("fastbp"):
                names = node.module.split(".") + [a.name for a in node.names]
                assert not any(n.startswith("_") for n in names), (module, names)
            if isinstance(node, ast.Attribute) and node.attr.startswith("_") \
                    and not node.attr.startswith("__"):
                assert isinstance(node.value, ast.Name) and node.value.id in ("self", "plan"), \
                    (module, node.attr)
                assert node.attr not in base or node.value.id == "plan", (module, node.attr)


def test_compare_runs_it_and_marks_recurrent_tasks_not_applicable():
    res = fb.compare(tasks=["xor", "adding:length=5,n_train=64,n_test=32"],
                     trainers=["backprop", "hsic"], seeds=1, epochs=3, progress=False)
    runs = {(r["task"].split(":")[0], r["trainer"]): r for r in res.runs}
    assert runs["xor", "hsic"]["status"] == "ok", runs["xor", "hsic"].get("reason")
    assert len(runs["xor", "hsic"]["test_accuracy"]) == 3
    assert runs["adding", "hsic"]["status"] == "not_applicable"
    assert "HSICTrainer trains fb.MLP" in runs["adding", "hsic"]["reason"]


# -- learning ------------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["joint", "after"])
def test_digits_accuracy_after_formatting(digits, fmt):
    """Settings: MLP [64, 100, 100, 10] tanh, softmax, xavier seed 0, float32;
    digits scaled to [0, 1], 75/25 split (random_state 0); the defaults
    (sigma 5, beta 50, epsilon 1e-5, max_spread 1, format_epochs 5) with
    Adam(1e-3), batch 64, 15 epochs, shuffle seed 0. Measured 0.947 joint,
    0.951 after (10 HSIC + 5 format epochs); model and shuffle seeds 1-3:
    0.951, 0.956, 0.953 joint, 0.944, 0.951, 0.940 after."""
    Xtr, Xte, ytr, yte = digits
    model = fb.MLP([64, 100, 100, 10], activation="tanh", output="softmax", seed=0)
    tr = HSICTrainer(model, optimizer=fb.Adam(1e-3), format=fmt)
    hist = tr.fit(Xtr, ytr, epochs=15, batch_size=64, seed=0)
    assert not hist.diverged
    assert tr.evaluate(Xte, yte)["accuracy"] >= 0.90

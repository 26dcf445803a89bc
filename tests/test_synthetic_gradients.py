"""Synthetic gradients / decoupled neural interfaces (alternatives.SyntheticGradientTrainer).

* every kernel against the plain-NumPy twins in ``naive_sg`` (float64, tight
  tolerance; loop and BLAS paths; linear and hidden modules; DNI and cDNI;
  labels and target rows; partial decoupling);
* the perfect oracle: modules replaced by the true gradient give backprop's
  update, both with given gradients and with linear cDNI modules set to the
  exact gradient map of a linear network;
* the fused epoch kernel takes exactly the steps ``step`` takes;
* the modules' prediction error falls during training;
* the concurrent schedule: staleness 0 is the locked schedule, the threaded
  run equals its single-thread interleaving bit for bit, it is deterministic;
* float32, bad input, divergence (model and modules unchanged), save/load;
* digits with every hidden layer decoupled: cDNI >= 0.93, DNI >= 0.90 (slow).
"""
import numpy as np
import pytest

import fastbp as fb
import naive_sg
from alternatives import SyntheticGradientTrainer as SG
from alternatives import _sg_concurrent
from fastbp.kernels.epochs import EpochPlan

RTOL = 1e-10
ATOL = 1e-12


def _targets(rng, loss, n, k):
    if loss == "cross_entropy":
        return rng.integers(0, k, size=n)
    if loss == "binary_cross_entropy":
        return rng.uniform(0.0, 1.0, size=(n, k))
    return rng.normal(size=(n, k))


def _randomize_modules(tr, rng, scale=0.3):
    """Modules start with a zero last layer; give every entry a value."""
    tr.sg_params[...] = rng.normal(0.0, scale, size=tr.sg_params.shape)


# (sizes, hidden activations, output, loss, rows, decoupled, sg_hidden, conditioned)
CASES = [
    ([3, 5, 4, 2], ["tanh", "tanh"], "softmax", "cross_entropy", 7, "all", 0, False),
    ([3, 5, 4, 2], ["tanh", "relu"], "softmax", "cross_entropy", 7, "all", 0, True),
    ([4, 6, 5, 3], ["sigmoid", "leaky_relu"], "sigmoid", "binary_cross_entropy", 5, "all", 3,
     True),
    ([2, 3, 3, 4, 2], ["relu", "tanh", "sigmoid"], "identity", "mse", 6, [2], 4, True),
    ([2, 3, 3, 4, 2], ["tanh", "tanh", "tanh"], "identity", "squared_error", 6, [1, 3], 0,
     False),
    ([5, 4, 3], ["tanh"], "identity", "squared_error", 1, "all", 2, False),
    # large enough for the kernels' BLAS path (rows * n_in * n_out >= 4096)
    ([20, 64, 48, 10], ["tanh", "relu"], "softmax", "cross_entropy", 40, "all", 16, True),
    ([20, 64, 48, 10], ["relu", "relu"], "softmax", "cross_entropy", 40, [1], 0, False),
]


def _case(case, dtype=np.float64, seed=0, **kw):
    sizes, acts, output, loss, rows, dec, hid, cond = case
    model = fb.MLP(sizes, activation=acts, output=output, dtype=dtype, seed=seed,
                   init="uniform")
    tr = SG(model, loss=loss, decoupled=dec, sg_hidden=hid, conditioned=cond, sg_seed=seed,
            **kw)
    rng = np.random.default_rng(seed + 1)
    _randomize_modules(tr, rng)
    X = rng.normal(size=(rows, sizes[0])).astype(dtype)
    y = _targets(rng, loss, rows, sizes[-1])
    if not np.issubdtype(np.asarray(y).dtype, np.integer):
        y = y.astype(dtype)
    return tr, X, y


def _twin(tr, X, y, synthetic=None, lam=0.0):
    m = tr.model
    return naive_sg.sg_step_quantities(m.params[0::2], m.params[1::2], m.activations, m.output,
                                       tr.loss, X, y, tr.decoupled, tr.modules, tr.sg_hidden > 0,
                                       tr.conditioned, synthetic=synthetic, lam=lam)


def _ids(c):
    return "-".join(map(str, c[0])) + f"-{c[3]}-D{c[5]}-m{c[6]}-{'c' if c[7] else 'u'}"


@pytest.mark.parametrize("case", CASES, ids=_ids)
@pytest.mark.parametrize("lam", [0.0, 0.05])
def test_kernels_match_numpy_twin(case, lam):
    tr, X, y = _case(case, weight_decay=lam)
    dirs, preds, targets, mgrads, mloss = _twin(tr, X, y, lam=lam)
    got = tr.update_directions(X, y)
    assert len(got) == len(dirs) == len(tr.model.params)
    for g, w, p in zip(got, dirs, tr.model.params):
        assert g.shape == p.shape and g.dtype == p.dtype
        np.testing.assert_allclose(g, w, rtol=RTOL, atol=ATOL)
    P, T = tr.synthetic_gradients(X, y)
    assert len(P) == len(T) == len(tr.decoupled)
    for a, b in zip(P + T, preds + targets):
        np.testing.assert_allclose(a, b, rtol=RTOL, atol=ATOL)
    grads, loss = tr.module_directions(X, y)
    assert loss == pytest.approx(mloss, rel=1e-10)
    for views, gv, wv in zip(tr.modules, grads, mgrads):
        assert len(views) == len(gv) == len(wv)
        for v, g, w in zip(views, gv, wv):
            assert g.shape == v.shape
            np.testing.assert_allclose(g, w, rtol=RTOL, atol=ATOL)


def test_inspection_does_not_update():
    tr, X, y = _case(CASES[2])
    before = tr.model.flat_params.copy(), tr.sg_params.copy()
    tr.update_directions(X, y)
    tr.synthetic_gradients(X, y)
    tr.module_directions(X, y)
    np.testing.assert_array_equal(tr.model.flat_params, before[0])
    np.testing.assert_array_equal(tr.sg_params, before[1])


def test_modules_start_from_a_zero_last_layer():
    model = fb.MLP([6, 8, 7, 3], activation="relu", output="softmax", dtype=np.float64, seed=0)
    lin = SG(model, conditioned=True)
    assert np.all(lin.sg_params == 0)
    hid = SG(model.copy(), sg_hidden=5, conditioned=True, sg_seed=0)
    for views in hid.modules:
        Ph, Pc, p, U, u = views
        assert np.all(Ph != 0) and np.all(Pc != 0)
        assert np.all(p == 0) and np.all(U == 0) and np.all(u == 0)
    X = np.random.default_rng(0).normal(size=(4, 6))
    P, T = hid.synthetic_gradients(X, np.array([0, 1, 2, 0]))
    assert all(np.all(p == 0) for p in P)
    assert np.any(T[-1] != 0)


# -- the perfect oracle ----------------------------------------------------------------------

@pytest.mark.parametrize("rows", [8, 5])
def test_true_gradients_as_synthetic_give_backprop(rows):
    # a perfect module (prediction = the true dL_i/dh_l) gives backprop's update
    rng = np.random.default_rng(3)
    model = fb.MLP([6, 9, 8, 7, 4], activation=["tanh", "relu", "sigmoid"], output="softmax",
                   dtype=np.float64, seed=0, init="uniform")
    X = rng.normal(size=(rows, 6))
    y = rng.integers(0, 4, rows)
    bp = fb.BackpropTrainer(model.copy(), loss="cross_entropy", weight_decay=0.01)
    want = bp.gradients(X, y)
    for dec in ("all", [2], [1, 3]):
        tr = SG(model.copy(), loss="cross_entropy", decoupled=dec, weight_decay=0.01)
        m = tr.model
        oracle = naive_sg.true_hidden_gradients(m.params[0::2], m.params[1::2], m.activations,
                                                m.output, tr.loss, X, y, tr.decoupled)
        got = tr.update_directions(X, y, synthetic=oracle)
        for g, w in zip(got, want):
            if rows == 8:   # scaling by a power of two is exact: same bits as backprop
                np.testing.assert_allclose(g, w, rtol=1e-13, atol=1e-15)
            else:
                np.testing.assert_allclose(g, w, rtol=1e-11, atol=1e-14)


def _linear_oracle(tr):
    """Set every linear cDNI module of a linear network trained with
    squared_error to the exact map (h_l, y) -> dL/dh_l = A^T (A h_l + d - y),
    h_L = A h_l + d."""
    Ws = [np.asarray(W, np.float64) for W in tr.model.params[0::2]]
    bs = [np.asarray(b, np.float64) for b in tr.model.params[1::2]]
    L = len(Ws)
    for views, l in zip(tr.modules, tr.decoupled):
        A = np.eye(Ws[-1].shape[0])
        d = np.zeros(Ws[-1].shape[0])
        for j in range(L, l, -1):
            d = A @ bs[j - 1] + d
            A = A @ Ws[j - 1]
        Wh, Wc, b = views
        Wh[...] = A.T @ A
        Wc[...] = -A.T
        b[...] = A.T @ d


def test_exact_linear_cdni_modules_reproduce_backprop_steps():
    # for a linear network and squared error, dL/dh_l is linear in (h_l, y): a
    # linear cDNI module can be the perfect oracle. Then the modules' targets
    # equal their predictions, their loss is 0, and a step is backprop's step.
    rng = np.random.default_rng(4)
    model = fb.MLP([4, 6, 5, 5, 3], activation="identity", output="identity",
                   dtype=np.float64, seed=0, init="uniform")
    X = rng.normal(size=(10, 4))
    Y = rng.normal(size=(10, 3))
    tr = SG(model.copy(), loss="squared_error", conditioned=True, optimizer=fb.SGD(0.05),
            sg_optimizer=fb.SGD(0.1))
    bp = fb.BackpropTrainer(model.copy(), loss="squared_error", optimizer=fb.SGD(0.05))
    _linear_oracle(tr)
    P, T = tr.synthetic_gradients(X, Y)
    for p, t in zip(P, T):
        np.testing.assert_allclose(p, t, rtol=1e-10, atol=1e-12)
    for g, w in zip(tr.update_directions(X, Y), bp.gradients(X, Y)):
        np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-12)
    _, loss = tr.module_directions(X, Y)
    assert loss < 1e-20
    modules = tr.sg_params.copy()
    assert tr.step(X, Y) == pytest.approx(bp.step(X, Y), rel=1e-12)
    np.testing.assert_allclose(tr.model.flat_params, bp.model.flat_params, rtol=1e-10,
                               atol=1e-12)
    # a zero module loss means a zero module gradient: the oracle stays put
    np.testing.assert_allclose(tr.sg_params, modules, rtol=1e-10, atol=1e-12)


# -- steps and epochs ---------------------------------------------------------------------------

@pytest.mark.parametrize("labels", [True, False])
def test_fused_epochs_take_the_same_steps_as_step(labels):
    rng = np.random.default_rng(5)
    sizes = [6, 8, 7, 3]
    X = rng.normal(size=(50, 6))
    y = rng.integers(0, 3, 50)
    if not labels:
        y = np.eye(3)[y]

    def make():
        model = fb.MLP(sizes, activation="tanh", output="softmax", dtype=np.float64, seed=0)
        return SG(model, optimizer=fb.Adam(1e-2), sg_hidden=4, conditioned=True, sg_seed=0,
                  sg_optimizer=fb.Adam(1e-2))

    a, b = make(), make()
    hist = a.fit(X, y, epochs=2, batch_size=16, shuffle=False)
    losses = []
    for _ in range(2):
        for s in range(0, 50, 16):
            losses.append(b.step(X[s:s + 16], y[s:s + 16]))
    np.testing.assert_array_equal(a.model.flat_params, b.model.flat_params)
    np.testing.assert_array_equal(a.sg_params, b.sg_params)
    assert hist.iterations == 8
    assert len(a.sg_losses) == 2 and all(np.isfinite(a.sg_losses))
    assert a.optimizer.t == b.optimizer.t == a.sg_optimizer.t == 8


@pytest.mark.parametrize("sg_hidden", [0, 5])
def test_every_parameter_moves(sg_hidden):
    rng = np.random.default_rng(6)
    model = fb.MLP([6, 8, 7, 7, 3], activation="tanh", output="softmax", seed=0)
    tr = SG(model, optimizer=fb.Adam(1e-2), sg_hidden=sg_hidden, conditioned=True, sg_seed=0,
            sg_optimizer=fb.Adam(1e-2))
    X = rng.normal(size=(40, 6)).astype(np.float32)
    y = rng.integers(0, 3, 40)
    p0 = model.flat_params.copy()
    m0 = [[v.copy() for v in views] for views in tr.modules]
    tr.fit(X, y, epochs=3, batch_size=10, seed=0)
    assert np.all(model.flat_params != p0)
    for before, views in zip(m0, tr.modules):
        for a, b in zip(before, views):
            if sg_hidden == 0:
                assert np.all(a != b)
            else:   # a ReLU unit silent on every sample of a class keeps that Pc entry
                assert np.mean(a != b) > 0.5


def _digits():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    d = load_digits()
    X = (d.data / 16.0).astype(np.float32)
    return train_test_split(X, d.target, test_size=0.25, random_state=0)


def _relative_errors(tr, X, y):
    """Per module: ||g^ - G||^2 / ||G||^2 against the module's own training target
    G, and against the true backprop gradient dL/dh_l."""
    P, T = tr.synthetic_gradients(X, y)
    m = tr.model
    true = naive_sg.true_hidden_gradients(m.params[0::2], m.params[1::2], m.activations,
                                          m.output, tr.loss, X, y, tr.decoupled)

    def err(p, t):
        p, t = np.asarray(p, np.float64), np.asarray(t, np.float64)
        return float(np.sum((p - t) ** 2) / max(float(np.sum(t ** 2)), 1e-300))
    return [err(p, t) for p, t in zip(P, T)], [err(p, t) for p, t in zip(P, true)]


@pytest.mark.parametrize("conditioned,limit", [(False, 0.95), (True, 0.8)])
def test_module_prediction_error_falls(conditioned, limit):
    # relative squared error of the predictions, on the test split, against the
    # modules' own targets and against the true gradients: 1 at the start (zero
    # predictions), clearly below after one epoch (measured: DNI 0.88 / 0.86,
    # cDNI 0.70 / 0.55 for the top module / against the truth)
    Xtr, Xte, ytr, yte = _digits()
    model = fb.MLP([64, 64, 64, 10], activation="relu", output="softmax", seed=0)
    tr = SG(model, optimizer=fb.Adam(1e-3), conditioned=conditioned,
            sg_optimizer=fb.Adam(1e-3))
    rel, rel_true = _relative_errors(tr, Xte, yte)
    # zero predictions at the start (and so a zero bootstrapped target below the top)
    assert rel[-1] == 1.0 and rel_true == [1.0, 1.0]
    tr.fit(Xtr, ytr, epochs=1, batch_size=32, seed=0)
    rel, rel_true = _relative_errors(tr, Xte, yte)
    assert rel[-1] < limit and max(rel_true) < limit
    assert len(tr.sg_losses) == 1 and np.isfinite(tr.sg_losses[0])


# -- the concurrent schedule ---------------------------------------------------------------------

def _concurrent_pair(staleness, decoupled="all", sizes=(8, 12, 10, 9, 4), **kw):
    def make(schedule):
        model = fb.MLP(list(sizes), activation="tanh", output="softmax", dtype=np.float64,
                       seed=0)
        return SG(model, optimizer=fb.Adam(1e-2), sg_optimizer=fb.Adam(1e-2),
                  decoupled=decoupled, schedule=schedule, staleness=staleness, **kw)
    return make


def _data(n=70, n_in=8, k=4, seed=7):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, n_in)), rng.integers(0, k, n)


@pytest.mark.parametrize("decoupled", ["all", [2]])
def test_concurrent_with_staleness_zero_is_the_locked_schedule(decoupled):
    X, y = _data()
    make = _concurrent_pair(0, decoupled, sg_hidden=3, conditioned=True, sg_seed=0)
    locked, conc = make("locked"), make("concurrent")
    h1 = locked.fit(X, y, epochs=3, batch_size=16, seed=1)
    h2 = conc.fit(X, y, epochs=3, batch_size=16, seed=1)
    # the same operations on the same numbers: the same bits
    np.testing.assert_array_equal(conc.model.flat_params, locked.model.flat_params)
    np.testing.assert_array_equal(conc.sg_params, locked.sg_params)
    np.testing.assert_array_equal(conc.optimizer.state, locked.optimizer.state)
    np.testing.assert_array_equal(conc.sg_optimizer.state, locked.sg_optimizer.state)
    np.testing.assert_allclose(h2.loss, h1.loss, rtol=1e-12)
    np.testing.assert_allclose(conc.sg_losses, locked.sg_losses, rtol=1e-10)
    assert h2.accuracy == h1.accuracy
    assert conc.optimizer.t == locked.optimizer.t and conc.sg_optimizer.t == locked.sg_optimizer.t


def test_concurrent_staleness_zero_is_locked_for_regression_with_decay():
    # target rows as the context, an MSE loss, weight decay, unconditioned and
    # linear modules too, and float32
    rng = np.random.default_rng(11)
    X = rng.normal(size=(45, 5)).astype(np.float32)
    Y = rng.normal(size=(45, 3)).astype(np.float32)
    for cond, hid in ((True, 0), (False, 4)):
        def make(schedule):
            model = fb.MLP([5, 9, 8, 7, 3], activation=["relu", "tanh", "sigmoid"],
                           output="identity", seed=0)
            return SG(model, loss="mse", optimizer=fb.SGD(0.05, momentum=0.9),
                      sg_optimizer=fb.Adam(1e-2), conditioned=cond, sg_hidden=hid, sg_seed=0,
                      weight_decay=0.01, decoupled=[1, 3], schedule=schedule, staleness=0)
        locked, conc = make("locked"), make("concurrent")
        h1 = locked.fit(X, Y, epochs=2, batch_size=10, seed=3)
        h2 = conc.fit(X, Y, epochs=2, batch_size=10, seed=3)
        np.testing.assert_array_equal(conc.model.flat_params, locked.model.flat_params)
        np.testing.assert_array_equal(conc.sg_params, locked.sg_params)
        np.testing.assert_allclose(h2.loss, h1.loss, rtol=1e-5)


@pytest.mark.parametrize("staleness", [1, 3])
def test_concurrent_threads_equal_their_sequential_interleaving(staleness):
    # every group computes from the messages it receives, in batch order: the
    # threaded run is deterministic and equal to the one-thread interleaving
    X, y = _data()
    make = _concurrent_pair(staleness, conditioned=True)
    a, b, c = make("concurrent"), make("concurrent"), make("concurrent")
    a.fit(X, y, epochs=2, batch_size=8, seed=2)
    b.fit(X, y, epochs=2, batch_size=8, seed=2)
    order = np.arange(70, dtype=np.int64)
    stats = np.zeros((2, 4))
    Xp, lab, tgt = c.prepare(X, y)
    c._uses_labels = True
    seed = int(np.random.default_rng(2).integers(0, 2**63 - 1))
    plan = EpochPlan(2, True, np.uint64(seed), 0, 8, 1)
    status, ran = c._fit_concurrent(c.epoch_data(Xp, lab, tgt, order, 8), plan, stats,
                                    threaded=False)
    assert (status, ran) == (0, 2)
    for other in (b, c):
        np.testing.assert_array_equal(other.model.flat_params, a.model.flat_params)
        np.testing.assert_array_equal(other.sg_params, a.sg_params)
        np.testing.assert_array_equal(other.optimizer.state, a.optimizer.state)
    # and staleness changes the result (the modules train on older targets)
    lk = _concurrent_pair(0, conditioned=True)("locked")
    lk.fit(X, y, epochs=2, batch_size=8, seed=2)
    assert not np.array_equal(lk.sg_params, a.sg_params)


def test_concurrent_divergence_rolls_back_the_epoch():
    X, y = _data()
    tr = _concurrent_pair(1)("concurrent")
    tr.fit(X, y, epochs=1, batch_size=8, seed=0)
    p0, s0 = tr.model.flat_params.copy(), tr.sg_params.copy()
    st0, t0 = tr.optimizer.state.copy(), tr.optimizer.t
    tr.optimizer.lr = 1e300        # every update overflows
    with pytest.raises(fb.DivergenceError):
        tr.fit(X, y, epochs=2, batch_size=8, seed=1)
    np.testing.assert_array_equal(tr.model.flat_params, p0)
    np.testing.assert_array_equal(tr.sg_params, s0)
    np.testing.assert_array_equal(tr.optimizer.state, st0)
    assert tr.optimizer.t == t0


@pytest.mark.slow
def test_concurrent_learns_digits():
    # 64-128-128-10 relu, cDNI linear, staleness 1, Adam(1e-3) for both, 10 epochs of
    # batch 32, seed 0: measured 0.962
    Xtr, Xte, ytr, yte = _digits()
    model = fb.MLP([64, 128, 128, 10], activation="relu", output="softmax", seed=0)
    tr = SG(model, optimizer=fb.Adam(1e-3), conditioned=True, sg_optimizer=fb.Adam(1e-3),
            schedule="concurrent", staleness=1)
    hist = tr.fit(Xtr, ytr, epochs=10, batch_size=32, seed=0)
    assert not hist.diverged
    assert tr.evaluate(Xte, yte)["accuracy"] >= 0.93


# -- digits ---------------------------------------------------------------------------------------

DIGITS_SETTINGS = dict(epochs=30, batch_size=32)


@pytest.mark.slow
@pytest.mark.parametrize("conditioned,threshold", [(True, 0.93), (False, 0.90)])
def test_digits_every_hidden_layer_decoupled(conditioned, threshold):
    # 64-128-128-10 relu, float32, both hidden layers decoupled, linear modules,
    # Adam(1e-3) for the model and Adam(1e-2) for the modules, 30 epochs of batch 32,
    # seed 0. Measured: cDNI 0.973, DNI 0.964 (backprop, Adam(1e-3): 0.987)
    Xtr, Xte, ytr, yte = _digits()
    model = fb.MLP([64, 128, 128, 10], activation="relu", output="softmax", seed=0)
    tr = SG(model, optimizer=fb.Adam(1e-3), conditioned=conditioned, decoupled="all",
            sg_optimizer=fb.Adam(1e-2))
    hist = tr.fit(Xtr, ytr, seed=0, **DIGITS_SETTINGS)
    assert not hist.diverged
    assert tr.evaluate(Xte, yte)["accuracy"] >= threshold


# -- dtypes, bad input, divergence, state -----------------------------------------------------------

def test_float32_close_to_float64():
    case = CASES[6]
    t64, X, y = _case(case)
    t32, _, _ = _case(case, dtype=np.float32)
    t32.sg_params[...] = t64.sg_params
    for g32, g64 in zip(t32.update_directions(X.astype(np.float32), y),
                        t64.update_directions(X, y)):
        assert g32.dtype == np.float32
        np.testing.assert_allclose(g32, g64, rtol=2e-3, atol=2e-5)
    assert t32.sg_params.dtype == np.float32
    assert isinstance(t32.step(X.astype(np.float32), y), float)
    assert t32.sg_optimizer.state.dtype == np.float32


def test_bad_arguments_name_what_was_expected():
    model = fb.MLP([3, 4, 4, 2], output="softmax", seed=0)
    with pytest.raises(ValueError, match=r"decoupled contains 3.*\[1, 2\]"):
        SG(model, decoupled=[3])
    with pytest.raises(ValueError, match="decoupled contains 0"):
        SG(model, decoupled=[0])
    with pytest.raises(ValueError, match="twice"):
        SG(model, decoupled=[1, 1])
    with pytest.raises(TypeError, match="ints"):
        SG(model, decoupled=[1.0])
    with pytest.raises(ValueError, match="'some'"):
        SG(model, decoupled="some")
    with pytest.raises(TypeError, match="sequence"):
        SG(model, decoupled=3)
    with pytest.raises(ValueError, match="sg_hidden"):
        SG(model, sg_hidden=-1)
    with pytest.raises(TypeError, match="conditioned"):
        SG(model, conditioned="yes")
    with pytest.raises(ValueError, match="schedule"):
        SG(model, schedule="async")
    with pytest.raises(ValueError, match="staleness"):
        SG(model, schedule="concurrent", staleness=-1)
    with pytest.raises(ValueError, match="concurrent"):
        SG(model, schedule="concurrent", decoupled=[])
    opt = fb.Adam(1e-3)
    with pytest.raises(ValueError, match="sg_optimizer"):
        SG(model, optimizer=opt, sg_optimizer=opt)
    with pytest.raises(TypeError, match="fb.MLP"):
        SG("not a model")
    with pytest.raises(TypeError, match="truncate"):
        SG(model, truncate=8)
    tr = SG(model)
    with pytest.raises(TypeError, match="astype"):
        tr.step(np.ones((2, 3), np.float64), np.array([0, 1]))
    with pytest.raises(ValueError, match="label 2"):
        tr.step(np.ones((2, 3), np.float32), np.array([0, 2]))
    with pytest.raises(ValueError, match=r"synthetic\[1\] has shape"):
        tr.update_directions(np.ones((2, 3), np.float32), np.array([0, 1]),
                             synthetic=[np.zeros((2, 4)), np.zeros((3, 4))])
    with pytest.raises(ValueError, match="2 arrays"):
        tr.update_directions(np.ones((2, 3), np.float32), np.array([0, 1]),
                             synthetic=[np.zeros((2, 4))])
    assert fb.TRAINERS["sg"] is SG
    assert "conditioned=True" in repr(tr) and "decoupled=(1, 2)" in repr(tr)   # cDNI default


def test_no_hidden_layer_and_no_decoupling_is_backprop():
    rng = np.random.default_rng(8)
    X = rng.normal(size=(9, 5))
    y = rng.integers(0, 3, 9)
    for sizes, dec in (([5, 3], "all"), ([5, 6, 3], [])):
        model = fb.MLP(sizes, activation="tanh", output="softmax", dtype=np.float64, seed=0)
        tr = SG(model.copy(), decoupled=dec)
        assert tr.decoupled == () and tr.sg_params.shape == (0,)
        bp = fb.BackpropTrainer(model.copy())
        for g, w in zip(tr.update_directions(X, y), bp.gradients(X, y)):
            np.testing.assert_array_equal(g, w)
        assert tr.step(X, y) == bp.step(X, y)
        np.testing.assert_array_equal(tr.model.flat_params, bp.model.flat_params)


@pytest.mark.parametrize("where", ["module", "model"])
def test_divergence_leaves_model_and_modules_unchanged(where):
    tr, X, y = _case(CASES[2])
    if where == "module":
        tr.modules[0][-1][0] = np.inf        # a prediction, hence a gradient, turns inf
    else:
        tr.model.params[-2][0, 0] = 1e308    # the logits, hence the loss, overflow
    p0, s0 = tr.model.flat_params.copy(), tr.sg_params.copy()
    o0, q0 = tr.optimizer.state.copy(), tr.sg_optimizer.state.copy()
    with pytest.raises(fb.DivergenceError):
        tr.step(X, y)
    with pytest.warns(RuntimeWarning, match="non-finite"):
        hist = tr.fit(X, y, epochs=2, batch_size=3, on_divergence="stop")
    assert hist.diverged
    np.testing.assert_array_equal(tr.model.flat_params, p0)
    np.testing.assert_array_equal(tr.sg_params, s0)
    np.testing.assert_array_equal(tr.optimizer.state, o0)
    np.testing.assert_array_equal(tr.sg_optimizer.state, q0)
    assert tr.optimizer.t == 0 and tr.sg_optimizer.t == 0


def test_save_and_load_state_round_trip(tmp_path):
    rng = np.random.default_rng(9)
    X = rng.normal(size=(60, 6)).astype(np.float32)
    y = rng.integers(0, 3, 60)

    def make(seed):
        model = fb.MLP([6, 8, 7, 3], activation="tanh", output="softmax", seed=seed)
        return SG(model, optimizer=fb.Adam(1e-2), sg_hidden=4, conditioned=True, sg_seed=seed)

    a = make(0)
    a.fit(X, y, epochs=2, batch_size=16, seed=0)
    a.save_state(tmp_path / "sg.npz")
    b = make(5)
    b.load_state(tmp_path / "sg.npz")
    np.testing.assert_array_equal(b.model.flat_params, a.model.flat_params)
    for k, v in a.state_arrays().items():
        np.testing.assert_array_equal(b.state_arrays()[k], v, err_msg=k)
    assert set(a.state_arrays()) >= {"sg_params", "sg_optimizer_state", "sg_optimizer_hyper"}
    for _ in range(4):
        assert a.step(X[:16], y[:16]) == b.step(X[:16], y[:16])
    np.testing.assert_array_equal(a.model.flat_params, b.model.flat_params)
    np.testing.assert_array_equal(a.sg_params, b.sg_params)
    other = SG(fb.MLP([6, 8, 7, 3], activation="tanh", output="softmax", seed=0),
               sg_hidden=5, conditioned=True)
    before = other.sg_params.copy()
    with pytest.raises(ValueError, match="sg_params"):
        other.load_state(tmp_path / "sg.npz")
    np.testing.assert_array_equal(other.sg_params, before)

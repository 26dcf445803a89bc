"""alternatives.AltMinTrainer (online alternating minimisation, Choromanska et
al. 2019) on the trainer level; the kernels' own tests (code gradients,
closed-form codes, the sweep, the memory's weights) are in
test_altmin_kernels.py.

* definitions: mu -> infinity is a backprop step on the output layer alone;
  AM-mem with decay 0 approaches the least-squares fit W = B A^-1 of every
  batch seen;
* every step and update direction against the NumPy twin (naive_altmin),
  batches of several sizes through the trainer's buffers;
* all or nothing on divergence (parameters, optimizer state, memory);
  save/resume exact, memory included; fused fit == step by step;
* bad arguments, recurrent models, the registry and fastbp compare;
* learning digits (marked slow).
"""
import os
import re

import numpy as np
import pytest

import alternatives
import fastbp as fb
import naive
import naive_altmin as twin
from alternatives import AltMinTrainer

HYPER = dict(mu=0.05, code_lr=0.5, code_momentum=0.9, code_steps=3)
CODE_HYPER = (0.05, 0.5, 0.9, 3)      # the twin's (mu, lr, momentum, steps)


def _net(sizes=(4, 6, 5, 3), loss="cross_entropy", dtype=np.float64, seed=0):
    output = {"cross_entropy": "softmax", "mse": "identity"}[loss]
    return fb.MLP(list(sizes), activation="tanh", output=output, dtype=dtype, seed=seed,
                  init="uniform")


def _batch(sizes, rows, loss="cross_entropy", dtype=np.float64, seed=1):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(rows, sizes[0])).astype(dtype)
    if loss == "cross_entropy":
        return X, rng.integers(0, sizes[-1], rows)
    return X, rng.normal(size=(rows, sizes[-1])).astype(dtype)


def _acts(model):
    return ["tanh"] * (len(model.sizes) - 2) + [model.output]


def _memory(trainer):
    return trainer.parameter_sets["memory"].params


def _twin_opt(opt):
    h = opt.hyper
    return ("sgd", h[1], h[2], bool(h[3])) if h[0] == 0 else ("adam", h[1], h[2], h[3], h[4])


def _snapshot(trainer):
    arrays = {k: v.copy() for k, v in trainer.state_arrays().items()}
    arrays["params"] = trainer.model.flat_params.copy()
    return arrays


def _assert_same(snapshot, trainer):
    now = _snapshot(trainer)
    assert now.keys() == snapshot.keys()
    for k in now:
        np.testing.assert_array_equal(now[k], snapshot[k], err_msg=k)


# -- definitions -------------------------------------------------------------------------------

@pytest.mark.parametrize("memory", [None, 0.0])
def test_huge_mu_is_a_backprop_step_on_the_output_layer(memory):
    """mu = 1e12: the top code stays at c0, so every code does, every hidden
    layer already fits its code (no gradient; a sweep on W a = c0 stays put)
    and the output layer takes exactly backprop's SGD step."""
    model = _net()
    X, y = _batch(model.sizes, 8)
    start = [p.copy() for p in model.params]
    g = fb.BackpropTrainer(model.copy(), optimizer=fb.SGD(0.1)).gradients(X, y)
    kw = {} if memory is None else dict(memory=memory, ridge=0.0)
    trainer = AltMinTrainer(model, optimizer=fb.SGD(0.1), mu=1e12, **kw)
    trainer.step(X, y)
    for p, p0 in zip(model.params[:-2], start[:-2]):
        np.testing.assert_allclose(p, p0, rtol=0, atol=1e-9)
    for p, p0, gi in zip(model.params[-2:], start[-2:], g[-2:]):
        np.testing.assert_allclose(p, p0 - 0.1 * gi, rtol=1e-9, atol=1e-12)
        assert np.abs(gi).max() > 1e-3


def test_memory_with_decay_0_approaches_the_least_squares_fit_of_every_batch():
    """AM-mem, decay 0, ridge 0: A and B sum every batch seen (every sample
    counted), and each step sweeps once, so over many steps [W_1 b_1] tends
    to B A^-1. Each step also adds its batch, whose codes moved away from
    W a, so the target moves by O(1/t) and the distance falls roughly like
    1/t rather than reaching 0 (measured: 1e-3 after 4 steps, 2.5e-5 after
    1004, 5.9e-6 after 4004); the kernel tests sweep a fixed memory to the
    fit itself. One hidden layer, whose inputs x do not change: a layer fed
    by codes (correlated tanh outputs) converges more slowly."""
    sizes = (3, 5, 2)
    model = _net(sizes)
    trainer = AltMinTrainer(model, optimizer=fb.SGD(0.05), memory=0.0, ridge=0.0, mu=0.5,
                            code_lr=0.05)
    batches = [_batch(sizes, 8, seed=s) for s in range(4)]

    def distance():
        (A, B), = trainer.memory_matrices()
        fit = np.linalg.solve(A, B.T).T
        Wb = np.hstack([model.params[0], model.params[1][:, None]])
        return np.abs(Wb - fit).max() / np.abs(fit).max()

    for X, y in batches:
        trainer.step(X, y)
    early = distance()
    for k in range(4000):
        trainer.step(*batches[k % 4])
    late = distance()
    assert late < 2e-5 and late < early / 50
    A, _ = trainer.memory_matrices()[0]
    assert A[-1, -1] == 8 * 4004
    X = np.vstack([X for X, _ in batches])
    np.testing.assert_allclose(A[:3, :3], 1001 * X.T @ X, rtol=1e-12)


# -- against the twin --------------------------------------------------------------------------

CASES = {
    "am-f64-ce-adam-decay": dict(dtype=np.float64, loss="cross_entropy", memory=None,
                                 opt=lambda: fb.Adam(0.01), lam=0.01, clip=None),
    "am-f32-mse-nesterov-clip": dict(dtype=np.float32, loss="mse", memory=None,
                                     opt=lambda: fb.SGD(0.1, momentum=0.9, nesterov=True),
                                     lam=0.0, clip=0.05),
    "mem-f64-ce-sgd-decay0": dict(dtype=np.float64, loss="cross_entropy", memory=0.0,
                                  ridge=0.0, opt=lambda: fb.SGD(0.2, momentum=0.5), lam=0.0,
                                  clip=None),
    "mem-f64-mse-adam-ridge": dict(dtype=np.float64, loss="mse", memory=0.3, ridge=0.05,
                                   opt=lambda: fb.Adam(0.01), lam=0.01, clip=0.1),
}


def _case(name, sizes=(4, 6, 5, 3)):
    c = CASES[name]
    model = _net(sizes, c["loss"], c["dtype"])
    kw = {} if c["memory"] is None else dict(memory=c["memory"], ridge=c["ridge"])
    trainer = AltMinTrainer(model, loss=c["loss"], optimizer=c["opt"](), weight_decay=c["lam"],
                            clip_norm=c["clip"], **HYPER, **kw)
    return c, model, trainer


def _tol(dtype):
    return dict(rtol=1e-10, atol=1e-12) if dtype == np.float64 else dict(rtol=2e-4, atol=2e-5)


@pytest.mark.parametrize("name", sorted(CASES))
def test_every_step_matches_the_twin(name):
    """Batches of 6, 3 (below the buffers' capacity) and 9 (buffers grown)
    through ``step``: parameters, objective, accuracy and memory as the
    twin's, in the model's dtype."""
    c, model, trainer = _case(name)
    acts, sizes, tol = _acts(model), model.sizes, _tol(c["dtype"])
    state, lam, clip = {}, c["lam"], c["clip"] or 0.0
    memory = [(np.zeros((n + 1, n + 1)), np.zeros((m, n + 1)))
              for n, m in zip(sizes[:-2], sizes[1:-1])]
    for i, rows in enumerate((6, 3, 9, 6)):
        X, y = _batch(sizes, rows, c["loss"], c["dtype"], seed=i)
        layers = naive.unflatten(model.flat_params, sizes)
        before = trainer.evaluate(X, y)
        objective = trainer.step(X, y)
        if c["memory"] is None:
            want, want_obj, _ = twin.step(layers, acts, X, y, c["loss"], CODE_HYPER,
                                          _twin_opt(trainer.optimizer), state, lam, clip)
        else:
            want, memory, want_obj, _ = twin.mem_step(
                layers, acts, X, y, c["loss"], CODE_HYPER, c["memory"], c["ridge"], memory,
                _twin_opt(trainer.optimizer), state, lam, clip)
            for (A, B), (wa, wb) in zip(trainer.memory_matrices(), memory):
                np.testing.assert_allclose(A, wa, **tol)
                np.testing.assert_allclose(B, wb, **tol)
            memory = trainer.memory_matrices()    # continue from the trainer's state
        assert model.flat_params.dtype == c["dtype"]
        np.testing.assert_allclose(model.flat_params, naive.flatten(want), **tol)
        assert objective == pytest.approx(want_obj, rel=tol["rtol"] * 10, abs=tol["atol"])
        if not lam:
            assert objective == pytest.approx(before["loss"], rel=tol["rtol"] * 10)


@pytest.mark.parametrize("name", sorted(CASES))
def test_update_directions_match_the_twin_and_change_nothing(name):
    c, model, trainer = _case(name)
    sizes, acts, tol = model.sizes, _acts(model), _tol(c["dtype"])
    for i in range(2):                                   # some optimizer state and memory
        trainer.step(*_batch(sizes, 6, c["loss"], c["dtype"], seed=10 + i))
    X, y = _batch(sizes, 5, c["loss"], c["dtype"])
    snapshot = _snapshot(trainer)
    got = trainer.update_directions(X, y)
    _assert_same(snapshot, trainer)
    layers = naive.unflatten(model.flat_params, sizes)
    lam = c["lam"]
    _, codes = twin.update_codes(layers, acts, X, y, c["loss"], *CODE_HYPER)
    if c["memory"] is None:
        want = twin.weight_gradients(layers, acts, X, y, c["loss"], codes)
        want = [(dW + lam * W, db) for (dW, db), (W, _) in zip(want, layers)]
    else:
        memory = trainer.memory_matrices()
        swept, _, _, _ = twin.mem_step(layers, acts, X, y, c["loss"], CODE_HYPER, c["memory"],
                                       c["ridge"], memory, ("sgd", 0.0, 0.0, False), {})
        want = [(W - Ws, b - bs) for (W, b), (Ws, bs) in zip(layers[:-1], swept[:-1])]
        dW, db = twin.output_gradient(layers, acts, X, y, c["loss"], codes)
        want.append((dW + lam * layers[-1][0], db))
    assert len(got) == len(model.params)
    for g, w, p in zip(got, [a for pair in want for a in pair], model.params):
        assert g.shape == p.shape and g.dtype == c["dtype"]
        np.testing.assert_allclose(g, w, **tol)
    assert all(np.abs(g).max() > 1e-8 for g in got[0::2])


@pytest.mark.parametrize("memory", [None, 0.0])
def test_without_hidden_layers_it_is_backprop(memory):
    """No codes and no memory: directions and fitted parameters are backprop's."""
    model = _net((4, 3))
    X, y = _batch(model.sizes, 20)
    trainer = AltMinTrainer(model, optimizer=fb.SGD(0.1), memory=memory)
    bp = fb.BackpropTrainer(model.copy(), optimizer=fb.SGD(0.1))
    for g, w in zip(trainer.update_directions(X, y), bp.gradients(X, y)):
        np.testing.assert_array_equal(g, w)
    trainer.fit(X, y, epochs=2, batch_size=8, seed=0)
    bp.fit(X, y, epochs=2, batch_size=8, seed=0)
    np.testing.assert_array_equal(model.flat_params, bp.model.flat_params)
    assert trainer.memory_matrices() == []


# -- all or nothing, saving, fused epochs -------------------------------------------------------

# float32 with overflowing targets, and float64 (whose AM-mem step the twin tests compile)
@pytest.mark.parametrize("memory, dtype, scale", [(None, np.float32, 1e30),
                                                  (0.1, np.float64, 1e200)])
def test_divergence_leaves_parameters_optimizer_state_and_memory(memory, dtype, scale):
    model = _net((4, 5, 5, 2), "mse", dtype)
    kw = {} if memory is None else dict(memory=memory)
    trainer = AltMinTrainer(model, loss="mse", optimizer=fb.SGD(1e10, momentum=0.9), **kw)
    X, y = _batch(model.sizes, 20, "mse", dtype)
    trainer.optimizer.hyper[1] = 1e-3
    trainer.step(X, y)                                   # state and memory not zero
    trainer.step(X, y)
    trainer.optimizer.hyper[1] = 1e10
    snapshot = _snapshot(trainer)
    assert np.abs(snapshot["optimizer_state"]).max() > 0
    if memory is not None:
        assert np.abs(_memory(trainer)).max() > 0
    big_X, big_y = X * 1e3, y * scale
    with pytest.raises(fb.DivergenceError):
        trainer.step(big_X, big_y)
    _assert_same(snapshot, trainer)
    with pytest.warns(RuntimeWarning):
        hist = trainer.fit(big_X, big_y, epochs=2, batch_size=5, on_divergence="stop")
    assert hist.diverged
    _assert_same(snapshot, trainer)


@pytest.mark.parametrize("memory", [None, 0.0])
def test_save_and_resume_exactly(tmp_path, memory):
    kw = {} if memory is None else dict(memory=memory)

    def make():
        return AltMinTrainer(_net(), optimizer=fb.Adam(0.01), **HYPER, **kw)

    trainer = make()
    batches = [_batch(trainer.model.sizes, 6, seed=s) for s in range(6)]
    for X, y in batches[:3]:
        trainer.step(X, y)
    path = tmp_path / "altmin.npz"
    trainer.save_state(path)
    saved = _snapshot(trainer)
    for X, y in batches[3:]:
        trainer.step(X, y)
    after = _snapshot(trainer)
    resumed = make()
    resumed.load_state(path)
    _assert_same(saved, resumed)
    for X, y in batches[3:]:
        resumed.step(X, y)
    for k in after:
        np.testing.assert_array_equal(_snapshot(resumed)[k], after[k], err_msg=k)
    if memory is not None:
        assert "memory_params" in after and np.abs(after["memory_params"]).max() > 0
        # a memory that is not finite is neither saved nor loaded
        _memory(trainer)[3] = np.nan
        with pytest.raises(ValueError, match="memory_params"):
            trainer.save_state(tmp_path / "bad.npz")
        with np.load(path) as f:
            arrays = dict(f)
        arrays["trainer/memory_params"][3] = np.nan
        np.savez(tmp_path / "bad.npz", **arrays)
        with pytest.raises(ValueError, match="memory_params"):
            resumed.load_state(tmp_path / "bad.npz")
        for k in after:
            np.testing.assert_array_equal(_snapshot(resumed)[k], after[k], err_msg=k)


@pytest.mark.parametrize("memory", [None, 0.2])
@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
def test_fused_fit_takes_the_steps_of_step(memory, loss):
    """fit (one compiled epoch kernel) applies bit for bit the updates that
    ``step`` applies batch after batch (no shuffling; a last partial batch;
    labels and target rows)."""
    kw = {} if memory is None else dict(memory=memory)
    a = _net((5, 7, 6, 3), loss)
    b = a.copy()
    ta, tb = (AltMinTrainer(m, loss=loss, optimizer=fb.SGD(0.1, momentum=0.9),
                            weight_decay=1e-3, clip_norm=1.0, **HYPER, **kw) for m in (a, b))
    X, y = _batch(a.sizes, 50, loss)
    hist = ta.fit(X, y, epochs=2, batch_size=16, shuffle=False)
    objectives = [tb.step(X[s:s + 16], y[s:s + 16]) for _ in range(2) for s in range(0, 50, 16)]
    for k, v in _snapshot(ta).items():
        np.testing.assert_array_equal(v, _snapshot(tb)[k], err_msg=k)
    assert hist.iterations == 8
    sizes = np.array([16, 16, 16, 2] * 2)
    per_epoch = (np.array(objectives) * sizes).reshape(2, 4).sum(axis=1) / 50
    np.testing.assert_allclose(hist.loss, per_epoch, rtol=1e-12)


# -- bad input, other models, registry, compare -------------------------------------------------

BAD = [
    (dict(mu=0.0), ValueError, "mu"), (dict(mu=-1.0), ValueError, "mu"),
    (dict(mu=float("nan")), ValueError, "mu"), (dict(mu=float("inf")), ValueError, "mu"),
    (dict(code_steps=0), ValueError, "code_steps"), (dict(code_steps=2.5), TypeError, "code_steps"),
    (dict(code_lr=0.0), ValueError, "code_lr"), (dict(code_lr="big"), TypeError, "code_lr"),
    (dict(code_momentum=-0.1), ValueError, "code_momentum"),
    (dict(code_momentum=1.0), ValueError, "code_momentum"),
    (dict(code_momentum=float("nan")), ValueError, "code_momentum"),
    (dict(memory=-0.1), ValueError, "memory"), (dict(memory=1.0), ValueError, "memory"),
    (dict(memory=float("nan")), ValueError, "memory"), (dict(memory=True), TypeError, "memory"),
    (dict(memory="yes"), TypeError, "memory"),
    (dict(memory=0.0, ridge=-1.0), ValueError, "ridge"), (dict(ridge=0.5), ValueError, "ridge"),
    (dict(weight_decay=-1.0), ValueError, "weight_decay"),
]


@pytest.mark.parametrize("kw, error, argument", BAD, ids=lambda v: repr(v)[:40])
def test_bad_arguments_name_themselves_and_touch_nothing(kw, error, argument):
    model = _net()
    params = model.flat_params.copy()
    opt = fb.Adam(1e-3)
    with pytest.raises(error, match=argument):
        AltMinTrainer(model, optimizer=opt, **kw)
    np.testing.assert_array_equal(model.flat_params, params)
    AltMinTrainer(model, optimizer=opt)                  # the optimizer was left unbound


def test_recurrent_models_are_refused():
    rnn = fb.ElmanRNN(input_size=2, hidden_size=4, output_size=3)
    with pytest.raises(TypeError, match="fb.MLP"):
        AltMinTrainer(rnn)
    assert not AltMinTrainer.supports(rnn)


def test_registered_and_described():
    assert fb.get_trainer("altmin") is AltMinTrainer is alternatives.AltMinTrainer
    assert "altmin" in fb.available_trainers()
    tomllib = pytest.importorskip("tomllib")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with open(os.path.join(root, "pyproject.toml"), "rb") as f:
        entry_points = tomllib.load(f)["project"]["entry-points"]["fastbp.trainers"]
    assert entry_points["altmin"] == "alternatives:AltMinTrainer"
    text = repr(AltMinTrainer(_net(), memory=0.1))
    assert "mu=1," in text and "memory=0.1" in text and "ridge=1" in text
    assert "memory" not in repr(AltMinTrainer(_net()))


def test_written_on_the_public_surface():
    """The trainer module imports no private fastbp name and reads no
    underscore attribute of fastbp's objects."""
    path = os.path.join(os.path.dirname(alternatives.__file__), "altmin.py")
    text = open(path).read()
    for name in re.findall(r"^(?:from|import) (\S+)", text, flags=re.M):
        assert not any(part.startswith("_") for part in name.split(".") if part), name
    assert not re.search(r"\b(?:fb|fastbp|model|m|optimizer|self\.model|self\.optimizer)\._",
                         text)
    base = {k for k in vars(fb.Trainer(_net())) if k.startswith("_")}
    assert not any(re.search(rf"self\.{k}\b", text) for k in base)


def test_compare_runs_it_and_marks_recurrent_tasks_not_applicable():
    res = fb.compare(tasks=["xor", "adding:length=5,n_train=64,n_test=32"],
                     trainers=["backprop", "altmin"], seeds=1, epochs=3, progress=False)
    runs = {(r["task"].split(":")[0], r["trainer"]): r for r in res.runs}
    assert runs["xor", "altmin"]["status"] == "ok", runs["xor", "altmin"]["reason"]
    assert len(runs["xor", "altmin"]["test_accuracy"]) == 3
    assert np.asarray(runs["xor", "altmin"]["alignment"]).shape == (3, 2)   # angles drawn
    assert runs["adding", "altmin"]["status"] == "not_applicable"
    assert "MLP" in runs["adding", "altmin"]["reason"]


# -- learning ----------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("memory, epochs", [(None, 20), (0.0, 5)])
def test_learns_digits(digits, memory, epochs):
    """Settings: MLP [64, 100, 100, 10], relu, softmax, seed 0, float32;
    cross-entropy, Adam(1e-3), batch 32, shuffle seed 0, the default code
    settings (mu 1, code_lr 1, 5 steps, momentum 0.9); AM-mem with decay 0
    and the default ridge 1. Measured test accuracy: AM 0.969 after 20
    epochs (seeds 0-2: 0.969, 0.960, 0.973; backprop 0.978), AM-mem 0.958
    after 5 (seeds 0-1: 0.958, 0.949), 0.2-0.4 s each once compiled."""
    Xtr, Xte, ytr, yte = digits
    model = fb.MLP([64, 100, 100, 10], activation="relu", output="softmax", seed=0)
    trainer = AltMinTrainer(model, optimizer=fb.Adam(1e-3), memory=memory)
    hist = trainer.fit(Xtr, ytr, epochs=epochs, batch_size=32, seed=0)
    assert not hist.diverged and hist.loss[-1] < hist.loss[0]
    assert trainer.evaluate(Xte, yte)["accuracy"] >= 0.90

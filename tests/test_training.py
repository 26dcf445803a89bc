"""Learning and trainer behaviour of BackpropTrainer.

Reference values are computed here with plain NumPy from ``model.params`` and
``model.predict`` (never copied from fastbp output).
"""
import math
import naive
import sys

import numpy as np
import pytest

import fastbp as fb
import fastbp.progress as progress_module
import fastbp.trainer as trainers_module

XOR_X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float64)
XOR_Y = np.array([[0], [1], [1], [0]], dtype=np.float64)


# -- NumPy references ------------------------------------------------------------------

def _act(name, a):
    if name == "identity":
        return a
    if name == "sigmoid":
        return 1.0 / (1.0 + np.exp(-a))
    if name == "tanh":
        return np.tanh(a)
    if name == "relu":
        return np.maximum(a, 0.0)
    if name == "leaky_relu":
        return np.where(a > 0, a, 0.01 * a)
    if name == "softmax":
        e = np.exp(a - a.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)
    raise AssertionError(name)


def np_forward(model, X):
    """Outputs and output logits computed in float64 from model.params."""
    h = np.asarray(X, dtype=np.float64)
    names = list(model.activations) + [model.output]
    Ws, bs = model.params[0::2], model.params[1::2]
    a = None
    for W, b, name in zip(Ws, bs, names):
        a = h @ W.astype(np.float64).T + b.astype(np.float64)
        h = _act(name, a)
    return h, a


def np_loss(loss, out, logits, y, n_outputs):
    """Mean data loss and accuracy (or None) from outputs/logits."""
    n = out.shape[0]
    if loss == "cross_entropy":
        logp = logits - logits.max(axis=1, keepdims=True)
        logp = logp - np.log(np.exp(logp).sum(axis=1, keepdims=True))
        if y.ndim == 1:
            t = np.eye(n_outputs)[y]
            labels = y
        else:
            t = y
            labels = y.argmax(axis=1)
        return float(-(t * logp).sum() / n), float((logits.argmax(axis=1) == labels).mean())
    if loss == "binary_cross_entropy":
        a = logits
        per = np.maximum(a, 0) - y * a + np.log1p(np.exp(-np.abs(a)))
        return float(per.sum() / n), float(((a > 0) == (y > 0.5)).mean())
    r = out - y.reshape(out.shape)
    if loss == "squared_error":
        return float(0.5 * (r ** 2).sum() / n), None
    if loss == "mse":
        return float((r ** 2).mean()), None
    raise AssertionError(loss)


def weight_penalty(model, lam):
    return 0.5 * lam * sum(float((W.astype(np.float64) ** 2).sum()) for W in model.params[0::2])


def blobs(n=60, n_in=4, k=3, dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=3.0, size=(k, n_in))
    y = rng.integers(0, k, size=n)
    X = centers[y] + rng.normal(size=(n, n_in))
    return X.astype(dtype), y


def classifier(dtype=np.float64, optimizer=None, seed=0, **kw):
    model = fb.MLP([4, 8, 3], activation="tanh", output="softmax", dtype=dtype, seed=seed)
    return fb.BackpropTrainer(model, loss="cross_entropy",
                              optimizer=optimizer if optimizer is not None else fb.SGD(0.1),
                              **kw)


# -- learning -------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("batch_size", [None, 1, 2])
def test_xor_sigmoid_hidden_layer(batch_size, dtype):
    model = fb.MLP([2, 4, 1], activation="sigmoid", output="sigmoid", dtype=dtype, seed=0)
    trainer = fb.BackpropTrainer(model, loss="squared_error",
                                 optimizer=fb.SGD(0.5, momentum=0.9))
    X, y = XOR_X.astype(dtype), XOR_Y.astype(dtype)
    before = model.predict(X).ravel()
    assert not np.array_equal(before > 0.5, y.ravel() > 0.5)  # not solved by the init
    hist = trainer.fit(X, y, epochs=2000, batch_size=batch_size, seed=0)
    out = model.predict(X).ravel()
    assert np.all(out[[1, 2]] > 0.5), out
    assert np.all(out[[0, 3]] < 0.5), out
    assert hist.loss[-1] < 0.1 * hist.loss[0]
    steps = {None: 1, 1: 4, 2: 2}[batch_size]
    assert hist.iterations == 2000 * steps


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_digits_accuracy(dtype):
    datasets = pytest.importorskip("sklearn.datasets")
    model_selection = pytest.importorskip("sklearn.model_selection")
    digits = datasets.load_digits()
    X = digits.data / 16.0
    X_tr, X_te, y_tr, y_te = model_selection.train_test_split(
        X, digits.target, test_size=0.25, random_state=0)
    X_tr, X_te = X_tr.astype(dtype), X_te.astype(dtype)
    model = fb.MLP([64, 128, 10], activation="relu", output="softmax", dtype=dtype, seed=0)
    trainer = fb.BackpropTrainer(model, loss="cross_entropy", optimizer=fb.Adam(1e-3))
    hist = trainer.fit(X_tr, y_tr, epochs=25, batch_size=32, seed=0,
                       validation_data=(X_te, y_te))
    test_acc = float((model.predict(X_te).argmax(axis=1) == y_te).mean())
    assert test_acc >= 0.95
    assert trainer.evaluate(X_te, y_te)["accuracy"] == pytest.approx(test_acc)
    assert hist.val_accuracy[-1] == pytest.approx(test_acc)
    assert hist.loss[-1] < hist.loss[0]
    assert hist.iterations == 25 * math.ceil(len(y_tr) / 32)


def test_binary_cross_entropy_learns_separable_problem():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(300, 2))
    Y = np.stack([X[:, 0] + 2 * X[:, 1] > 0, X[:, 0] - X[:, 1] > 0.5], axis=1).astype(float)
    X_te = rng.normal(size=(300, 2))
    Y_te = np.stack([X_te[:, 0] + 2 * X_te[:, 1] > 0,
                     X_te[:, 0] - X_te[:, 1] > 0.5], axis=1).astype(float)
    model = fb.MLP([2, 8, 2], activation="tanh", output="sigmoid", dtype=np.float64, seed=0)
    trainer = fb.BackpropTrainer(model, loss="binary_cross_entropy", optimizer=fb.Adam(0.02))
    start = trainer.evaluate(X, Y)
    hist = trainer.fit(X, Y, epochs=60, batch_size=16, seed=0)
    P = model.predict(X_te)
    assert np.all((P >= 0) & (P <= 1))
    acc = float(((P > 0.5) == (Y_te > 0.5)).mean())
    assert acc >= 0.95
    assert trainer.evaluate(X_te, Y_te)["accuracy"] == pytest.approx(acc)
    assert hist.accuracy[-1] >= 0.95
    assert trainer.evaluate(X, Y)["loss"] < 0.3 * start["loss"]


def test_default_loss_follows_output():
    assert fb.BackpropTrainer(fb.MLP([2, 2], output="softmax")).loss == "cross_entropy"
    assert fb.BackpropTrainer(fb.MLP([2, 2], output="sigmoid")).loss == "binary_cross_entropy"
    assert fb.BackpropTrainer(fb.MLP([2, 2], output="identity")).loss == "mse"


# -- dtypes ---------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("opt", ["sgd", "adam"])
def test_dtype_is_preserved_everywhere(dtype, opt):
    X, y = blobs(dtype=dtype)
    optimizer = fb.SGD(0.1, momentum=0.9) if opt == "sgd" else fb.Adam(0.01)
    trainer = classifier(dtype, optimizer=optimizer)
    model = trainer.model
    start = trainer.evaluate(X, y)["loss"]
    hist = trainer.fit(X, y, epochs=20, batch_size=8, seed=0)
    assert trainer.evaluate(X, y)["loss"] < 0.5 * start
    dt = np.dtype(dtype)
    assert model.dtype == dt
    assert model.flat_params.dtype == dt
    assert all(p.dtype == dt for p in model.params)
    assert model.predict(X).dtype == dt
    assert all(g.dtype == dt for g in trainer.gradients(X, y))
    assert trainer.optimizer.state.dtype == dt
    assert isinstance(trainer.step(X, y), float)
    assert all(isinstance(v, float) for v in hist.loss)
    assert all(isinstance(v, float) for v in trainer.evaluate(X, y).values())


def test_float32_and_float64_compute_the_same_training():
    """A seed gives the same initial model in both dtypes (up to rounding), and
    training follows the same path."""
    X, y = blobs()
    runs = {}
    for dtype in (np.float32, np.float64):
        trainer = classifier(dtype, optimizer=fb.SGD(0.05))
        runs[dtype] = trainer
        np.testing.assert_allclose(trainer.model.flat_params.astype(np.float64),
                                   classifier(np.float64).model.flat_params, rtol=1e-6,
                                   atol=1e-7)
        trainer.fit(X.astype(dtype), y, epochs=5, batch_size=10, shuffle=False)
    np.testing.assert_allclose(runs[np.float32].model.flat_params,
                               runs[np.float64].model.flat_params, rtol=1e-3, atol=1e-4)


# -- History ---------------------------------------------------------------------------

@pytest.mark.parametrize("batch_size", [1, 7, 16, 60, 500, None])
def test_history_of_classifier_with_validation(batch_size):
    X, y = blobs(n=60)
    Xv, yv = blobs(n=25, seed=0)
    Xv = Xv + 0.1
    trainer = classifier(optimizer=fb.Adam(0.01))
    epochs = 4
    hist = trainer.fit(X, y, epochs=epochs, batch_size=batch_size, seed=0,
                       validation_data=(Xv, yv))
    assert isinstance(hist, fb.History)
    assert hist.epochs == epochs
    for field in ("loss", "accuracy", "val_loss", "val_accuracy", "epoch_time", "wall_time"):
        assert len(getattr(hist, field)) == epochs, field
    assert all(np.isfinite(hist.loss)) and all(v > 0 for v in hist.loss)
    assert all(0.0 <= a <= 1.0 for a in hist.accuracy + hist.val_accuracy)
    bs = 60 if batch_size is None else min(batch_size, 60)
    assert hist.iterations == epochs * math.ceil(60 / bs)
    assert trainer.optimizer.t == hist.iterations
    assert all(t >= 0 for t in hist.epoch_time)
    assert all(b >= a for a, b in zip(hist.wall_time, hist.wall_time[1:]))
    assert hist.training_time >= hist.wall_time[-1] > 0
    assert hist.diverged is False
    # the last validation entry describes the returned model
    final = trainer.evaluate(Xv, yv)
    assert hist.val_loss[-1] == pytest.approx(final["loss"], rel=1e-12)
    assert hist.val_accuracy[-1] == pytest.approx(final["accuracy"])
    out, logits = np_forward(trainer.model, Xv)
    assert hist.val_accuracy[-1] == pytest.approx(float((logits.argmax(1) == yv).mean()))
    d = hist.as_dict()
    assert d["epochs"] == epochs and d["loss"] == hist.loss and hist["iterations"] == d[
        "iterations"]


def test_history_of_regression_has_no_accuracy():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(50, 3))
    y = np.sin(X).sum(axis=1, keepdims=True)
    model = fb.MLP([3, 6, 1], activation="tanh", dtype=np.float64, seed=0)
    trainer = fb.BackpropTrainer(model, loss="mse", optimizer=fb.Adam(0.01))
    hist = trainer.fit(X, y, epochs=3, batch_size=16, seed=0)
    assert hist.accuracy is None
    assert hist.val_loss is None and hist.val_accuracy is None
    assert len(hist.loss) == 3
    assert hist.iterations == 3 * 4
    assert "accuracy" not in trainer.evaluate(X, y)
    hist = trainer.fit(X, y, epochs=2, batch_size=16, validation_data=(X, y))
    assert hist.accuracy is None and hist.val_accuracy is None
    assert len(hist.val_loss) == 2


@pytest.mark.parametrize("batch_size", [4, 10])
def test_history_loss_and_accuracy_match_the_steps(batch_size):
    """Without shuffling, fit's epoch loss is the sample-weighted mean of the
    step objectives, and the accuracy counts batches as they were trained."""
    X, y = blobs(n=22)
    lam = 1e-3
    fitted = classifier(optimizer=fb.SGD(0.05, momentum=0.5), weight_decay=lam)
    twin = classifier(optimizer=fb.SGD(0.05, momentum=0.5), weight_decay=lam)
    epochs = 3
    hist = fitted.fit(X, y, epochs=epochs, batch_size=batch_size, shuffle=False)
    for e in range(epochs):
        total, correct = 0.0, 0
        for start in range(0, len(y), batch_size):
            xb, yb = X[start:start + batch_size], y[start:start + batch_size]
            correct += int((twin.model.predict(xb).argmax(axis=1) == yb).sum())
            total += twin.step(xb, yb) * len(yb)
        assert hist.loss[e] == pytest.approx(total / len(y), rel=1e-12)
        assert hist.accuracy[e] == pytest.approx(correct / len(y))
    np.testing.assert_array_equal(fitted.model.flat_params, twin.model.flat_params)


# -- determinism and schedules ----------------------------------------------------------

def _fit_params(seed, shuffle=True, **fit_kw):
    X, y = blobs(n=40)
    trainer = classifier(optimizer=fb.SGD(0.1, momentum=0.9))
    trainer.fit(X, y, epochs=6, batch_size=5, shuffle=shuffle, seed=seed, **fit_kw)
    return trainer.model.flat_params.copy()


def test_fit_is_deterministic_for_a_fixed_seed():
    _fit_params(0)  # compile and warm up
    a, b = _fit_params(123), _fit_params(123)
    np.testing.assert_array_equal(a, b)


def test_different_seeds_shuffle_differently():
    a, b, c = _fit_params(1), _fit_params(2), _fit_params(1, shuffle=False)
    assert not np.array_equal(a, b)
    assert not np.array_equal(a, c)
    # without shuffling the seed does not matter
    np.testing.assert_array_equal(c, _fit_params(2, shuffle=False))


@pytest.mark.parametrize("variant", ["one_epoch_per_call", "with_validation_data"])
def test_fit_result_does_not_depend_on_epoch_grouping(monkeypatch, variant):
    _fit_params(0)  # warm up: epochs now take microseconds, so fit groups them
    reference = _fit_params(7)
    if variant == "one_epoch_per_call":
        monkeypatch.setattr(trainers_module, "_SECONDS_PER_CALL", 0.0)
        other = _fit_params(7)
    else:
        X, y = blobs(n=40)
        other = _fit_params(7, validation_data=(X, y))
    np.testing.assert_array_equal(reference, other)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("opt", ["sgd", "adam"])
def test_full_batch_without_shuffle_equals_repeated_steps(dtype, opt):
    X, y = blobs(n=30, dtype=dtype)
    make_opt = (lambda: fb.SGD(0.1, momentum=0.9)) if opt == "sgd" else (lambda: fb.Adam(0.01))
    fitted, stepped = classifier(dtype, make_opt()), classifier(dtype, make_opt())
    epochs = 7
    hist = fitted.fit(X, y, epochs=epochs, batch_size=None, shuffle=False)
    objectives = [stepped.step(X, y) for _ in range(epochs)]
    np.testing.assert_array_equal(fitted.model.flat_params, stepped.model.flat_params)
    np.testing.assert_array_equal(fitted.optimizer.state, stepped.optimizer.state)
    assert fitted.optimizer.t == stepped.optimizer.t == epochs
    np.testing.assert_allclose(hist.loss, objectives, rtol=1e-12)


def test_batch_size_larger_than_data_is_full_batch():
    X, y = blobs(n=30)
    a, b = classifier(), classifier()
    ha = a.fit(X, y, epochs=3, batch_size=1000, shuffle=False)
    hb = b.fit(X, y, epochs=3, batch_size=None, shuffle=False)
    assert ha.iterations == hb.iterations == 3
    np.testing.assert_array_equal(a.model.flat_params, b.model.flat_params)


# -- evaluate / objective / gradients ----------------------------------------------------

EVAL_CASES = [
    ("softmax", "cross_entropy", "labels"),
    ("softmax", "cross_entropy", "rows"),
    ("identity", "cross_entropy", "labels"),
    ("sigmoid", "binary_cross_entropy", "rows"),
    ("identity", "binary_cross_entropy", "rows"),
    ("identity", "mse", "rows"),
    ("identity", "squared_error", "rows"),
    ("sigmoid", "squared_error", "rows"),
    ("softmax", "mse", "rows"),
]


def _targets(loss, kind, n, k, rng):
    if loss == "cross_entropy":
        labels = rng.integers(0, k, size=n)
        if kind == "labels":
            return labels
        soft = rng.random((n, k))
        return soft / soft.sum(axis=1, keepdims=True)  # probability rows
    if loss == "binary_cross_entropy":
        return (rng.random((n, k)) > 0.5).astype(float) * 0.9 + 0.05
    return rng.normal(size=(n, k))


@pytest.mark.parametrize("n", [13, 2100])  # 2100 > the 1024-row evaluation chunk
@pytest.mark.parametrize("output, loss, kind", EVAL_CASES)
def test_evaluate_matches_numpy(output, loss, kind, n):
    rng = np.random.default_rng(5)
    k = 3
    model = fb.MLP([4, 6, 5, k], activation=["relu", "tanh"], output=output,
                   dtype=np.float64, seed=2, init="uniform")
    trainer = fb.BackpropTrainer(model, loss=loss, optimizer=fb.SGD(0.1))
    X = rng.normal(size=(n, 4))
    y = _targets(loss, kind, n, k, rng)
    out, logits = np_forward(model, X)
    np.testing.assert_allclose(model.predict(X), out, rtol=1e-10, atol=1e-12)
    ref_loss, ref_acc = np_loss(loss, out, logits, y, k)
    result = trainer.evaluate(X, y)
    assert result["loss"] == pytest.approx(ref_loss, rel=1e-9)
    if ref_acc is None:
        assert set(result) == {"loss"}
    else:
        assert set(result) == {"loss", "accuracy"}
        assert result["accuracy"] == pytest.approx(ref_acc)


@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-10), (np.float32, 1e-5)])
@pytest.mark.parametrize("lam", [0.0, 0.05])
def test_step_returns_objective_with_weight_decay_penalty(dtype, rtol, lam):
    X, y = blobs(n=25, dtype=dtype)
    trainer = classifier(dtype, weight_decay=lam)
    for _ in range(3):
        out, logits = np_forward(trainer.model, X)
        data_loss, _ = np_loss("cross_entropy", out, logits, y, 3)
        expected = data_loss + weight_penalty(trainer.model, lam)
        assert trainer.objective(X, y) == pytest.approx(expected, rel=rtol)
        assert trainer.evaluate(X, y)["loss"] == pytest.approx(data_loss, rel=rtol)
        assert trainer.step(X, y) == pytest.approx(expected, rel=rtol)
    if lam:
        assert weight_penalty(trainer.model, lam) > 1e-3 * data_loss  # the penalty matters


@pytest.mark.parametrize("output, loss, kind", EVAL_CASES)
def test_gradients_match_finite_differences(output, loss, kind):
    rng = np.random.default_rng(3)
    model = fb.MLP([3, 4, 4, 3], activation=["tanh", "leaky_relu"], output=output,
                   dtype=np.float64, seed=1, init="uniform")
    trainer = fb.BackpropTrainer(model, loss=loss, optimizer=fb.SGD(0.1), weight_decay=0.03)
    X = rng.normal(size=(6, 3))
    y = _targets(loss, kind, 6, 3, rng)
    grads = np.concatenate([g.ravel() for g in _flat_order(model, trainer.gradients(X, y))])
    numeric, = naive.central_differences(lambda: trainer.objective(X, y), [model.flat_params])
    np.testing.assert_allclose(grads, numeric, rtol=1e-5, atol=1e-7)


def _flat_order(model, grads):
    """Gradients reordered like flat_params: every W, then every b."""
    return grads[0::2] + grads[1::2]


def test_gradients_do_not_update_anything():
    X, y = blobs()
    trainer = classifier(optimizer=fb.Adam(0.01))
    before = trainer.model.flat_params.copy()
    g1 = trainer.gradients(X, y)
    g2 = trainer.gradients(X, y)
    np.testing.assert_array_equal(trainer.model.flat_params, before)
    assert trainer.optimizer.t == 0 and not trainer.optimizer.state.any()
    for a, b, p in zip(g1, g2, trainer.model.params):
        assert a.shape == p.shape
        np.testing.assert_array_equal(a, b)
        assert not np.shares_memory(a, b)


# -- weight decay and clipping -----------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_weight_decay_shrinks_weights_not_biases_at_zero_gradient(dtype):
    """With targets equal to the model's outputs the data gradient is zero, so
    an SGD step only applies the decay: W <- (1 - lr*lam) W, b unchanged."""
    rng = np.random.default_rng(0)
    model = fb.MLP([3, 5, 2], activation="tanh", output="identity", dtype=dtype, seed=0,
                   init="uniform")  # non-zero biases
    X = rng.normal(size=(20, 3)).astype(dtype)
    y = model.predict(X)
    lr, lam = 0.1, 0.5
    trainer = fb.BackpropTrainer(model, loss="mse", optimizer=fb.SGD(lr), weight_decay=lam)
    plain = fb.BackpropTrainer(model.copy(), loss="mse", optimizer=fb.SGD(lr))
    for g in plain.gradients(X, y):
        assert not g.any()
    Ws = [W.copy() for W in model.params[0::2]]
    bs = [b.copy() for b in model.params[1::2]]
    assert all(b.any() for b in bs)
    obj = trainer.step(X, y)
    # the objective is the penalty alone (data loss 0), measured before the update
    assert obj == pytest.approx(0.5 * lam * sum(float((W.astype(np.float64) ** 2).sum())
                                                for W in Ws), rel=1e-5)
    rtol = 1e-6 if dtype == np.float32 else 1e-14
    for W_old, W_new in zip(Ws, model.params[0::2]):
        np.testing.assert_allclose(W_new, (1 - lr * lam) * W_old, rtol=rtol)
    for b_old, b_new in zip(bs, model.params[1::2]):
        np.testing.assert_array_equal(b_new, b_old)
    # the plain trainer does not move at all
    before = plain.model.flat_params.copy()
    plain.step(X, y)
    np.testing.assert_array_equal(plain.model.flat_params, before)


def test_weight_decay_gradient_is_lambda_times_weights():
    X, y = blobs(n=20)
    lam = 0.2
    decayed = classifier(weight_decay=lam)
    plain = classifier()
    gd, gp = decayed.gradients(X, y), plain.gradients(X, y)
    for i, p in enumerate(decayed.model.params):
        expected = gp[i] + (lam * p if i % 2 == 0 else 0.0)
        np.testing.assert_allclose(gd[i], expected, rtol=1e-12, atol=1e-15)
    # and one step moves weights further towards zero than without decay
    Wd0 = [W.copy() for W in decayed.model.params[0::2]]
    decayed.step(X, y)
    plain.step(X, y)
    for W0, Wd, Wp in zip(Wd0, decayed.model.params[0::2], plain.model.params[0::2]):
        np.testing.assert_allclose(Wd, Wp - 0.1 * lam * W0, rtol=1e-10, atol=1e-14)
    for bd, bp in zip(decayed.model.params[1::2], plain.model.params[1::2]):
        np.testing.assert_allclose(bd, bp, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("clip", [1e-3, 0.05, 1e6])
def test_clip_norm_bounds_the_update(dtype, clip):
    X, y = blobs(n=30, dtype=dtype)
    lr = 0.3
    trainer = classifier(dtype, optimizer=fb.SGD(lr), clip_norm=clip)
    for _ in range(3):
        g = np.concatenate([a.ravel() for a in _flat_order(trainer.model,
                                                          trainer.gradients(X, y))])
        g = g.astype(np.float64)
        gnorm = np.linalg.norm(g)
        before = trainer.model.flat_params.astype(np.float64)
        trainer.step(X, y)
        delta = trainer.model.flat_params.astype(np.float64) - before
        tiny = 1e-5 if dtype == np.float32 else 1e-10
        assert np.linalg.norm(delta) <= lr * clip * (1 + tiny) + tiny
        if gnorm > clip:
            expected = -lr * clip * g / gnorm  # same direction, length lr * clip
        else:
            expected = -lr * g  # no clipping below the threshold
        np.testing.assert_allclose(delta, expected, rtol=1e-3 if dtype == np.float32 else 1e-8,
                                   atol=1e-6 if dtype == np.float32 else 1e-14)
    if clip < 1:
        assert gnorm > clip  # the test really exercised clipping


# -- optimizers ------------------------------------------------------------------------

def test_optimizer_cannot_be_reused_for_a_different_model():
    opt = fb.SGD(0.1, momentum=0.9)
    classifier(optimizer=opt)
    other = fb.MLP([4, 9, 3], output="softmax", dtype=np.float64, seed=0)
    with pytest.raises(ValueError, match="new optimizer"):
        fb.BackpropTrainer(other, optimizer=opt)
    same_size_other_dtype = fb.MLP([4, 8, 3], activation="tanh", output="softmax",
                                   dtype=np.float32, seed=0)
    with pytest.raises(ValueError, match="float64"):
        fb.BackpropTrainer(same_size_other_dtype, optimizer=opt)


def test_changing_lr_between_steps_takes_effect():
    X, y = blobs(n=20)
    trainer = classifier(optimizer=fb.SGD(0.1))
    for lr in (0.1, 0.37, 0.02):
        trainer.optimizer.lr = lr
        g = np.concatenate([a.ravel() for a in _flat_order(trainer.model,
                                                          trainer.gradients(X, y))])
        before = trainer.model.flat_params.copy()
        trainer.step(X, y)
        np.testing.assert_allclose(trainer.model.flat_params - before, -lr * g, rtol=1e-9,
                                   atol=1e-15)


def test_changing_adam_lr_scales_the_update():
    X, y = blobs(n=20)
    a, b = classifier(optimizer=fb.Adam(0.01)), classifier(optimizer=fb.Adam(0.01))
    a.step(X, y)
    b.step(X, y)
    b.optimizer.lr = 0.03
    pa, pb = a.model.flat_params.copy(), b.model.flat_params.copy()
    a.step(X, y)
    b.step(X, y)
    np.testing.assert_allclose(b.model.flat_params - pb, 3 * (a.model.flat_params - pa),
                               rtol=1e-9, atol=1e-15)


def test_sgd_momentum_and_adam_follow_reference_rules():
    """Five steps against textbook updates computed from trainer.gradients."""
    X, y = blobs(n=20)
    for make, kind in ((lambda: fb.SGD(0.1, momentum=0.9), "momentum"),
                       (lambda: fb.SGD(0.1, momentum=0.9, nesterov=True), "nesterov"),
                       (lambda: fb.Adam(0.01, betas=(0.8, 0.99), eps=1e-6), "adam")):
        trainer = classifier(optimizer=make())
        p = trainer.model.flat_params.astype(np.float64).copy()
        v = np.zeros_like(p)
        m = np.zeros_like(p)
        for t in range(1, 6):
            g = np.concatenate([a.ravel() for a in _flat_order(trainer.model,
                                                              trainer.gradients(X, y))])
            if kind == "adam":
                m = 0.8 * m + 0.2 * g
                v = 0.99 * v + 0.01 * g * g
                p = p - 0.01 * (m / (1 - 0.8 ** t)) / (np.sqrt(v / (1 - 0.99 ** t)) + 1e-6)
            else:
                v = 0.9 * v + g
                p = p - 0.1 * ((g + 0.9 * v) if kind == "nesterov" else v)
            trainer.step(X, y)
            np.testing.assert_allclose(trainer.model.flat_params, p, rtol=1e-9, atol=1e-12,
                                       err_msg=kind)
        assert trainer.optimizer.t == 5


# -- model storage -----------------------------------------------------------------------

def test_params_are_views_into_flat_params():
    model = fb.MLP([3, 4, 2], output="softmax", dtype=np.float64, seed=0)
    assert [p.shape for p in model.params] == [(4, 3), (4,), (2, 4), (2,)]
    for p in model.params:
        assert np.shares_memory(p, model.flat_params)
    # flat layout: W1, W2, then b1, b2
    model.params[0][1, 2] = 1.1
    assert model.flat_params[1 * 3 + 2] == 1.1
    model.params[2][0, 3] = -2.2
    assert model.flat_params[12 + 3] == -2.2
    model.params[1][3] = 0.33
    assert model.flat_params[12 + 8 + 3] == 0.33
    model.flat_params[-1] = -0.44
    assert model.params[3][1] == -0.44
    # predictions see writes through the views
    X = np.random.default_rng(0).normal(size=(5, 3))
    before = model.predict(X)
    model.params[3][0] += 1.0  # (shifting both would cancel in softmax)
    assert not np.array_equal(model.predict(X), before)
    out, _ = np_forward(model, X)
    np.testing.assert_allclose(model.predict(X), out, rtol=1e-12)
    # training updates the buffer in place: the views stay valid
    views = list(model.params)
    trainer = fb.BackpropTrainer(model, optimizer=fb.SGD(0.1))
    snapshot = [v.copy() for v in views]
    trainer.fit(X, np.array([0, 1, 0, 1, 1]), epochs=2, batch_size=2)
    assert all(a is b for a, b in zip(model.params, views))
    assert any(not np.array_equal(v, s) for v, s in zip(views, snapshot))
    model.initialize(1)
    assert all(a is b for a, b in zip(model.params, views))
    np.testing.assert_array_equal(model.flat_params,
                                  fb.MLP([3, 4, 2], output="softmax", dtype=np.float64,
                                         seed=1).flat_params)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_copy_is_independent(dtype):
    model = fb.MLP([4, 6, 5, 3], activation=["relu", "sigmoid"], output="softmax",
                   dtype=dtype, seed=4, init="he")
    X, y = blobs(n=20, dtype=dtype)
    fb.BackpropTrainer(model, optimizer=fb.SGD(0.1)).fit(X, y, epochs=2)
    clone = model.copy()
    assert clone is not model
    assert clone.sizes == model.sizes and clone.activations == model.activations
    assert clone.output == model.output and clone.dtype == model.dtype
    assert clone.init == model.init
    np.testing.assert_array_equal(clone.flat_params, model.flat_params)
    np.testing.assert_array_equal(clone.predict(X), model.predict(X))
    assert not np.shares_memory(clone.flat_params, model.flat_params)
    for p in clone.params:
        assert np.shares_memory(p, clone.flat_params)
    original = model.flat_params.copy()
    fb.BackpropTrainer(clone, optimizer=fb.SGD(0.5)).fit(X, y, epochs=3)
    clone.params[0][...] = 0
    np.testing.assert_array_equal(model.flat_params, original)
    model.params[1][...] = 7
    assert not np.any(clone.params[1] == 7)


# -- per-layer activations ---------------------------------------------------------------

@pytest.mark.parametrize("output", ["identity", "sigmoid", "softmax"])
def test_per_layer_activation_list(output):
    acts = ["tanh", "relu", "leaky_relu", "sigmoid", "identity"]
    model = fb.MLP([4, 6, 5, 7, 4, 5, 3], activation=acts, output=output,
                   dtype=np.float64, seed=0, init="uniform")
    assert model.activations == acts
    X = np.random.default_rng(2).normal(size=(9, 4)) * 2
    out, _ = np_forward(model, X)
    np.testing.assert_allclose(model.predict(X), out, rtol=1e-10, atol=1e-12)
    # the order matters: reversing the list changes the function
    rev = fb.MLP(model.sizes, activation=acts[::-1], output=output, dtype=np.float64,
                 seed=0, init="uniform")
    assert not np.allclose(rev.predict(X), model.predict(X))
    # and the network trains
    loss = {"identity": "mse", "sigmoid": "binary_cross_entropy",
            "softmax": "cross_entropy"}[output]
    y = (np.arange(9) % 3 if output == "softmax" else (out > np.median(out)).astype(float))
    trainer = fb.BackpropTrainer(model, loss=loss, optimizer=fb.Adam(0.01))
    start = trainer.evaluate(X, y)["loss"]
    trainer.fit(X, y, epochs=100, batch_size=None)
    assert trainer.evaluate(X, y)["loss"] < 0.5 * start


# -- targets ---------------------------------------------------------------------------

@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-12), (np.float32, 1e-5)])
def test_one_hot_rows_equal_integer_labels(dtype, rtol):
    X, y = blobs(n=30, dtype=dtype)
    onehot = np.eye(3, dtype=dtype)[y]
    a, b = classifier(dtype), classifier(dtype)
    for ga, gb in zip(a.gradients(X, y), b.gradients(X, onehot)):
        np.testing.assert_allclose(ga, gb, rtol=rtol, atol=rtol * 1e-3)
    ea, eb = a.evaluate(X, y), b.evaluate(X, onehot)
    assert ea["loss"] == pytest.approx(eb["loss"], rel=rtol)
    assert ea["accuracy"] == eb["accuracy"]
    assert a.step(X, y) == pytest.approx(b.step(X, onehot), rel=rtol)
    ha = a.fit(X, y, epochs=3, batch_size=7, seed=1)
    hb = b.fit(X, onehot.astype(np.int64), epochs=3, batch_size=7, seed=1)
    np.testing.assert_allclose(a.model.flat_params, b.model.flat_params, rtol=rtol * 10,
                               atol=rtol * 1e-2)
    assert ha.accuracy == hb.accuracy


# -- progress display --------------------------------------------------------------------

def test_progress_with_tqdm(capsys):
    pytest.importorskip("tqdm")
    X, y = blobs(n=20)
    trainer = classifier()
    hist = trainer.fit(X, y, epochs=3, batch_size=5, progress=True)
    err = capsys.readouterr().err
    assert "3/3" in err
    assert "pip install" not in err
    assert hist.epochs == 3


def test_progress_without_tqdm_falls_back_to_lines(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm", None)
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    monkeypatch.setattr(progress_module, "_HINT_SHOWN", False)
    X, y = blobs(n=20)
    trainer = classifier()
    hist = trainer.fit(X, y, epochs=3, batch_size=5, progress=True,
                       validation_data=(X, y))
    err = capsys.readouterr().err
    assert "pip install" in err and "tqdm" in err
    lines = [ln for ln in err.splitlines() if "/3" in ln]
    assert len(lines) == 3  # one line per epoch (validation makes fit run them one by one)
    assert lines[-1].split()[1] == "3/3"
    assert "loss" in lines[-1] and "val_loss" in lines[-1]
    assert f"{hist.loss[-1]:.4g}" in lines[-1]
    # the install hint is shown once per process
    trainer.fit(X, y, epochs=2, progress=True)
    err = capsys.readouterr().err
    assert "pip install" not in err
    assert "2/2" in err


def test_no_output_without_progress(capsys):
    X, y = blobs(n=20)
    classifier().fit(X, y, epochs=3, batch_size=5)
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out == ""

"""fb.ElmanRNN and backpropagation through time: the kernels against the NumPy
twin in naive_rnn.py, BPTT and truncated-BPTT gradients against central
finite differences in float64, truncated training against the twin's
window-by-window SGD, and the trainer machinery (fit, evaluate, save/load,
divergence) on recurrent models."""
import naive
import naive_rnn
import numpy as np
import pytest

import fastbp as fb

STEP = 1e-6
MAX_REL_ERROR = 1e-6
READOUTS = ("last", "all")
ACTIVATIONS = ("tanh", "relu")


def sequences(rng, n=4, T=7, i=3, dtype=np.float64):
    return rng.normal(size=(n, T, i)).astype(dtype)


def targets(rng, loss, readout, n, T, o):
    shape = (n,) if readout == "last" else (n, T)
    if loss == "cross_entropy":
        return rng.integers(0, o, size=shape)
    if loss == "binary_cross_entropy":
        return rng.uniform(0, 1, size=shape + (o,))
    return rng.normal(size=shape + (o,))


def make_rnn(act="tanh", readout="last", output="identity", dtype=np.float64, i=3, h=5, o=2,
             seed=0):
    rnn = fb.ElmanRNN(i, h, o, activation=act, readout=readout, output=output, dtype=dtype,
                      seed=seed)
    if act == "relu":
        # keep pre-activations away from the kink at 0, where central
        # differences straddle two slopes: a small positive bias
        rnn.params[2][...] = 0.3
    return rnn


def relative_error(a, b):
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(a)), np.max(np.abs(b)), 1e-12))


def central_differences(objective, params):
    return naive.central_differences(objective, params, STEP)


# -- the model ---------------------------------------------------------------------

def test_params_are_views_of_one_flat_buffer_with_documented_shapes():
    rnn = fb.ElmanRNN(3, 5, 2, seed=0)
    shapes = [p.shape for p in rnn.params]
    assert shapes == [(5, 3), (5, 5), (5,), (2, 5), (2,)]
    assert rnn.n_params == 15 + 25 + 5 + 10 + 2 == rnn.flat_params.size
    for p in rnn.params:
        assert np.shares_memory(p, rnn.flat_params)
    rnn.params[1][0, 0] = 42.0
    # weights first (W_in, W_rec, W_out), then the biases (b, b_out)
    assert rnn.flat_params[15] == 42.0
    assert rnn.n_weights == 15 + 25 + 10
    assert np.all(rnn.params[2] == 0) and np.all(rnn.params[4] == 0)


def test_same_seed_same_model_in_both_dtypes():
    a = fb.ElmanRNN(2, 4, 3, seed=7, dtype=np.float64)
    b = fb.ElmanRNN(2, 4, 3, seed=7, dtype=np.float32)
    np.testing.assert_allclose(a.flat_params, b.flat_params, rtol=1e-6)
    assert not np.array_equal(a.flat_params, fb.ElmanRNN(2, 4, 3, seed=8).flat_params)


@pytest.mark.parametrize("recurrent_init", ["orthogonal", "identity"])
def test_recurrent_initialisations(recurrent_init):
    rnn = fb.ElmanRNN(2, 6, 1, seed=0, dtype=np.float64, recurrent_init=recurrent_init)
    W = rnn.params[1]
    np.testing.assert_allclose(W @ W.T, np.eye(6), atol=1e-12)
    if recurrent_init == "identity":
        np.testing.assert_array_equal(W, np.eye(6))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("readout", READOUTS)
@pytest.mark.parametrize("act", ["tanh", "relu", "sigmoid"])
@pytest.mark.parametrize("output", ["identity", "softmax", "sigmoid"])
def test_predict_matches_numpy_twin(dtype, readout, act, output):
    rng = np.random.default_rng(1)
    rnn = fb.ElmanRNN(3, 6, 4, activation=act, readout=readout, output=output, dtype=dtype,
                      seed=2)
    X = sequences(rng, n=5, T=9, dtype=dtype)
    _, _, logits = naive_rnn.forward(rnn.params, X, act, readout)
    expected = naive.activation(output, logits.reshape(-1, 4)).reshape(logits.shape)
    out = rnn.predict(X)
    assert out.dtype == dtype and out.shape == expected.shape
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(out, expected, rtol=tol, atol=tol)


@pytest.mark.parametrize("readout", READOUTS)
def test_state_carries_across_predict_calls(readout):
    rng = np.random.default_rng(3)
    rnn = fb.ElmanRNN(2, 5, 3, readout=readout, dtype=np.float64, seed=0)
    X = sequences(rng, n=3, T=10, i=2)
    whole, h_whole = rnn.predict(X, return_state=True)
    first, h_mid = rnn.predict(X[:, :4], return_state=True)
    second, h_end = rnn.predict(X[:, 4:], h0=h_mid, return_state=True)
    np.testing.assert_allclose(h_end, h_whole, rtol=1e-13, atol=1e-13)
    if readout == "all":
        np.testing.assert_allclose(np.concatenate([first, second], axis=1), whole,
                                   rtol=1e-13, atol=1e-13)
    else:
        np.testing.assert_allclose(second, whole, rtol=1e-13, atol=1e-13)
    _, H, _ = naive_rnn.forward(rnn.params, X, "tanh", readout)
    np.testing.assert_allclose(h_whole, H[:, -1], rtol=1e-13, atol=1e-13)


def test_predict_in_chunks_equals_one_pass(monkeypatch):
    from fastbp import models
    rng = np.random.default_rng(4)
    rnn = fb.ElmanRNN(2, 5, 2, readout="all", dtype=np.float64, seed=0)
    X = sequences(rng, n=23, T=6, i=2)
    whole = rnn.predict(X)
    monkeypatch.setattr(models, "PREDICT_CHUNK", 6 * 4)   # 4 sequences per pass
    np.testing.assert_array_equal(rnn.copy().predict(X), whole)


# -- gradients ---------------------------------------------------------------------

GRADIENT_CASES = [("mse", "identity"), ("squared_error", "sigmoid"),
                  ("cross_entropy", "identity"), ("cross_entropy", "softmax"),
                  ("binary_cross_entropy", "sigmoid")]


@pytest.mark.parametrize("loss,output", GRADIENT_CASES)
@pytest.mark.parametrize("readout", READOUTS)
@pytest.mark.parametrize("act", ACTIVATIONS)
@pytest.mark.parametrize("truncate", [None, 3])
def test_bptt_gradients_match_numpy_twin(loss, output, readout, act, truncate):
    rng = np.random.default_rng(5)
    rnn = make_rnn(act, readout, output, o=3)
    X = sequences(rng, T=8)
    y = targets(rng, loss, readout, 4, 8, 3)
    trainer = fb.BackpropTrainer(rnn, loss=loss, optimizer=fb.SGD(0.1), truncate=truncate)
    got = trainer.gradients(X, y)
    expected = naive_rnn.gradients(rnn.params, X, y, act, readout, loss, output, truncate)
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g, e, rtol=1e-10, atol=1e-13)
    assert trainer.objective(X, y) == pytest.approx(
        naive_rnn.loss(rnn.params, X, y, act, readout, loss, output), rel=1e-12)


@pytest.mark.parametrize("readout", READOUTS)
@pytest.mark.parametrize("act", ACTIVATIONS)
@pytest.mark.parametrize("loss", ["mse", "cross_entropy"])
def test_bptt_gradients_match_finite_differences(readout, act, loss):
    rng = np.random.default_rng(6)
    rnn = make_rnn(act, readout, "identity", o=3)
    X = sequences(rng, T=12)
    y = targets(rng, loss, readout, 4, 12, 3)
    trainer = fb.BackpropTrainer(rnn, loss=loss, optimizer=fb.SGD(0.1), weight_decay=0.01)
    analytic = trainer.gradients(X, y)
    numeric = central_differences(lambda: trainer.objective(X, y), rnn.params)
    for name, a, n in zip(["W_in", "W_rec", "b", "W_out", "b_out"], analytic, numeric):
        assert relative_error(a, n) < MAX_REL_ERROR, name


@pytest.mark.parametrize("readout", READOUTS)
@pytest.mark.parametrize("act", ACTIVATIONS)
@pytest.mark.parametrize("k", [1, 4, 5])
def test_truncated_gradients_match_finite_differences_of_the_windowed_objective(
        readout, act, k):
    """The windowed objective: every window is a sequence of its own whose
    initial state is the state reached at the current parameters, a constant;
    each window's loss terms weigh 1 / (all loss terms), so the windows sum to
    the full mean loss's value."""
    rng = np.random.default_rng(7)
    n, T, o = 3, 10, 2
    rnn = make_rnn(act, readout, "identity", o=o)
    X = sequences(rng, n=n, T=T)
    y = targets(rng, "mse", readout, n, T, o)
    trainer = fb.BackpropTrainer(rnn, loss="mse", optimizer=fb.SGD(0.1), truncate=k)
    analytic = trainer.gradients(X, y)
    _, H, _ = naive_rnn.forward(rnn.params, X, act, readout)
    windows = [(t0, min(t0 + k, T)) for t0 in range(0, T, k)]
    frozen_states = [H[:, t0].copy() for t0, _ in windows]

    def windowed_objective():
        total = 0.0
        for (t0, t1), h0 in zip(windows, frozen_states):
            if readout == "all":
                total += naive_rnn.loss(rnn.params, X[:, t0:t1], y[:, t0:t1], act, "all",
                                        "mse", "identity", h0) * (t1 - t0) / T
            elif t1 == T:
                total += naive_rnn.loss(rnn.params, X[:, t0:t1], y, act, "last", "mse",
                                        "identity", h0)
        return total

    numeric = central_differences(windowed_objective, rnn.params)
    for name, a, num in zip(["W_in", "W_rec", "b", "W_out", "b_out"], analytic, numeric):
        assert relative_error(a, num) < MAX_REL_ERROR, name
    if k >= T:
        full = fb.BackpropTrainer(rnn, loss="mse", optimizer=fb.SGD(0.1)).gradients(X, y)
        for a, b in zip(analytic, full):
            np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-15)


def test_truncation_at_or_beyond_the_length_is_full_bptt():
    rng = np.random.default_rng(8)
    rnn = make_rnn("tanh", "all")
    X, y = sequences(rng, T=6), targets(rng, "mse", "all", 4, 6, 2)
    full = fb.BackpropTrainer(rnn, loss="mse", optimizer=fb.SGD(0.1)).gradients(X, y)
    for k in (6, 50):
        cut = fb.BackpropTrainer(rnn, loss="mse", optimizer=fb.SGD(0.1),
                                 truncate=k).gradients(X, y)
        for a, b in zip(cut, full):
            np.testing.assert_array_equal(a, b)


# -- training ------------------------------------------------------------------------

@pytest.mark.parametrize("readout", READOUTS)
@pytest.mark.parametrize("truncate", [None, 1, 3, 4])
def test_truncated_step_matches_window_by_window_sgd(readout, truncate):
    rng = np.random.default_rng(9)
    n, T = 4, 9
    rnn = make_rnn("tanh", readout, "identity")
    X = sequences(rng, n=n, T=T)
    y = targets(rng, "mse", readout, n, T, 2)
    start = [p.copy() for p in rnn.params]
    trainer = fb.BackpropTrainer(rnn, loss="mse", optimizer=fb.SGD(0.2), truncate=truncate)
    objective = trainer.step(X, y)
    expected, losses = naive_rnn.truncated_sgd(start, X, y, "tanh", readout, "mse",
                                               "identity", truncate or T, 0.2)
    for p, e in zip(rnn.params, expected):
        np.testing.assert_allclose(p, e, rtol=1e-11, atol=1e-13)
    # the step's objective: window objectives weighted by their loss terms
    if readout == "all":
        k = truncate or T
        sizes = [min(t0 + k, T) - t0 for t0 in range(0, T, k)]
        assert objective == pytest.approx(np.dot(losses, sizes) / T, rel=1e-12)
    else:
        assert objective == pytest.approx(losses[-1], rel=1e-12)
    updates = len(losses)
    assert trainer.optimizer.hyper[5] == updates


@pytest.mark.parametrize("truncate", [None, 5])
def test_fit_full_batch_equals_repeated_steps(truncate):
    rng = np.random.default_rng(10)
    X, y = sequences(rng, n=6, T=10), targets(rng, "cross_entropy", "all", 6, 10, 2)
    a, b = make_rnn(readout="all"), make_rnn(readout="all")
    ta = fb.BackpropTrainer(a, loss="cross_entropy", optimizer=fb.Adam(0.01),
                            truncate=truncate)
    tb = fb.BackpropTrainer(b, loss="cross_entropy", optimizer=fb.Adam(0.01),
                            truncate=truncate)
    hist = ta.fit(X, y, epochs=4, batch_size=None, shuffle=False)
    losses = [tb.step(X, y) for _ in range(4)]
    np.testing.assert_array_equal(a.flat_params, b.flat_params)
    np.testing.assert_allclose(hist.loss, losses, rtol=1e-12)
    assert hist.iterations == 4 * (1 if truncate is None else 2)
    # accuracy is per time step for readout "all"
    assert 0.0 <= hist.accuracy[-1] <= 1.0


def test_fit_with_minibatches_uses_the_fused_kernel_and_equals_python_loop(monkeypatch):
    """The fused epoch kernel against the generic Python loop over steps."""
    rng = np.random.default_rng(11)
    X, y = sequences(rng, n=10, T=5), targets(rng, "mse", "last", 10, 5, 2)
    fused_model, loop_model = make_rnn(), make_rnn()
    fused = fb.BackpropTrainer(fused_model, loss="mse", optimizer=fb.SGD(0.05, momentum=0.9),
                               truncate=2)
    loop = fb.BackpropTrainer(loop_model, loss="mse", optimizer=fb.SGD(0.05, momentum=0.9),
                              truncate=2)
    # the base class's loop shuffles with numpy: compare without shuffling
    monkeypatch.setattr(loop, "fit_epochs",
                        lambda *args: fb.Trainer.fit_epochs(loop, *args))
    h1 = fused.fit(X, y, epochs=3, batch_size=4, shuffle=False)
    h2 = loop.fit(X, y, epochs=3, batch_size=4, shuffle=False)
    np.testing.assert_allclose(fused_model.flat_params, loop_model.flat_params, rtol=1e-12)
    np.testing.assert_allclose(h1.loss, h2.loss, rtol=1e-12)


def test_fit_is_deterministic_and_independent_of_epoch_grouping(monkeypatch):
    import fastbp.trainer as trainers_module
    rng = np.random.default_rng(12)
    X, y = sequences(rng, n=20, T=6), targets(rng, "cross_entropy", "last", 20, 6, 2)

    def run():
        rnn = make_rnn()
        fb.BackpropTrainer(rnn, loss="cross_entropy", optimizer=fb.Adam(0.01)).fit(
            X, y, epochs=5, batch_size=3, seed=4)
        return rnn.flat_params

    first = run()
    np.testing.assert_array_equal(run(), first)
    monkeypatch.setattr(trainers_module, "_SECONDS_PER_CALL", 0.0)   # one epoch per call
    np.testing.assert_array_equal(run(), first)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_float32_and_float64_train_alike(dtype):
    rng = np.random.default_rng(13)
    X64 = sequences(rng, n=8, T=12)
    y = targets(rng, "cross_entropy", "all", 8, 12, 3)
    ref = make_rnn(readout="all", o=3, dtype=np.float64)
    model = make_rnn(readout="all", o=3, dtype=dtype)
    for m in (ref, model):
        fb.BackpropTrainer(m, loss="cross_entropy", optimizer=fb.SGD(0.1)).fit(
            X64.astype(m.dtype), y, epochs=3, batch_size=4, seed=0)
    assert model.flat_params.dtype == dtype
    assert model.predict(X64.astype(dtype)).dtype == dtype
    np.testing.assert_allclose(model.flat_params, ref.flat_params, rtol=1e-4, atol=1e-5)


def test_evaluate_matches_twin_and_reports_per_step_accuracy():
    rng = np.random.default_rng(14)
    rnn = make_rnn(readout="all", o=3)
    X, y = sequences(rng, n=7, T=5), targets(rng, "cross_entropy", "all", 7, 5, 3)
    out = fb.BackpropTrainer(rnn, loss="cross_entropy").evaluate(X, y)
    _, _, logits = naive_rnn.forward(rnn.params, X, "tanh", "all")
    assert out["loss"] == pytest.approx(
        naive_rnn.loss(rnn.params, X, y, "tanh", "all", "cross_entropy", "identity"), rel=1e-12)
    assert out["accuracy"] == pytest.approx(np.mean(np.argmax(logits, axis=2) == y))


def test_clipping_keeps_an_exploding_network_finite():
    """W_rec = 3 I with a linear activation: gradients through 60 steps grow
    like 3^60. Unclipped, the first update overflows (and is refused);
    clipped to norm 1, training stays finite."""
    rng = np.random.default_rng(15)
    X = sequences(rng, n=8, T=60, i=1, dtype=np.float32)
    y = rng.normal(size=(8, 1)).astype(np.float32)

    def exploding():
        rnn = fb.ElmanRNN(1, 4, 1, activation="identity", dtype=np.float32, seed=0)
        rnn.params[1][...] = 3.0 * np.eye(4)
        return rnn

    rnn = exploding()
    before = rnn.flat_params.copy()
    with pytest.raises(fb.DivergenceError, match="parameters were left as they were"):
        fb.BackpropTrainer(rnn, loss="mse", optimizer=fb.SGD(0.01)).step(X, y)
    np.testing.assert_array_equal(rnn.flat_params, before)
    rnn = exploding()
    rnn.params[1][...] = 1.1 * np.eye(4)            # large but representable gradients
    trainer = fb.BackpropTrainer(rnn, loss="mse", optimizer=fb.SGD(0.01), clip_norm=1.0)
    raw = np.sqrt(sum(float(np.sum(g.astype(np.float64) ** 2))
                      for g in trainer.gradients(X, y)))
    assert raw > 1e3
    start = rnn.flat_params.copy()
    trainer.step(X, y)
    moved = np.linalg.norm((rnn.flat_params - start).astype(np.float64))
    assert moved == pytest.approx(0.01 * 1.0, rel=1e-3)   # lr * clip_norm
    trainer.fit(X, y, epochs=20, batch_size=4)
    assert np.all(np.isfinite(rnn.flat_params))


def test_divergence_in_fit_leaves_model_as_before_the_failing_window():
    rng = np.random.default_rng(16)
    X = sequences(rng, n=4, T=6, i=1)
    y = rng.normal(size=(4, 6, 1))
    rnn = fb.ElmanRNN(1, 3, 1, readout="all", dtype=np.float64, seed=0)
    trainer = fb.BackpropTrainer(rnn, loss="mse", optimizer=fb.SGD(1e200), truncate=2)
    with pytest.raises(fb.DivergenceError) as info:
        trainer.fit(X, y, epochs=3, batch_size=4)
    assert np.all(np.isfinite(rnn.flat_params))
    assert info.value.epoch == 1


# -- saving --------------------------------------------------------------------------

@pytest.mark.parametrize("readout", READOUTS)
def test_save_and_load_round_trip(tmp_path, readout):
    rng = np.random.default_rng(17)
    rnn = fb.ElmanRNN(2, 5, 3, activation="relu", readout=readout, output="softmax",
                      dtype=np.float32, seed=1, recurrent_init="identity")
    path = tmp_path / "rnn.npz"
    rnn.save(path)
    loaded = fb.load(path)
    assert isinstance(loaded, fb.ElmanRNN) and loaded.get_config() == rnn.get_config()
    X = sequences(rng, n=3, T=4, i=2, dtype=np.float32)
    np.testing.assert_array_equal(loaded.predict(X), rnn.predict(X))


def test_trainer_state_resumes_exactly(tmp_path):
    rng = np.random.default_rng(18)
    X, y = sequences(rng, n=12, T=8), targets(rng, "mse", "all", 12, 8, 2)
    rnn = make_rnn(readout="all")
    trainer = fb.BackpropTrainer(rnn, loss="mse", optimizer=fb.Adam(0.01), truncate=3)
    trainer.fit(X, y, epochs=2, batch_size=4, seed=1)
    trainer.save_state(tmp_path / "state.npz")
    trainer.fit(X, y, epochs=2, batch_size=4, seed=2)
    other = fb.BackpropTrainer(make_rnn(readout="all", seed=5), loss="mse",
                               optimizer=fb.Adam(0.01), truncate=3)
    other.load_state(tmp_path / "state.npz")
    other.fit(X, y, epochs=2, batch_size=4, seed=2)
    np.testing.assert_array_equal(other.model.flat_params, rnn.flat_params)


# -- bad input -----------------------------------------------------------------------

def test_two_dimensional_input_is_rejected_with_the_expected_shape():
    rnn = fb.ElmanRNN(1, 4, 2, seed=0)
    X = np.zeros((5, 10), np.float32)
    with pytest.raises(ValueError, match=r"3-D of shape \(n_sequences, T, input_size\).*"
                                         r"X\[:, :, None\]"):
        rnn.predict(X)
    trainer = fb.BackpropTrainer(rnn, loss="cross_entropy")
    with pytest.raises(ValueError, match="3-D"):
        trainer.fit(X, np.zeros(5, int))


@pytest.mark.parametrize("kwargs,error,match", [
    (dict(input_size=0), ValueError, "input_size must be >= 1"),
    (dict(hidden_size=2.5), TypeError, "hidden_size must be a positive integer"),
    (dict(readout="first"), ValueError, "readout='first'"),
    (dict(activation="softmax"), ValueError, "activation='softmax'"),
    (dict(output="tanh"), ValueError, "output='tanh'"),
    (dict(recurrent_init="zeros"), ValueError, "recurrent_init='zeros'"),
    (dict(dtype=np.float16), TypeError, "dtype"),
])
def test_constructor_errors(kwargs, error, match):
    args = dict(input_size=1, hidden_size=3, output_size=1)
    args.update(kwargs)
    with pytest.raises(error, match=match):
        fb.ElmanRNN(**args)


def test_input_and_target_errors_name_the_argument():
    rnn = fb.ElmanRNN(2, 3, 2, readout="all", seed=0)
    trainer = fb.BackpropTrainer(rnn, loss="cross_entropy")
    X = np.zeros((4, 5, 2), np.float32)
    with pytest.raises(ValueError, match="X has 3 features per step"):
        trainer.step(np.zeros((4, 5, 3), np.float32), np.zeros((4, 5), int))
    with pytest.raises(TypeError, match=r"X.astype\(np.float32\)"):
        trainer.step(X.astype(np.float64), np.zeros((4, 5), int))
    with pytest.raises(ValueError, match=r"one target per time step.*\(4, 5\)"):
        trainer.step(X, np.zeros(4, int))
    with pytest.raises(ValueError, match="label 2, outside"):
        trainer.step(X, np.full((4, 5), 2))
    bad = X.copy()
    bad[1, 2, 0] = np.nan
    with pytest.raises(ValueError, match=r"NaN or inf \(first at index \(1, 2, 0\)"):
        trainer.step(bad, np.zeros((4, 5), int))
    with pytest.raises(ValueError, match=r"validation_data\[0\]"):
        trainer.fit(X, np.zeros((4, 5), int), validation_data=(X[:, :, :1], np.zeros((4, 5))))
    with pytest.raises(ValueError, match=r"h0 has 1 states .* expected shape \(4, 3\)"):
        rnn.predict(X, h0=np.zeros((1, 3), np.float32))


def test_truncate_is_validated_and_only_for_recurrent_models():
    rnn = fb.ElmanRNN(1, 3, 1, seed=0)
    with pytest.raises(ValueError, match="truncate must be >= 1, got 0"):
        fb.BackpropTrainer(rnn, truncate=0)
    with pytest.raises(TypeError, match="truncate must be a positive integer"):
        fb.BackpropTrainer(rnn, truncate=2.0)
    with pytest.raises(ValueError, match="truncate=4 applies to recurrent models"):
        fb.BackpropTrainer(fb.MLP([2, 2]), truncate=4)
    assert "truncate=4" in repr(fb.BackpropTrainer(rnn, truncate=4))


def test_trainers_without_recurrent_support_say_so():
    alternatives = pytest.importorskip("alternatives")
    with pytest.raises(TypeError, match="FATrainer trains fb.MLP models; model is ElmanRNN"):
        alternatives.FATrainer(fb.ElmanRNN(1, 3, 1, seed=0))
    assert fb.BackpropTrainer.supports(fb.ElmanRNN(1, 3, 1, seed=0))
    assert not alternatives.DTPTrainer.supports(fb.ElmanRNN(1, 3, 1, seed=0))


"""Synthetic gradients for truncated BPTT (alternatives.sg_recurrent): the
warm-up is plain truncated BPTT exactly, steps match a NumPy twin, an oracle M
makes the windows add up to full BPTT, M learns, state saving, divergence and bad input."""
import naive_rnn
import numpy as np
import pytest
from test_rnn_learning import adding_problem

import fastbp as fb
from alternatives.sg_recurrent import RecurrentSyntheticGradientTrainer as SGRNN


def data(n=6, T=12, dtype=np.float64, seed=0, readout="last"):
    X, y = adding_problem(n, T, seed, dtype)
    if readout == "all":
        y = np.repeat(y[:, None, :], T, axis=1)
    return X, y


@pytest.mark.parametrize("readout", ["last", "all"])
@pytest.mark.parametrize("optimizer", [lambda: fb.SGD(0.1), lambda: fb.Adam(0.01)])
def test_warmup_is_exactly_plain_truncated_bptt(readout, optimizer):
    """While the warm-up lasts M trains but nothing it predicts reaches the
    network: parameters and optimizer state equal plain TBPTT's bit for bit."""
    X, y = data(readout=readout)
    sg_model = fb.ElmanRNN(2, 5, 1, readout=readout, dtype=np.float64, seed=1)
    bp_model = sg_model.copy()
    sg = SGRNN(sg_model, loss="mse", optimizer=optimizer(), truncate=4, warmup=10**6)
    bp = fb.BackpropTrainer(bp_model, loss="mse", optimizer=optimizer(), truncate=4)
    for _ in range(3):
        assert sg.step(X, y) == bp.step(X, y)
    sg.fit(X, y, epochs=2, batch_size=2, seed=3)
    bp.fit(X, y, epochs=2, batch_size=2, seed=3)
    np.testing.assert_array_equal(sg_model.flat_params, bp_model.flat_params)
    np.testing.assert_array_equal(sg.optimizer.state, bp.optimizer.state)
    assert np.any(sg.sg_params != 0)                 # M did train meanwhile


def true_state_gradient(params, X, y, t):
    """Per-sequence dJ/dh_t of the full mean loss (readout last, mse), by
    central differences on an additive perturbation of h_t."""
    n, T, _ = X.shape
    h = params[1].shape[0]
    out = np.zeros((n, h))
    eps = 1e-6
    _, H, _ = naive_rnn.forward(params, X[:, :t], "tanh", "last")
    h_t = H[:, t]
    for s in range(n):
        for j in range(h):
            vals = []
            for sign in (1, -1):
                h0 = h_t.copy()
                h0[s, j] += sign * eps
                vals.append(naive_rnn.loss(params, X[:, t:], y, "tanh", "last", "mse",
                                           "identity", h0))
            out[s, j] = (vals[0] - vals[1]) / (2 * eps) * n
    return out


def test_a_perfect_synthetic_gradient_turns_windows_into_full_bptt():
    """Two windows, readout 'last': if M(h_k) is the true per-sequence gradient
    of the loss with respect to h_k and the scale is 1, the first window's
    gradient plus the last window's equals the full BPTT gradient."""
    X, y = data(n=4, T=8)
    rnn = fb.ElmanRNN(2, 3, 1, dtype=np.float64, seed=2)
    target = true_state_gradient(rnn.params, X, y, 4)
    # a linear M that outputs exactly `target` on these four states: solve
    # for W, b with h_4 (4 x 3) -> target (4 x 3), exact since [h 1] is 4 x 4
    _, H, _ = naive_rnn.forward(rnn.params, X[:, :4], "tanh", "last")
    design = np.hstack([H[:, 4], np.ones((4, 1))])
    solution = np.linalg.solve(design, target)
    trainer = SGRNN(rnn, loss="mse", optimizer=fb.SGD(0.1), truncate=4, sg_scale=1.0)
    W, b = trainer.sg_module
    W[...] = solution[:3].T
    b[...] = solution[3]
    np.testing.assert_allclose(trainer.synthetic_gradient(H[:, 4]), target, atol=1e-9)
    windows = trainer.update_directions(X, y)
    full = fb.BackpropTrainer(rnn, loss="mse").gradients(X, y)
    for a, e in zip(windows, full):
        np.testing.assert_allclose(a, e, rtol=1e-6, atol=1e-9)


def test_a_perfect_synthetic_gradient_with_a_loss_at_every_step():
    """readout 'all', two windows of 4 steps: with M(h_4) the true
    per-sequence gradient of the second window's mean loss, the windows'
    gradients sum to the gradient of J_1 + J_2, i.e. twice the full mean loss's
    (each window averages over half of the terms)."""
    rng = np.random.default_rng(0)
    n, T, k = 4, 8, 4
    X, y = rng.normal(size=(n, T, 2)), rng.normal(size=(n, T, 1))
    rnn = fb.ElmanRNN(2, 3, 1, readout="all", dtype=np.float64, seed=2)
    _, H, _ = naive_rnn.forward(rnn.params, X[:, :k], "tanh", "all")
    h_k = H[:, k]
    target = np.zeros((n, 3))
    eps = 1e-6
    for s in range(n):
        for j in range(3):
            values = []
            for sign in (1, -1):
                h0 = h_k.copy()
                h0[s, j] += sign * eps
                values.append(naive_rnn.loss(rnn.params, X[:, k:], y[:, k:], "tanh", "all",
                                             "mse", "identity", h0))
            target[s, j] = (values[0] - values[1]) / (2 * eps) * n
    solution = np.linalg.solve(np.hstack([h_k, np.ones((n, 1))]), target)
    trainer = SGRNN(rnn, loss="mse", optimizer=fb.SGD(0.1), truncate=k, sg_scale=1.0)
    W, b = trainer.sg_module
    W[...] = solution[:3].T
    b[...] = solution[3]
    windows = trainer.update_directions(X, y)
    full = fb.BackpropTrainer(rnn, loss="mse").gradients(X, y)
    for a, e in zip(windows, full):
        np.testing.assert_allclose(a, 2 * e, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("readout", ["last", "all"])
@pytest.mark.parametrize("sg_hidden", [0, 3])
def test_steps_match_the_numpy_twin(readout, sg_hidden):
    """Two SGD steps of T=10 in windows 4, 4, 2 from a non-zero M, against
    naive_rnn.synthetic_gradient_sgd: the injection, the bootstrapped target
    of M, the order of the updates and the shorter last window."""
    rng = np.random.default_rng(4)
    n, T, k = 3, 10, 4
    X = rng.normal(size=(n, T, 2))
    y = rng.normal(size=(n, T, 2) if readout == "all" else (n, 2))
    rnn = fb.ElmanRNN(2, 4, 2, readout=readout, dtype=np.float64, seed=3)
    def make(model):
        return SGRNN(model, loss="mse", optimizer=fb.SGD(0.2), truncate=k, sg_hidden=sg_hidden,
                     sg_optimizer=fb.SGD(0.05), sg_scale=0.7)

    trainer = make(rnn)
    views = trainer.sg_module
    for v in views:
        v[...] = rng.normal(scale=0.5, size=v.shape)
    params = [p.copy() for p in rnn.params]
    module = [(views[i].copy(), views[i + 1].copy()) for i in range(0, len(views), 2)]
    fused_rnn = rnn.copy()
    fused = make(fused_rnn)
    fused.sg_params[...] = trainer.sg_params
    for _ in range(2):
        trainer.step(X, y)
        params, module = naive_rnn.synthetic_gradient_sgd(
            params, module, X, y, "tanh", readout, "mse", "identity", k, 0.2, 0.05, 0.7)
    for a, e in zip(rnn.params, params):
        np.testing.assert_allclose(a, e, rtol=1e-12, atol=1e-13)
    for a, e in zip(trainer.sg_module, [v for pair in module for v in pair]):
        np.testing.assert_allclose(a, e, rtol=1e-12, atol=1e-13)
    # the fused epochs kernel takes the same steps
    fused.fit(X, y, epochs=2, batch_size=n, shuffle=False)
    np.testing.assert_array_equal(fused_rnn.flat_params, rnn.flat_params)
    np.testing.assert_array_equal(fused.sg_params, trainer.sg_params)


def test_synthetic_gradient_error_falls_while_training():
    X, y = adding_problem(512, 24, 0)
    rnn = fb.ElmanRNN(2, 16, 1, recurrent_init="orthogonal", seed=0)
    trainer = SGRNN(rnn, loss="mse", optimizer=fb.Adam(2e-3), clip_norm=1.0, truncate=6,
                    sg_scale=0.1, sg_optimizer=fb.Adam(3e-3))
    trainer.fit(X, y, epochs=12, batch_size=32, seed=0)
    errors = trainer.sg_errors
    assert len(errors) == 12 and np.all(np.isfinite(errors))
    assert np.mean(errors[-3:]) < 0.5 * errors[0]


def test_state_round_trip_resumes_exactly(tmp_path):
    X, y = data(n=8, T=12, readout="all")
    rnn = fb.ElmanRNN(2, 4, 1, readout="all", dtype=np.float64, seed=0)
    trainer = SGRNN(rnn, loss="mse", optimizer=fb.Adam(0.01), truncate=5, sg_hidden=6)
    trainer.fit(X, y, epochs=2, batch_size=4, seed=0)
    trainer.save_state(tmp_path / "sg.npz")
    trainer.fit(X, y, epochs=2, batch_size=4, seed=1)
    other = SGRNN(fb.ElmanRNN(2, 4, 1, readout="all", dtype=np.float64, seed=9), loss="mse",
                  optimizer=fb.Adam(0.01), truncate=5, sg_hidden=6)
    other.load_state(tmp_path / "sg.npz")
    other.fit(X, y, epochs=2, batch_size=4, seed=1)
    np.testing.assert_array_equal(other.model.flat_params, rnn.flat_params)
    np.testing.assert_array_equal(other.sg_params, trainer.sg_params)


def test_divergence_leaves_network_and_module_unchanged():
    """sg_scale=0: the first window's update is zero, so a refused second
    window must leave the network, M and M's optimizer exactly as they were."""
    X, y = data(n=4, T=8, dtype=np.float32)
    rnn = fb.ElmanRNN(2, 4, 1, dtype=np.float32, seed=0)
    trainer = SGRNN(rnn, loss="mse", optimizer=fb.SGD(1e40), truncate=4, sg_scale=0.0)
    before = rnn.flat_params.copy()
    module = trainer.sg_params.copy()
    state = trainer.sg_optimizer.state.copy()
    with pytest.raises(fb.DivergenceError, match="left as they were"):
        trainer.step(X, y)
    np.testing.assert_array_equal(rnn.flat_params, before)
    np.testing.assert_array_equal(trainer.sg_params, module)
    np.testing.assert_array_equal(trainer.sg_optimizer.state, state)
    assert trainer.sg_optimizer.hyper[5] == 0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtypes_are_preserved(dtype):
    X, y = data(n=4, T=6, dtype=dtype)
    rnn = fb.ElmanRNN(2, 4, 1, dtype=dtype, seed=0)
    trainer = SGRNN(rnn, loss="mse", truncate=3, sg_hidden=5)
    trainer.fit(X, y, epochs=2, batch_size=2)
    assert trainer.sg_params.dtype == dtype and rnn.flat_params.dtype == dtype
    assert trainer.synthetic_gradient(np.zeros((3, 4), dtype)).dtype == dtype


def test_bad_arguments():
    rnn = fb.ElmanRNN(2, 4, 1, seed=0)
    with pytest.raises(ValueError, match="truncate is required"):
        SGRNN(rnn)
    with pytest.raises(ValueError, match="sg_hidden must be an int >= 0"):
        SGRNN(rnn, truncate=4, sg_hidden=-1)
    with pytest.raises(ValueError, match="sg_scale must be a finite number >= 0"):
        SGRNN(rnn, truncate=4, sg_scale=-0.1)
    with pytest.raises(ValueError, match="warmup must be an int >= 0"):
        SGRNN(rnn, truncate=4, warmup=1.5)
    opt = fb.Adam(1e-3)
    with pytest.raises(ValueError, match="sg_optimizer must be a different object"):
        SGRNN(rnn, optimizer=opt, truncate=4, sg_optimizer=opt)
    with pytest.raises(TypeError, match="trains fb.ElmanRNN models; model is MLP"):
        SGRNN(fb.MLP([2, 3, 1]), truncate=4)
    trainer = SGRNN(rnn, truncate=4)
    with pytest.raises(ValueError, match="3-D"):
        trainer.step(np.zeros((3, 5), np.float32), np.zeros((3, 1), np.float32))
    with pytest.raises(ValueError, match="states has 3 features"):
        trainer.synthetic_gradient(np.zeros((2, 3), np.float32))


def test_the_registry_gives_the_recurrent_variant_for_recurrent_models():
    import alternatives

    rnn, mlp = fb.ElmanRNN(2, 4, 1, seed=0), fb.MLP([2, 3, 3, 1])
    assert fb.get_trainer("sg", rnn) is alternatives.RecurrentSyntheticGradientTrainer is SGRNN
    assert fb.get_trainer("sg", mlp) is fb.get_trainer("sg") is alternatives.SyntheticGradientTrainer
    trainer = fb.get_trainer("sg", rnn)(rnn, loss="mse", optimizer=fb.Adam(1e-3), truncate=5,
                                        sg_scale=0.2, warmup=3)
    assert (trainer.truncate, trainer.sg_scale, trainer.warmup) == (5, 0.2, 3)
    with pytest.raises(TypeError, match="RecurrentSyntheticGradientTrainer"):
        alternatives.SyntheticGradientTrainer(rnn)
    with pytest.raises(TypeError, match="conditioned"):
        SGRNN(rnn, truncate=4, conditioned=True)
    with pytest.raises(ValueError, match="truncate is required"):
        SGRNN(rnn)
    with pytest.raises(TypeError, match="truncate"):
        alternatives.SyntheticGradientTrainer(mlp, truncate=4)


def test_compare_runs_it_on_a_sequence_task_with_the_task_window():
    from fastbp import datasets, runs

    task = datasets.get_task("adding")
    assert task.trainer_options["sg"]["truncate"] == 10
    spec = {"trainer": "sg", "lr": None, "weight_decay": None, "seed": 0,
            "trainer_options": {}}
    cls = fb.get_trainer("sg", task.build_model(0, np.float32))
    kwargs = runs.trainer_kwargs(cls, task, spec)
    assert kwargs["truncate"] == 10
    spec["trainer_options"] = {"truncate": 6}
    assert runs.trainer_kwargs(cls, task, spec)["truncate"] == 6


def echo_cross_entropy(probabilities, y, delay):
    """Mean cross-entropy over the echoed steps (t >= delay) of predicted
    probabilities (n, T, 2) against labels y (n, T)."""
    p = probabilities[:, delay:]
    picked = np.take_along_axis(p, y[:, delay:, None], axis=2)
    return float(-np.mean(np.log(np.maximum(picked, 1e-12))))


@pytest.mark.parametrize("delay", [6, 8])
def test_synthetic_gradients_learn_a_dependency_longer_than_the_window(delay):
    """The echo task (target = the bit shown `delay` steps earlier) with a
    window of 4: plain truncated BPTT cannot teach the recurrent weights to
    keep a bit that long and ends at chance (cross-entropy ln 2 = 0.69; its
    readout decodes the untrained recurrence's memory after one epoch, and
    the truncated updates then erase it); synthetic gradients carry the
    credit across windows. Mean over seeds 0-2 with the task's settings (tanh
    32, Adam(1e-3), clip 1, 40 epochs; M linear at Adam(1e-2), sg_scale 1:
    the undiscounted bootstrap, which reaches twice the window; the paper's
    0.1 discounts each window crossed tenfold and only halves the gap in 40
    epochs, see docs/synthetic-gradients.md)."""
    from fastbp import datasets

    task = datasets.get_task("echo")
    opts = task.options(delay=delay)
    sg_ce, sg_acc, bp_ce, bp_acc = [], [], [], []
    for seed in range(3):
        data = task.load(seed=seed, **opts)
        for kind in ("sg", "tbptt"):
            model = task.build_model(seed, **opts)
            if kind == "sg":
                trainer = SGRNN(model, loss=task.loss, optimizer=task.make_optimizer(),
                                truncate=4, sg_scale=1.0, **task.trainer_args)
            else:
                trainer = fb.BackpropTrainer(model, loss=task.loss,
                                             optimizer=task.make_optimizer(), truncate=4,
                                             **task.trainer_args)
            trainer.fit(data.X_train, data.y_train, epochs=task.epochs,
                        batch_size=task.batch_size, seed=seed)
            ce = sg_ce if kind == "sg" else bp_ce
            acc = sg_acc if kind == "sg" else bp_acc
            out = model.predict(data.X_test)
            ce.append(echo_cross_entropy(out, data.y_test, delay))
            acc.append(datasets.accuracy(task, out, data.y_test, **opts))
    assert np.mean(bp_acc) < 0.6 and np.mean(bp_ce) > 0.6         # chance level
    assert np.mean(sg_ce) < np.mean(bp_ce) - 0.4, (sg_ce, bp_ce)
    assert np.mean(sg_acc) > 0.9, sg_acc

"""A diverging run never destroys a model (DESIGN.md, "Bad input"): the step
whose loss or gradient is not finite changes nothing and raises
DivergenceError; fit raises (or warns and stops) with the completed epochs.

The diverging configuration (SGD with lr=1e30 on a small regression problem) was
checked by experiment to overflow within a few steps in both dtypes; the
expected failing step/epoch is never hard-coded but found by running ``step`` on
an identical twin model.
"""
import pickle
import warnings

import numpy as np
import pytest

import fastbp as fb

N = 32
MAX_STEPS = 200


def regression_data(dtype, scale=1.0):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(N, 3)) * scale
    y = (X / scale @ np.array([1.0, -2.0, 0.5])).reshape(-1, 1)
    return X.astype(dtype), y.astype(dtype)


def make_trainer(dtype, optimizer, activation="tanh", seed=0):
    model = fb.MLP([3, 8, 1], activation=activation, output="identity", dtype=dtype, seed=seed)
    return fb.BackpropTrainer(model, loss="mse", optimizer=optimizer)


def state_of(trainer):
    opt = trainer.optimizer
    return (trainer.model.flat_params.copy(), opt.state.copy(), opt.t)


def assert_state_equal(trainer, saved):
    params, state, t = saved
    np.testing.assert_array_equal(trainer.model.flat_params, params)
    np.testing.assert_array_equal(trainer.optimizer.state, state)
    assert trainer.optimizer.t == t


def steps_until_divergence(trainer, X, y, batch_size):
    """Run ``step`` over consecutive batches (no shuffling) until it raises.

    Returns (number of successful steps, objectives of the successful steps,
    the state just before the failing step, the error)."""
    objectives = []
    for s in range(MAX_STEPS):
        start = (s * batch_size) % X.shape[0]
        xb, yb = X[start:start + batch_size], y[start:start + batch_size]
        saved = state_of(trainer)
        try:
            objectives.append(trainer.step(xb, yb))
        except fb.DivergenceError as err:
            return s, objectives, saved, err
    pytest.fail(f"no divergence within {MAX_STEPS} steps: the test setup must diverge")


OPTIMIZERS = {
    "sgd": lambda: fb.SGD(1e30),
    "momentum": lambda: fb.SGD(1e30, momentum=0.9),
    "nesterov": lambda: fb.SGD(1e30, momentum=0.9, nesterov=True),
}


# -- step ---------------------------------------------------------------------------------

# (Adam's step is bounded by lr, so Adam(1e30) overflows float32 but not float64)
@pytest.mark.parametrize("dtype, opt", [(dt, name) for dt in (np.float32, np.float64)
                                        for name in OPTIMIZERS] + [(np.float32, "adam")])
def test_failing_step_leaves_parameters_and_optimizer_state(dtype, opt):
    optimizer = fb.Adam(1e30) if opt == "adam" else OPTIMIZERS[opt]()
    trainer = make_trainer(dtype, optimizer)
    X, y = regression_data(dtype)
    initial = trainer.model.flat_params.copy()
    n_ok, objectives, saved, err = steps_until_divergence(trainer, X, y, N)

    assert n_ok >= 1  # at least one update succeeded, so "before" is not the init
    assert not np.array_equal(saved[0], initial)
    assert_state_equal(trainer, saved)
    assert trainer.optimizer.t == n_ok
    assert np.isfinite(trainer.model.flat_params).all()
    assert np.isfinite(trainer.optimizer.state).all()
    assert all(np.isfinite(objectives))
    assert trainer.model.flat_params.dtype == np.dtype(dtype)

    assert isinstance(err, FloatingPointError)
    assert err.epoch is None and err.history is None
    msg = str(err)
    assert "non-finite" in msg
    assert "smaller learning rate" in msg
    assert "lr=1e+30" in msg


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_failing_step_is_repeatable_and_trainer_recovers(dtype):
    trainer = make_trainer(dtype, fb.SGD(1e30, momentum=0.5))
    X, y = regression_data(dtype)
    _, _, saved, _ = steps_until_divergence(trainer, X, y, N)
    # the same step fails again, still without touching anything
    for _ in range(3):
        with pytest.raises(fb.DivergenceError):
            trainer.step(X, y)
        assert_state_equal(trainer, saved)
    # predictions from the kept parameters are finite
    assert np.isfinite(trainer.model.predict(X)).all()
    # re-initialising the model and the optimizer makes the trainer usable again
    trainer.model.initialize(0)
    trainer.optimizer.reset()
    trainer.optimizer.lr = 0.01
    first = trainer.step(X, y)
    losses = [trainer.step(X, y) for _ in range(50)]
    assert np.isfinite(losses).all()
    assert losses[-1] < first


@pytest.mark.parametrize("dtype, scale", [(np.float32, 1e20), (np.float64, 1e200)])
def test_huge_inputs_fail_on_the_first_step(dtype, scale):
    """Inputs whose square overflows make the very first loss/gradient
    non-finite: nothing is updated, not even the step counter, and the message
    blames the data, not the learning rate."""
    trainer = make_trainer(dtype, fb.SGD(0.01, momentum=0.9), activation="identity")
    X, y = regression_data(dtype, scale=scale)
    assert np.isfinite(X).all()
    initial = state_of(trainer)
    with pytest.raises(fb.DivergenceError, match="data, not the learning rate") as info:
        trainer.step(X, y)
    assert "smaller learning rate" not in str(info.value)
    assert_state_equal(trainer, initial)
    assert trainer.optimizer.t == 0
    assert not trainer.optimizer.state.any()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gradients_and_evaluate_do_not_raise_on_diverged_model(dtype):
    """Only training steps raise DivergenceError; the read-only methods report
    the non-finite values."""
    trainer = make_trainer(dtype, fb.SGD(1e30))
    X, y = regression_data(dtype)
    steps_until_divergence(trainer, X, y, N)
    before = trainer.model.flat_params.copy()
    trainer.gradients(X, y)
    trainer.evaluate(X, y)
    np.testing.assert_array_equal(trainer.model.flat_params, before)


# -- fit ----------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("batch_size", [None, 8])
@pytest.mark.parametrize("opt", ["sgd", "momentum"])
@pytest.mark.parametrize("with_validation", [False, True])
def test_fit_raises_with_epoch_and_history(dtype, batch_size, opt, with_validation):
    X, y = regression_data(dtype)
    bs = N if batch_size is None else batch_size
    steps_per_epoch = -(-N // bs)

    twin = make_trainer(dtype, OPTIMIZERS[opt]())
    n_ok, objectives, saved, _ = steps_until_divergence(twin, X, y, bs)
    expected_epoch = n_ok // steps_per_epoch + 1
    completed = expected_epoch - 1

    trainer = make_trainer(dtype, OPTIMIZERS[opt]())
    kwargs = {"validation_data": (X, y)} if with_validation else {}
    with pytest.raises(fb.DivergenceError) as info:
        trainer.fit(X, y, epochs=expected_epoch + 5, batch_size=batch_size, shuffle=False,
                    **kwargs)
    err = info.value
    assert err.epoch == expected_epoch
    hist = err.history
    assert isinstance(hist, fb.History)
    assert hist.diverged
    assert hist.epochs == completed
    assert len(hist.loss) == completed
    assert len(hist.epoch_time) == completed == len(hist.wall_time)
    assert hist.iterations == n_ok
    assert np.isfinite(hist.loss).all()
    # each completed epoch's loss is the sample-weighted mean of its steps' objectives
    for e in range(completed):
        epoch_obj = objectives[e * steps_per_epoch:(e + 1) * steps_per_epoch]
        np.testing.assert_allclose(hist.loss[e], np.mean(epoch_obj), rtol=1e-12)
    if with_validation:
        assert len(hist.val_loss) == completed
        if batch_size is None:
            # validation set == training set, full batch: the loss after epoch e is the
            # objective of the step of epoch e + 1 (inf for the last: that step failed)
            np.testing.assert_allclose(hist.val_loss[:-1], objectives[1:completed], rtol=1e-9)
    else:
        assert hist.val_loss is None

    msg = str(err)
    assert f"epoch {expected_epoch}" in msg
    assert "smaller learning rate" in msg
    assert hist.message == msg

    # parameters and optimizer state: exactly those from before the failing step
    assert_state_equal(trainer, saved)
    assert np.isfinite(trainer.model.flat_params).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fit_on_divergence_stop_warns_and_returns_history(dtype):
    X, y = regression_data(dtype)
    twin = make_trainer(dtype, fb.SGD(1e30))
    n_ok, _, saved, _ = steps_until_divergence(twin, X, y, N)
    expected_epoch = n_ok + 1

    trainer = make_trainer(dtype, fb.SGD(1e30))
    with pytest.warns(RuntimeWarning) as record:
        hist = trainer.fit(X, y, epochs=expected_epoch + 10, batch_size=None, shuffle=False,
                           on_divergence="stop")
    messages = [str(w.message) for w in record if issubclass(w.category, RuntimeWarning)]
    assert any(f"epoch {expected_epoch}" in m and "smaller learning rate" in m
               for m in messages), messages
    assert isinstance(hist, fb.History)
    assert hist.diverged is True
    assert f"epoch {expected_epoch}" in hist.message
    assert hist.epochs == expected_epoch - 1
    assert hist.iterations == n_ok
    assert hist.training_time >= 0
    assert_state_equal(trainer, saved)
    assert np.isfinite(trainer.model.flat_params).all()


def test_fit_stop_on_first_epoch_returns_empty_history():
    X, y = regression_data(np.float32, scale=1e20)
    trainer = make_trainer(np.float32, fb.SGD(0.01), activation="identity")
    initial = state_of(trainer)
    with pytest.warns(RuntimeWarning, match="epoch 1"):
        hist = trainer.fit(X, y, epochs=3, batch_size=4, on_divergence="stop")
    assert hist.diverged and hist.epochs == 0 and hist.iterations == 0
    assert_state_equal(trainer, initial)


def test_fit_without_divergence_reports_none():
    X, y = regression_data(np.float64)
    trainer = make_trainer(np.float64, fb.SGD(0.05))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        hist = trainer.fit(X, y, epochs=5, batch_size=8, on_divergence="stop")
    assert hist.diverged is False and hist.message == "" and hist.epochs == 5


def test_divergence_error_survives_pickling():
    """The error (e.g. sent back from a worker process) keeps epoch and history."""
    X, y = regression_data(np.float64)
    trainer = make_trainer(np.float64, fb.SGD(1e30))
    with pytest.raises(fb.DivergenceError) as info:
        trainer.fit(X, y, epochs=50, batch_size=None, shuffle=False)
    err = pickle.loads(pickle.dumps(info.value))
    assert isinstance(err, fb.DivergenceError)
    assert str(err) == str(info.value)
    assert err.epoch == info.value.epoch
    assert err.history.loss == info.value.history.loss


# -- known gap ----------------------------------------------------------------------------

@pytest.mark.parametrize("optimizer", [lambda: fb.SGD(1e39), lambda: fb.Adam(1e150)],
                         ids=["sgd-1e39", "adam-1e150"])
def test_update_overflow_never_leaves_non_finite_parameters(optimizer):
    trainer = make_trainer(np.float32, optimizer())
    X, y = regression_data(np.float32)
    for _ in range(5):
        try:
            trainer.step(X, y)
        except fb.DivergenceError:
            pass
        assert np.isfinite(trainer.model.flat_params).all()


def _overflowing(dtype=np.float32):
    X = np.full((10, 4), np.finfo(dtype).max * 0.9, dtype)
    return X, np.arange(10) % 3


def test_evaluate_and_predict_on_overflowing_input_say_so_and_give_no_plausible_accuracy():
    model = fb.MLP([4, 8, 3], output="softmax", seed=0)
    trainer = fb.BackpropTrainer(model)
    X, y = _overflowing()
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)   # no leaked NumPy overflow warning
        with pytest.raises(RuntimeWarning, match="loss on this data is not finite"):
            trainer.evaluate(X, y)
        with pytest.raises(RuntimeWarning, match="predictions of 10 of 10 rows are not finite"):
            model.predict(X)
    with pytest.warns(RuntimeWarning):
        metrics = trainer.evaluate(X, y)
    assert np.isnan(metrics["loss"]) and np.isnan(metrics["accuracy"])


def test_divergence_from_overflowing_input_blames_the_data_not_the_learning_rate():
    trainer = fb.BackpropTrainer(fb.MLP([4, 8, 3], output="softmax", seed=0))
    X, y = _overflowing()
    with pytest.raises(fb.DivergenceError) as info:
        trainer.fit(X, y, epochs=1)
    msg = str(info.value)
    assert "data, not the learning rate" in msg and "scale them" in msg
    assert "smaller learning rate" not in msg
    with pytest.raises(fb.DivergenceError, match="data, not the learning rate"):
        trainer.step(X, y)


def test_a_loss_that_grows_by_orders_of_magnitude_warns_once():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 4)).astype(np.float32)
    y = rng.normal(size=(40, 2)).astype(np.float32)
    trainer = fb.BackpropTrainer(fb.MLP([4, 8, 2], activation="tanh", seed=0), loss="mse",
                                 optimizer=fb.SGD(2.0))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        hist = trainer.fit(X, y, epochs=40, batch_size=40, on_divergence="stop")
    grew = [w for w in caught if "training loss grew" in str(w.message)]
    finite = [v for v in hist.loss if np.isfinite(v)]
    assert max(finite) > 1e3 * finite[0]
    assert len(grew) == 1 and "lr=2" in str(grew[0].message)

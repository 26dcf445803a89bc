"""Trainer.save_state / load_state: the model, the optimizer state and each
trainer's own buffers (feedback matrices, inverses) in one file."""
import threading

import numpy as np
import pytest

import alternatives  # noqa: F401  (registers fa, dfa, dtp, ddtp)
import fastbp as fb

NAMES = ["backprop", "fa", "dfa", "dtp", "ddtp", "sg"]
#: every trainer resumes bit-exactly: those that draw noise keep their own
#: generator state and save it
DETERMINISTIC = NAMES


def data(seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(60, 6)).astype(np.float32)
    y = rng.integers(0, 3, size=60)
    return X, y


def make(name, model_seed=0):
    model = fb.MLP([6, 8, 7, 3], activation="tanh", output="softmax", seed=model_seed)
    return fb.TRAINERS[name](model, loss="cross_entropy", optimizer=fb.Adam(1e-2))


def state_of(trainer):
    return {k: v.copy() for k, v in trainer.state_arrays().items()}


@pytest.mark.parametrize("name", NAMES)
def test_round_trip_restores_model_optimizer_and_own_buffers(tmp_path, name):
    X, y = data()
    a = make(name)
    a.fit(X, y, epochs=2, batch_size=16, seed=0)
    path = tmp_path / "state.npz"
    a.save_state(path)
    b = make(name, model_seed=5)          # different parameters before loading
    b.load_state(path)
    np.testing.assert_array_equal(b.model.flat_params, a.model.flat_params)
    sa, sb = state_of(a), state_of(b)
    assert sa.keys() == sb.keys() and "optimizer_state" in sa
    for k in sa:
        np.testing.assert_array_equal(sb[k], sa[k], err_msg=k)
    for da, db in zip(a.update_directions(X, y), b.update_directions(X, y)):
        np.testing.assert_array_equal(da, db)
    # the file is also a plain model file
    np.testing.assert_array_equal(fb.load(path).flat_params, a.model.flat_params)


@pytest.mark.parametrize("name", DETERMINISTIC)
def test_training_resumes_exactly(tmp_path, name):
    X, y = data()
    a = make(name)
    a.fit(X, y, epochs=2, batch_size=16, seed=0)
    a.save_state(tmp_path / "s.npz")
    b = make(name, model_seed=3)
    b.load_state(tmp_path / "s.npz")
    for _ in range(5):
        assert a.step(X[:16], y[:16]) == b.step(X[:16], y[:16])
    np.testing.assert_array_equal(a.model.flat_params, b.model.flat_params)
    assert a.optimizer.t == b.optimizer.t


def test_wrong_class_or_architecture_is_rejected_and_changes_nothing(tmp_path):
    X, y = data()
    a = make("fa")
    a.fit(X, y, epochs=1, seed=0)
    a.save_state(tmp_path / "fa.npz")
    b = make("dfa", model_seed=1)
    before = (b.model.flat_params.copy(), state_of(b))
    with pytest.raises(ValueError, match="FATrainer"):
        b.load_state(tmp_path / "fa.npz")
    np.testing.assert_array_equal(b.model.flat_params, before[0])
    other = fb.TRAINERS["fa"](fb.MLP([6, 5, 3], activation="tanh", output="softmax"),
                              loss="cross_entropy")
    with pytest.raises(ValueError, match="model"):
        other.load_state(tmp_path / "fa.npz")
    plain = tmp_path / "model.npz"
    a.model.save(plain)
    with pytest.raises(ValueError, match="trainer_class"):
        make("fa").load_state(plain)


def _edited(src, dst, name, edit):
    with np.load(src) as f:
        arrays = {k: f[k] for k in f.files}
    arrays[name] = arrays[name].copy()
    edit(arrays[name])
    np.savez(dst, **arrays)


@pytest.mark.parametrize("name, array, edit, message", [
    ("backprop", "trainer/optimizer_hyper", lambda h: h.__setitem__(1, -1.0), r"\(lr\)"),
    ("dtp", "trainer/inverse_optimizer_hyper", lambda h: h.__setitem__(2, 1.5), "inverse"),
    ("dtp", "trainer/inverse_optimizer_state", lambda s: s.__setitem__((0, 0), np.nan),
     "inverse_optimizer_state"),
    ("ddtp", "trainer/feedback_params", lambda p: p.__setitem__(0, np.inf),
     r"feedback_params\[0\] is inf"),
])
def test_edited_optimizer_or_parameter_set_is_refused_and_changes_nothing(
        tmp_path, name, array, edit, message):
    X, y = data()
    a = make(name)
    a.fit(X, y, epochs=1, batch_size=16, seed=0)
    a.save_state(tmp_path / "s.npz")
    _edited(tmp_path / "s.npz", tmp_path / "bad.npz", array, edit)
    b = make(name, model_seed=4)
    before, params = state_of(b), b.model.flat_params.copy()
    with pytest.raises(ValueError, match=message):
        b.load_state(tmp_path / "bad.npz")
    np.testing.assert_array_equal(b.model.flat_params, params)
    for k, v in state_of(b).items():
        np.testing.assert_array_equal(v, before[k], err_msg=k)


@pytest.mark.parametrize("name", ["dtp", "ddtp"])
def test_the_noise_depends_on_the_trainers_seed_alone(name):
    """Same seed, same run: whether another noisy trainer is built or trained
    in between, and whichever thread runs fit."""
    X, y = data()

    def build():
        model = fb.MLP([6, 8, 7, 3], activation="tanh", output="softmax", seed=0)
        kwargs = {"seed": 3} if name == "dtp" else {"feedback_seed": 3}
        return fb.TRAINERS[name](model, optimizer=fb.Adam(1e-2), sigma=0.5, **kwargs)

    a = build()
    a.fit(X, y, epochs=2, batch_size=16, seed=0)
    b = build()
    make(name, model_seed=9).fit(X, y, epochs=1, batch_size=16, seed=1)   # noise drawn here
    b.fit(X, y, epochs=2, batch_size=16, seed=0)
    c = build()
    worker = threading.Thread(target=c.fit, args=(X, y),
                              kwargs=dict(epochs=2, batch_size=16, seed=0))
    worker.start()
    worker.join()
    for other in (b, c):
        np.testing.assert_array_equal(other.model.flat_params, a.model.flat_params)
    different = build()
    different.fit(X, y, epochs=1, batch_size=16, seed=0)
    later = build()
    later.fit(X, y, epochs=1, batch_size=16, seed=0)
    np.testing.assert_array_equal(later.model.flat_params, different.model.flat_params)

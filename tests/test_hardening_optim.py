"""Optimizers: one trainer per optimizer, and loaded hyper-parameters checked
as strictly as constructor arguments (hardening issue, items 7 and 10)."""
import numpy as np
import pytest

import fastbp as fb
from fastbp.kernels import codes
from fastbp.kernels.optim import EPS, KIND, LR, T, A, B


def _trainer(optimizer, sizes=(3, 4, 2), dtype=np.float64, seed=0):
    model = fb.MLP(list(sizes), activation="tanh", output="identity", dtype=dtype, seed=seed)
    return fb.BackpropTrainer(model, loss="mse", optimizer=optimizer)


def _data(dtype=np.float64):
    rng = np.random.default_rng(0)
    return rng.normal(size=(8, 3)).astype(dtype), rng.normal(size=(8, 2)).astype(dtype)


# -- item 10: one optimizer, one trainer --------------------------------------------------

@pytest.mark.parametrize("make", [lambda: fb.Adam(1e-2), lambda: fb.SGD(0.1),
                                  lambda: fb.SGD(0.1, momentum=0.9)])
def test_an_optimizer_bound_to_a_trainer_refuses_a_second_one_of_the_same_size(make):
    opt = make()
    first = _trainer(opt, seed=0)
    before = opt.state.copy()
    with pytest.raises(ValueError) as info:
        _trainer(opt, seed=1)  # same architecture, same dtype: same state shape
    msg = str(info.value)
    assert type(opt).__name__ in msg and "already bound" in msg
    assert "new optimizer" in msg and "copy()" in msg
    assert first.optimizer is opt
    np.testing.assert_array_equal(opt.state, before)


def test_copy_is_an_unbound_optimizer_with_the_same_settings():
    opt = fb.Adam(0.02, betas=(0.8, 0.99), eps=1e-6)
    a = _trainer(opt, seed=0)
    X, y = _data()
    a.step(X, y)
    twin = opt.copy()
    assert type(twin) is fb.Adam and twin.state is None and twin.t == 0
    assert (twin.lr, twin.betas, twin.eps) == (0.02, (0.8, 0.99), 1e-6)
    b = _trainer(twin, seed=0)
    b.step(X, y)
    # separate moments: the second trainer's first step equals the first's
    assert opt.t == 1 and twin.t == 1
    np.testing.assert_array_equal(opt.state, twin.state)
    twin.lr = 0.5
    assert opt.lr == 0.02
    sgd = fb.SGD(0.3, momentum=0.5, nesterov=True).copy()
    assert (sgd.lr, sgd.momentum, sgd.nesterov, sgd.n_slots) == (0.3, 0.5, True, 1)


# -- item 7: Optimizer.check_loaded ---------------------------------------------------------

def _saved(optimizer, dtype=np.float64):
    """(optimizer, hyper, state) after two steps: what save_state writes."""
    trainer = _trainer(optimizer, dtype=dtype)
    X, y = _data(dtype)
    trainer.step(X, y)
    trainer.step(X, y)
    return optimizer, optimizer.hyper.copy(), optimizer.state.copy()


def test_a_saved_state_passes_and_nothing_changes():
    for make in (lambda: fb.Adam(1e-2), lambda: fb.SGD(0.1, momentum=0.9, nesterov=True),
                 lambda: fb.SGD(0.1)):
        opt, hyper, state = _saved(make())
        fresh = make()
        _trainer(fresh)
        fresh_hyper, fresh_state = fresh.hyper.copy(), fresh.state.copy()
        fresh.check_loaded(hyper, state, "run.npz")
        np.testing.assert_array_equal(fresh.hyper, fresh_hyper)
        np.testing.assert_array_equal(fresh.state, fresh_state)


def test_the_files_learning_rate_is_accepted_as_it_is():
    """Resume is exact: another lr in the file than in the constructor is not
    an error (the file wins, see check_loaded's docstring)."""
    _, hyper, state = _saved(fb.Adam(1e-2))
    other = fb.Adam(0.5, betas=(0.5, 0.5))
    _trainer(other)
    other.check_loaded(hyper, state, "run.npz")


def _edit(hyper, index, value):
    out = hyper.copy()
    out[index] = value
    return out


def _adam_cases():
    _, hyper, state = _saved(fb.Adam(1e-2))
    nan_moment = state.copy()
    nan_moment[0, 3] = np.nan
    neg_v = state.copy()
    neg_v[1, 2] = -1e-3
    return {
        "lr_negative": (_edit(hyper, LR, -1.0), state, ["optimizer_hyper[1]", "lr", "-1.0"]),
        "lr_zero": (_edit(hyper, LR, 0.0), state, ["lr", "0.0", "> 0"]),
        "lr_nan": (_edit(hyper, LR, np.nan), state, ["lr", "nan"]),
        "unknown_kind": (_edit(hyper, KIND, 7.0), state,
                         ["optimizer_hyper[0]", "7.0", "not a known optimizer code"]),
        "other_kind": (_edit(hyper, KIND, float(codes.SGD)), state,
                       ["optimizer kind", "SGD", "Adam"]),
        "beta1_above_one": (_edit(hyper, A, 1.5), state, ["optimizer_hyper[2]", "betas[0]",
                                                          "1.5", "[0, 1)"]),
        "beta2_negative": (_edit(hyper, B, -0.1), state, ["betas[1]", "-0.1"]),
        "eps_zero": (_edit(hyper, EPS, 0.0), state, ["optimizer_hyper[4]", "eps", "0.0"]),
        "t_negative": (_edit(hyper, T, -3.0), state, ["update count", "-3.0"]),
        "t_fraction": (_edit(hyper, T, 2.5), state, ["update count", "2.5"]),
        "t_inf": (_edit(hyper, T, np.inf), state, ["update count", "inf"]),
        "hyper_short": (hyper[:5], state, ["optimizer_hyper", "(6,)", "(5,)"]),
        "hyper_float32": (hyper.astype(np.float32), state, ["optimizer_hyper", "float32"]),
        "nan_moment": (hyper, nan_moment, ["optimizer_state", "nan", "(0, 3)"]),
        "negative_second_moment": (hyper, neg_v, ["optimizer_state[1]", "second moments",
                                                  "-0.001", "index 2"]),
        "state_wrong_shape": (hyper, state[:, :-1], ["optimizer_state", "shape",
                                                     str(state[:, :-1].shape)]),
        "state_one_slot": (hyper, state[:1], ["optimizer_state", str(state[:1].shape)]),
        "state_wrong_dtype": (hyper, state.astype(np.float32), ["optimizer_state",
                                                                "float32", "float64"]),
    }


@pytest.mark.parametrize("case", list(_adam_cases()))
def test_edited_adam_state_is_refused(case):
    hyper, state, parts = _adam_cases()[case]
    opt = fb.Adam(1e-2)
    _trainer(opt)
    before = opt.hyper.copy(), opt.state.copy()
    with pytest.raises(ValueError) as info:
        opt.check_loaded(hyper, state, "'run.npz'")
    msg = str(info.value)
    for part in ["'run.npz'"] + parts:
        assert part in msg, (part, msg)
    np.testing.assert_array_equal(opt.hyper, before[0])
    np.testing.assert_array_equal(opt.state, before[1])


def _sgd_cases():
    _, hyper, state = _saved(fb.SGD(0.1, momentum=0.9))
    return {
        "momentum_one": (hyper, state, A, 1.0, ["momentum", "1.0", "[0, 1)"]),
        "momentum_negative": (hyper, state, A, -0.5, ["momentum", "-0.5"]),
        "nesterov_two": (hyper, state, B, 2.0, ["nesterov", "2.0", "0 or 1"]),
        "eps_set": (hyper, state, EPS, 0.3, ["optimizer_hyper[4]", "0.3", "SGD"]),
        "lr_negative": (hyper, state, LR, -1.0, ["lr", "-1.0"]),
    }


@pytest.mark.parametrize("case", list(_sgd_cases()))
def test_edited_sgd_state_is_refused(case):
    hyper, state, index, value, parts = _sgd_cases()[case]
    opt = fb.SGD(0.1, momentum=0.9)
    _trainer(opt)
    with pytest.raises(ValueError) as info:
        opt.check_loaded(_edit(hyper, index, value), state, "ckpt.npz")
    msg = str(info.value)
    for part in ["ckpt.npz"] + parts:
        assert part in msg, (part, msg)


def test_nesterov_without_momentum_is_refused():
    _, hyper, state = _saved(fb.SGD(0.1))
    opt = fb.SGD(0.1)
    _trainer(opt)
    with pytest.raises(ValueError, match="nesterov.*needs momentum > 0"):
        opt.check_loaded(_edit(hyper, B, 1.0), state, "ckpt.npz")


def test_momentum_state_into_plain_sgd_names_both_methods():
    _, hyper, state = _saved(fb.SGD(0.1, momentum=0.9))
    plain = fb.SGD(0.1)
    _trainer(plain)
    with pytest.raises(ValueError) as info:
        plain.check_loaded(hyper, state, "ckpt.npz")
    msg = str(info.value)
    for part in ["ckpt.npz", "optimizer_state", "momentum=0.9", "1 state slot", "keeps 0"]:
        assert part in msg, (part, msg)


def test_array_names_appear_in_messages():
    _, hyper, state = _saved(fb.Adam(1e-2))
    opt = fb.Adam()
    _trainer(opt)
    with pytest.raises(ValueError, match=r"f\.npz: trainer/inverse_optimizer_hyper\[1\] \(lr\)"):
        opt.check_loaded(_edit(hyper, LR, -1.0), state, "f.npz",
                         hyper_name="trainer/inverse_optimizer_hyper",
                         state_name="trainer/inverse_optimizer_state")

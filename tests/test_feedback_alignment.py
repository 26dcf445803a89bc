"""Feedback alignment (alternatives.FATrainer) and direct feedback alignment
(alternatives.DFATrainer).

* update directions against plain-NumPy twins written from the equations
  (float64, tight tolerance), on the loop path and the BLAS path of the kernels;
* derived properties: FA with B_l = W_l is backprop exactly; FA and DFA on a
  network without hidden layers are backprop exactly;
* the feedback matrices never change while every forward parameter moves;
* the fused epoch kernel takes exactly the steps ``step`` takes;
* divergence, validation, registry;
* learning digits to >= 0.93 test accuracy (marked slow).
"""
import numpy as np
import pytest

import alternatives
import fastbp as fb
from alternatives import DFATrainer, FATrainer
from naive_feedback import twin_dfa, twin_fa
from test_gradients import make_targets as gradient_targets

TRAINERS = (FATrainer, DFATrainer)
RTOL = 1e-10
ATOL = 1e-12


TWINS = {FATrainer: twin_fa, DFATrainer: twin_dfa}


def make_targets(rng, loss, n, k):
    """Class labels for cross-entropy, else target rows (the gradient tests' draws)."""
    return gradient_targets(rng, loss, "labels" if loss == "cross_entropy" else "rows", n, k)


# (sizes, hidden activations, output, loss, rows); the last case is large
# enough (rows * max n_in * n_out >= 4096) to take the kernels' BLAS path
CASES = [
    ([3, 5, 4, 2], ["tanh", "tanh"], "softmax", "cross_entropy", 7),
    ([4, 6, 5, 3], ["sigmoid", "leaky_relu"], "sigmoid", "binary_cross_entropy", 5),
    ([2, 3, 3, 4, 2], ["relu", "tanh", "sigmoid"], "identity", "mse", 6),
    ([5, 4, 3], ["tanh"], "identity", "squared_error", 1),
    ([20, 64, 48, 10], ["tanh", "relu"], "softmax", "cross_entropy", 40),
]


def _model_and_batch(case, dtype=np.float64, seed=0):
    sizes, acts, output, loss, rows = case
    model = fb.MLP(sizes, activation=acts, output=output, dtype=dtype, seed=seed,
                   init="uniform")  # nonzero biases too
    rng = np.random.default_rng(seed + 1)
    X = rng.normal(size=(rows, sizes[0])).astype(dtype)
    y = make_targets(rng, loss, rows, sizes[-1])
    if not np.issubdtype(np.asarray(y).dtype, np.integer):
        y = y.astype(dtype)
    return model, X, y


@pytest.mark.parametrize("cls", TRAINERS)
@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(map(str, c[0])) + "-" + c[3])
@pytest.mark.parametrize("lam", [0.0, 0.03])
def test_update_directions_match_numpy_twin(cls, case, lam):
    model, X, y = _model_and_batch(case)
    trainer = cls(model, loss=case[3], weight_decay=lam, feedback_seed=3)
    got = trainer.update_directions(X, y)
    want = TWINS[cls](model.params[0::2], model.params[1::2], trainer.feedback,
                      case[1], case[2], case[3], X, y, lam)
    assert len(got) == len(want) == len(model.params)
    for g, w, p in zip(got, want, model.params):
        assert g.shape == p.shape and g.dtype == np.float64
        np.testing.assert_allclose(g, w, rtol=RTOL, atol=ATOL)
    # nothing was updated
    before = model.flat_params.copy()
    trainer.update_directions(X, y)
    assert np.array_equal(model.flat_params, before)


@pytest.mark.parametrize("cls", TRAINERS)
def test_update_directions_float32(cls):
    case = CASES[0]
    m64, X, y = _model_and_batch(case)
    m32 = fb.MLP(case[0], activation=case[1], output=case[2], dtype=np.float32)
    m32.flat_params[...] = m64.flat_params
    t32 = cls(m32, feedback_seed=3)
    got = t32.update_directions(X.astype(np.float32), y)
    want = TWINS[cls](m32.params[0::2], m32.params[1::2], t32.feedback,
                      case[1], case[2], case[3], X.astype(np.float32), y)
    for g, w in zip(got, want):
        assert g.dtype == np.float32
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(map(str, c[0])))
@pytest.mark.parametrize("lam", [0.0, 0.03])
def test_fa_with_feedback_equal_to_weights_is_backprop(case, lam):
    """Derived property: B_l = W_l turns FA into backpropagation, bit for bit
    (the same kernels read the same numbers)."""
    model, X, y = _model_and_batch(case)
    fa = FATrainer(model, loss=case[3], weight_decay=lam, feedback_seed=0)
    for B, W in zip(fa.feedback, model.params[0::2]):
        B[...] = W
    bp = fb.BackpropTrainer(model, loss=case[3], weight_decay=lam)
    for g, w in zip(fa.update_directions(X, y), bp.gradients(X, y)):
        assert np.array_equal(g, w)


@pytest.mark.parametrize("cls", TRAINERS)
def test_no_hidden_layer_is_backprop(cls):
    """Without hidden layers no delta is fed back: both are exact gradients."""
    model, X, y = _model_and_batch(([6, 3], [], "softmax", "cross_entropy", 9))
    trainer = cls(model, feedback_seed=0)
    bp = fb.BackpropTrainer(model)
    for g, w in zip(trainer.update_directions(X, y), bp.gradients(X, y)):
        assert np.array_equal(g, w)


@pytest.mark.parametrize("cls", TRAINERS)
def test_directions_differ_from_backprop(cls):
    """With random feedback the hidden layers do not get the gradient (while
    the output layer, fed e directly, does)."""
    model, X, y = _model_and_batch(CASES[0])
    got = cls(model, feedback_seed=0).update_directions(X, y)
    bp = fb.BackpropTrainer(model).gradients(X, y)
    np.testing.assert_allclose(got[-2], bp[-2], rtol=1e-12)
    assert not np.allclose(got[0], bp[0])


# -- feedback matrices --------------------------------------------------------------------

def test_feedback_shapes_and_distribution():
    model = fb.MLP([30, 200, 100, 10], activation="tanh", output="softmax")
    fa = FATrainer(model, feedback_seed=5, feedback_scale=2.0)
    assert [B.shape for B in fa.feedback] == [W.shape for W in model.params[0::2]]
    assert fa._feedback.shape == model.flat_params.shape
    assert not fa._feedback[model.n_weights:].any()          # bias slots unused
    dfa = DFATrainer(model, feedback_seed=5, feedback_scale=2.0)
    assert [B.shape for B in dfa.feedback] == [(10, 200), (10, 100)]
    assert dfa._feedback.shape == (10 * 300,)
    for B in fa.feedback + dfa.feedback:
        assert B.dtype == np.float32
        r = 2.0 / np.sqrt(B.shape[0])                        # U(-r, r), r = scale/sqrt(fan)
        assert np.abs(B).max() <= r
        assert abs(B.std() - r / np.sqrt(3)) < 0.1 * r
    # the seed fixes the matrices; another seed changes them
    again = FATrainer(model.copy(), feedback_seed=5, feedback_scale=2.0)
    assert np.array_equal(again._feedback, fa._feedback)
    other = FATrainer(model.copy(), feedback_seed=6, feedback_scale=2.0)
    assert not np.array_equal(other._feedback, fa._feedback)


@pytest.mark.parametrize("cls", TRAINERS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_feedback_fixed_while_every_parameter_moves(cls, dtype):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(64, 8)).astype(dtype)
    y = rng.integers(0, 4, size=64)
    model = fb.MLP([8, 16, 12, 4], activation="tanh", output="softmax", dtype=dtype,
                   seed=0)
    trainer = cls(model, optimizer=fb.Adam(1e-2), feedback_seed=1)
    feedback0 = trainer._feedback.copy()
    params0 = [p.copy() for p in model.params]
    trainer.step(X[:16], y[:16])
    trainer.fit(X, y, epochs=3, batch_size=16, seed=0)
    assert np.array_equal(trainer._feedback, feedback0)
    for p, p0 in zip(model.params, params0):
        assert np.all(p != p0)


# -- training ------------------------------------------------------------------------

@pytest.mark.parametrize("cls", TRAINERS)
@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
def test_fused_epochs_take_the_steps_of_step(cls, loss):
    """fit (one compiled epoch kernel) applies exactly the updates that
    calling ``step`` batch after batch applies (no shuffling; a last partial
    batch; labels and target rows)."""
    output = "softmax" if loss == "cross_entropy" else "identity"
    rng = np.random.default_rng(0)
    X = rng.normal(size=(50, 5))
    y = make_targets(rng, loss, 50, 3)
    a = fb.MLP([5, 7, 6, 3], activation="tanh", output=output, dtype=np.float64, seed=0)
    b = a.copy()
    ta = cls(a, loss=loss, optimizer=fb.SGD(0.1, momentum=0.9), weight_decay=1e-3,
             clip_norm=1.0, feedback_seed=2)
    tb = cls(b, loss=loss, optimizer=fb.SGD(0.1, momentum=0.9), weight_decay=1e-3,
             clip_norm=1.0, feedback_seed=2)
    hist = ta.fit(X, y, epochs=2, batch_size=16, shuffle=False)
    objectives = []
    for _ in range(2):
        for s in range(0, 50, 16):
            objectives.append(tb.step(X[s:s + 16], y[s:s + 16]))
    np.testing.assert_allclose(a.flat_params, b.flat_params, rtol=1e-12, atol=1e-14)
    assert hist.iterations == 8
    sizes = np.array([16, 16, 16, 2] * 2)
    per_epoch = (np.array(objectives) * sizes).reshape(2, 4).sum(axis=1) / 50
    np.testing.assert_allclose(hist.loss, per_epoch, rtol=1e-10)


@pytest.mark.parametrize("cls", TRAINERS)
def test_divergence_leaves_parameters(cls):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(20, 4)).astype(np.float32) * 1e3
    y = rng.normal(size=(20, 2)).astype(np.float32) * 1e30
    model = fb.MLP([4, 5, 2], activation="tanh", output="identity", seed=0)
    trainer = cls(model, loss="mse", optimizer=fb.SGD(1e10), feedback_seed=0)
    before = model.flat_params.copy()
    with pytest.raises(fb.DivergenceError):
        trainer.step(X, y)
    assert np.array_equal(model.flat_params, before)
    with pytest.warns(RuntimeWarning):
        hist = trainer.fit(X, y, epochs=2, batch_size=5, on_divergence="stop")
    assert hist.diverged
    assert np.array_equal(model.flat_params, before)


@pytest.mark.parametrize("cls", TRAINERS)
def test_validation(cls):
    model = fb.MLP([3, 4, 2], activation="tanh", output="softmax")
    with pytest.raises(ValueError):
        cls(model, feedback_scale=0.0)
    with pytest.raises(TypeError):
        cls(model, feedback_scale="big")
    with pytest.raises(ValueError):
        cls(model, feedback_seed=-1)
    with pytest.raises(TypeError):
        cls("not a model")
    trainer = cls(model, feedback_seed=0)
    with pytest.raises(ValueError):
        trainer.step(np.zeros((4, 5), dtype=np.float32), np.zeros(4, dtype=int))
    with pytest.raises(ValueError):
        trainer.update_directions(np.full((2, 3), np.nan, dtype=np.float32), [0, 1])
    assert "feedback_seed=0" in repr(trainer)


def test_registered():
    assert fb.get_trainer("fa") is alternatives.FATrainer
    assert fb.get_trainer("dfa") is alternatives.DFATrainer
    assert FATrainer.name == "fa" and DFATrainer.name == "dfa"


@pytest.mark.slow
@pytest.mark.parametrize("cls", TRAINERS)
def test_learns_digits(cls, digits):
    """Settings: MLP [64, 128, 128, 10], tanh, softmax, xavier init seed 0,
    float32; Adam(1e-3), cross-entropy, batch 32, 30 epochs, shuffle seed 0,
    feedback_seed 1, feedback_scale 1. Measured test accuracy 0.967 (FA) and
    0.969 (DFA) in about 0.3 s each; seeds 0..7 all gave >= 0.962."""
    Xtr, Xte, ytr, yte = digits
    model = fb.MLP([64, 128, 128, 10], activation="tanh", output="softmax", seed=0)
    trainer = cls(model, loss="cross_entropy", optimizer=fb.Adam(1e-3), feedback_seed=1)
    hist = trainer.fit(Xtr, ytr, epochs=30, batch_size=32, seed=0,
                       validation_data=(Xte, yte))
    assert not hist.diverged and len(hist.loss) == 30
    assert hist.loss[-1] < hist.loss[0]
    metrics = trainer.evaluate(Xte, yte)
    assert metrics["accuracy"] >= 0.93
    assert hist.val_accuracy[-1] == pytest.approx(metrics["accuracy"])

"""Central finite differences of ``trainer.objective`` against
``BackpropTrainer.gradients`` in float64, for every valid pairing of hidden
activation, output activation and loss (fastbp.losses.COMPATIBLE_OUTPUTS),
both label forms of cross_entropy, a deeper net, and weight decay.

The objective itself is checked against the NumPy twin first, so the
finite differences differentiate the right function.
"""
import numpy as np
import pytest

import fastbp as fb
import naive
from fastbp.losses import COMPATIBLE_OUTPUTS

STEP = 1e-6
MAX_REL_ERROR = 1e-6
# |pre-activation| below this counts as too close to a relu kink: a step of
# STEP in one parameter moves a pre-activation by at most ~STEP * |input|
KINK_MARGIN = 1e-3

CASES = [(loss, out, form)
         for loss in sorted(COMPATIBLE_OUTPUTS)
         for out in COMPATIBLE_OUTPUTS[loss]
         for form in (("labels", "rows") if loss == "cross_entropy" else ("rows",))]


def make_targets(rng, loss, form, n, k):
    if form == "labels":
        return rng.integers(0, k, size=n)
    if loss == "cross_entropy":
        return rng.dirichlet(np.ones(k), size=n)  # probability rows
    if loss == "binary_cross_entropy":
        return rng.uniform(0.0, 1.0, size=(n, k))
    return rng.normal(size=(n, k))


def one_hot_targets(rng, n, k):
    return naive.one_hot(rng.integers(0, k, size=n), k)


def layers_of(model):
    return [(W.astype(np.float64), b.astype(np.float64))
            for W, b in zip(model.params[0::2], model.params[1::2])]


def safe_inputs(model, n, seed):
    """Random inputs whose hidden pre-activations all keep KINK_MARGIN away
    from 0 (only relu/leaky_relu care, but the check is cheap)."""
    rng = np.random.default_rng(seed)
    acts = model.activations + [model.output]
    for _ in range(200):
        X = rng.normal(size=(n, model.n_inputs))
        As, _ = naive.mlp_forward(layers_of(model), acts, X)
        if all(np.abs(A).min() > KINK_MARGIN for A in As[:-1]):
            return X, rng
    raise AssertionError("no kink-free inputs found; pick another seed")


def finite_difference_gradients(trainer, X, y):
    """Central differences of trainer.objective, one parameter at a time,
    perturbing the model's parameter views in place; aligned with model.params."""
    return naive.central_differences(lambda: trainer.objective(X, y), trainer.model.params,
                                     STEP)


def relative_error(a, b):
    a = np.concatenate([x.ravel() for x in a])
    b = np.concatenate([x.ravel() for x in b])
    return np.linalg.norm(a - b) / max(np.linalg.norm(a) + np.linalg.norm(b), 1e-300)


def check_gradients(model, loss, y_maker, n=6, seed=0, weight_decay=0.0):
    X, rng = safe_inputs(model, n, seed)
    y = y_maker(rng, n, model.n_outputs)
    trainer = fb.BackpropTrainer(model, loss=loss, optimizer=fb.SGD(0.1),
                                 weight_decay=weight_decay)
    # the function being differentiated is the twin's objective
    layers = layers_of(model)
    As, _ = naive.mlp_forward(layers, model.activations + [model.output], X)
    y_twin = y.reshape(n, 1) if y.ndim == 1 and loss != "cross_entropy" else y
    expected_obj = naive.loss_value(loss, As[-1], y_twin, model.output) \
        + naive.weight_decay_penalty([W for W, _ in layers], weight_decay)
    assert trainer.objective(X, y) == pytest.approx(expected_obj, rel=1e-12, abs=1e-14)
    analytic = trainer.gradients(X, y)
    numeric = finite_difference_gradients(trainer, X, y)
    err = relative_error(analytic, numeric)
    assert err < MAX_REL_ERROR, f"relative error {err:.3g}"
    for a, b in zip(analytic, numeric):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-8)
    # gradients are not all ~0 (the check would then be vacuous)
    assert max(np.abs(g).max() for g in numeric) > 1e-3
    return trainer, X, y, analytic


@pytest.mark.parametrize("case", CASES, ids=["-".join(c) for c in CASES])
@pytest.mark.parametrize("hidden", naive.HIDDEN)
def test_gradients_match_finite_differences(hidden, case):
    loss, out, form = case
    model = fb.MLP([3, 4, 3], activation=hidden, output=out, dtype=np.float64, seed=1,
                   init="uniform")
    check_gradients(model, loss, lambda rng, n, k: make_targets(rng, loss, form, n, k))


@pytest.mark.parametrize("out", ["softmax", "identity"])
def test_cross_entropy_one_hot_rows_match_finite_differences(out):
    model = fb.MLP([3, 5, 4], activation="tanh", output=out, dtype=np.float64, seed=2,
                   init="uniform")
    check_gradients(model, "cross_entropy", one_hot_targets)


def test_one_hot_rows_and_labels_give_the_same_gradient():
    model = fb.MLP([3, 5, 4], activation="sigmoid", output="softmax", dtype=np.float64,
                   seed=3, init="uniform")
    trainer = fb.BackpropTrainer(model, loss="cross_entropy", optimizer=fb.SGD(0.1))
    rng = np.random.default_rng(0)
    X = rng.normal(size=(7, 3))
    labels = rng.integers(0, 4, size=7)
    g_labels = trainer.gradients(X, labels)
    g_rows = trainer.gradients(X, naive.one_hot(labels, 4))
    for a, b in zip(g_labels, g_rows):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)
    assert trainer.objective(X, labels) == pytest.approx(
        trainer.objective(X, naive.one_hot(labels, 4)), rel=1e-12)


@pytest.mark.parametrize("loss,out", [("binary_cross_entropy", "sigmoid"),
                                      ("squared_error", "identity")])
def test_single_output_targets_of_shape_n(loss, out):
    model = fb.MLP([2, 3, 1], activation="tanh", output=out, dtype=np.float64, seed=4,
                   init="uniform")
    check_gradients(model, loss, lambda rng, n, k: rng.uniform(0, 1, size=n))


@pytest.mark.parametrize("case", CASES, ids=["-".join(c) for c in CASES])
def test_no_hidden_layer_matches_finite_differences(case):
    """sizes [3, 4]: one weight layer, the output activation only."""
    loss, out, form = case
    model = fb.MLP([3, 4], output=out, dtype=np.float64, seed=8, init="uniform")
    check_gradients(model, loss, lambda rng, n, k: make_targets(rng, loss, form, n, k))


@pytest.mark.parametrize("acts", [["tanh", "relu"], ["sigmoid", "leaky_relu"],
                                  ["relu", "identity"], ["leaky_relu", "sigmoid"]])
@pytest.mark.parametrize("loss,out", [("cross_entropy", "softmax"),
                                      ("squared_error", "sigmoid"),
                                      ("binary_cross_entropy", "identity")])
def test_deeper_net_matches_finite_differences(acts, loss, out):
    model = fb.MLP([3, 5, 4, 3], activation=acts, output=out, dtype=np.float64, seed=5,
                   init="uniform")
    form = "labels" if loss == "cross_entropy" else "rows"
    check_gradients(model, loss, lambda rng, n, k: make_targets(rng, loss, form, n, k), n=8)


@pytest.mark.parametrize("loss,out", [("mse", "identity"), ("cross_entropy", "softmax")])
def test_weight_decay_gradient(loss, out):
    """d/dW (lambda/2 ||W||^2) = lambda W is added to weights only."""
    lam = 0.3
    model = fb.MLP([3, 5, 4, 2], activation=["tanh", "sigmoid"], output=out,
                   dtype=np.float64, seed=6, init="uniform")
    form = "labels" if loss == "cross_entropy" else "rows"
    trainer, X, y, with_decay = check_gradients(
        model, loss, lambda rng, n, k: make_targets(rng, loss, form, n, k),
        weight_decay=lam)
    plain_trainer = fb.BackpropTrainer(model, loss=loss, optimizer=fb.SGD(0.1))
    plain = plain_trainer.gradients(X, y)
    for i, (gd, gp, p) in enumerate(zip(with_decay, plain, model.params)):
        expected = lam * p if i % 2 == 0 else np.zeros_like(p)  # W_l, then b_l
        np.testing.assert_allclose(gd - gp, expected, rtol=1e-10, atol=1e-14)
    assert trainer.objective(X, y) == pytest.approx(
        plain_trainer.objective(X, y) + naive.weight_decay_penalty(model.params[0::2], lam),
        rel=1e-12)


@pytest.mark.parametrize("optimizer", ["sgd_momentum", "adam"])
def test_gradients_change_nothing(optimizer):
    model = fb.MLP([3, 4, 2], activation="relu", output="softmax", dtype=np.float64, seed=7)
    opt = fb.SGD(0.1, momentum=0.9) if optimizer == "sgd_momentum" else fb.Adam(0.01)
    trainer = fb.BackpropTrainer(model, loss="cross_entropy", optimizer=opt,
                                 weight_decay=0.1, clip_norm=0.01)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(5, 3))
    y = rng.integers(0, 2, size=5)
    trainer.step(X, y)  # non-zero optimizer state and t
    params = model.flat_params.copy()
    views = [p.copy() for p in model.params]
    state, t = opt.state.copy(), opt.t
    g1 = trainer.gradients(X, y)
    np.testing.assert_array_equal(model.flat_params, params)
    for p, v in zip(model.params, views):
        np.testing.assert_array_equal(p, v)
    np.testing.assert_array_equal(opt.state, state)
    assert opt.t == t
    # not clipped: clip_norm=0.01 is far below the gradient's norm
    assert np.sqrt(sum(np.sum(g ** 2) for g in g1)) > 0.1
    # fresh arrays each call, not accumulated, not views of the model
    g_copy = [g.copy() for g in g1]
    for g in g1:
        g[...] = 1e6
    g2 = trainer.gradients(X, y)
    for a, b in zip(g2, g_copy):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(model.flat_params, params)
    _, _, expected = naive.mlp_loss_gradients(layers_of(model), ["relu", "softmax"], X, y,
                                              "cross_entropy")
    np.testing.assert_allclose(g2[0], expected[0][0] + 0.1 * model.params[0], rtol=1e-10,
                               atol=1e-14)

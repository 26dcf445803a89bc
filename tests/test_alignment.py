"""alternatives.alignment: per-layer angles between update directions and the
backprop gradient, and recording them during fit."""
import numpy as np
import pytest

import fastbp as fb
from alternatives import AlignmentRecorder, DFATrainer, FATrainer, alignment, layer_angles


def data(n=40, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 5))
    y = rng.integers(0, 3, size=n)
    return X, y


def test_layer_angles_known_vectors():
    W = np.array([[1.0, 0.0]])
    b = np.array([0.0])
    same = layer_angles([W, b], [2 * W, b])
    orth = layer_angles([W, b], [np.array([[0.0, 1.0]]), b])
    opposite = layer_angles([W, b], [-W, b])
    np.testing.assert_allclose([same[0], orth[0], opposite[0]], [0.0, 90.0, 180.0], atol=1e-6)
    # 45 degrees: (1, 0) against (1, 1), bias entries included in the layer vector
    np.testing.assert_allclose(layer_angles([W, b], [np.array([[1.0, 0.0]]), np.array([1.0])]),
                               [45.0], atol=1e-6)
    assert np.isnan(layer_angles([0 * W, b], [W, b])[0])


def test_backprop_is_aligned_with_itself():
    X, y = data()
    model = fb.MLP([5, 7, 3], activation="tanh", output="softmax", dtype=np.float64, seed=0)
    trainer = fb.BackpropTrainer(model, loss="cross_entropy", weight_decay=0.01)
    np.testing.assert_allclose(alignment(trainer, X, y), [0.0, 0.0], atol=1e-5)


def test_feedback_alignment_angles_match_a_numpy_computation():
    X, y = data()
    model = fb.MLP([5, 7, 6, 3], activation="tanh", output="softmax", dtype=np.float64, seed=1)
    trainer = FATrainer(model, loss="cross_entropy", feedback_seed=3)
    before = model.flat_params.copy()
    angles = alignment(trainer, X, y)
    np.testing.assert_array_equal(model.flat_params, before)      # nothing updated
    d = trainer.update_directions(X, y)
    g = fb.BackpropTrainer(model, loss="cross_entropy").gradients(X, y)
    for l in range(3):
        a = np.concatenate([d[2 * l].ravel(), d[2 * l + 1].ravel()])
        b = np.concatenate([g[2 * l].ravel(), g[2 * l + 1].ravel()])
        expected = np.degrees(np.arccos(a @ b / np.linalg.norm(a) / np.linalg.norm(b)))
        assert angles[l] == pytest.approx(expected, abs=1e-9)
    assert angles[-1] == pytest.approx(0.0, abs=1e-5)   # output layer gets the true gradient
    assert angles[0] > 1.0                                # hidden layers do not (random B)


@pytest.mark.parametrize("feedback_seed", [0, 1, 2])
def test_fit_records_alignment_and_dfa_comes_into_alignment(feedback_seed):
    # a learnable task: labels from a random linear teacher
    rng = np.random.default_rng(2)
    X = rng.normal(size=(400, 5)).astype(np.float32)
    y = np.argmax(X @ rng.normal(size=(5, 3)), axis=1)
    model = fb.MLP([5, 16, 3], activation="tanh", output="softmax", seed=0)
    trainer = DFATrainer(model, loss="cross_entropy", optimizer=fb.SGD(0.1),
                         feedback_seed=feedback_seed)
    hist = trainer.fit(X, y, epochs=10, batch_size=20, seed=0,
                       callbacks=[AlignmentRecorder(X, y)])
    angles = np.array(hist.records["alignment"])
    assert angles.shape == (10, 2)
    assert np.all((angles >= 0) & (angles <= 180))
    assert hist.epochs == 10 and len(hist.epoch_time) == 10
    assert hist.accuracy[-1] > 0.9
    # DFA's premise (Nokland 2016): the hidden layer's update comes into
    # alignment with the gradient while the network learns
    assert angles[-1, 0] < angles[0, 0]
    assert angles[-1, 0] < 80.0
    np.testing.assert_allclose(angles[:, 1], 0.0, atol=1e-3)  # output layer: true gradient


def test_fit_rejects_non_callable_callbacks():
    X, y = data()
    trainer = fb.BackpropTrainer(fb.MLP([5, 3], output="softmax", dtype=np.float64))
    before = trainer.model.flat_params.copy()
    with pytest.raises(TypeError, match="callbacks"):
        trainer.fit(X, y, callbacks=[42])
    np.testing.assert_array_equal(trainer.model.flat_params, before)


def test_callbacks_see_every_epoch_in_order():
    X, y = data()
    trainer = fb.BackpropTrainer(fb.MLP([5, 3], output="softmax", dtype=np.float64))
    seen = []
    hist = trainer.fit(X, y, epochs=5, callbacks=[lambda t, e, h: seen.append((e, h.epochs))])
    assert seen == [(1, 1), (2, 2), (3, 3), (4, 4), (5, 5)]
    assert hist.records == {}

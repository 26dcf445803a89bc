"""Validation that was too lenient (hardening issue, items 13 and 15):
cross-entropy target rows must be probability distributions, and one dtype
rule for lists and arrays (see fastbp.validation's module docstring)."""
import numpy as np
import pytest

import fastbp as fb
from fastbp.losses import distribution_tolerance, prepare_sequence_targets, prepare_targets


def _classifier(dtype=np.float64, k=3):
    model = fb.MLP([4, 5, k], activation="tanh", output="softmax", dtype=dtype, seed=0)
    return fb.BackpropTrainer(model, loss="cross_entropy", optimizer=fb.SGD(0.1))


def _X(n=6, dtype=np.float64):
    return np.random.default_rng(0).normal(size=(n, 4)).astype(dtype)


# -- item 13: cross-entropy rows -------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_all_zero_rows_are_refused_naming_the_first(dtype):
    y = np.eye(3, dtype=dtype)[[0, 1, 2, 0, 1, 2]]
    y[4] = 0.0
    y[5] = 0.0
    trainer = _classifier(dtype)
    before = trainer.model.flat_params.copy()
    for call in (trainer.step, trainer.gradients, trainer.evaluate,
                 lambda X, y: trainer.fit(X, y, epochs=1)):
        with pytest.raises(ValueError) as info:
            call(_X(dtype=dtype), y)
        msg = str(info.value)
        for part in ["y", "cross_entropy", "probability distributions", "row 4", "sums to 0",
                     "2 of 6 rows"]:
            assert part in msg, (part, msg)
    np.testing.assert_array_equal(trainer.model.flat_params, before)


@pytest.mark.parametrize("rows, fragment", [
    ([[0.5, 0.5, 0.5]], "sums to 1.5"),
    ([[2.0, 0.0, 0.0]], "sums to 2"),
    ([[30.0, 50.0, 20.0]], "sums to 100"),  # percentages
    ([[0.3, 0.3, 0.3]], "sums to 0.9"),
])
def test_rows_that_do_not_sum_to_one_are_refused(rows, fragment):
    y = np.vstack([np.eye(3)[[0, 1]], rows])
    with pytest.raises(ValueError, match=fragment) as info:
        prepare_targets(y, "cross_entropy", 3, 3, np.float64)
    assert "row 2" in str(info.value)


def test_negative_entries_name_the_row():
    y = np.eye(3)[[0, 1, 2]]
    y[1] = [1.5, -0.5, 0.0]   # sums to 1, but is not a distribution
    with pytest.raises(ValueError) as info:
        prepare_targets(y, "cross_entropy", 3, 3, np.float64, argument="validation_data[1]")
    msg = str(info.value)
    for part in ["validation_data[1]", ">= 0", "-0.5", "row 1"]:
        assert part in msg, (part, msg)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_probability_rows_within_the_dtype_tolerance_pass(dtype):
    rng = np.random.default_rng(1)
    p = rng.dirichlet(np.ones(10), size=200)  # float64 rows, cast to the model dtype
    _, targets = prepare_targets(p, "cross_entropy", 200, 10, dtype)
    assert targets.dtype == np.dtype(dtype)
    tol = distribution_tolerance(dtype)
    assert tol == pytest.approx(np.sqrt(np.finfo(dtype).eps))
    nudged = np.eye(10, dtype=dtype)[rng.integers(0, 10, 5)]
    nudged[:, 0] += dtype(tol / 2)
    prepare_targets(nudged, "cross_entropy", 5, 10, dtype)
    nudged[2, 0] += dtype(tol * 2)
    with pytest.raises(ValueError, match="row 2"):
        prepare_targets(nudged, "cross_entropy", 5, 10, dtype)


def test_per_step_rows_name_sequence_and_step():
    y = np.zeros((2, 4, 3))
    y[..., 0] = 1.0
    y[1, 2] = [0.2, 0.2, 0.2]
    with pytest.raises(ValueError) as info:
        prepare_sequence_targets(y, "cross_entropy", 2, 4, 3, "all", np.float64)
    assert "sequence 1, step 2" in str(info.value)
    rnn = fb.ElmanRNN(2, 3, 3, readout="last", output="softmax", dtype=np.float64, seed=0)
    trainer = fb.BackpropTrainer(rnn, loss="cross_entropy", optimizer=fb.SGD(0.1))
    with pytest.raises(ValueError, match="row 1 sums to 0"):
        trainer.step(np.zeros((2, 4, 2)), np.array([[1.0, 0, 0], [0, 0, 0]]))


def test_binary_cross_entropy_targets_stay_within_zero_and_one():
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        prepare_targets(np.full((2, 2), 1.01), "binary_cross_entropy", 2, 2, np.float64)
    prepare_targets(np.array([[0.0, 1.0], [0.25, 0.75]]), "binary_cross_entropy", 2, 2,
                    np.float64)


# -- item 15: one dtype rule ---------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_lists_and_tuples_are_converted_to_the_model_dtype(dtype):
    trainer = _classifier(dtype)
    X = _X(dtype=dtype)
    as_list = X.tolist()
    expected = trainer.model.predict(X)
    np.testing.assert_array_equal(trainer.model.predict(as_list), expected)
    np.testing.assert_array_equal(trainer.model.predict(tuple(map(tuple, as_list))), expected)
    ints = [[1, 0, 2, 3]]
    np.testing.assert_array_equal(trainer.model.predict(ints),
                                  trainer.model.predict(np.array(ints, dtype=dtype)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_arrays_of_another_dtype_are_refused_with_the_cast_to_write(dtype):
    trainer = _classifier(dtype)
    other = np.float64 if dtype == np.float32 else np.float32
    for X in (_X(dtype=other), _X().astype(np.int64)):
        with pytest.raises(TypeError) as info:
            trainer.model.predict(X)
        msg = str(info.value)
        assert f"X.astype(np.{np.dtype(dtype).name})" in msg and str(X.dtype) in msg


class _ArrayLike:
    """An array of another library: it has a dtype of its own."""

    def __init__(self, a):
        self.a = a
        self.dtype = a.dtype

    def __array__(self, dtype=None, copy=None):
        return self.a if dtype is None else self.a.astype(dtype)


def test_array_likes_with_a_dtype_follow_the_array_rule():
    trainer = _classifier(np.float32)
    with pytest.raises(TypeError, match="float64"):
        trainer.model.predict(_ArrayLike(_X(dtype=np.float64)))
    X = _X(dtype=np.float32)
    np.testing.assert_array_equal(trainer.model.predict(_ArrayLike(X)),
                                  trainer.model.predict(X))


@pytest.mark.parametrize("X, what", [
    ([["0.1", "0.2", "0.3", "0.4"]], "<U3"),      # strings were converted before
    ([[1 + 2j, 0, 0, 0]], "complex128"),
    ([[0.1, 0.2], [0.3]], "inhomogeneous"),
    ([[None, 1.0, 2.0, 3.0]], "object"),
])
def test_lists_of_non_numbers_are_refused(X, what):
    trainer = _classifier(np.float32)
    with pytest.raises(TypeError) as info:
        trainer.model.predict(X)
    msg = str(info.value)
    assert "X" in msg and "numeric" in msg and "list" in msg, msg
    assert what in msg, msg


def test_the_rule_is_documented():
    import fastbp.validation as v
    doc = v.__doc__
    for part in ["lists", "tuples", "converted", "never casts an array", "astype",
                 "Targets"]:
        assert part in doc, part

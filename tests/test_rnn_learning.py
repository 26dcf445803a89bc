"""Recurrent networks learn real sequence problems (marked slow: seconds)."""
import numpy as np
import pytest

import fastbp as fb


def adding_problem(n, T, seed, dtype=np.float32):
    """The adding problem (Hochreiter & Schmidhuber 1997; Le et al. 2015):
    channel 0 holds T numbers uniform in [0, 1], channel 1 marks two of them
    (one in each half); the target is the sum of the marked numbers.
    Predicting the mean (1.0) scores an MSE of 2/12 = 0.167."""
    rng = np.random.default_rng(seed)
    X = np.zeros((n, T, 2), dtype)
    X[:, :, 0] = rng.uniform(0.0, 1.0, size=(n, T))
    rows = np.arange(n)
    first = rng.integers(0, T // 2, size=n)
    second = rng.integers(T // 2, T, size=n)
    X[rows, first, 1] = 1.0
    X[rows, second, 1] = 1.0
    y = (X[rows, first, 0] + X[rows, second, 0]).reshape(n, 1)
    return X, y.astype(dtype)


@pytest.mark.slow
def test_adding_problem_length_30():
    """A ReLU network with identity recurrent initialisation (the IRNN of
    Le et al. 2015), Adam 2e-3, clip 1, 30 epochs of 4000 sequences: test MSE
    far below the 0.167 of predicting the mean (about 2e-4 here)."""
    X, y = adding_problem(4000, 30, seed=0)
    X_test, y_test = adding_problem(1000, 30, seed=1)
    baseline = float(np.mean((y_test - y.mean()) ** 2))
    assert baseline == pytest.approx(1 / 6, abs=0.02)
    rnn = fb.ElmanRNN(2, 32, 1, activation="relu", recurrent_init="identity", seed=0)
    trainer = fb.BackpropTrainer(rnn, loss="mse", optimizer=fb.Adam(2e-3), clip_norm=1.0)
    trainer.fit(X, y, epochs=30, batch_size=32, seed=0)
    assert trainer.evaluate(X_test, y_test)["loss"] < 0.02


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_digits_read_row_by_row(dtype):
    """scikit-learn's 8x8 digits as sequences of 8 rows of 8 pixels; tanh,
    64 units, orthogonal W_rec, Adam 3e-3, 20 epochs: about 0.97 test accuracy."""
    datasets = pytest.importorskip("sklearn.datasets")
    model_selection = pytest.importorskip("sklearn.model_selection")
    digits = datasets.load_digits()
    X = (digits.images / 16.0).astype(dtype)
    X_train, X_test, y_train, y_test = model_selection.train_test_split(
        X, digits.target, test_size=0.25, random_state=0, stratify=digits.target)
    rnn = fb.ElmanRNN(8, 64, 10, activation="tanh", recurrent_init="orthogonal", dtype=dtype,
                      seed=0)
    trainer = fb.BackpropTrainer(rnn, loss="cross_entropy", optimizer=fb.Adam(3e-3))
    hist = trainer.fit(X_train, y_train, epochs=20, batch_size=32, seed=0,
                       validation_data=(X_test, y_test))
    assert hist.val_accuracy[-1] >= 0.90
    assert trainer.evaluate(X_test, y_test)["accuracy"] == hist.val_accuracy[-1]

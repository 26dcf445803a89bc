"""The ``fastbp demo`` command: the 2-2-2 worked example and a digits classifier."""
import time

import numpy as np

from .models import MLP
from .optim import SGD, Adam
from .backprop import BackpropTrainer


def worked_example(print_fn=print):
    """One backprop step of the classic 2-2-2 sigmoid network, printed.

    Returns
    -------
    dict with the forward outputs, E_total, the gradients [dW1, db1, dW2, db2]
    and the updated params, all float64.
    """
    model = MLP([2, 2, 2], activation="sigmoid", output="sigmoid", dtype=np.float64)
    W1, b1, W2, b2 = model.params
    W1[...] = [[0.1, 0.3], [0.2, 0.4]]
    b1[...] = 0.25
    W2[...] = [[0.5, 0.6], [0.7, 0.8]]
    b2[...] = 0.35
    trainer = BackpropTrainer(model, loss="squared_error", optimizer=SGD(0.6))
    X = np.array([[0.1, 0.5]])
    y = np.array([[0.05, 0.95]])
    out = model.predict(X)[0]
    grads = trainer.gradients(X, y)
    e_total = trainer.step(X, y)
    print_fn("2-2-2 sigmoid network, one step of gradient descent (rate 0.6)")
    print_fn(f"  outputs   out_o1 = {out[0]:.5f}   out_o2 = {out[1]:.5f}")
    print_fn(f"  E_total   {e_total:.5f}")
    gw = grads[2]
    print_fn(f"  dE/dw5..w8 = {gw[0, 0]:.5f} {gw[0, 1]:.5f} {gw[1, 0]:.5f} {gw[1, 1]:.5f}"
             f"   dE/dw1 = {grads[0][0, 0]:.5f}")
    W1, _, W2, _ = model.params
    print_fn(f"  updated   w1..w4 = {W1[0, 0]:.5f} {W1[1, 0]:.5f} {W1[0, 1]:.5f} {W1[1, 1]:.5f}")
    print_fn(f"            w5..w8 = {W2[0, 0]:.5f} {W2[0, 1]:.5f} {W2[1, 0]:.5f} {W2[1, 1]:.5f}")
    return {"outputs": out, "E_total": e_total, "gradients": grads,
            "params": [p.copy() for p in model.params]}


def digits_classifier(epochs=20, seed=0, print_fn=print):
    """Train a 64-128-10 ReLU/softmax MLP on scikit-learn's 8x8 digits.

    Returns the History and the test metrics, or None (with a one-line install
    hint printed) when scikit-learn is missing.
    """
    try:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
    except ImportError:
        print_fn("digits: needs scikit-learn: pip install 'fastbp[compare]'")
        return None
    digits = load_digits()
    X = (digits.data / 16.0).astype(np.float32)
    Xtr, Xte, ytr, yte = train_test_split(X, digits.target, test_size=0.25, random_state=0)
    model = MLP([64, 128, 10], activation="relu", output="softmax", seed=seed)
    trainer = BackpropTrainer(model, loss="cross_entropy", optimizer=Adam(1e-3))
    t0 = time.perf_counter()
    hist = trainer.fit(Xtr, ytr, epochs=epochs, batch_size=32, seed=seed)
    seconds = time.perf_counter() - t0
    test = trainer.evaluate(Xte, yte)
    # fit runs the first epoch in a kernel call of its own, so epoch_time[0]
    # holds any Numba compilation (cached on disk after the first run)
    steps_per_epoch = hist.iterations // hist.epochs
    later = hist.epoch_time[1:]
    per_step = 1e6 * sum(later) / (steps_per_epoch * len(later)) if later else float("nan")
    print_fn(f"digits 64-128-10 relu/softmax, Adam(1e-3), batch 32: {epochs} epochs, "
             f"{hist.iterations} steps in {seconds:.2f} s (first epoch, with any "
             f"compilation: {hist.epoch_time[0]:.2f} s; then {per_step:.1f} us/step)")
    print_fn(f"  train loss {hist.loss[-1]:.4f}  accuracy {hist.accuracy[-1]:.4f}   "
             f"test loss {test['loss']:.4f}  accuracy {test['accuracy']:.4f}")
    return hist, test


def run(epochs=20, seed=0):
    """Everything ``fastbp demo`` prints."""
    worked_example()
    print()
    digits_classifier(epochs=epochs, seed=seed)

"""DTP on a network with one hidden layer (no inverses to train) learns with
its default schedule.

The alternating schedule makes two passes per epoch (inverses, then forward
weights) when there are inverses, and one when there are none; that one
pass used to train the (absent) inverses, so ``fit`` left the network as it
was: on ``fastbp compare --task digits`` (64-128-10) DTP stayed at chance
(0.125) and on xor at 0.55 over 5 seeds, while the joint schedule reached
0.933 on digits after 5 epochs.
"""
import numpy as np

import fastbp as fb
from alternatives import DTPTrainer


def _fit(schedule):
    rng = np.random.default_rng(4)
    X, y = rng.normal(size=(40, 6)), rng.integers(0, 3, 40)
    model = fb.MLP([6, 8, 3], activation="tanh", output="softmax", dtype=np.float64, seed=0)
    tr = DTPTrainer(model, optimizer=fb.Adam(1e-2), schedule=schedule, seed=0)
    assert tr.inverse_params.shape == (0,)
    before = model.flat_params.copy()
    hist = tr.fit(X, y, epochs=3, batch_size=10, seed=0)
    return before, model.flat_params.copy(), hist


def test_alternate_without_inverses_trains_the_forward_weights():
    before, after, hist = _fit("alternate")        # the default schedule
    assert np.all(after != before)
    assert hist.loss[0] > 0 and hist.loss[-1] < hist.loss[0]
    # with nothing to alternate with, it is the joint schedule, step for step
    _, joint, _ = _fit("joint")
    np.testing.assert_array_equal(after, joint)

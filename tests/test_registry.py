"""The trainer registry and its entry-point plug-ins."""
import warnings

import pytest

import fastbp as fb
from fastbp import registry


def test_alternatives_are_found_through_entry_points():
    names = fb.available_trainers()
    for name in ("backprop", "fa", "dfa", "dtp", "ddtp"):
        assert name in names
    assert fb.get_trainer("dtp").__name__ == "DTPTrainer"


def test_unknown_trainer_names_the_known_ones():
    with pytest.raises(ValueError, match="'nope' is not registered; known: .*backprop"):
        fb.get_trainer("nope")


def test_register_trainer_rejects_non_trainers():
    with pytest.raises(TypeError, match="Trainer subclass"):
        fb.register_trainer("bad", dict)
    with pytest.raises(TypeError, match="non-empty str"):
        fb.register_trainer("", fb.BackpropTrainer)


def test_broken_plugin_warns_and_the_others_still_load(monkeypatch):
    class BrokenEntryPoint:
        name, value = "broken", "nowhere:Nothing"

        def load(self):
            raise ImportError("no module named nowhere")

    import importlib.metadata as md
    real = md.entry_points
    monkeypatch.setattr(md, "entry_points",
                        lambda group: [BrokenEntryPoint(), *real(group=group)])
    monkeypatch.setattr(registry, "_plugins_loaded", False)
    monkeypatch.setattr(registry, "TRAINERS", {"backprop": fb.BackpropTrainer})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        names = registry.available_trainers()
    assert "broken" not in names and "dfa" in names
    assert any("'broken'" in str(w.message) and "nowhere" in str(w.message) for w in caught)


def test_plugins_reach_the_kernel_arrays_through_public_properties():
    """A trainer outside fastbp calls fastbp.kernels with ``model.layout`` and
    ``optimizer.hyper``: they are the live arrays the kernels use, not copies."""
    import numpy as np

    from fastbp.kernels.optim import LR, T

    model = fb.MLP([3, 4, 2], activation="tanh", seed=0)
    np.testing.assert_array_equal(model.layout[:4], [2, 3, 4, 2])
    assert model.layout.dtype == np.int64
    opt = fb.SGD(0.1)
    trainer = fb.BackpropTrainer(model, loss="mse", optimizer=opt)
    X = np.zeros((2, 3), dtype=np.float32)
    y = np.ones((2, 2), dtype=np.float32)
    trainer.step(X, y)
    trainer.fit(X, y, epochs=2, batch_size=2)
    assert opt.hyper[T] == 3 == opt.t          # advanced in place by the kernels
    opt.lr = 0.25
    assert opt.hyper[LR] == 0.25
    rnn = fb.ElmanRNN(2, 5, 3, readout="all")
    np.testing.assert_array_equal(rnn.layout[:3], [2, 5, 3])
    assert rnn.layout[-1] == 1

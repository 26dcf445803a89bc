"""The plug-in example of docs/examples: sign-symmetric feedback written from
fastbp's public names only, registered through an entry point and run by
``fastbp compare``."""
import importlib.metadata as md
import os
import re
import sys

import numpy as np
import pytest

import fastbp as fb
from fastbp import registry
from naive_feedback import twin_fa

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs",
                        "examples")
SOURCE = os.path.join(EXAMPLES, "sign_symmetry.py")


@pytest.fixture
def sign_plugin(monkeypatch):
    """Register the example as a third-party package would: through an entry
    point of the ``fastbp.trainers`` group, never imported by the test."""
    monkeypatch.syspath_prepend(EXAMPLES)
    entry = md.EntryPoint(name="sign", value="sign_symmetry:SignSymmetryTrainer",
                          group=registry.ENTRY_POINT_GROUP)
    real = md.entry_points

    def entry_points(**select):
        found = real(**select)
        return [entry, *found] if select.get("group") == entry.group else found
    monkeypatch.setattr(md, "entry_points", entry_points)
    monkeypatch.setattr(registry, "_plugins_loaded", False)
    monkeypatch.setattr(registry, "TRAINERS", dict(registry.TRAINERS))
    monkeypatch.delitem(sys.modules, "sign_symmetry", raising=False)
    return fb.get_trainer("sign")


def test_the_example_uses_public_names_only():
    text = open(SOURCE).read()
    imports = re.findall(r"^(?:from|import) (\S+)", text, flags=re.M)
    assert all(not part.startswith("_") for name in imports for part in name.split("."))
    assert not re.search(r"\b(?:fb|fastbp|self|model|m|trainer)\._[a-z]", text)
    assert not re.search(r"import .*\b_[a-z]", text)


def test_registered_through_an_entry_point(sign_plugin):
    assert sign_plugin.__name__ == "SignSymmetryTrainer"
    assert "sign" in fb.available_trainers()


@pytest.mark.parametrize("sizes, acts, output, loss, rows", [
    ([3, 5, 4, 2], ["tanh", "tanh"], "softmax", "cross_entropy", 7),
    ([20, 64, 48, 10], ["tanh", "relu"], "softmax", "cross_entropy", 40),   # BLAS path
    ([2, 3, 3, 2], ["sigmoid", "leaky_relu"], "identity", "mse", 5),
])
@pytest.mark.parametrize("lam", [0.0, 0.03])
def test_update_direction_is_fa_with_sign_feedback(sign_plugin, sizes, acts, output, loss,
                                                   rows, lam):
    model = fb.MLP(sizes, activation=acts, output=output, dtype=np.float64, seed=0,
                   init="uniform")
    rng = np.random.default_rng(1)
    X = rng.normal(size=(rows, sizes[0]))
    y = rng.integers(0, sizes[-1], size=rows) if loss == "cross_entropy" \
        else rng.normal(size=(rows, sizes[-1]))
    trainer = sign_plugin(model, loss=loss, weight_decay=lam)
    before = model.flat_params.copy()
    got = trainer.update_directions(X, y)
    Ws, bs = model.params[0::2], model.params[1::2]
    want = twin_fa(Ws, bs, [np.sign(W) for W in Ws], acts, output, loss, X, y, lam)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-12)
    np.testing.assert_array_equal(model.flat_params, before)


def test_fused_epochs_take_the_steps_of_step(sign_plugin):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(20, 4)).astype(np.float32)
    y = rng.integers(0, 3, size=20)
    a = sign_plugin(fb.MLP([4, 6, 3], output="softmax", seed=0), optimizer=fb.SGD(0.1))
    b = sign_plugin(fb.MLP([4, 6, 3], output="softmax", seed=0), optimizer=fb.SGD(0.1))
    a.fit(X, y, epochs=2, batch_size=5, shuffle=False)
    for _ in range(2):
        for start in range(0, 20, 5):
            b.step(X[start:start + 5], y[start:start + 5])
    np.testing.assert_array_equal(a.model.flat_params, b.model.flat_params)


def test_runs_in_fastbp_compare(sign_plugin):
    res = fb.compare(tasks=["xor"], trainers=["backprop", "sign"], seeds=1, epochs=3,
                     progress=False)
    runs = {r["trainer"]: r for r in res.runs}
    assert runs["sign"]["status"] == "ok", runs["sign"]
    assert len(runs["sign"]["train_loss"]) == 3 and len(runs["sign"]["test_accuracy"]) == 3
    assert runs["sign"]["alignment"] is not None   # update_directions drew the angles

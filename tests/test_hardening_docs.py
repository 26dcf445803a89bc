"""What a reader sees (hardening issue, item 19): a short History repr, sums
printed with their sign, labelled reference lines in the figures."""
import numpy as np
import pytest

import fastbp as fb
from fastbp.explain import explain
from fastbp.history import History


def test_history_repr_is_one_short_line():
    h = History(loss=list(np.linspace(2, 0.1, 500)), accuracy=[0.5] * 499 + [0.97],
                val_loss=[0.3] * 500, val_accuracy=[0.9] * 500, epoch_time=[0.01] * 500,
                wall_time=list(np.arange(500) * 0.01), iterations=16000, training_time=5.25)
    text = repr(h)
    assert "\n" not in text and len(text) < 200, text
    for part in ["500 epochs", "loss=0.1", "accuracy=0.97", "val_loss=0.3",
                 "val_accuracy=0.9", "iterations=16000", "5.25 s"]:
        assert part in text, (part, text)
    assert "History(0 epochs" in repr(History())
    stopped = History(loss=[1.0], diverged=True, message="loss is NaN in epoch 2")
    assert "1 epoch," in repr(stopped) and "diverged: loss is NaN in epoch 2" in repr(stopped)


def test_fit_returns_a_history_whose_repr_is_short():
    model = fb.MLP([3, 4, 2], activation="tanh", output="softmax", dtype=np.float64, seed=0)
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(40, 3)), rng.integers(0, 2, 40)
    hist = fb.BackpropTrainer(model, optimizer=fb.Adam(1e-2)).fit(X, y, epochs=300,
                                                                  batch_size=10)
    assert repr(hist).startswith("History(300 epochs, loss=") and len(repr(hist)) < 200
    assert len(hist.loss) == 300  # the lists are all still there


def test_explain_prints_a_negative_term_with_a_minus_sign():
    text = str(explain())
    assert "+ -" not in text
    # delta_o2 is negative in the worked example
    assert "dE/dout_h1 = 0.133430*w5 - 0.029291*w7 = 0.133430*0.500000 - 0.029291*0.700000" \
        in text
    other = str(explain(weights=(-0.1, 0.2, 0.3, -0.4, 0.5, -0.6, 0.7, 0.8),
                        biases=(-0.25, 0.35)))
    assert "+ -" not in other
    assert "0.200000*0.100000 - 0.400000*0.500000 - 0.250000 = -0.430000" in other


def test_figures_label_their_reference_lines(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure

    legends = []
    real_savefig = Figure.savefig

    def recording_savefig(fig, *args, **kwargs):
        for ax in fig.axes:
            legend = ax.get_legend()
            if legend is not None:
                legends.append([t.get_text() for t in legend.get_texts()])
        return real_savefig(fig, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", recording_savefig)
    res = fb.compare(tasks=["xor"], trainers=["backprop", "fa"], seeds=1, epochs=2,
                     progress=False, out=tmp_path)
    assert len(res.meta["figures"]) == 2
    flat = [label for labels in legends for label in labels]
    assert "target accuracy 1" in flat
    assert any(label.startswith("90°") for label in flat)

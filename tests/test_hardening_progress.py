"""Progress output (hardening issue, item 4): bars only on an interactive
stream; in a redirected log, plain lines (at most one per tenth of a fit's
epochs, one per compare run), never carriage-return frames."""
import io
import sys

import numpy as np
import pytest

import fastbp as fb
from fastbp.progress import RunProgress, is_interactive, progress_bar


class _Terminal(io.StringIO):
    def isatty(self):
        return True


class _Closed(io.StringIO):
    def isatty(self):
        raise ValueError("I/O operation on closed file")


def test_is_interactive():
    assert is_interactive(_Terminal())
    assert not is_interactive(io.StringIO())
    assert not is_interactive(_Closed())
    assert not is_interactive(object())
    kernel_stream = type("OutStream", (io.StringIO,), {"__module__": "ipykernel.iostream"})
    assert is_interactive(kernel_stream())


def test_a_redirected_bar_writes_at_most_one_line_per_tenth(capsys):
    bar = progress_bar(200)
    for _ in range(200):
        bar.update(1, {"loss": 0.5, "acc": 0.9})
    bar.close()
    err = capsys.readouterr().err
    assert "\r" not in err
    lines = err.splitlines()
    assert [line.split()[1] for line in lines] == [f"{k}/200" for k in range(20, 201, 20)]
    assert lines[-1] == "epoch 200/200  loss 0.5  acc 0.9"


def test_a_redirected_bar_prints_the_last_epoch_of_an_uneven_total(capsys):
    bar = progress_bar(7)
    for n in (3, 3, 1):           # fit runs several epochs per call
        bar.update(n, {"loss": 1.0})
    bar.close()
    assert [line.split()[1] for line in capsys.readouterr().err.splitlines()] == \
        ["3/7", "6/7", "7/7"]


def test_a_terminal_gets_a_bar(monkeypatch):
    pytest.importorskip("tqdm")
    term = _Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    bar = progress_bar(5)
    for _ in range(5):
        bar.update(1, {"loss": 0.5})
    bar.close()
    assert "\r" in term.getvalue() and "5/5" in term.getvalue()


def test_fit_with_progress_into_a_log_writes_no_bar(capsys):
    model = fb.MLP([3, 4, 2], activation="tanh", output="softmax", dtype=np.float64, seed=0)
    trainer = fb.BackpropTrainer(model, optimizer=fb.Adam(1e-2))
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(32, 3)), rng.integers(0, 2, 32)
    trainer.fit(X, y, epochs=60, batch_size=8, progress=True, validation_data=(X, y))
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("epoch ")]
    assert "\r" not in err and len(lines) == 10, err
    assert lines[-1].startswith("epoch 60/60") and "val_loss" in lines[-1]


def test_compare_into_a_log_writes_one_line_per_run(capsys):
    fb.compare(tasks=["xor"], trainers=["backprop", "fa"], seeds=2, epochs=3, progress=True)
    err = capsys.readouterr().err
    assert "\r" not in err
    lines = err.splitlines()
    assert len(lines) == 4 and all(line.startswith(f"run {i}/4  xor ")
                                   for i, line in enumerate(lines, 1)), lines


def test_run_progress_on_a_terminal_draws_bars(monkeypatch):
    pytest.importorskip("tqdm")
    term = _Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    bar = RunProgress(1, enabled=True)
    bar.start({"task": "xor", "trainer": "backprop", "seed": 0}, 2)
    bar.epoch(1, 2, 0.5)
    bar.epoch(2, 2, 1.0)
    bar.finished({"task": "xor", "trainer": "backprop", "seed": 0, "status": "ok",
                  "final": {"test_accuracy": 1.0}})
    bar.close()
    assert "\r" in term.getvalue() and "runs" in term.getvalue()


def test_disabled_run_progress_prints_nothing(capsys):
    bar = RunProgress(1, enabled=False)
    bar.finished({"task": "xor", "trainer": "backprop", "seed": 0, "status": "ok",
                  "final": {"test_accuracy": 1.0}})
    bar.close()
    assert capsys.readouterr().err == ""

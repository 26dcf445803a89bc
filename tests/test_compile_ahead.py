"""fastbp.compile_ahead: the helper process that compiles a comparison's next
trainers while it trains, and the run order that lets it."""
import os

import numpy as np
import pytest

import fastbp as fb
from fastbp import compile_ahead, runs
from fastbp.comparison import prepare, run_order
from fastbp.compile_ahead import CompileAhead, can_compile_ahead, settings_key

TIMING_KEYS = ("epoch_time", "train_seconds", "time_per_epoch", "time_to_target",
               "warmup_seconds")


def _spec(trainer="fa", seed=0, **kw):
    return runs.make_spec("xor", trainer, seed, epochs=1, **kw)


def test_settings_key_ignores_only_the_seed():
    assert settings_key(_spec(seed=0)) == settings_key(_spec(seed=5))
    assert settings_key(_spec("fa")) != settings_key(_spec("dfa"))
    assert settings_key(_spec(dtype="float32")) != settings_key(_spec(dtype="float64"))
    assert settings_key(_spec(batch_size=2)) != settings_key(_spec(batch_size=4))


def test_run_order_keeps_the_seeds_of_a_trainer_together():
    plan = prepare(tasks=["xor"], trainers=["backprop", "fa", "dfa"], seeds=2, epochs=1,
                   progress=False)
    # specs are seed-major: (0, backprop), (0, fa), (0, dfa), (1, backprop), ...
    order = run_order(plan.specs)
    assert order == [0, 3, 1, 4, 2, 5]
    assert [(plan.specs[i]["trainer"], plan.specs[i]["seed"]) for i in order] == [
        ("backprop", 0), ("backprop", 1), ("fa", 0), ("fa", 1), ("dfa", 0), ("dfa", 1)]


def test_needs_two_cpus_and_a_writable_cache(monkeypatch, tmp_path):
    from numba.core import config
    monkeypatch.setattr(compile_ahead, "_usable_cpus", lambda: 1)
    assert not can_compile_ahead()
    monkeypatch.setattr(compile_ahead, "_usable_cpus", lambda: 2)
    monkeypatch.setattr(config, "CACHE_DIR", str(tmp_path / "not" / "yet"))
    assert can_compile_ahead()
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        monkeypatch.setattr(config, "CACHE_DIR", str(locked / "numba"))
        assert can_compile_ahead() == (os.geteuid() == 0)  # root writes anywhere
    finally:
        locked.chmod(0o700)
    monkeypatch.setattr(config, "DISABLE_JIT", True)
    assert not can_compile_ahead()


def test_disabled_or_single_setting_starts_nothing():
    with CompileAhead([_spec("fa"), _spec("dfa")], enabled=False) as ahead:
        assert not ahead.active
        ahead.wait(_spec("dfa"))      # returns at once
    with CompileAhead([_spec("fa", seed=0), _spec("fa", seed=1)]) as ahead:
        assert not ahead.active       # one setting: the grid compiles it itself
        ahead.wait(_spec("fa", seed=1))


@pytest.mark.skipif(not can_compile_ahead(), reason="needs two CPUs and a writable cache")
def test_helper_compiles_the_later_settings_and_reports_what_it_cannot():
    # a task registered only in this process: the helper cannot build it
    rng = np.random.default_rng(0)
    X = rng.normal(size=(12, 3)).astype(np.float32)
    y = np.arange(12) % 2
    fb.compare(tasks=[fb.Task.from_arrays(X, y, X, y, name="only-here")],
               trainers=["backprop"], seeds=1, epochs=1, progress=False)
    specs = [_spec("backprop"), _spec("dfa"), _spec("dfa", seed=1),
             runs.make_spec("only-here", "fa", 0, epochs=1)]
    with CompileAhead(specs) as ahead:
        assert ahead.active
        for spec in specs:
            ahead.wait(spec)
        outcome = dict(ahead.outcome)
    assert settings_key(specs[0]) not in outcome          # left to the grid
    assert outcome[settings_key(specs[1])] == "compiled"
    assert outcome[settings_key(specs[3])].startswith("failed: ValueError")
    assert "only-here" in outcome[settings_key(specs[3])]


@pytest.mark.skipif(not can_compile_ahead(), reason="needs two CPUs and a writable cache")
def test_compare_gives_the_same_runs_with_and_without_it():
    kwargs = dict(tasks=["xor"], trainers=["backprop", "dfa"], seeds=2, epochs=3,
                  progress=False)
    ahead = fb.compare(**kwargs)
    inline = fb.compare(**kwargs, compile_ahead=False)
    assert ahead.meta["compile_ahead"] is True and inline.meta["compile_ahead"] is False
    assert [r["index"] for r in ahead.runs] == [0, 1, 2, 3]
    for a, b in zip(ahead.runs, inline.runs):
        assert a["status"] == "ok"
        assert {k: v for k, v in a.items() if k not in TIMING_KEYS} == \
            {k: v for k, v in b.items() if k not in TIMING_KEYS}


def test_a_helper_that_dies_does_not_stop_the_grid(monkeypatch):
    monkeypatch.setattr(compile_ahead, "can_compile_ahead", lambda: True)
    monkeypatch.setattr(compile_ahead, "_CHILD", "import sys; sys.exit(3)")
    specs = [_spec("backprop"), _spec("dfa")]
    with CompileAhead(specs) as ahead:
        assert ahead.active
        ahead.wait(specs[1])          # released when the helper's output ends
        assert ahead.outcome == {}


@pytest.mark.parametrize("command", ["compare", "tune"])
@pytest.mark.parametrize("flag, expected", [([], True), (["--no-compile-ahead"], False)])
def test_cli_flag_reaches_the_plan(monkeypatch, tmp_path, command, flag, expected):
    from fastbp import cli, comparison, tuning
    if command == "tune":
        pytest.importorskip("optuna")
    seen = {}

    def execute(plan):
        seen["plan"] = plan
        raise KeyboardInterrupt

    monkeypatch.setattr(comparison if command == "compare" else tuning, "execute", execute)
    extra = ["--trials", "2"] if command == "tune" else []
    code = cli.main([command, "--task", "xor", "--trainers", "backprop,fa", "--epochs", "1",
                     *extra, "--out", str(tmp_path), "--no-plots", "--no-progress", *flag])
    assert code == 130 and seen["plan"].compile_ahead is expected


@pytest.mark.skipif(not can_compile_ahead(), reason="needs two CPUs and a writable cache")
def test_tune_gives_the_same_trials_with_and_without_it():
    pytest.importorskip("optuna")
    kwargs = dict(tasks=["xor"], trainers=["backprop", "dfa"], trials=3, round_size=2,
                  epochs=2, progress=False)
    ahead = fb.tune(**kwargs)
    inline = fb.tune(**kwargs, compile_ahead=False)
    assert ahead.meta["compile_ahead"] is True and inline.meta["compile_ahead"] is False
    for a, b in zip(ahead.studies, inline.studies):
        assert len(a["trials"]) == 3
        assert [{k: v for k, v in t.items() if k not in TIMING_KEYS} for t in a["trials"]] \
            == [{k: v for k, v in t.items() if k not in TIMING_KEYS} for t in b["trials"]]


@pytest.mark.skipif(not can_compile_ahead(), reason="needs two CPUs and a writable cache")
def test_tune_compiles_the_first_trial_of_each_later_study(monkeypatch):
    pytest.importorskip("optuna")
    from fastbp import tuning
    seen = {}

    class Recording(CompileAhead):
        def __init__(self, specs, enabled=True):
            seen["specs"] = specs
            super().__init__(specs, enabled)

        def close(self):
            seen["outcome"] = dict(self.outcome)
            super().close()

    monkeypatch.setattr(tuning, "CompileAhead", Recording)
    fb.tune(tasks=["xor"], trainers=["backprop", "fa", "dfa"], trials=4, round_size=2,
            epochs=1, progress=False)
    specs = seen["specs"]      # one per study, from the first round only
    assert [s["trainer"] for s in specs] == ["backprop", "fa", "dfa"]
    assert all(s["params"] for s in specs)
    assert [seen["outcome"][settings_key(s)] for s in specs[1:]] == ["compiled"] * 2


def test_warm_up_of_a_trainer_that_does_not_apply_compiles_nothing():
    spec = runs.make_spec("adding:length=5,n_train=16,n_test=8", "hsic", 0, epochs=1)
    assert runs.warm_up(spec) is None

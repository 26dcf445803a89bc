"""fb.compare: the grid, results.json, figures, Ctrl-C, Dask, bad arguments."""
import json

import numpy as np
import pytest

import fastbp as fb
from fastbp import runs
from fastbp.results import Results

ADDING = "adding:length=5,n_train=64,n_test=32"
TIMING_KEYS = ("epoch_time", "train_seconds", "time_per_epoch", "time_to_target",
               "warmup_seconds", "index")


def _without_timings(record):
    return {k: v for k, v in record.items() if k not in TIMING_KEYS}


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    out = tmp_path_factory.mktemp("compare")
    res = fb.compare(tasks=["digits", ADDING], trainers=["backprop", "fa"], seeds=2, epochs=2,
                     out=out, progress=False)
    return res, out


def test_grid_results_are_well_formed(grid):
    res, out = grid
    assert isinstance(res, fb.Results) and len(res) == 2 * 2 * 2
    assert res.meta["complete"] is True and res.meta["n_runs"] == 8
    data = json.loads((out / "results.json").read_text())
    assert data["format_version"] == 1 and len(data["runs"]) == 8
    assert data["meta"]["tasks"]["digits"]["target_accuracy"] == 0.95
    for r in data["runs"]:
        assert r["status"] in ("ok", "not_applicable"), r["reason"]
        if r["status"] == "ok":
            assert len(r["test_accuracy"]) == len(r["train_loss"]) == len(r["epoch_time"]) == 2
            assert 0 <= r["final"]["test_accuracy"] <= 1
            assert all(b >= a for a, b in zip(r["train_seconds"], r["train_seconds"][1:]))
            assert r["time_per_epoch"] > 0
    # the same model initialisation for every trainer of a seed, another for another seed
    digits = [r for r in data["runs"] if r["task"] == "digits"]
    by_seed = {}
    for r in digits:
        by_seed.setdefault(r["seed"], set()).add(r["settings"]["init_sha256"])
    assert all(len(v) == 1 for v in by_seed.values()) and len(set.union(*by_seed.values())) == 2
    # alignment angles for the trainer that has them: (epochs, layers) degrees
    fa = next(r for r in digits if r["trainer"] == "fa")
    assert np.asarray(fa["alignment"]).shape == (2, 2)
    assert next(r for r in digits if r["trainer"] == "backprop")["alignment"] is None


def test_trainers_that_cannot_train_the_model_are_marked_not_applicable(grid):
    res, _ = grid
    fa_rnn = [r for r in res.runs if r["task"] == ADDING and r["trainer"] == "fa"]
    assert fa_rnn and all(r["status"] == "not_applicable" for r in fa_rnn)
    assert all(r["reason"] for r in fa_rnn)
    bp_rnn = [r for r in res.runs if r["task"] == ADDING and r["trainer"] == "backprop"]
    assert all(r["status"] == "ok" for r in bp_rnn)
    # the adding task's accuracy: within 0.04 of the sum
    assert all(0 <= r["final"]["test_accuracy"] <= 1 for r in bp_rnn)
    table = res.table()
    assert "not applicable" in table
    line = next(l for l in table.splitlines() if l.startswith("adding") and " fa " in l)
    assert "not applicable" in line
    md = res.table("markdown")
    assert md.splitlines()[0].startswith("| task | trainer |")
    assert all(l.count("|") >= 9 for l in md.splitlines())


def test_figures_are_pngs(grid):
    _, out = grid
    files = sorted(p.name for p in out.glob("*.png"))
    assert "digits-accuracy.png" in files and "digits-alignment.png" in files
    assert any(f.startswith("adding") and f.endswith("-accuracy.png") for f in files)
    for f in out.glob("*.png"):
        assert f.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f.stat().st_size > 5000


def test_json_round_trip_and_summary(grid, tmp_path):
    res, out = grid
    again = Results.from_json(out / "results.json")
    assert again.table() == res.table()
    rows = {(r["task"], r["trainer"]): r for r in res.summary()}
    row = rows[("digits", "backprop")]
    accs = [r["final"]["test_accuracy"] for r in res.runs
            if r["task"] == "digits" and r["trainer"] == "backprop"]
    assert row["test_accuracy"][0] == pytest.approx(np.mean(accs))
    assert row["test_accuracy"][1] == pytest.approx(np.std(accs, ddof=1))
    assert rows[(ADDING, "fa")]["status"] == "not_applicable"
    bad = tmp_path / "bad.json"
    bad.write_text('{"runs": 3}')
    with pytest.raises(ValueError, match="not a fastbp results file"):
        Results.from_json(bad)


def test_same_seed_same_numbers(grid):
    res, _ = grid
    again = fb.compare(tasks=["digits"], trainers=["fa"], seeds=[1], epochs=2, progress=False)
    ref = next(r for r in res.runs if r["task"] == "digits" and r["trainer"] == "fa"
               and r["seed"] == 1)
    assert _without_timings(again.runs[0]) == _without_timings(ref)


def test_interrupt_keeps_finished_runs(tmp_path, monkeypatch):
    real = runs.run_safely
    calls = []

    def interrupted_third(spec, on_epoch=None):
        calls.append(spec)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(spec, on_epoch)

    monkeypatch.setattr(runs, "run_safely", interrupted_third)
    with pytest.raises(KeyboardInterrupt):
        fb.compare(tasks=["xor"], trainers=["backprop", "dfa"], seeds=2, epochs=3,
                   out=tmp_path, progress=False)
    saved = Results.from_json(tmp_path / "results.json")
    assert len(saved.runs) == 2 and saved.meta["complete"] is False
    assert saved.meta["interrupted"] is True
    assert [(r["trainer"], r["seed"]) for r in saved.runs] == [("backprop", 0), ("dfa", 0)]


def test_dask_local_cluster_equals_in_process(tmp_path):
    pytest.importorskip("distributed")
    kwargs = dict(tasks=["xor", "digits"], trainers=["backprop", "dtp"], seeds=2, epochs=2,
                  progress=False)
    local = fb.compare(**kwargs)
    dask = fb.compare(**kwargs, workers=2, out=tmp_path)
    assert dask.meta["execution"] == "dask LocalCluster(2 processes)"
    assert len(dask.runs) == len(local.runs) == 8
    for a, b in zip(local.runs, dask.runs):
        assert _without_timings(a) == _without_timings(b)


@pytest.mark.parametrize("kwargs, error, match", [
    ({"trainers": ["nope"]}, ValueError, "'nope' is not registered"),
    ({"tasks": ["nope"]}, ValueError, "task 'nope' is not registered"),
    ({"tasks": ["adding:delay=3"]}, ValueError, "has no option 'delay'"),
    ({"seeds": 0}, ValueError, "seeds must be >= 1"),
    ({"seeds": [1, -2]}, ValueError, "seeds must hold ints >= 0"),
    ({"seeds": 1.5}, TypeError, "seeds must be a count"),
    ({"epochs": 0}, ValueError, "epochs must be >= 1"),
    ({"lr": -1.0}, ValueError, "lr must be a finite number > 0"),
    ({"workers": 2, "scheduler": "tcp://127.0.0.1:1"}, ValueError, "give one of them"),
    ({"workers": 0}, ValueError, "workers must be >= 1"),
    ({"trainer_options": {"fa": {"x": 1}}, "trainers": ["backprop"]}, ValueError,
     "not among the trainers"),
    ({"tasks": [], "trainers": ["backprop"]}, ValueError, "tasks is empty"),
    ({"dtype": "int32"}, TypeError, "not supported"),
    ({"blas_threads": 0}, ValueError, "blas_threads must be >= 1"),
])
def test_bad_arguments(kwargs, error, match):
    args = {"tasks": ["xor"], "epochs": 1, "progress": False}
    args.update(kwargs)
    with pytest.raises(error, match=match):
        fb.compare(**args)


def test_unknown_trainer_option_is_reported_per_run():
    res = fb.compare(tasks=["xor"], trainers=["fa"], seeds=1, epochs=1, progress=False,
                     trainer_options={"fa": {"no_such_option": 1}})
    r = res.runs[0]
    assert r["status"] == "failed" and "no_such_option" in r["reason"]
    assert "failed" in res.table()


def test_runs_use_one_blas_thread(grid):
    threadpoolctl = pytest.importorskip("threadpoolctl")
    res, _ = grid
    assert all(r["settings"]["blas_threads"] == 1 for r in res.runs if r["settings"])
    with runs.blas_limit(1):
        inside = [p["num_threads"] for p in threadpoolctl.threadpool_info()
                  if p["user_api"] == "blas"]
    assert inside and set(inside) == {1}


def test_missing_optional_package_stops_before_any_run(monkeypatch, capsys):
    from fastbp import datasets
    from fastbp.cli import main
    real = datasets.require

    def no_matplotlib(module, purpose):
        if module.startswith("matplotlib"):
            raise ImportError(f"{purpose} needs the optional package 'matplotlib': "
                              f"{datasets.INSTALL_HINT}")
        return real(module, purpose)

    monkeypatch.setattr(datasets, "require", no_matplotlib)
    monkeypatch.setattr(runs, "run_safely", lambda *a, **k: pytest.fail("a run started"))
    with pytest.raises(ImportError, match=r'pip install "fastbp\[compare\]"'):
        fb.compare(tasks=["xor"], epochs=1, out="unused", progress=False)
    assert main(["compare", "--task", "xor", "--out", "unused", "--no-progress"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["fastbp compare: compare's figures needs the optional package "
                   "'matplotlib': pip install \"fastbp[compare]\""]


def test_a_diverging_run_is_reported_and_saved(tmp_path):
    res = fb.compare(tasks=["digits"], trainers=["backprop"], seeds=1, epochs=3, lr=1e30,
                     out=tmp_path, progress=False, plots=False)
    r = res.runs[0]
    assert r["status"] == "diverged" and "smaller learning rate" in r["reason"]
    assert "diverged: 1 of 1 seeds diverged" in res.table()
    saved = Results.from_json(tmp_path / "results.json")  # NaN written as null
    assert saved.runs[0]["status"] == "diverged"


def test_a_trainer_needing_an_option_is_not_applicable_until_given(monkeypatch):
    from fastbp import registry

    class NeedsWindow(fb.BackpropTrainer):
        def __init__(self, model, window=None, **kwargs):
            if window is None:
                raise ValueError("window is required")
            super().__init__(model, **kwargs)

    monkeypatch.setitem(registry.TRAINERS, "needs-window", NeedsWindow)
    res = fb.compare(tasks=["xor"], trainers=["needs-window"], seeds=1, epochs=2,
                     progress=False)
    r = res.runs[0]
    assert r["status"] == "not_applicable"
    assert "window is required" in r["reason"] and "--trainer-option needs-window." in r["reason"]
    res = fb.compare(tasks=["xor"], trainers=["needs-window"], seeds=1, epochs=2,
                     progress=False, trainer_options={"needs-window": {"window": 3}})
    assert res.runs[0]["status"] == "ok"
    assert res.runs[0]["settings"]["trainer_args"]["window"] == 3

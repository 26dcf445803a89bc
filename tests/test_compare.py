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
    # in this process the seeds of one trainer run one after the other
    assert [(r["trainer"], r["seed"]) for r in saved.runs] == [("backprop", 0), ("backprop", 1)]
    assert [r["index"] for r in saved.runs] == [0, 2]


def test_dask_local_cluster_equals_in_process(tmp_path):
    pytest.importorskip("distributed")
    kwargs = dict(tasks=["xor"], trainers=["backprop", "dtp"], seeds=2, epochs=2,
                  progress=False)
    local = fb.compare(**kwargs)
    dask = fb.compare(**kwargs, workers=2, out=tmp_path)
    assert dask.meta["execution"] == "dask LocalCluster(2 processes)"
    assert len(dask.runs) == len(local.runs) == 4
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


def test_unknown_trainer_option_fails_before_any_run(monkeypatch):
    monkeypatch.setattr(runs, "run_safely", lambda *a, **k: pytest.fail("a run started"))
    with pytest.raises(ValueError, match="trainer 'fa' with options .*no_such_option.* on "
                                         "task 'xor'.*FATrainer does not take"):
        fb.compare(tasks=["xor"], trainers=["fa"], seeds=1, epochs=1, progress=False,
                   trainer_options={"fa": {"no_such_option": 1}})


def test_runs_use_one_blas_thread(grid):
    threadpoolctl = pytest.importorskip("threadpoolctl")
    res, _ = grid
    assert all(r["settings"]["blas_threads"] == 1 for r in res.runs if r["settings"])
    with runs.blas_limit(1):
        inside = [p["num_threads"] for p in threadpoolctl.threadpool_info()
                  if p["user_api"] == "blas"]
    assert inside and set(inside) == {1}


def test_missing_optional_package_stops_before_any_run(monkeypatch, capsys):
    from fastbp import comparison, data
    from fastbp.cli import main
    real = data.require

    def no_matplotlib(module, purpose):
        if module.startswith("matplotlib"):
            raise ImportError(f"{purpose} needs the optional package 'matplotlib': "
                              f"{data.INSTALL_HINT}")
        return real(module, purpose)

    monkeypatch.setattr(comparison, "require", no_matplotlib)
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



# -- hardening: options checked before training, honest time to target, table format ------

@pytest.mark.parametrize("kwargs, error, match", [
    ({"tasks": ["digits:test_fraction=abc"]}, ValueError,
     "task 'digits:test_fraction=abc': test_fraction must be a number in"),
    ({"tasks": ["adding:length=0"]}, ValueError, "task 'adding:length=0': length must be >= 1"),
    ({"tasks": ["adding:length=4"], "trainers": ["sg"],
      "trainer_options": {"sg": {"truncate": "abc"}}}, TypeError,
     "trainer 'sg' with options {'truncate': 'abc'} on task 'adding:length=4': truncate"),
    ({"lr": 0.0}, ValueError, "lr must be a finite number > 0"),
])
def test_every_option_fails_before_any_run(monkeypatch, tmp_path, kwargs, error, match):
    monkeypatch.setattr(runs, "run_safely", lambda *a, **k: pytest.fail("a run started"))
    monkeypatch.setattr(runs, "run", lambda *a, **k: pytest.fail("a run started"))
    args = {"tasks": ["xor"], "trainers": ["backprop"], "seeds": 1, "epochs": 1,
            "progress": False, "out": tmp_path / "new"}
    args.update(kwargs)
    with pytest.raises(error, match=match):
        fb.compare(**args)
    assert not (tmp_path / "new").exists()  # nothing created for a grid that cannot run


@pytest.mark.parametrize("where", ["file", "below_a_file"])
def test_out_that_cannot_be_a_folder_fails_before_any_run(monkeypatch, tmp_path, where):
    monkeypatch.setattr(runs, "run_safely", lambda *a, **k: pytest.fail("a run started"))
    (tmp_path / "f.txt").write_text("x")
    out = tmp_path / "f.txt" if where == "file" else tmp_path / "f.txt" / "sub"
    with pytest.raises(ValueError, match="out=.*f.txt"):
        fb.compare(tasks=["xor"], trainers=["backprop"], seeds=1, epochs=1, progress=False,
                   out=out)


def test_prepare_builds_without_training_and_execute_runs_the_plan(tmp_path, monkeypatch):
    from fastbp.comparison import execute, prepare
    plan = prepare(tasks=["xor"], trainers=["backprop", "fa"], seeds=2, epochs=2,
                   progress=False, out=tmp_path / "r", plots=False)
    assert len(plan.specs) == 4 and (tmp_path / "r").is_dir()
    assert not (tmp_path / "r" / "results.json").exists()
    assert "4 runs" in repr(plan)
    res = execute(plan)
    assert [r["status"] for r in res.runs] == ["ok"] * 4
    assert (tmp_path / "r" / "results.json").exists()


def test_an_optimizer_given_as_an_option_is_copied_for_each_run():
    res = fb.compare(tasks=["xor"], trainers=["dtp"], seeds=2, epochs=2, progress=False,
                     trainer_options={"dtp": {"inverse_optimizer": fb.Adam(1e-2)}})
    assert [r["status"] for r in res.runs] == ["ok", "ok"], [r["reason"] for r in res.runs]


def test_epochs_to_target_counts_only_a_target_that_holds():
    assert runs.epochs_to_target([0.987, 0.5, 0.52], 0.9) is None  # the echo TBPTT case
    assert runs.epochs_to_target([0.5, 0.95, 0.8, 0.92, 0.93], 0.9) == 4
    assert runs.epochs_to_target([0.95, 0.96], 0.9) == 1
    assert runs.epochs_to_target([0.5, 0.9], 0.9) == 2
    assert runs.epochs_to_target([0.95, float("nan")], 0.9) is None
    assert runs.epochs_to_target([], 0.9) is None


def _record(trainer, seed, accuracies, target=0.9):
    seconds = [0.5 * (e + 1) for e in range(len(accuracies))]
    reached = runs.epochs_to_target(accuracies, target)
    return {"task": "echo", "trainer": trainer, "seed": seed, "status": "ok", "reason": "",
            "settings": {"target_accuracy": target}, "train_loss": [0.1] * len(accuracies),
            "test_loss": [0.1] * len(accuracies), "test_accuracy": accuracies,
            "epoch_time": [0.5] * len(accuracies), "train_seconds": seconds,
            "alignment": None, "alignment_epochs": None,
            "final": {"train_accuracy": accuracies[-1], "test_accuracy": accuracies[-1],
                      "train_loss": 0.1, "test_loss": 0.1},
            "time_per_epoch": 0.5, "epochs_to_target": reached,
            "time_to_target": None if reached is None else seconds[reached - 1],
            "warmup_seconds": 0.0}


def test_a_transient_peak_is_not_reported_as_reaching_the_target():
    res = Results([_record("tbptt", 0, [0.987, 0.6, 0.525]),
                   _record("sg", 0, [0.7, 0.95, 0.97])])
    table = res.table()
    tbptt = next(line for line in table.splitlines() if "tbptt" in line)
    sg = next(line for line in table.splitlines() if " sg " in line)
    assert "not reached (0/1 held >= 0.9)" in tbptt and "0.525" in tbptt
    assert "1 s (1/1 held >= 0.9)" in sg


def test_a_real_run_records_the_epoch_from_which_the_target_holds(monkeypatch):
    accuracies = iter([0.5, 1.0, 0.5, 1.0, 1.0, 1.0])
    real = runs._metrics

    def scripted(trainer, task, options, X, y):
        loss, _ = real(trainer, task, options, X, y)
        return loss, next(accuracies, 1.0)

    monkeypatch.setattr(runs, "_metrics", scripted)
    record = runs.run(runs.make_spec("xor", "backprop", 0, epochs=4, alignment=False))
    assert record["test_accuracy"] == [0.5, 1.0, 0.5, 1.0]
    assert record["epochs_to_target"] == 4
    assert record["time_to_target"] == record["train_seconds"][3]


def test_one_seed_shows_no_spread():
    one = Results([_record("bp", 0, [0.5, 0.95])]).table()
    assert "±" not in one and "0.950" in one
    two = Results([_record("bp", 0, [0.5, 0.95]), _record("bp", 1, [0.5, 0.93])]).table()
    assert "0.940 ± 0.014" in two

"""fb.tune / fastbp tune: search spaces, the validation split (the test set is
never read), TPE rounds and pruning, reproducibility, resume, Dask, tuning.json,
figures and ``compare(params=...)``. Small tasks, few trials, few epochs."""
import dataclasses
import json
import os
import sys

import numpy as np
import pytest

import fastbp as fb
from fastbp import runs, tasks, tuning
from fastbp.data import Dataset
from fastbp.results import Results
from fastbp.search_space import check_space

pytest.importorskip("optuna")
import alternatives  # noqa: E402,F401  (registers the trainers)

TIMINGS = ("train_seconds", "warmup_seconds")
QUICK = dict(trials=6, epochs=3, round_size=2, progress=False)
EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs",
                        "examples")


def _trials(result):
    """Every study's trials without their timings (which differ run to run)."""
    return [[{k: v for k, v in t.items() if k not in TIMINGS} for t in s["trials"]]
            for s in result.studies]


# -- the search-space vocabulary --------------------------------------------------------

def test_distributions_check_their_arguments_and_describe_themselves():
    assert fb.LogUniform(1e-4, 1e-1).to_dict() == {"type": "log_uniform", "low": 1e-4,
                                                    "high": 0.1}
    assert fb.IntRange(1, 8, log=True).contains(8) and not fb.IntRange(1, 8).contains(9)
    assert fb.Choice([True, False]).contains(False) and not fb.Choice([1, 2]).contains(True)
    assert fb.Uniform(0.0, 1.0).contains(0.5) and not fb.Uniform(0.0, 1.0).contains("a")
    assert fb.Choice([None, 4]).to_optuna().choices == (None, 4)
    assert fb.LogUniform(1e-3, 1.0).to_optuna().log
    for make, error, match in [
            (lambda: fb.LogUniform(0.0, 1.0), ValueError, "low must be > 0"),
            (lambda: fb.LogUniform(1.0, 0.1), ValueError, "low must be < high"),
            (lambda: fb.Uniform(0.0, float("nan")), TypeError, "high must be a finite"),
            (lambda: fb.IntRange(1, 2.5), TypeError, "high must be an int"),
            (lambda: fb.IntRange(0, 4, log=True), ValueError, "low must be >= 1"),
            (lambda: fb.Choice([]), ValueError, "empty"),
            (lambda: fb.Choice("ab"), TypeError, "got the str"),
            (lambda: fb.Choice([fb.Adam(1e-3)]), TypeError, "plain values"),
            (lambda: fb.Choice([1, 1]), ValueError, "repeat")]:
        with pytest.raises(error, match=match):
            make()
    with pytest.raises(TypeError, match=r"spaces\['fa'\]\['lr'\] is 0.1"):
        check_space({"lr": 0.1}, "spaces['fa']")


SPACE_TASKS = ["xor", "adding:length=5,n_train=64,n_test=32", "echo:n_train=64,n_test=32"]


@pytest.mark.parametrize("task_spec", SPACE_TASKS)
def test_every_trainer_space_builds_its_trainer_at_both_ends(task_spec):
    name, options = tasks.parse_task_spec(task_spec)
    task = tasks.get_task(name)
    model = task.build_model(0, np.float32, **task.options(**options))
    for trainer in fb.available_trainers():
        cls = fb.get_trainer(trainer, model)
        if not cls.supports(model):
            continue
        space = check_space(cls.search_space(task=task, model=model), trainer)
        assert {"lr", "weight_decay"} <= set(space), trainer
        ends = [{k: d.example() for k, d in space.items()},
                {k: (d.values[-1] if isinstance(d, fb.Choice) else d.high)
                 for k, d in space.items()}]
        for params in ends:
            spec = runs.make_spec(task_spec, trainer, 0, alignment=False, params=params)
            assert runs.check_spec(spec) is None, (trainer, params)
            trainer_obj, _ = runs.build_trainer(cls, model.copy(), task, spec)
            assert trainer_obj.optimizer.lr == pytest.approx(params["lr"])
            assert trainer_obj.weight_decay == params["weight_decay"]


def test_the_common_space_centres_on_the_task_rate_and_trainers_extend_it():
    mnist1d = tasks.get_task("mnist1d")
    base = fb.Trainer.search_space(task=mnist1d)
    assert base["lr"] == fb.LogUniform(1e-3, 1e-1)
    assert fb.BackpropTrainer.search_space(task=mnist1d) == base
    assert set(fb.get_trainer("fa").search_space()) == {"lr", "weight_decay", "feedback_scale"}
    assert {"target_step", "sigma", "inverse_lr"} <= set(fb.get_trainer("dtp").search_space())
    assert {"mu", "code_lr"} <= set(fb.get_trainer("altmin").search_space())
    assert {"sigma", "beta"} <= set(fb.get_trainer("hsic").search_space())
    # the recurrent synthetic-gradient windows are centred on the task's
    echo = tasks.get_task("echo")
    rnn = echo.build_model(0, np.float32)
    sg_rnn = fb.get_trainer("sg", rnn).search_space(task=echo, model=rnn)
    assert sg_rnn["truncate"] == fb.Choice([2, 4, 8]) and "sg_scale" in sg_rnn


def test_an_optimizer_knob_is_a_plain_value_turned_into_an_optimizer():
    sg = fb.get_trainer("sg")
    args = sg.search_arguments({"sg_lr": 3e-3, "conditioned": True})
    assert isinstance(args["sg_optimizer"], fb.Adam) and args["sg_optimizer"].lr == 3e-3
    assert args["conditioned"] is True and "sg_lr" not in args
    ddtp = fb.get_trainer("ddtp").search_arguments({"feedback_lr": 1e-3})
    assert ddtp["feedback_optimizer"].lr == 1e-3


def test_a_plugin_trainer_inherits_the_common_space(monkeypatch):
    monkeypatch.syspath_prepend(EXAMPLES)
    monkeypatch.delitem(sys.modules, "sign_symmetry", raising=False)
    from sign_symmetry import SignSymmetryTrainer
    digits = tasks.get_task("digits")
    assert SignSymmetryTrainer.search_space(task=digits) == fb.Trainer.search_space(task=digits)


# -- the validation split: the test set is never read ----------------------------------------

def test_validation_split_is_deterministic_disjoint_and_drops_the_test_set():
    X = np.arange(200, dtype=np.float32).reshape(100, 2)
    y = np.arange(100) % 3
    data = Dataset(X, y, X[:5] * 0, y[:5], {"source": "test"})
    a = runs.validation_split(data, 0.2, seed=3)
    b = runs.validation_split(data, 0.2, seed=3)
    assert np.array_equal(a.X_test, b.X_test) and len(a.X_test) == 20
    assert not np.array_equal(a.X_test, runs.validation_split(data, 0.2, seed=4).X_test)
    rows = np.concatenate([a.X_train[:, 0], a.X_test[:, 0]]) // 2
    assert sorted(rows.astype(int)) == list(range(100))      # disjoint, and all of them
    assert np.array_equal(y[a.X_test[:, 0].astype(int) // 2], a.y_test)
    assert a.info["validation"] == {"fraction": 0.2, "seed": 3, "held_out": True, "rows": 20,
                                    "train_rows": 80}
    tiny = runs.validation_split(Dataset(X[:8], y[:8], X[:1], y[:1]), 0.2, seed=0)
    assert not tiny.info["validation"]["held_out"] and np.array_equal(tiny.X_test, X[:8])
    with pytest.raises(ValueError, match="in \\(0, 1\\), got 1.5"):
        runs.validation_split(data, 1.5, seed=0)


def _blobs(seed, dtype, test=None):
    rng = np.random.default_rng(seed)
    centres = np.array([[0, 0], [3, 0], [0, 3]], dtype=np.float64)
    y = rng.integers(0, 3, 120)
    X = (centres[y] + rng.normal(0, 1.2, (120, 2))).astype(dtype)
    X_test, y_test = X[90:].copy(), y[90:].copy()
    if test == "poisoned":   # labels shuffled, inputs noise: any read would show
        y_test = np.random.default_rng(1).permutation(y_test)
        X_test[:] = np.random.default_rng(2).normal(0, 50, X_test.shape)
    elif test == "absent":
        X_test = y_test = None
    return Dataset(X[:90], y[:90], X_test, y_test, {"source": "blobs"})


def _probe(monkeypatch, test):
    task = tasks.Task("probe", "three Gaussian blobs", lambda seed, dtype: _blobs(seed, dtype, test),
                      "MLP", lambda: {"sizes": [2, 8, 3], "activation": "tanh",
                                      "output": "softmax"},
                      "cross_entropy", ("adam", {"lr": 0.03}), epochs=4, batch_size=16,
                      target_accuracy=0.9)
    monkeypatch.setitem(tasks.TASKS, "probe", task)
    monkeypatch.setattr(runs, "_DATA", {})


def test_the_test_set_is_never_read(monkeypatch):
    kwargs = dict(tasks=["probe"], trainers=["backprop", "fa"], trials=5, round_size=2,
                  progress=False)
    found = {}
    for test in ("clean", "poisoned", "absent"):
        _probe(monkeypatch, test)
        found[test] = _trials(fb.tune(**kwargs))
    assert found["clean"] == found["poisoned"] == found["absent"]
    # the control: a run that reads the test set sees the poison
    accuracy = {}
    for test in ("clean", "poisoned"):
        _probe(monkeypatch, test)
        record = runs.run(runs.make_spec("probe", "backprop", 0, alignment=False))
        accuracy[test] = record["test_accuracy"]
    assert accuracy["clean"] != accuracy["poisoned"]


# -- a small study, written to a folder ---------------------------------------------------

@pytest.fixture(scope="module")
def study(tmp_path_factory):
    out = tmp_path_factory.mktemp("tune")
    return fb.tune(tasks=["digits"], trainers=["backprop", "fa"], out=out, **QUICK), out


def test_tuning_json_holds_every_trial_and_the_best(study):
    result, out = study
    saved = fb.Tuning.from_json(out / "tuning.json")
    assert saved.studies == json.loads(json.dumps(result.studies))
    assert saved.meta["complete"] and saved.meta["trials"] == 6
    digits = {s["trainer"]: s for s in saved.studies if s["task"] == "digits"}
    for name, s in digits.items():
        assert s["status"] == "ok" and len(s["trials"]) == 6 and s["epochs"] == 3
        assert s["validation"]["held_out"] and s["validation"]["rows"] == 270
        assert set(s["space"]) == set(fb.get_trainer(name).search_space())
        complete = [t for t in s["trials"] if t["state"] == "COMPLETE"]
        best = max(complete, key=lambda t: t["value"])
        assert s["best"] == {"trial": best["number"], "params": best["params"],
                             "val_accuracy": best["value"]}
        for t in complete:
            assert len(t["val_accuracy"]) == t["epochs_run"] == 3
            assert t["value"] == t["val_accuracy"][-1]
    assert "best val acc" in result.table()
    assert result.best("digits", "backprop") == digits["backprop"]["best"]["params"]


def test_a_trainer_that_cannot_train_the_model_is_recorded_not_tuned(monkeypatch):
    monkeypatch.setattr(tuning, "run_trial", lambda *a, **k: pytest.fail("a trial ran"))
    result = fb.tune(tasks=["adding:length=5,n_train=64,n_test=32"], trainers=["fa"],
                     trials=2, progress=False)
    (fa_rnn,) = result.studies
    assert fa_rnn["status"] == "not_applicable" and "fb.MLP" in fa_rnn["reason"]
    assert not fa_rnn["trials"] and fa_rnn["best"] is None
    assert "not applicable" in result.table()


def test_figures_are_pngs(study):
    result, out = study
    assert "digits-tuning.png" in result.meta["figures"]
    for name in result.meta["figures"]:
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for s in result.studies:
        assert s["importance"] is None or set(s["importance"]) == set(s["space"])
        assert s["importance"] is not None or s["importance_note"] or not s["trials"]


def test_same_seed_same_trials_other_seed_other_trials():
    kwargs = dict(tasks=["digits"], trainers=["fa"], **QUICK)
    a, b = fb.tune(**kwargs), fb.tune(**kwargs)
    assert _trials(a) == _trials(b)
    c = fb.tune(**{**kwargs, "seed": 1})
    assert [t["params"] for t in c.studies[0]["trials"]] != \
        [t["params"] for t in a.studies[0]["trials"]]


def test_the_pruner_stops_a_trial_below_the_median_of_earlier_rounds():
    history = [({1: 0.8, 2: 0.85, 3: 0.9, 4: 0.9}, 0.9)] * 5
    prune = tuning._Pruning(history, epochs=4)
    with pytest.raises(runs.StopRun, match="pruned after epoch 1 of 4"):
        prune(1, 4, 0.5)
    keep = tuning._Pruning(history, epochs=4)
    for epoch, acc in [(1, 0.8), (2, 0.9), (3, 0.95)]:
        keep(epoch, 4, acc)
    tuning._Pruning(history, epochs=4)(4, 4, 0.1)   # the last epoch: complete, never pruned
    tuning._Pruning(history[:4], epochs=4)(1, 4, 0.1)   # fewer than 5 completed: no pruning
    # a pruned trial is recorded as such, its curve up to where it stopped
    record = tuning.run_trial(runs.make_spec("xor", "backprop", 0, epochs=4, alignment=False,
                                             validation=0.2, params={"lr": 1e-4}),
                              [({1: 1.0, 2: 1.0, 3: 1.0, 4: 1.0}, 1.0)] * 5)
    assert record["status"] == "stopped" and len(record["test_accuracy"]) == 1
    assert record["final"] is None and "pruned after epoch 1" in record["reason"]


def test_interrupted_tuning_keeps_finished_trials_and_resumes_to_the_same_trials(
        tmp_path, monkeypatch):
    kwargs = dict(tasks=["digits"], trainers=["backprop"], plots=False, **QUICK)
    whole = fb.tune(**kwargs)
    real = tuning.run_trial
    calls = []

    def interrupted_fourth(*args, **kw):
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return real(*args, **kw)

    monkeypatch.setattr(tuning, "run_trial", interrupted_fourth)
    with pytest.raises(KeyboardInterrupt):
        fb.tune(**kwargs, out=tmp_path)
    saved = fb.Tuning.from_json(tmp_path / "tuning.json")
    assert saved.meta["interrupted"] and not saved.meta["complete"]
    assert [t["state"] for t in saved.studies[0]["trials"]] == ["COMPLETE"] * 3 + ["RUNNING"]
    monkeypatch.setattr(tuning, "run_trial", real)
    resumed = fb.tune(**kwargs, out=tmp_path)
    assert _trials(resumed) == _trials(whole)
    # a larger budget extends the study; other settings refuse to resume it
    more = fb.tune(**{**kwargs, "trials": 7}, out=tmp_path)
    assert _trials(more)[0][:6] == _trials(whole)[0] and len(more.studies[0]["trials"]) == 7
    with pytest.raises(ValueError, match="epochs: 3 there, 4 now"):
        fb.tune(**{**kwargs, "epochs": 4}, out=tmp_path)


def test_dask_local_cluster_gives_the_local_trials(tmp_path):
    pytest.importorskip("distributed")
    kwargs = dict(tasks=["digits"], trainers=["backprop", "fa"], trials=4, epochs=2,
                  round_size=2, progress=False)
    local = fb.tune(**kwargs)
    dask = fb.tune(**kwargs, workers=2, out=tmp_path, plots=False)
    assert dask.meta["execution"] == "dask LocalCluster(2 processes)"
    assert _trials(dask) == _trials(local)


# -- arguments, spaces and fixed options ----------------------------------------------------

@pytest.mark.parametrize("kwargs, error, match", [
    ({"trials": 0}, ValueError, "trials must be >= 1"),
    ({"round_size": 1.5}, TypeError, "round_size must be a positive integer"),
    ({"validation": 1.0}, ValueError, "validation must be the fraction"),
    ({"seed": -1}, ValueError, "seed must be an int >= 0"),
    ({"prune": "yes"}, TypeError, "prune must be a bool"),
    ({"spaces": {"dfa": {}}}, ValueError, "spaces names 'dfa'"),
    ({"spaces": {"fa": {"lr": 0.1}}}, TypeError, r"spaces\['fa'\]\['lr'\] is 0.1"),
    ({"spaces": {"fa": {"nope": fb.Uniform(0, 1)}}}, ValueError, "does not build the trainer"),
    ({"trainers": ["nope"]}, ValueError, "'nope' is not registered"),
    ({"workers": 2, "scheduler": "tcp://127.0.0.1:1"}, ValueError, "give one of them"),
    ({"trainer_options": {"fa": {"optimizer": fb.Adam(1e-3)}}}, TypeError, "plain values"),
])
def test_bad_arguments_fail_before_any_trial(kwargs, error, match, monkeypatch):
    monkeypatch.setattr(tuning, "run_trial", lambda *a, **k: pytest.fail("a trial ran"))
    with pytest.raises(error, match=match):
        fb.tune(**{"tasks": ["xor"], "trainers": ["backprop", "fa"], **kwargs})


def test_fixed_trainer_options_leave_the_space_and_spaces_replace_it():
    plan = tuning.prepare(tasks=["xor"], trainers=["fa", "sg"],
                          trainer_options={"fa": {"feedback_scale": 2.0},
                                           "sg": {"sg_optimizer": "sgd"}},
                          spaces={"sg": {"lr": fb.LogUniform(1e-3, 1e-2),
                                         "sg_lr": fb.LogUniform(1e-3, 1e-2)}})
    fa, sg = plan.pairs
    assert fa["fixed"] == ["feedback_scale"] and "feedback_scale" not in fa["space"]
    assert sg["fixed"] == ["sg_lr"] and list(sg["space"]) == ["lr"]


# -- the tuned settings in compare ----------------------------------------------------------

def test_compare_runs_the_tuned_settings_and_says_so(study, tmp_path):
    result, out = study
    res = fb.compare(tasks=["digits"], trainers=["backprop", "fa", "dfa"], seeds=1, epochs=2,
                     params=out / "tuning.json", progress=False, alignment=False)
    best = {s["trainer"]: s["best"]["params"] for s in result.studies if s["task"] == "digits"}
    by_trainer = {r["trainer"]: r for r in res.runs}
    for name in ("backprop", "fa"):
        settings = by_trainer[name]["settings"]
        assert settings["tuned"] and settings["params"] == best[name]
        assert settings["lr"] == best[name]["lr"]
        assert settings["trainer_args"]["weight_decay"] == best[name]["weight_decay"]
    assert by_trainer["fa"]["settings"]["trainer_args"]["feedback_scale"] == \
        best["fa"]["feedback_scale"]
    assert not by_trainer["dfa"]["settings"]["tuned"]
    assert res.meta["params"]["tuned"] == [["digits", "backprop"], ["digits", "fa"]]
    lines = {line.split()[1]: line for line in res.table().splitlines()[1:]}
    assert " tuned " in lines["fa"] and " default " in lines["dfa"]
    # the tuned settings are what a run with them as options gives
    direct = runs.run(runs.make_spec("digits", "fa", 0, epochs=2, alignment=False,
                                     lr=best["fa"]["lr"],
                                     weight_decay=best["fa"]["weight_decay"],
                                     trainer_options={"feedback_scale":
                                                      best["fa"]["feedback_scale"]}))
    assert direct["test_accuracy"] == by_trainer["fa"]["test_accuracy"]
    again = Results.from_json(_write(res, tmp_path))
    assert again.table() == res.table()
    with pytest.raises(ValueError, match="give params .* or lr, not both"):
        fb.compare(tasks=["digits"], trainers=["fa"], params=out / "tuning.json", lr=0.1)
    with pytest.raises(ValueError, match="not a fastbp tuning file"):
        fb.compare(tasks=["digits"], trainers=["fa"], params=_write(res, tmp_path))


def _write(results, folder):
    path = folder / "results.json"
    results.to_json(path)
    return path


# -- the command line ----------------------------------------------------------------------

def test_cli_tune_then_compare_params(tmp_path, capsys):
    from fastbp.cli import main
    out = tmp_path / "t"
    assert main(["tune", "--task", "xor", "--trainers", "backprop,fa", "--trials", "2",
                 "--epochs", "3", "--out", str(out), "--no-progress", "--no-plots"]) == 0
    text = capsys.readouterr().out
    assert "best val acc" in text and "fastbp compare --params" in text
    assert (out / "tuning.json").exists() and (out / tuning.JOURNAL).exists()
    assert main(["compare", "--task", "xor", "--trainers", "fa", "--seeds", "1", "--epochs",
                 "2", "--params", str(out / "tuning.json"), "--out", str(tmp_path / "c"),
                 "--no-progress", "--no-plots", "--no-alignment"]) == 0
    assert " tuned " in capsys.readouterr().out
    for argv, message in [(["tune", "--validation", "1.5"], "expected a number in (0, 1)"),
                          (["tune", "--trials", "0"], "expected a positive integer"),
                          (["compare", "--params", "x.json", "--lr", "0.1"],
                           "leave out --lr"),
                          (["compare", "--task", "xor", "--params", str(tmp_path / "no.json"),
                            "--out", str(tmp_path / "c2")], "--params: params=")]:
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2
        assert message in capsys.readouterr().err

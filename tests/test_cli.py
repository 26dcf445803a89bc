"""The fastbp command line: compare, explain, tasks and argument errors."""
import json
import subprocess
import sys

import pytest

from fastbp.cli import main


def test_explain_prints_the_worked_example(capsys):
    assert main(["explain"]) == 0
    out = capsys.readouterr().out
    assert "out_o1 = sigmoid(net_o1) = 0.734929" in out
    assert "dE/dw5 = dE/dout_o1 * dout_o1/dnet_o1 * dnet_o1/dw5" in out
    assert "w5 = 0.500000 - 0.6 * 0.080203 = 0.451878" in out


def test_explain_with_other_weights(capsys):
    assert main(["explain", "--weights", "0", "0", "0", "0", "0", "0", "0", "0",
                 "--rate", "1", "--digits", "3"]) == 0
    assert "out_h1 = sigmoid(net_h1) = " in capsys.readouterr().out


def test_tasks_lists_the_registry(capsys):
    assert main(["tasks"]) == 0
    out = capsys.readouterr().out
    for name in ("xor", "digits", "digits-seq", "mnist1d", "mnist1d-seq", "adding", "copy", "echo"):
        assert f"\n{name} " in "\n" + out


def test_compare_writes_table_json_and_figures(tmp_path, capsys):
    code = main(["compare", "--task", "xor", "--trainers", "backprop,dfa", "--seeds", "2",
                 "--epochs", "3", "--out", str(tmp_path), "--no-progress"])
    assert code == 0
    out = capsys.readouterr().out
    assert "task" in out and "backprop" in out and "dfa" in out and "results.json" in out
    data = json.loads((tmp_path / "results.json").read_text())
    assert len(data["runs"]) == 4 and data["meta"]["seeds"] == [0, 1]
    assert (tmp_path / "xor-accuracy.png").exists()


@pytest.mark.parametrize("argv, message", [
    (["compare", "--trainers", "backprop,nope"], "'nope' is not a registered trainer; known:"),
    (["compare", "--task", "nope"], "task 'nope' is not registered"),
    (["compare", "--task", "adding:delay=4"], "has no option 'delay'"),
    (["compare", "--seeds", "0"], "expected a positive integer, got 0"),
    (["compare", "--seeds", "1,x"], "comma-separated list of ints"),
    (["compare", "--epochs", "-2"], "expected a positive integer, got -2"),
    (["compare", "--workers", "2", "--scheduler", "tcp://127.0.0.1:1"], "give one of them"),
    (["compare", "--dtype", "int8"], "invalid choice: 'int8'"),
    (["compare", "--lr", "abc"], "expected a number, got 'abc'"),
    (["explain", "--weights", "1", "2"], "expected 8 arguments"),
    (["demo", "--epochs", "0"], "expected a positive integer, got 0"),
])
def test_argument_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_console_script_entry_point():
    out = subprocess.run([sys.executable, "-m", "fastbp.cli", "--help"], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0
    for command in ("compare", "explain", "tasks", "demo"):
        assert command in out.stdout


def test_compare_on_a_dask_scheduler_address(tmp_path, capsys):
    """--scheduler sends the runs to an existing cluster; same numbers as in-process."""
    distributed = pytest.importorskip("distributed")
    from fastbp import compare
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:
        code = main(["compare", "--task", "xor", "--trainers", "backprop", "--seeds", "0,3",
                     "--epochs", "2", "--out", str(tmp_path), "--no-progress", "--no-plots",
                     "--scheduler", cluster.scheduler_address])
    assert code == 0
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["meta"]["execution"].startswith("dask tcp://")
    local = compare(tasks=["xor"], trainers=["backprop"], seeds=[0, 3], epochs=2,
                    progress=False)
    for a, b in zip(local.runs, data["runs"]):
        assert a["seed"] == b["seed"] and a["test_accuracy"] == b["test_accuracy"]
        assert a["train_loss"] == b["train_loss"] and a["final"] == b["final"]


def test_task_list_keeps_options_with_their_task():
    from fastbp.cli import _task_list
    assert _task_list("adding:length=10,n_train=256,digits") == [
        "adding:length=10,n_train=256", "digits"]
    assert _task_list("mnist1d,copy:delay=20") == ["mnist1d", "copy:delay=20"]


def test_trainer_option_parsing(capsys):
    from fastbp.cli import _trainer_option
    assert _trainer_option("sg.truncate=10") == ("sg", "truncate", 10)
    assert _trainer_option("dtp.target_step=0.2") == ("dtp", "target_step", 0.2)
    assert _trainer_option("dtp.difference=false") == ("dtp", "difference", False)
    assert _trainer_option("dtp.schedule=joint") == ("dtp", "schedule", "joint")
    for argv, message in [(["compare", "--trainer-option", "sg-truncate"], "NAME.KEY=VALUE"),
                          (["compare", "--trainers", "backprop", "--trainer-option",
                            "fa.feedback_scale=2"], "'fa' is not among --trainers"),
                          (["compare", "--trainer-option", "nope.x=1"],
                           "'nope' is not a registered trainer")]:
        with pytest.raises(SystemExit):
            main(argv)
        assert message in capsys.readouterr().err


# -- hardening: every option checked before any training; paths printed once --------------

@pytest.mark.parametrize("argv, option, message", [
    (["--lr", "0"], "--lr", "expected a finite number > 0, got 0"),
    (["--task", "digits:test_fraction=abc"], "--task",
     "test_fraction must be a number in (0, 1), got 'abc'"),
    (["--task", "adding:length=0"], "--task", "length must be >= 1, got 0"),
    (["--task", "adding:length=4", "--trainers", "sg", "--trainer-option", "sg.truncate=abc"],
     "--trainer-option", "truncate must be a positive integer, got 'abc'"),
    (["--task", "xor", "--trainer-option", "fa.nope=1"], "--trainer-option",
     "FATrainer does not take"),
    (["--task", "xor", "--out", "{file}"], "--out", "is a file"),
    (["--task", "xor", "--out", "{file}/sub"], "--out", "is a file"),
])
def test_bad_options_are_usage_errors_before_any_run(argv, option, message, tmp_path,
                                                     monkeypatch, capsys):
    from fastbp import runs
    monkeypatch.setattr(runs, "run_safely", lambda *a, **k: pytest.fail("a run started"))
    monkeypatch.setattr(runs, "run", lambda *a, **k: pytest.fail("a run started"))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "file").write_text("not a folder")
    argv = [a.replace("{file}", str(tmp_path / "file")) for a in argv]
    with pytest.raises(SystemExit) as exc:
        main(["compare", "--seeds", "1", "--epochs", "1", "--no-progress"] + argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "usage: fastbp compare" in err
    assert f"error: {option}" in err or f"argument {option}" in err, err
    assert message in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]  # no results folder made


def test_out_with_a_trailing_slash_prints_each_path_once(tmp_path, capsys):
    out = str(tmp_path / "res") + "/"
    assert main(["compare", "--task", "xor", "--trainers", "backprop", "--seeds", "1",
                 "--epochs", "2", "--out", out, "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "//" not in printed
    assert f"results.json and figures in {out}\n" in printed
    assert f"  {out}xor-accuracy.png" in printed

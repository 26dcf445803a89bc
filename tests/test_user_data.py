"""The user's own data as a task: `fb.Task.from_arrays` and ``--task file:PATH.npz``.

Small arrays and few epochs: what is checked is that the data, model, loss
and budget arrive where they should, that compare (and its command line)
run such a task, and that every malformed input gets an error naming it.
"""
import json
import os

import numpy as np
import pytest

import fastbp as fb
from fastbp import runs, tasks
from fastbp.cli import main


def _classification(n_train=40, n_test=12, features=4, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n_train + n_test, features))
    y = (X[:, 0] + 0.5 * X[:, 1] > 0).astype(np.int64) + (X[:, 2] > 1)
    return X[:n_train], y[:n_train], X[n_train:], y[n_train:]


def _save(path, **arrays):
    np.savez(path, **arrays)
    return str(path)


@pytest.fixture(autouse=True)
def registry():
    """compare registers Task objects by name: leave the registry as it was."""
    before = dict(tasks.TASKS)
    yield tasks.TASKS
    tasks.TASKS.clear()
    tasks.TASKS.update(before)


@pytest.fixture
def npz(tmp_path):
    Xtr, ytr, Xte, yte = _classification()
    return _save(tmp_path / "data.npz", X_train=Xtr, y_train=ytr, X_test=Xte, y_test=yte)


# -- Task.from_arrays ---------------------------------------------------------------------

def test_from_arrays_mlp_classifier_and_its_defaults():
    Xtr, ytr, Xte, yte = _classification()
    task = fb.Task.from_arrays(Xtr, ytr, Xte, yte, name="mine")
    assert task.model == "MLP" and task.loss == "cross_entropy"
    assert task.model_args() == {"sizes": [4, 128, 128, 3], "activation": "relu",
                                 "output": "softmax"}
    assert (task.epochs, task.batch_size, task.target_accuracy) == (20, 32, 0.9)
    assert task.optimizer == ("adam", {"lr": 1e-3}) and task.trainer_args == {}
    assert not task.custom_accuracy and task.trainer_options == {}
    model = task.build_model(seed=0, dtype=np.float64)
    assert isinstance(model, fb.MLP) and model.sizes == [4, 128, 128, 3]
    for dtype in (np.float32, np.float64):
        d = task.load(dtype=dtype)
        assert d.X_train.dtype == dtype and d.X_test.dtype == dtype
        assert d.y_train.dtype == np.int64
        np.testing.assert_array_equal(d.X_train, Xtr.astype(dtype))
        np.testing.assert_array_equal(d.y_test, yte)
        assert d.X_train.flags.writeable and d.X_train.flags.c_contiguous
    # every load is a fresh copy, and the task kept its own copy of the arrays
    d = task.load()
    d.X_train[...] = 0
    Xtr[...] = 0
    assert np.any(task.load().X_train != 0)
    assert set(task.options()) == {"sha256"}


def test_from_arrays_options():
    Xtr, ytr, Xte, yte = _classification()
    task = fb.Task.from_arrays(Xtr, ytr.astype(np.int32), Xte, yte, name="mine", hidden="16x8",
                               activation="tanh", epochs=3, batch_size=5, lr=0.02,
                               optimizer="sgd", weight_decay=1e-4, clip_norm=2,
                               target_accuracy=0.5)
    assert task.model_args()["sizes"] == [4, 16, 8, 3]
    assert task.model_args()["activation"] == "tanh"
    assert (task.epochs, task.batch_size, task.target_accuracy) == (3, 5, 0.5)
    assert task.optimizer == ("sgd", {"lr": 0.02})
    assert task.trainer_args == {"weight_decay": 1e-4, "clip_norm": 2.0}
    assert fb.Task.from_arrays(Xtr, ytr, Xte, yte, hidden=[7]).model_args()["sizes"] == \
        [4, 7, 3]
    # integer targets with a squared-error loss are a regression
    reg = fb.Task.from_arrays(Xtr, ytr, Xte, yte, loss="mse", hidden=4)
    assert reg.loss == "mse" and reg.model_args()["output"] == "identity"
    assert reg.load().y_train.shape == (40, 1) and reg.load().y_train.dtype == np.float32


def test_from_arrays_rnn_classifier_per_sequence_and_per_step():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(30, 7, 3))
    last = fb.Task.from_arrays(X[:20], np.arange(20) % 3, X[20:], np.arange(10) % 3,
                               name="seq")
    assert last.model == "ElmanRNN" and last.loss == "cross_entropy"
    assert last.model_args() == {"input_size": 3, "hidden_size": 64, "output_size": 3,
                                 "activation": "tanh", "readout": "last",
                                 "output": "softmax", "recurrent_init": "orthogonal"}
    assert last.trainer_args == {"clip_norm": 1.0}
    assert last.trainer_options == {"sg": {"truncate": 2}}       # ceil(T / 4)
    rnn = last.build_model(seed=0)
    assert isinstance(rnn, fb.ElmanRNN) and rnn.readout == "last"
    y = (X[:, :, 0] > 0).astype(int)
    every = fb.Task.from_arrays(X[:20], y[:20], X[20:], y[20:], hidden=16, clip_norm="none")
    assert every.model_args()["readout"] == "all" and every.model_args()["hidden_size"] == 16
    assert every.model_args()["output_size"] == 2 and every.trainer_args == {}
    assert every.load().y_train.shape == (20, 7)


def test_from_arrays_regression_and_its_accuracy():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(30, 5, 2))
    y = X.sum(axis=(1, 2))
    task = fb.Task.from_arrays(X[:20], y[:20], X[20:], y[20:], name="sums")
    assert task.loss == "mse" and task.custom_accuracy
    assert task.model_args()["output"] == "identity" and task.model_args()["readout"] == "last"
    d = task.load(dtype=np.float64)
    assert d.y_train.shape == (20, 1) and d.y_train.dtype == np.float64
    # accuracy is the R^2 of the test targets
    yt = d.y_test
    assert tasks.accuracy(task, yt, yt) == 1.0
    assert tasks.accuracy(task, np.full_like(yt, yt.mean()), yt) == pytest.approx(0.0, abs=1e-12)
    noisy = yt + 0.5
    want = 1 - np.sum((noisy - yt) ** 2) / np.sum((yt - yt.mean()) ** 2)
    assert tasks.accuracy(task, noisy, yt) == pytest.approx(want, rel=1e-12)
    per_step = fb.Task.from_arrays(X[:20], X[:20, :, :1], X[20:], X[20:, :, :1])
    assert per_step.model_args()["readout"] == "all"
    assert per_step.load().y_train.shape == (20, 5, 1)


@pytest.mark.parametrize("arrays, error, message", [
    (dict(X_train=np.ones(5)), ValueError, "X_train is 1-D with shape (5,); expected 2-D"),
    (dict(X_test=np.ones((4, 3, 2))), ValueError, "X_test is 3-D with shape (4, 3, 2) but "
                                                  "X_train is 2-D"),
    (dict(X_test=np.ones((12, 5))), ValueError, "X_test has 5 features"),
    (dict(y_train=np.zeros(39, int)), ValueError, "y_train has 39 rows (shape (39,)) but "
                                                  "X_train has 40"),
    (dict(X_train=np.full((40, 4), np.nan)), ValueError, "X_train holds nan at index (0, 0)"),
    (dict(y_test=np.array(["a"] * 12)), TypeError, "y_test has dtype <U1; expected an array "
                                                   "of numbers"),
    (dict(X_train=np.empty((40, 4), object)), TypeError, "X_train has dtype object"),
    (dict(y_train=-np.ones(40, int)), ValueError, "y_train holds the label -1"),
    (dict(y_train=np.zeros(40, int), y_test=np.zeros(12, int)), ValueError,
     "hold only the class 0"),
    (dict(y_test=np.zeros(12)), TypeError, "y_train has dtype int64 and y_test dtype float64"),
    (dict(y_train=np.zeros((40, 2), int)), ValueError, "class labels have shape "
                                                       "(n_samples,)"),
    (dict(X_train=np.ones((1, 4)), y_train=np.zeros(1, int)), ValueError,
     "X_train has 1 sample(s); expected at least 2"),
    (dict(X_test=np.ones((0, 4)), y_test=np.zeros(0, int)), ValueError,
     "X_test has no samples"),
])
def test_from_arrays_names_what_is_wrong(arrays, error, message):
    Xtr, ytr, Xte, yte = _classification()
    given = dict(X_train=Xtr, y_train=ytr, X_test=Xte, y_test=yte)
    given.update(arrays)
    with pytest.raises(error) as info:
        fb.Task.from_arrays(**given)
    assert message in str(info.value)


def test_from_arrays_bad_options_and_names():
    Xtr, ytr, Xte, yte = _classification()
    for kwargs, error, message in [
            ({"hidden": "12a"}, ValueError, "hidden='12a'; expected layer sizes"),
            ({"hidden": 0}, ValueError, "expected one or more layer sizes >= 1"),
            ({"epochs": 0}, ValueError, "epochs must be >= 1, got 0"),
            ({"lr": -1.0}, ValueError, "lr must be a finite number > 0"),
            ({"loss": "hinge"}, ValueError, "loss='hinge'; expected one of"),
            ({"activation": "gelu"}, ValueError, "activation='gelu'; expected one of"),
            ({"optimizer": "rmsprop"}, ValueError, "optimizer='rmsprop'"),
            ({"target_accuracy": 2}, ValueError, "target_accuracy must be a number in [0, 1]"),
            ({"epoch": 3}, ValueError, "has no option 'epoch'"),
            ({"name": "digits"}, ValueError, "name='digits' is a built-in task"),
            ({"name": "a:b"}, ValueError, "without ':'"),
            ({"loss": "cross_entropy", "name": "x"}, None, None)]:
        if error is None:
            fb.Task.from_arrays(Xtr, ytr, Xte, yte, **kwargs)
            continue
        with pytest.raises(error, match=None) as info:
            fb.Task.from_arrays(Xtr, ytr, Xte, yte, **kwargs)
        assert message in str(info.value)
    with pytest.raises(TypeError, match="loss='cross_entropy' needs integer class labels"):
        fb.Task.from_arrays(Xtr, ytr.astype(float), Xte, yte.astype(float),
                            loss="cross_entropy")
    X = np.ones((10, 3, 2))
    with pytest.raises(ValueError, match="an ElmanRNN has one hidden layer"):
        fb.Task.from_arrays(X, np.arange(10) % 2, X, np.arange(10) % 2, hidden="8x8")
    with pytest.raises(ValueError, match="per-step labels have shape"):
        fb.Task.from_arrays(X, np.zeros((10, 4), int), X, np.zeros((10, 4), int))
    with pytest.raises(ValueError, match="y_test is constant"):
        fb.Task.from_arrays(Xtr, Xtr[:, 0], Xte, np.ones(12))


# -- file: specs --------------------------------------------------------------------------

def test_file_specs_parse_with_options_after_the_last_colon(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    name, options = tasks.parse_task_spec("file:data.npz:loss=mse,hidden=128x64,lr=0.01")
    assert options == {}
    assert name == f"file:{tmp_path / 'data.npz'}:hidden=128x64,loss=mse,lr=0.01"
    assert tasks.parse_task_spec(name) == (name, {})          # canonical is a fixed point
    assert tasks.parse_task_spec("file:data.npz:")[0] == f"file:{tmp_path / 'data.npz'}"
    # a Windows drive letter is part of the path, options or not
    path, opts = tasks._parse_file_spec(r"file:C:\data\d.npz:hidden=64")
    assert path.endswith(r"C:\data\d.npz") and opts == {"hidden": (64,)}
    path, opts = tasks._parse_file_spec(r"file:C:\data\d.npz")
    assert path.endswith(r"C:\data\d.npz") and opts == {}
    path, opts = tasks._parse_file_spec("file:C:/data/d.npz:epochs=3")
    assert path.endswith("C:/data/d.npz") and opts == {"epochs": 3}
    with pytest.raises(ValueError, match="names no file"):
        tasks.parse_task_spec("file:")
    with pytest.raises(ValueError, match="has no option 'hiden'"):
        tasks.parse_task_spec("file:data.npz:hiden=3")


def test_file_task_is_the_arrays_task(npz):
    Xtr, ytr, Xte, yte = _classification()
    spec = f"file:{npz}:hidden=8,epochs=2"
    task = tasks.get_task(tasks.parse_task_spec(spec)[0])
    assert task.name == f"file:{npz}:epochs=2,hidden=8" and task.epochs == 2
    assert task.model_args()["sizes"] == [4, 8, 3]
    assert "data.npz: MLP 4-8-3 relu, 3 classes, 40 train / 12 test" == task.description
    d = tasks.load(spec, dtype=np.float64)
    np.testing.assert_array_equal(d.X_train, Xtr)
    np.testing.assert_array_equal(d.y_test, yte)
    assert tasks.get_task(task.name) is task           # read once while the file is unchanged
    # Task.save writes the file the spec names, with the task's options
    mem = fb.Task.from_arrays(Xtr, ytr, Xte, yte, hidden=8, epochs=2)
    saved = mem.save(os.path.join(os.path.dirname(npz), "saved"))
    assert saved == f"file:{os.path.dirname(npz)}/saved.npz:epochs=2,hidden=8"
    again = tasks.get_task(saved)
    assert again.model_args() == mem.model_args() and again.epochs == 2
    np.testing.assert_array_equal(again.load().X_train, mem.load().X_train)


@pytest.mark.parametrize("content, message", [
    ("missing", "has no array 'y_test'; it holds ['X_test', 'X_train', 'y_train']"),
    ("ndim", "X_train in {path} is 1-D with shape (40,)"),
    ("rows", "y_train in {path} has 39 rows (shape (39,)) but X_train has 40"),
    ("text", "{path!r} is not an .npz file"),
    ("npy", "{path!r} is an .npy file (a single array)"),
    ("object", "array 'y_train' in {path!r} holds Python objects"),
    ("nan", "X_test in {path} holds nan at index (3, 1)"),
    ("absent", "{path!r} does not exist"),
    ("damaged", "{path!r} is not a readable .npz file"),
])
def test_malformed_files_say_what_is_wrong(tmp_path, content, message):
    Xtr, ytr, Xte, yte = _classification()
    path = str(tmp_path / "bad.npz")
    arrays = dict(X_train=Xtr, y_train=ytr, X_test=Xte, y_test=yte)
    if content == "missing":
        del arrays["y_test"]
    elif content == "ndim":
        arrays["X_train"] = Xtr[:, 0]
    elif content == "rows":
        arrays["y_train"] = ytr[:-1]
    elif content == "object":
        arrays["y_train"] = np.array([[1], [2, 3]] + [[0]] * 38, dtype=object)
    elif content == "nan":
        arrays["X_test"] = Xte.copy()
        arrays["X_test"][3, 1] = np.nan
    if content == "text":
        with open(path, "w") as f:
            f.write("X_train,y_train\n1,2\n")
    elif content == "npy":
        with open(path, "wb") as f:
            np.save(f, Xtr)
    elif content == "damaged":
        _save(path, **arrays)
        with open(path, "r+b") as f:
            f.truncate(200)
    elif content != "absent":
        _save(path, **arrays)
    with pytest.raises((ValueError, TypeError)) as info:
        tasks.get_task(f"file:{path}")
    assert message.format(path=path) in str(info.value)
    assert str(info.value).startswith(f"task 'file:{path}': ")


def test_an_edited_file_is_read_again_not_served_from_a_cache(tmp_path):
    Xtr, ytr, Xte, yte = _classification()
    path = _save(tmp_path / "d.npz", X_train=Xtr, y_train=ytr, X_test=Xte, y_test=yte)
    spec = runs.make_spec(f"file:{path}", "backprop", 0)
    first = runs.load_data(spec)
    assert runs.load_data(spec) is first                 # cached while unchanged
    _save(path, X_train=Xtr + 1, y_train=ytr, X_test=Xte, y_test=yte)
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))   # a later modification
    second = runs.load_data(spec)
    np.testing.assert_allclose(second.X_train, (Xtr + 1).astype(np.float32))
    assert tasks.get_task(f"file:{path}").options()["sha256"] != first.info["sha256"]


# -- compare, on arrays and on files ------------------------------------------------------

def test_compare_runs_a_file_task_and_an_arrays_task(npz):
    Xtr, ytr, Xte, yte = _classification()
    mine = fb.Task.from_arrays(Xtr, ytr, Xte, yte, name="mine-arrays", hidden=8, epochs=2,
                               batch_size=8)
    res = fb.compare(tasks=[f"file:{npz}:hidden=8,epochs=2,batch_size=8", mine],
                     trainers=["backprop", "dfa"], seeds=1, progress=False)
    file_name = f"file:{npz}:batch_size=8,epochs=2,hidden=8"
    assert [(r["task"], r["trainer"]) for r in res.runs] == [
        (file_name, "backprop"), (file_name, "dfa"), ("mine-arrays", "backprop"),
        ("mine-arrays", "dfa")]
    for r in res.runs:
        assert r["status"] == "ok" and len(r["test_accuracy"]) == 2
        assert r["settings"]["model_args"]["sizes"] == [4, 8, 3]
        assert r["settings"]["task_options"]["sha256"]
    # the same data and initialisation whichever way the task was given
    by_task = {r["task"]: r for r in res.runs if r["trainer"] == "backprop"}
    assert by_task[file_name]["final"] == by_task["mine-arrays"]["final"]
    assert res.meta["tasks"][file_name]["model"] == "MLP"
    assert tasks.TASKS["mine-arrays"] is mine     # registered by compare (undone by `registry`)


def test_arrays_tasks_are_not_sent_to_dask_workers_nor_confused():
    Xtr, ytr, Xte, yte = _classification()
    mine = fb.Task.from_arrays(Xtr, ytr, Xte, yte, name="in-memory")
    other = fb.Task.from_arrays(Xtr, ytr, Xte, yte, name="in-memory", hidden=4)
    with pytest.raises(ValueError, match="two different tasks are named 'in-memory'"):
        fb.compare(tasks=[mine, other], trainers=["backprop"], seeds=1, progress=False)
    with pytest.raises(ValueError, match=r"save it with task.save\('in-memory.npz'\)"):
        fb.compare(tasks=[mine], trainers=["backprop"], seeds=1, workers=1, progress=False)


def test_cli_compare_on_a_file_task(npz, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["compare", "--task", f"file:{npz}:hidden=8,epochs=2,batch_size=8",
                 "--trainers", "backprop,dfa", "--seeds", "1", "--out", str(out), "--no-plots",
                 "--no-progress"])
    assert code == 0
    data = json.loads((out / "results.json").read_text())
    assert [r["status"] for r in data["runs"]] == ["ok", "ok"]
    assert data["runs"][0]["task"] == f"file:{npz}:batch_size=8,epochs=2,hidden=8"
    assert "data.npz" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        main(["compare", "--task", f"file:{tmp_path / 'none.npz'}", "--out", str(out)])
    assert exc.value.code == 2
    assert "none.npz' does not exist" in capsys.readouterr().err

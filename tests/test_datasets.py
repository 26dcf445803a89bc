"""Task loaders: shapes, dtypes, determinism, options and the registry."""
import random

import numpy as np
import pytest

import fastbp as fb
from fastbp import data, tasks

DTYPES = [np.float32, np.float64]


def _same(a, b):
    for f in ("X_train", "y_train", "X_test", "y_test"):
        np.testing.assert_array_equal(getattr(a, f), getattr(b, f))


def test_registry_lists_every_task():
    assert tasks.available_tasks() == sorted(
        ["xor", "digits", "digits-seq", "mnist1d", "mnist1d-seq", "adding", "copy", "echo"])
    with pytest.raises(ValueError, match="'nope' is not registered; known: .*mnist1d"):
        tasks.get_task("nope")


@pytest.mark.parametrize("dtype", DTYPES)
def test_xor(dtype):
    d = tasks.load("xor", dtype=dtype)
    assert d.X_train.shape == (4, 2) and d.X_train.dtype == dtype
    np.testing.assert_array_equal(d.y_train, [0, 1, 1, 0])
    assert d.y_train.dtype == np.int64
    assert (d.y_train == (d.X_train[:, 0] != d.X_train[:, 1])).all()
    assert tasks.load("xor:repeats=3").X_train.shape == (12, 2)


@pytest.mark.parametrize("dtype", DTYPES)
def test_digits_forms(dtype):
    flat = tasks.load("digits", seed=0, dtype=dtype)
    seq = tasks.load("digits-seq", seed=0, dtype=dtype)
    assert flat.X_train.shape == (1348, 64) and flat.X_test.shape == (449, 64)
    assert seq.X_train.shape == (1348, 8, 8) and seq.X_test.shape == (449, 8, 8)
    assert flat.X_train.dtype == dtype and seq.X_train.dtype == dtype
    assert flat.y_train.dtype == np.int64 and set(np.unique(flat.y_train)) == set(range(10))
    assert 0.0 <= flat.X_train.min() and flat.X_train.max() <= 1.0
    # the sequence form is the same images read row by row
    np.testing.assert_array_equal(seq.X_train.reshape(-1, 64), flat.X_train)
    assert flat.X_train.flags.c_contiguous and seq.X_test.flags.c_contiguous


def test_digits_split_is_deterministic_by_seed():
    _same(tasks.load("digits", seed=3), tasks.load("digits", seed=3))
    a, b = tasks.load("digits", seed=0), tasks.load("digits", seed=1)
    assert not np.array_equal(a.y_test, b.y_test)
    # train and test are disjoint and cover the set
    assert len(a.y_train) + len(a.y_test) == 1797


@pytest.mark.parametrize("dtype", DTYPES)
def test_mnist1d_forms(dtype):
    flat = tasks.load("mnist1d", dtype=dtype)
    seq = tasks.load("mnist1d-seq", dtype=dtype)
    assert flat.X_train.shape == (4000, 40) and flat.X_test.shape == (1000, 40)
    assert seq.X_train.shape == (4000, 40, 1) and seq.X_test.shape == (1000, 40, 1)
    assert flat.X_train.dtype == dtype and seq.X_test.dtype == dtype
    assert flat.y_train.dtype == np.int64 and set(np.unique(flat.y_test)) == set(range(10))
    np.testing.assert_array_equal(seq.X_train[:, :, 0], flat.X_train)
    # the generator standardises the whole set
    both = np.concatenate([flat.X_train, flat.X_test]).astype(np.float64)
    assert abs(both.mean()) < 1e-6 and abs(both.std() - 1) < 1e-6


def test_mnist1d_is_generated_offline_and_leaves_global_state_alone(monkeypatch):
    requests = pytest.importorskip("requests")

    def no_network(*args, **kwargs):
        raise AssertionError("mnist1d tried to download")

    monkeypatch.setattr(requests, "get", no_network)
    monkeypatch.setattr(requests.Session, "request", no_network)
    # the generator seeds Python's and NumPy's global generators; fastbp restores them
    random.seed(123)
    np.random.seed(123)
    expected = (random.random(), np.random.random())
    random.seed(123)
    np.random.seed(123)
    Xtr, ytr, Xte, yte = data._mnist1d_arrays.__wrapped__()
    assert (random.random(), np.random.random()) == expected
    assert Xtr.shape == (4000, 40) and Xte.shape == (1000, 40)
    # the same arrays on every call: the generator's own fixed seed
    np.testing.assert_array_equal(Xte, tasks.load("mnist1d", dtype=np.float64).X_test)
    np.testing.assert_array_equal(ytr, tasks.load("mnist1d").y_train)


@pytest.mark.parametrize("dtype", DTYPES)
def test_adding(dtype):
    d = tasks.load("adding:length=17,n_train=300,n_test=50", seed=2, dtype=dtype)
    assert d.X_train.shape == (300, 17, 2) and d.X_test.shape == (50, 17, 2)
    assert d.y_train.shape == (300, 1) and d.y_train.dtype == dtype
    marks = d.X_train[:, :, 1]
    assert (marks.sum(axis=1) == 2).all()
    # one marked step in each half
    assert (marks[:, :8].sum(axis=1) == 1).all() and (marks[:, 8:].sum(axis=1) == 1).all()
    total = (d.X_train[:, :, 0] * marks).sum(axis=1, dtype=np.float64)
    np.testing.assert_allclose(d.y_train[:, 0], total, rtol=1e-6)
    values = d.X_train[:, :, 0]
    assert values.min() >= 0 and values.max() < 1
    _same(d, tasks.load("adding:length=17,n_train=300,n_test=50", seed=2, dtype=dtype))
    assert not np.array_equal(d.X_train, tasks.load(
        "adding:length=17,n_train=300,n_test=50", seed=3, dtype=dtype).X_train)
    # predicting the mean sum gives an MSE near 1/6
    big = tasks.load("adding:length=30,n_train=20000,n_test=1", seed=0)
    assert abs(np.mean((big.y_train - 1.0) ** 2) - 1 / 6) < 0.01


def test_copy():
    d = tasks.load("copy:delay=7,length=4,n_symbols=5,n_train=200,n_test=20", seed=1)
    T = 2 * 4 + 7
    assert d.X_train.shape == (200, T, 7) and d.y_train.shape == (200, T)
    assert d.y_train.dtype == np.int64 and d.X_train.dtype == np.float32
    codes = d.X_train.argmax(axis=2)
    assert (d.X_train.sum(axis=2) == 1).all()  # one-hot every step
    symbols = codes[:, :4]
    assert symbols.min() >= 1 and symbols.max() <= 5
    assert (codes[:, 4:4 + 6] == 0).all() and (codes[:, 4 + 6] == 6).all()  # blanks, delimiter
    np.testing.assert_array_equal(d.y_train[:, -4:], symbols)  # recall in order
    assert (d.y_train[:, :-4] == 0).all()
    _same(d, tasks.load("copy:delay=7,length=4,n_symbols=5,n_train=200,n_test=20", seed=1))


@pytest.mark.parametrize("dtype", DTYPES)
def test_echo(dtype):
    d = tasks.load("echo:delay=3,length=9,n_train=50,n_test=7", seed=2, dtype=dtype)
    assert d.X_train.shape == (50, 9, 2) and d.X_train.dtype == dtype
    assert d.y_train.shape == (50, 9) and d.y_train.dtype == np.int64
    assert d.X_test.shape == (7, 9, 2)
    assert (d.X_train.sum(axis=2) == 1).all()                # one-hot bits
    bits = d.X_train.argmax(axis=2)
    np.testing.assert_array_equal(d.y_train[:, 3:], bits[:, :-3])   # the bit 3 steps back
    assert (d.y_train[:, :3] == 0).all()
    assert 0.4 < bits.mean() < 0.6
    _same(d, tasks.load("echo:delay=3,length=9,n_train=50,n_test=7", seed=2, dtype=dtype))
    assert not np.array_equal(d.X_train, tasks.load(
        "echo:delay=3,length=9,n_train=50,n_test=7", seed=3, dtype=dtype).X_train)
    with pytest.raises(ValueError, match="length must be greater than delay.*length=4, delay=4"):
        tasks.load("echo:delay=4,length=4")
    with pytest.raises(ValueError, match="delay"):
        tasks.load("echo:delay=0")


def test_accuracy_definitions():
    y = np.array([[1.0], [0.5]])
    assert tasks.accuracy("adding", np.array([[1.03], [0.6]]), y) == 0.5
    d = tasks.load("copy:delay=3,length=2,n_symbols=3,n_train=5,n_test=5")
    perfect = np.eye(4)[d.y_test]  # (n, T, 4) one-hot of the right class
    assert tasks.accuracy("copy", perfect, d.y_test, delay=3, length=2, n_symbols=3) == 1.0
    blank = np.eye(4)[np.zeros_like(d.y_test)]
    # all-blank output is right on every non-recall step but gets no recalled symbol
    assert tasks.accuracy("copy", blank, d.y_test, delay=3, length=2, n_symbols=3) == 0.0
    assert tasks.accuracy("digits", np.eye(3)[[0, 2, 1]], np.array([0, 2, 2])) == 2 / 3
    # echo counts only the echoed steps: wrong on the first `delay` steps costs nothing
    y = np.array([[0, 0, 1, 0, 1]])
    out = np.eye(2)[[[1, 1, 1, 0, 0]]]
    assert tasks.accuracy("echo", out, y, delay=2) == 2 / 3


def test_bad_specs_and_options():
    with pytest.raises(ValueError, match="task 'adding' has no option 'lenght'"):
        tasks.load("adding:lenght=5")
    with pytest.raises(ValueError, match="'length' is not key=value|is not key=value"):
        tasks.load("adding:length")
    with pytest.raises(ValueError, match="length must be >= 2"):
        tasks.load("adding:length=1")
    with pytest.raises(TypeError, match="non-empty str"):
        tasks.parse_task_spec("")
    with pytest.raises(TypeError, match="dtype='int8'|dtype=.*not supported"):
        tasks.load("xor", dtype="int8")
    with pytest.raises(TypeError, match="seed must be"):
        tasks.load("xor", seed=1.5)
    with pytest.raises(ValueError, match="test_fraction must be a number in"):
        tasks.load("digits:test_fraction=1.5")
    with pytest.raises(ValueError, match=r"test_fraction must be a number in \(0, 1\), "
                                         r"got 'abc'"):
        tasks.load("digits:test_fraction=abc")
    assert tasks.parse_task_spec("copy:delay=20,x=0.5,y=a") == (
        "copy", {"delay": 20, "x": 0.5, "y": "a"})


def test_missing_optional_dependency_says_how_to_install(monkeypatch):
    with pytest.raises(ImportError, match=r'the mnist1d task needs the optional package '
                                          r'.no_such_module_x.: pip install "fastbp\[compare\]"'):
        data.require("no_such_module_x.data", "the mnist1d task")

    def missing(module, purpose):
        raise ImportError(f"{purpose} needs the optional package 'mnist1d': "
                          f"{data.INSTALL_HINT}")

    monkeypatch.setattr(data, "require", missing)
    with pytest.raises(ImportError, match="mnist1d task needs"):
        data._mnist1d_arrays.__wrapped__()
    with pytest.raises(ImportError, match="digits task needs"):
        data._digits_arrays.__wrapped__()


@pytest.mark.parametrize("name", ["xor", "digits", "mnist1d"])
def test_mlp_tasks_build_their_model(name):
    task = tasks.get_task(name)
    d = task.load(seed=0)
    m1, m2 = task.build_model(seed=4), task.build_model(seed=4)
    np.testing.assert_array_equal(m1.flat_params, m2.flat_params)
    assert isinstance(m1, fb.MLP) and m1.sizes[0] == d.X_train.shape[1]
    assert m1.predict(d.X_test[:3]).shape == (3, m1.sizes[-1])
    assert task.make_optimizer() is not task.make_optimizer()


@pytest.mark.parametrize("name", ["digits-seq", "mnist1d-seq", "adding", "copy", "echo"])
def test_sequence_tasks_build_their_rnn(name):
    task = tasks.get_task(name)
    opts = {"n_train": 20, "n_test": 10} if name in ("adding", "copy", "echo") else {}
    d = task.load(seed=0, **opts)
    rnn = task.build_model(seed=1, **opts)
    assert type(rnn).__name__ == "ElmanRNN"
    out = rnn.predict(d.X_test[:3])
    if name in ("copy", "echo"):
        assert out.shape == (3, d.X_test.shape[1], rnn.params[3].shape[0])
    else:
        assert out.shape[0] == 3


def test_tasks_and_data_are_separate_modules_and_datasets_still_imports():
    """fastbp.tasks holds the registry, fastbp.data the loaders and generators;
    fastbp.datasets re-exports both for code written before the split."""
    from fastbp import datasets
    assert datasets.get_task is tasks.get_task and datasets.TASKS is tasks.TASKS
    assert datasets.make_echo is data.make_echo and datasets.Dataset is data.Dataset
    assert not hasattr(data, "Task") and not hasattr(tasks, "make_echo")
    assert tasks.get_task("echo").loader is data.load_echo


def test_tasks_build_models_from_the_one_model_kind_map(monkeypatch):
    from fastbp import io

    built = []

    class Recorder(fb.MLP):
        def __init__(self, *args, **kwargs):
            built.append(kwargs)
            super().__init__(*args, **kwargs)

    monkeypatch.setitem(io.MODEL_KINDS, "MLP", Recorder)
    model = tasks.get_task("xor").build_model(seed=0)
    assert type(model) is Recorder and built[0]["sizes"] == [2, 4, 2]

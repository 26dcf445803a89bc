"""model.save(path) / fb.load(path): one .npz file, exact round trip, and a clear
ValueError (never a half-built model) for anything that is not a complete
fastbp model file."""
import json
import os
import pathlib
import zipfile

import numpy as np
import pytest

import fastbp as fb

FORMAT_KEYS = {"format_version", "kind", "config", "flat_params"}


def trained_model(dtype, sizes=(5, 7, 6, 3), activation=("tanh", "relu"), output="softmax",
                  init="xavier"):
    """A model whose parameters are not the initialisation (one fit on random data)."""
    model = fb.MLP(list(sizes), activation=list(activation) if not isinstance(activation, str)
                   else activation, output=output, dtype=dtype, seed=3, init=init)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, sizes[0])).astype(dtype)
    if output == "softmax":
        y, loss = rng.integers(0, sizes[-1], size=40), "cross_entropy"
    elif output == "sigmoid":
        y, loss = (rng.random((40, sizes[-1])) > 0.5).astype(dtype), "binary_cross_entropy"
    else:
        y, loss = rng.normal(size=(40, sizes[-1])).astype(dtype), "mse"
    fb.BackpropTrainer(model, loss=loss, optimizer=fb.Adam(0.01)).fit(X, y, epochs=2,
                                                                      batch_size=8, seed=0)
    return model, X


def write_npz(path, **fields):
    with open(path, "wb") as f:
        np.savez(f, **fields)
    return path


def good_fields(model):
    return dict(format_version=np.int64(1), kind=np.str_(model.kind),
                config=np.str_(json.dumps(model.get_config())),
                flat_params=model.flat_params.copy())


def assert_load_fails(path, *parts):
    with pytest.raises(ValueError) as info:
        fb.load(path)
    msg = str(info.value)
    assert os.fspath(path) in msg, msg
    for part in parts:
        assert part in msg, f"{part!r} not in {msg!r}"
    return msg


# -- round trip -------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("arch", [
    dict(sizes=(5, 7, 6, 3), activation=("tanh", "relu"), output="softmax"),
    dict(sizes=(5, 4, 2), activation="leaky_relu", output="sigmoid", init="he"),
    dict(sizes=(5, 6, 6, 6, 1), activation=("sigmoid", "identity", "relu"), output="identity",
         init="uniform"),
    dict(sizes=(5, 2), activation="relu", output="identity"),
])
def test_round_trip(tmp_path, dtype, arch):
    model, X = trained_model(dtype, **arch)
    path = tmp_path / "model.npz"
    model.save(path)
    loaded = fb.load(path)

    assert type(loaded) is fb.MLP
    assert loaded.sizes == list(arch["sizes"])
    n_hidden = len(arch["sizes"]) - 2
    expected_acts = ([arch["activation"]] * n_hidden if isinstance(arch["activation"], str)
                     else list(arch["activation"]))
    assert loaded.activations == expected_acts
    assert loaded.output == arch["output"]
    assert loaded.init == arch.get("init", "xavier")
    assert loaded.dtype == np.dtype(dtype)
    assert loaded.flat_params.dtype == np.dtype(dtype)
    # bit-identical parameters (compare the bytes: also distinguishes -0.0 and NaN payloads)
    assert loaded.flat_params.tobytes() == model.flat_params.tobytes()
    for a, b in zip(loaded.params, model.params):
        assert a.shape == b.shape and a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
    # predictions identical
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    assert loaded.predict(X).dtype == np.dtype(dtype)


def test_loaded_model_is_independent_and_trainable(tmp_path):
    model, X = trained_model(np.float64)
    path = tmp_path / "m.npz"
    model.save(path)
    loaded = fb.load(path)
    # params are views into the loaded flat buffer
    loaded.params[0][0, 0] = 123.0
    assert loaded.flat_params[0] == 123.0
    assert model.flat_params[0] != 123.0
    y = np.arange(X.shape[0]) % 3
    before = loaded.flat_params.copy()
    fb.BackpropTrainer(loaded, optimizer=fb.SGD(0.1)).step(X, y)
    assert not np.array_equal(loaded.flat_params, before)
    # loading again gives the saved parameters, not the modified ones
    np.testing.assert_array_equal(fb.load(path).flat_params, model.flat_params)


def test_save_writes_exactly_one_npz_file(tmp_path):
    model, _ = trained_model(np.float32)
    path = tmp_path / "net.npz"
    model.save(path)
    assert sorted(os.listdir(tmp_path)) == ["net.npz"]  # no temporary files left behind
    assert zipfile.is_zipfile(path)
    with np.load(path, allow_pickle=False) as data:
        assert set(data.files) == FORMAT_KEYS
        np.testing.assert_array_equal(data["flat_params"], model.flat_params)
        assert int(data["format_version"]) == 1
        assert str(data["kind"]) == "MLP"
        assert json.loads(str(data["config"]))["sizes"] == model.sizes


def test_save_accepts_str_and_overwrites(tmp_path):
    a, X = trained_model(np.float64)
    b = fb.MLP(a.sizes, activation=a.activations, output=a.output, dtype=np.float64, seed=99)
    path = str(tmp_path / "m.npz")
    a.save(path)
    b.save(path)  # replaces the first file
    assert os.listdir(tmp_path) == ["m.npz"]
    loaded = fb.load(pathlib.Path(path))
    np.testing.assert_array_equal(loaded.flat_params, b.flat_params)
    assert not np.array_equal(loaded.flat_params, a.flat_params)


def test_save_into_missing_directory_raises_and_leaves_nothing(tmp_path):
    model, _ = trained_model(np.float32)
    with pytest.raises(FileNotFoundError):
        model.save(tmp_path / "no" / "such" / "dir" / "m.npz")
    assert os.listdir(tmp_path) == []


# -- failures -------------------------------------------------------------------------

def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        fb.load(tmp_path / "absent.npz")


def test_random_bytes(tmp_path):
    path = tmp_path / "random.npz"
    path.write_bytes(np.random.default_rng(0).bytes(2000))
    assert_load_fails(path, "not a readable fastbp model file")


def test_random_bytes_with_zip_magic(tmp_path):
    path = tmp_path / "random.npz"
    path.write_bytes(b"PK\x03\x04" + np.random.default_rng(1).bytes(2000))
    assert_load_fails(path, "not a readable fastbp model file")


def test_empty_file(tmp_path):
    path = tmp_path / "empty.npz"
    path.write_bytes(b"")
    assert_load_fails(path)


@pytest.mark.parametrize("fraction", [0.5, 0.1, 0.9, 0.99])
def test_truncated_file(tmp_path, fraction):
    model, _ = trained_model(np.float64)
    path = tmp_path / "m.npz"
    model.save(path)
    raw = path.read_bytes()
    path.write_bytes(raw[:int(len(raw) * fraction)])
    assert_load_fails(path, "not a readable fastbp model file")


def test_corrupted_parameter_bytes_are_detected(tmp_path):
    """Flipping a byte inside the stored parameters fails the zip CRC check."""
    model, _ = trained_model(np.float64)
    path = tmp_path / "m.npz"
    model.save(path)
    raw = bytearray(path.read_bytes())
    needle = model.flat_params.tobytes()
    at = raw.find(needle)
    assert at > 0, "parameters are stored uncompressed"
    raw[at + len(needle) // 2] ^= 0x01
    path.write_bytes(bytes(raw))
    assert_load_fails(path)


def test_corrupt_compression_method_field(tmp_path):
    model, _ = trained_model(np.float32)
    path = tmp_path / "m.npz"
    model.save(path)
    raw = bytearray(path.read_bytes())
    central = raw.find(b"PK\x01\x02")  # first central directory entry
    assert central > 0
    raw[central + 10:central + 12] = (99).to_bytes(2, "little")  # compression method
    path.write_bytes(bytes(raw))
    assert_load_fails(path)


def test_npy_file_is_not_a_model(tmp_path):
    model, _ = trained_model(np.float32)
    path = tmp_path / "params.npy"
    np.save(path, model.flat_params)
    assert_load_fails(path)


def test_directory_is_not_a_model(tmp_path):
    (tmp_path / "d").mkdir()
    with pytest.raises((ValueError, IsADirectoryError, PermissionError)):
        fb.load(tmp_path / "d")


@pytest.mark.parametrize("missing", sorted(FORMAT_KEYS))
def test_missing_keys(tmp_path, missing):
    model, _ = trained_model(np.float32)
    fields = good_fields(model)
    del fields[missing]
    path = write_npz(tmp_path / "m.npz", **fields)
    assert_load_fails(path, "missing", missing)


def test_hand_written_good_file_loads(tmp_path):
    """The malformed files below differ from this one in exactly one field."""
    model, X = trained_model(np.float32)
    path = write_npz(tmp_path / "m.npz", **good_fields(model))
    loaded = fb.load(path)
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))


@pytest.mark.parametrize("version", [0, 2, 99, -1])
def test_other_format_version(tmp_path, version):
    model, _ = trained_model(np.float32)
    path = write_npz(tmp_path / "m.npz", **dict(good_fields(model),
                                                 format_version=np.int64(version)))
    assert_load_fails(path, "format version", str(version), "1")


@pytest.mark.parametrize("version", [np.str_("one"), np.array([1, 1])])
def test_malformed_format_version(tmp_path, version):
    model, _ = trained_model(np.float32)
    path = write_npz(tmp_path / "m.npz", **dict(good_fields(model), format_version=version))
    assert_load_fails(path, "format")


@pytest.mark.parametrize("kind", ["CNN", "ElmanRNN_v9", ""])
def test_unknown_kind(tmp_path, kind):
    model, _ = trained_model(np.float32)
    path = write_npz(tmp_path / "m.npz", **dict(good_fields(model), kind=np.str_(kind)))
    assert_load_fails(path, "kind", repr(kind), "MLP")


@pytest.mark.parametrize("config, parts", [
    ("{not json", ["invalid MLP configuration"]),
    ("[5, 7, 3]", ["invalid MLP configuration"]),
    (json.dumps({"sizes": [5, 3], "colour": "red"}), ["colour"]),
    (json.dumps({"sizes": [5, 3], "activation": [], "output": "softmax",
                 "dtype": "int8"}), ["dtype", "int8"]),
    (json.dumps({"sizes": [5], "activation": [], "output": "softmax"}), ["sizes"]),
    (json.dumps({"sizes": [5, 3], "activation": [], "output": "relu"}), ["output", "'relu'"]),
])
def test_invalid_config(tmp_path, config, parts):
    model = fb.MLP([5, 3], output="softmax", seed=0)
    path = write_npz(tmp_path / "m.npz", **dict(good_fields(model), config=np.str_(config)))
    assert_load_fails(path, *parts)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("change", ["shorter", "longer", "empty", "2d", "other_float",
                                    "int", "strings"])
def test_parameters_that_do_not_fit(tmp_path, dtype, change):
    model, _ = trained_model(dtype)
    p = model.flat_params
    other = np.float64 if dtype == np.float32 else np.float32
    params = {"shorter": p[:-1], "longer": np.concatenate([p, p[:1]]), "empty": p[:0],
              "2d": p.reshape(1, -1), "other_float": p.astype(other),
              "int": np.zeros(p.shape, np.int64), "strings": np.array(["x"] * p.size)}[change]
    path = write_npz(tmp_path / "m.npz", **dict(good_fields(model), flat_params=params))
    assert_load_fails(path, "parameters", str(params.shape), str(params.dtype),
                      str(model.flat_params.shape))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_parameters(tmp_path, bad):
    model, _ = trained_model(np.float64)
    params = model.flat_params.copy()
    params[len(params) // 3] = bad
    path = write_npz(tmp_path / "m.npz", **dict(good_fields(model), flat_params=params))
    assert_load_fails(path, "NaN")


def test_pickled_object_arrays_are_refused(tmp_path):
    model, _ = trained_model(np.float32)
    objects = np.empty(model.n_params, dtype=object)
    objects[:] = [float(v) for v in model.flat_params]
    path = write_npz(tmp_path / "m.npz", **dict(good_fields(model), flat_params=objects))
    assert_load_fails(path)


# -- hardening: permissions, non-finite saves, sizes checked before allocating -------------

@pytest.fixture
def umask():
    """Set the process umask for one test and restore it afterwards."""
    old = os.umask(0o022)
    yield lambda mask: os.umask(mask)
    os.umask(old)


@pytest.mark.parametrize("mask", [0o022, 0o002, 0o077])
def test_written_files_follow_the_umask(tmp_path, umask, mask):
    umask(mask)
    expected = 0o666 & ~mask
    model, X = trained_model(np.float32)
    model.save(tmp_path / "m.npz")
    trainer = fb.BackpropTrainer(model, optimizer=fb.Adam(0.01))
    trainer.save_state(tmp_path / "state.npz")
    from fastbp.results import Results
    Results([], {"complete": True}).to_json(tmp_path / "out" / "results.json")
    open(tmp_path / "plain.txt", "w").close()   # what any other file gets
    for name in ["m.npz", "state.npz", os.path.join("out", "results.json"), "plain.txt"]:
        mode = os.stat(tmp_path / name).st_mode & 0o777
        assert mode == expected, f"{name}: {oct(mode)}, expected {oct(expected)}"


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_save_refuses_non_finite_parameters_and_keeps_the_old_file(tmp_path, bad):
    model, _ = trained_model(np.float64)
    path = tmp_path / "m.npz"
    model.save(path)
    before = path.read_bytes()
    model.flat_params[5] = bad
    with pytest.raises(ValueError) as info:
        model.save(path)
    msg = str(info.value)
    for part in [str(path), "flat_params", str(bad), "index 5"]:
        assert part in msg, (part, msg)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["m.npz"]
    with pytest.raises(ValueError, match="index 5"):
        fb.BackpropTrainer(model, optimizer=fb.SGD(0.1)).save_state(tmp_path / "s.npz")
    assert os.listdir(tmp_path) == ["m.npz"]


def test_save_refuses_non_finite_trainer_state(tmp_path):
    model, _ = trained_model(np.float64)
    trainer = fb.BackpropTrainer(model, optimizer=fb.Adam(0.01))
    trainer.optimizer.state[1, 2] = np.nan
    with pytest.raises(ValueError) as info:
        trainer.save_state(tmp_path / "s.npz")
    assert "optimizer_state" in str(info.value) and "nan" in str(info.value)
    assert os.listdir(tmp_path) == []


class _MustNotBuild:
    def __init__(self, **config):
        raise AssertionError(f"the model was built before its size was checked: {config}")


@pytest.mark.parametrize("kind, config, n", [
    ("MLP", {"sizes": [30000, 30000, 10], "activation": ["relu"], "output": "softmax",
             "dtype": "float32", "init": "xavier"}, 30000 * 30000 + 30000 * 10 + 30010),
    ("ElmanRNN", {"input_size": 3, "hidden_size": 100000, "output_size": 2,
                  "activation": "tanh", "readout": "last", "output": "identity",
                  "dtype": "float32", "init": "xavier", "recurrent_init": None},
     100000 * 3 + 100000 ** 2 + 2 * 100000 + 100000 + 2),
])
def test_a_huge_config_is_refused_before_the_model_is_built(tmp_path, monkeypatch, kind,
                                                            config, n):
    path = write_npz(tmp_path / "m.npz", format_version=np.int64(1), kind=np.str_(kind),
                     config=np.str_(json.dumps(config)),
                     flat_params=np.zeros(40, np.float32))
    import fastbp.io
    monkeypatch.setitem(fastbp.io.MODEL_KINDS, kind, _MustNotBuild)
    assert_load_fails(path, "parameters", "(40,)", f"({n},)", kind)


def test_million_wide_config_gives_value_error_not_memory_error(tmp_path):
    config = {"sizes": [10 ** 6, 10 ** 6, 10], "activation": ["relu"], "output": "softmax",
              "dtype": "float32", "init": "xavier"}
    path = write_npz(tmp_path / "m.npz", format_version=np.int64(1), kind=np.str_("MLP"),
                     config=np.str_(json.dumps(config)), flat_params=np.zeros(7, np.float32))
    assert_load_fails(path, "parameters", "(7,)")


def test_config_dtype_is_checked_against_the_array_before_building(tmp_path, monkeypatch):
    model = fb.MLP([5, 3], output="softmax", dtype=np.float32, seed=0)
    fields = good_fields(model)
    fields["flat_params"] = model.flat_params.astype(np.float64)
    path = write_npz(tmp_path / "m.npz", **fields)
    import fastbp.io
    monkeypatch.setitem(fastbp.io.MODEL_KINDS, "MLP", _MustNotBuild)
    assert_load_fails(path, "parameters", "float64", "float32")


def test_rnn_round_trip_and_size_check(tmp_path):
    rnn = fb.ElmanRNN(3, 5, 2, readout="all", dtype=np.float64, seed=1)
    rnn.save(tmp_path / "r.npz")
    loaded = fb.load(tmp_path / "r.npz")
    assert loaded.get_config() == rnn.get_config()
    np.testing.assert_array_equal(loaded.flat_params, rnn.flat_params)
    fields = good_fields(rnn)
    fields["flat_params"] = rnn.flat_params[:-1]
    path = write_npz(tmp_path / "short.npz", **fields)
    assert_load_fails(path, "parameters", f"({rnn.n_params - 1},)", f"({rnn.n_params},)")


def test_one_model_kind_map():
    from fastbp import io
    assert io.model_class("MLP") is fb.MLP and io.model_class("ElmanRNN") is fb.ElmanRNN
    with pytest.raises(ValueError, match="'CNN'.*ElmanRNN"):
        io.model_class("CNN")

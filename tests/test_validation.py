"""Bad input is rejected before any kernel runs, with a message that names the
argument, what it got and what it expected (DESIGN.md, "Bad input").

Every rejection test runs with the compiled kernels replaced by functions that
fail the test if called, and checks that the model's parameters and the
optimizer's state are unchanged afterwards.
"""
import re

import numpy as np
import pytest

import fastbp as fb
import fastbp.kernels.mlp as mlp_kernels
import fastbp.trainer as trainer_module

N, N_IN, N_OUT = 10, 4, 3


# -- helpers ---------------------------------------------------------------------

def _kernel_called(name):
    def fail(*args, **kwargs):
        raise AssertionError(f"kernel {name} ran although the input was invalid")
    return fail


@pytest.fixture
def no_kernels(monkeypatch):
    """Make every kernel entry point the public API uses fail the test."""
    for name in ("train_step", "train_epochs", "loss_gradients", "evaluate_chunked",
                 "predict_chunked", "forward", "backward"):
        monkeypatch.setattr(mlp_kernels, name, _kernel_called(name))
    monkeypatch.setattr(trainer_module, "add_weight_decay",
                        _kernel_called("add_weight_decay"))


def snapshot(trainer):
    opt = trainer.optimizer
    state = None if opt.state is None else opt.state.copy()
    return trainer.model.flat_params.copy(), state, opt.t, opt.lr


def assert_unchanged(trainer, snap):
    params, state, t, lr = snap
    np.testing.assert_array_equal(trainer.model.flat_params, params)
    assert trainer.model.flat_params.dtype == params.dtype
    if state is not None:
        np.testing.assert_array_equal(trainer.optimizer.state, state)
    assert trainer.optimizer.t == t
    assert trainer.optimizer.lr == lr


def assert_names(message, *parts):
    for part in parts:
        assert part in message, f"{part!r} not in error message {message!r}"


def data(dtype=np.float32, n=N, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, N_IN)).astype(dtype)
    y = np.arange(n) % N_OUT
    return X, y


def classifier(dtype=np.float32, optimizer=None):
    model = fb.MLP([N_IN, 5, N_OUT], activation="tanh", output="softmax", dtype=dtype, seed=0)
    opt = optimizer if optimizer is not None else fb.SGD(0.1, momentum=0.9)
    return fb.BackpropTrainer(model, loss="cross_entropy", optimizer=opt)


def call(trainer, method, X, y):
    if method == "step":
        return trainer.step(X, y)
    if method == "fit":
        return trainer.fit(X, y, epochs=2, batch_size=4)
    if method == "evaluate":
        return trainer.evaluate(X, y)
    if method == "gradients":
        return trainer.gradients(X, y)
    if method == "predict":
        return trainer.model.predict(X)
    raise AssertionError(method)


ALL_METHODS = ["step", "fit", "evaluate", "gradients", "predict"]
Y_METHODS = ["step", "fit", "evaluate", "gradients"]


@pytest.mark.parametrize("method", ALL_METHODS)
def test_no_kernels_fixture_catches_kernel_calls(no_kernels, method):
    """The guard used below really intercepts the kernels of every entry point."""
    trainer = classifier()
    X, y = data()
    with pytest.raises(AssertionError, match="kernel"):
        call(trainer, method, X, y)


# -- fb.MLP ------------------------------------------------------------------------

@pytest.mark.parametrize("sizes, exc, parts", [
    ([4], ValueError, ["sizes", "[4]", ">= 1"]),
    ([], ValueError, ["sizes", "[]"]),
    ([4, 0, 2], ValueError, ["sizes", "[4, 0, 2]", ">= 1"]),
    ([4, -3, 2], ValueError, ["sizes", "-3"]),
    (5, TypeError, ["sizes", "5", "integers"]),
    (None, TypeError, ["sizes", "None"]),
    ([4, "wide", 2], TypeError, ["sizes", "wide"]),
])
def test_mlp_bad_sizes(sizes, exc, parts):
    with pytest.raises(exc) as info:
        fb.MLP(sizes)
    assert_names(str(info.value), *parts)


def test_mlp_rejects_fractional_sizes():
    with pytest.raises((TypeError, ValueError)) as info:
        fb.MLP([4, 2.5, 2])
    assert_names(str(info.value), "sizes", "2.5")


@pytest.mark.parametrize("kwargs, parts", [
    ({"activation": "swish"}, ["activation", "'swish'", "relu", "tanh"]),
    ({"activation": "softmax"}, ["activation", "'softmax'", "sigmoid"]),
    ({"activation": ["relu", "gelu"]}, ["activation", "'gelu'"]),
    ({"output": "relu"}, ["output", "'relu'", "softmax", "identity"]),
    ({"output": "tanh"}, ["output", "'tanh'"]),
    ({"init": "kaiming"}, ["init", "'kaiming'", "xavier", "he"]),
])
def test_mlp_unknown_names(kwargs, parts):
    with pytest.raises(ValueError) as info:
        fb.MLP([4, 5, 6, 2], **kwargs)
    assert_names(str(info.value), *parts)


@pytest.mark.parametrize("sizes, activation, n_given, n_hidden", [
    ([4, 5, 6, 2], ["relu"], 1, 2),
    ([4, 5, 6, 2], ["relu", "tanh", "sigmoid"], 3, 2),
    ([4, 5, 2], [], 0, 1),
    ([4, 2], ["relu"], 1, 0),
])
def test_mlp_wrong_number_of_layer_activations(sizes, activation, n_given, n_hidden):
    with pytest.raises(ValueError) as info:
        fb.MLP(sizes, activation=activation)
    msg = str(info.value)
    assert_names(msg, "activation", f"{n_given} names", f"{n_hidden} hidden", str(sizes))


def test_mlp_activation_none_names_argument():
    with pytest.raises((TypeError, ValueError)) as info:
        fb.MLP([4, 5, 2], activation=None)
    assert_names(str(info.value), "activation", "None")





@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.float16, np.complex128, np.longdouble,
                                   "banana",
                                   None])
def test_mlp_unsupported_dtype(dtype):
    if dtype is np.longdouble and np.dtype(np.longdouble) == np.dtype(np.float64):
        pytest.skip("longdouble is float64 on this platform")
    with pytest.raises(TypeError) as info:
        fb.MLP([4, 2], dtype=dtype)
    assert_names(str(info.value), "dtype", repr(dtype), "float32", "float64")


@pytest.mark.parametrize("dtype, expected", [(np.float32, np.float32), ("float32", np.float32),
                                             (np.dtype(np.float64), np.float64),
                                             ("float64", np.float64)])
def test_mlp_supported_dtype_spellings(dtype, expected):
    model = fb.MLP([4, 2], dtype=dtype)
    assert model.dtype == np.dtype(expected)
    assert isinstance(model.dtype, np.dtype)
    assert model.flat_params.dtype == np.dtype(expected)


@pytest.mark.parametrize("seed", [1.5, "zero", True, [1, 2.5]])
def test_mlp_bad_seed_type(seed):
    with pytest.raises(TypeError) as info:
        fb.MLP([4, 2], seed=seed)
    assert_names(str(info.value), "seed", repr(seed))


def test_mlp_accepts_generator_and_int_seeds():
    a = fb.MLP([4, 3, 2], seed=np.random.default_rng(7))
    b = fb.MLP([4, 3, 2], seed=7)
    np.testing.assert_array_equal(a.flat_params, b.flat_params)


def test_mlp_negative_seed_names_argument():
    with pytest.raises(ValueError) as info:
        fb.MLP([4, 2], seed=-1)
    assert_names(str(info.value), "seed", "-1")


# -- trainer construction ------------------------------------------------------------

def test_trainer_unknown_loss():
    model = fb.MLP([4, 3], output="softmax", seed=0)
    before = model.flat_params.copy()
    with pytest.raises(ValueError) as info:
        fb.BackpropTrainer(model, loss="hinge")
    assert_names(str(info.value), "loss", "'hinge'", "cross_entropy", "mse")
    np.testing.assert_array_equal(model.flat_params, before)


@pytest.mark.parametrize("loss, output", [
    ("cross_entropy", "sigmoid"),
    ("binary_cross_entropy", "softmax"),
])
def test_trainer_loss_output_mismatch(loss, output):
    model = fb.MLP([4, 3], output=output, seed=0)
    with pytest.raises(ValueError) as info:
        fb.BackpropTrainer(model, loss=loss)
    assert_names(str(info.value), f"loss={loss!r}", f"output={output!r}")


@pytest.mark.parametrize("optimizer, parts", [
    ("rmsprop", ["optimizer", "'rmsprop'", "adam", "sgd"]),
    (0.1, ["optimizer", "0.1"]),
    (fb.SGD, ["optimizer", "SGD"]),
])
def test_trainer_bad_optimizer(optimizer, parts):
    with pytest.raises(TypeError) as info:
        fb.BackpropTrainer(fb.MLP([4, 3], seed=0), optimizer=optimizer)
    assert_names(str(info.value), *parts)


def test_trainer_bad_model():
    with pytest.raises(TypeError) as info:
        fb.BackpropTrainer("my model")
    assert_names(str(info.value), "model", "str", "MLP")


@pytest.mark.parametrize("kwargs, exc, parts", [
    ({"weight_decay": -0.1}, ValueError, ["weight_decay", "-0.1", ">= 0"]),
    ({"weight_decay": float("nan")}, ValueError, ["weight_decay", "nan"]),
    ({"weight_decay": "0.1"}, TypeError, ["weight_decay", "'0.1'"]),
    ({"clip_norm": 0}, ValueError, ["clip_norm", "0", "> 0"]),
    ({"clip_norm": -1.0}, ValueError, ["clip_norm", "-1", "> 0"]),
    ({"clip_norm": float("inf")}, ValueError, ["clip_norm", "inf"]),
    ({"clip_norm": "1"}, TypeError, ["clip_norm", "'1'"]),
])
def test_trainer_bad_hyperparameters(kwargs, exc, parts):
    with pytest.raises(exc) as info:
        fb.BackpropTrainer(fb.MLP([4, 3], seed=0), optimizer=fb.SGD(0.1), **kwargs)
    assert_names(str(info.value), *parts)


def test_failed_trainer_construction_leaves_optimizer_unbound():
    opt = fb.SGD(0.1)
    with pytest.raises(ValueError):
        fb.BackpropTrainer(fb.MLP([4, 3], seed=0), optimizer=opt, weight_decay=-1.0)
    # the failed call must have had no effect: the optimizer is still free
    fb.BackpropTrainer(fb.MLP([4, 7], seed=0), optimizer=opt)


# -- optimizers -------------------------------------------------------------------

@pytest.mark.parametrize("make, exc, parts", [
    (lambda: fb.SGD(0), ValueError, ["lr", "0", "> 0"]),
    (lambda: fb.SGD(-0.5), ValueError, ["lr", "-0.5", "> 0"]),
    (lambda: fb.SGD(float("nan")), ValueError, ["lr", "nan"]),
    (lambda: fb.SGD(float("inf")), ValueError, ["lr", "inf"]),
    (lambda: fb.SGD("0.1"), TypeError, ["lr", "'0.1'"]),
    (lambda: fb.Adam(0.0), ValueError, ["lr", "0"]),
    (lambda: fb.Adam(float("nan")), ValueError, ["lr", "nan"]),
    (lambda: fb.SGD(0.1, momentum=1.0), ValueError, ["momentum", "1.0", "[0, 1)"]),
    (lambda: fb.SGD(0.1, momentum=1.5), ValueError, ["momentum", "1.5", "[0, 1)"]),
    (lambda: fb.SGD(0.1, momentum=-0.1), ValueError, ["momentum", "-0.1"]),
    (lambda: fb.SGD(0.1, momentum=float("nan")), ValueError, ["momentum", "nan"]),
    (lambda: fb.SGD(0.1, nesterov=True), ValueError, ["nesterov", "momentum"]),
    (lambda: fb.Adam(betas=(0.9, 1.0)), ValueError, ["betas[1]", "1.0", "[0, 1)"]),
    (lambda: fb.Adam(betas=(1.2, 0.999)), ValueError, ["betas[0]", "1.2", "[0, 1)"]),
    (lambda: fb.Adam(betas=(-0.1, 0.999)), ValueError, ["betas[0]", "-0.1"]),
    (lambda: fb.Adam(betas=(float("nan"), 0.999)), ValueError, ["betas[0]", "nan"]),
    (lambda: fb.Adam(betas=0.9), TypeError, ["betas", "0.9", "pair"]),
    (lambda: fb.Adam(betas=(0.9, 0.99, 0.9)), TypeError, ["betas", "pair"]),
    (lambda: fb.Adam(eps=0.0), ValueError, ["eps", "0", "> 0"]),
    (lambda: fb.Adam(eps=-1e-8), ValueError, ["eps", "-1e-08"]),
    (lambda: fb.Adam(eps=float("nan")), ValueError, ["eps", "nan"]),
])
def test_optimizer_bad_hyperparameters(make, exc, parts):
    with pytest.raises(exc) as info:
        make()
    assert_names(str(info.value), *parts)


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), float("inf")])
def test_setting_bad_lr_is_rejected_and_keeps_old_value(bad):
    opt = fb.Adam(0.01)
    with pytest.raises(ValueError) as info:
        opt.lr = bad
    assert_names(str(info.value), "lr", str(bad))
    assert opt.lr == 0.01


def test_valid_optimizers_construct():
    assert fb.SGD(0.1, momentum=0.0).momentum == 0.0
    assert fb.SGD(0.1, momentum=0.999, nesterov=True).nesterov
    assert fb.Adam(1e-3, betas=(0.0, 0.0), eps=1e-12).betas == (0.0, 0.0)


# -- X checks in every entry point ------------------------------------------------------

def _x_cases(dtype):
    X, _ = data(dtype)
    other = np.float64 if dtype == np.float32 else np.float32
    nan = X.copy()
    nan[1, 2] = np.nan
    inf = X.copy()
    inf[3, 0] = np.inf
    ninf = X.copy()
    ninf[0, 1] = -np.inf
    return {
        "1d": (X[0], ValueError, ["X", "2-D", "1-D", f"({N_IN},)", "reshape(1, -1)"]),
        "3d": (X.reshape(N, 2, 2), ValueError, ["X", "2-D", "3-D", f"({N}, 2, 2)"]),
        "n_features": (X[:, :3], ValueError, ["X", "3 features", f"expects {N_IN}"]),
        "too_many_features": (np.hstack([X, X]), ValueError, ["X", "8 features",
                                                              f"expects {N_IN}"]),
        "dtype": (X.astype(other), TypeError,
                  ["X", np.dtype(other).name, np.dtype(dtype).name,
                   f"astype(np.{np.dtype(dtype).name})"]),
        "int_dtype": (X.astype(np.int64), TypeError, ["X", "int64", "astype"]),
        "nan": (nan, ValueError, ["X", "NaN", "nan"]),
        "inf": (inf, ValueError, ["X", "inf"]),
        "-inf": (ninf, ValueError, ["X", "-inf"]),
        "empty": (X[:0], ValueError, ["X", "empty", f"(0, {N_IN})"]),
        "string": ("not an array", TypeError, ["X", "str"]),
    }


def assert_rejected(trainer, method, X, y, exc, argument, parts):
    """``method`` raises ``exc`` naming ``argument`` and ``parts``, and leaves
    the trainer as it was."""
    snap = snapshot(trainer)
    with pytest.raises(exc) as info:
        call(trainer, method, X, y)
    msg = str(info.value)
    assert re.search(rf"\b{argument}\b", msg), msg
    assert_names(msg, *parts)
    assert_unchanged(trainer, snap)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", list(_x_cases(np.float32)))
@pytest.mark.parametrize("method", ALL_METHODS)
def test_bad_X_rejected_before_kernels(no_kernels, method, case, dtype):
    trainer = classifier(dtype)
    X, exc, parts = _x_cases(dtype)[case]
    _, y = data(dtype)
    if isinstance(X, np.ndarray) and X.ndim >= 1 and X.shape[0] != N:
        y = y[:X.shape[0]]
    assert_rejected(trainer, method, X, y, exc, "X", parts)


def test_nan_index_is_readable():
    trainer = classifier()
    X, y = data()
    X[1, 2] = np.nan
    with pytest.raises(ValueError) as info:
        trainer.step(X, y)
    assert_names(str(info.value), "index (1, 2)")


# -- y checks --------------------------------------------------------------------------

def _regressor(dtype=np.float64, n_out=2, output="identity", loss="mse"):
    model = fb.MLP([N_IN, 5, n_out], activation="tanh", output=output, dtype=dtype, seed=0)
    return fb.BackpropTrainer(model, loss=loss, optimizer=fb.Adam(0.01))


def _y_cases():
    """name -> (trainer factory, y, exception, message parts)."""
    labels = np.arange(N) % N_OUT
    neg = labels.copy()
    neg[4] = -1
    high = labels.copy()
    high[7] = N_OUT
    huge = labels.copy()
    huge[2] = 100
    onehot_nan = np.eye(N_OUT)[labels]
    onehot_nan[2, 1] = np.nan
    onehot_neg = np.eye(N_OUT)[labels]
    onehot_neg[5, 0] = -0.5
    reg_nan = np.zeros((N, 2))
    reg_nan[6, 1] = np.nan
    reg_inf = np.zeros((N, 2))
    reg_inf[0, 0] = np.inf
    return {
        "label_negative": (classifier, neg, ValueError, ["y", "label -1", f"[0, {N_OUT})"]),
        "label_too_high": (classifier, high, ValueError, ["y", f"label {N_OUT}",
                                                          f"[0, {N_OUT})"]),
        "label_far_too_high": (classifier, huge, ValueError, ["y", "label 100"]),
        "float_labels": (classifier, labels.astype(np.float64), TypeError,
                         ["y", "float64", "integer", "astype(int)"]),
        "float32_labels": (classifier, labels.astype(np.float32), TypeError,
                           ["y", "float32", "astype(int)"]),
        "labels_short": (classifier, labels[:-1], ValueError, ["y", f"{N - 1} rows", f"{N}"]),
        "labels_long": (classifier, np.arange(N + 3) % N_OUT, ValueError,
                        ["y", f"{N + 3} rows", f"{N}"]),
        "labels_empty": (classifier, labels[:0], ValueError, ["y", "0 rows"]),
        "labels_strings": (classifier, np.array(["cat"] * N), TypeError, ["y", "numeric"]),
        "onehot_nan": (classifier, onehot_nan, ValueError, ["y", "NaN"]),
        "onehot_negative": (classifier, onehot_neg, ValueError, ["y", ">= 0", "-0.5"]),
        "onehot_wrong_width": (classifier, np.eye(N_OUT + 1)[labels], ValueError,
                               ["y", f"(n_samples, {N_OUT})", f"({N}, {N_OUT + 1})"]),
        "labels_2d_column": (classifier, labels.reshape(-1, 1), ValueError,
                             ["y", f"(n_samples, {N_OUT})", f"({N}, 1)"]),
        "regression_nan": (_regressor, reg_nan, ValueError, ["y", "NaN"]),
        "regression_inf": (_regressor, reg_inf, ValueError, ["y", "inf"]),
        "regression_width": (_regressor, np.zeros((N, 3)), ValueError,
                             ["y", "(n_samples, 2)", f"({N}, 3)", "mse"]),
        "regression_1d": (_regressor, np.zeros(N), ValueError,
                          ["y", "(n_samples, 2)", f"({N},)"]),
        "regression_short": (_regressor, np.zeros((N - 2, 2)), ValueError,
                             ["y", f"{N - 2} rows", f"{N}"]),
        "bce_above_one": (lambda: _regressor(output="sigmoid", loss="binary_cross_entropy"),
                          np.full((N, 2), 1.5), ValueError, ["y", "[0, 1]", "1.5"]),
        "bce_negative": (lambda: _regressor(output="sigmoid", loss="binary_cross_entropy"),
                         np.full((N, 2), -0.25), ValueError, ["y", "[0, 1]", "-0.25"]),
        "bce_nan": (lambda: _regressor(output="sigmoid", loss="binary_cross_entropy"),
                    np.full((N, 2), np.nan), ValueError, ["y", "NaN"]),
        "bce_width": (lambda: _regressor(output="sigmoid", loss="binary_cross_entropy"),
                      np.full((N, 1), 0.5), ValueError, ["y", "(n_samples, 2)", f"({N}, 1)"]),
    }


@pytest.mark.parametrize("case", list(_y_cases()))
@pytest.mark.parametrize("method", Y_METHODS)
def test_bad_y_rejected_before_kernels(no_kernels, method, case):
    make, y, exc, parts = _y_cases()[case]
    trainer = make()
    X, _ = data(trainer.model.dtype)
    assert_rejected(trainer, method, X, y, exc, "y", parts)


def test_one_output_regression_accepts_1d_targets():
    model = fb.MLP([N_IN, 3, 1], output="identity", dtype=np.float64, seed=0)
    trainer = fb.BackpropTrainer(model, loss="mse", optimizer=fb.SGD(0.1))
    X, _ = data(np.float64)
    y = np.linspace(-1, 1, N)
    g1 = trainer.gradients(X, y)
    g2 = trainer.gradients(X, y.reshape(-1, 1))
    for a, b in zip(g1, g2):
        np.testing.assert_array_equal(a, b)


# -- fit-only arguments --------------------------------------------------------------

@pytest.mark.parametrize("kwargs, exc, parts", [
    ({"epochs": 0}, ValueError, ["epochs", "0", ">= 1"]),
    ({"epochs": -3}, ValueError, ["epochs", "-3", ">= 1"]),
    ({"epochs": 2.0}, TypeError, ["epochs", "2.0", "integer"]),
    ({"epochs": 2.5}, TypeError, ["epochs", "2.5"]),
    ({"epochs": "5"}, TypeError, ["epochs", "'5'"]),
    ({"epochs": None}, TypeError, ["epochs", "None"]),
    ({"batch_size": 0}, ValueError, ["batch_size", "0", ">= 1"]),
    ({"batch_size": -8}, ValueError, ["batch_size", "-8", ">= 1"]),
    ({"batch_size": 4.0}, TypeError, ["batch_size", "4.0", "integer"]),
    ({"batch_size": "32"}, TypeError, ["batch_size", "'32'"]),
    ({"on_divergence": "ignore"}, ValueError, ["on_divergence", "'ignore'", "'raise'", "'stop'"]),
    ({"on_divergence": None}, ValueError, ["on_divergence", "None", "'raise'"]),
])
def test_fit_bad_arguments(no_kernels, kwargs, exc, parts):
    trainer = classifier()
    X, y = data()
    snap = snapshot(trainer)
    with pytest.raises(exc) as info:
        trainer.fit(X, y, **{"epochs": 2, "batch_size": 4, **kwargs})
    assert_names(str(info.value), *parts)
    assert_unchanged(trainer, snap)


def _validation_cases():
    X, y = data()
    Xv, yv = data(seed=1)
    bad_label = yv.copy()
    bad_label[0] = 9
    nan = Xv.copy()
    nan[0, 0] = np.nan
    return {
        "single": ((Xv,), ValueError, ["validation_data", "pair"]),
        "array": (Xv, ValueError, ["validation_data", "pair", "ndarray"]),
        "dict": ({"X": Xv, "y": yv}, ValueError, ["validation_data", "pair", "dict"]),
        "triple": ((Xv, yv, yv), ValueError, ["validation_data", "pair"]),
        "X_features": ((Xv[:, :2], yv), ValueError, ["validation_data[0]", "2 features"]),
        "X_1d": ((Xv[0], yv), ValueError, ["validation_data[0]", "2-D"]),
        "X_dtype": ((Xv.astype(np.float64), yv), TypeError,
                    ["validation_data[0]", "float64", "astype"]),
        "X_nan": ((nan, yv), ValueError, ["validation_data[0]", "NaN"]),
        "y_length": ((Xv, yv[:4]), ValueError, ["validation_data[1]", "4 rows"]),
        "y_label": ((Xv, bad_label), ValueError, ["validation_data[1]", "label 9"]),
        "y_float": ((Xv, yv.astype(float)), TypeError, ["validation_data[1]", "float64"]),
    }


@pytest.mark.parametrize("case", list(_validation_cases()))
def test_fit_bad_validation_data(no_kernels, case):
    trainer = classifier()
    X, y = data()
    val, exc, parts = _validation_cases()[case]
    snap = snapshot(trainer)
    with pytest.raises(exc) as info:
        trainer.fit(X, y, epochs=2, batch_size=4, validation_data=val)
    assert_names(str(info.value), *parts)
    assert_unchanged(trainer, snap)


def test_fit_validation_data_triple_says_length():
    trainer = classifier()
    X, y = data()
    with pytest.raises(ValueError) as info:
        trainer.fit(X, y, validation_data=(X, y, y))
    assert_names(str(info.value), "validation_data", "3")


def test_fit_validation_length_mismatch_names_validation_X():
    trainer = classifier()
    X, y = data()
    Xv, yv = data(n=6, seed=1)
    with pytest.raises(ValueError) as info:
        trainer.fit(X, y, validation_data=(Xv, yv[:4]))
    msg = str(info.value)
    assert_names(msg, "validation_data[1]", "validation_data[0]")
    assert "but X has" not in msg


@pytest.mark.parametrize("seed", ["abc", -1])
def test_fit_bad_seed_names_argument(seed):
    trainer = classifier()
    X, y = data()
    with pytest.raises((TypeError, ValueError)) as info:
        trainer.fit(X, y, seed=seed)
    assert_names(str(info.value), "seed", str(seed))


# -- layout of X is not an error -------------------------------------------------------

def _layouts(X):
    fortran = np.asfortranarray(X)
    assert not fortran.flags.c_contiguous
    wide = np.zeros((X.shape[0] * 2, X.shape[1] * 3), dtype=X.dtype)
    wide[::2, ::3] = X
    strided = wide[::2, ::3]
    assert not strided.flags.c_contiguous
    reversed_rows = np.ascontiguousarray(X[::-1])[::-1]
    assert not reversed_rows.flags.c_contiguous
    return {"fortran": fortran, "strided": strided, "reversed": reversed_rows}


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("layout", ["fortran", "strided", "reversed"])
def test_non_contiguous_X_gives_same_results(layout, dtype):
    X, y = data(dtype, n=24)
    Xnc = _layouts(X)[layout]
    np.testing.assert_array_equal(Xnc, X)
    Xnc_before = Xnc.copy()

    ref, other = classifier(dtype), classifier(dtype)
    np.testing.assert_array_equal(ref.model.predict(X), other.model.predict(Xnc))
    assert ref.evaluate(X, y) == other.evaluate(Xnc, y)
    for a, b in zip(ref.gradients(X, y), other.gradients(Xnc, y)):
        np.testing.assert_array_equal(a, b)
    assert ref.step(X, y) == other.step(Xnc, y)
    np.testing.assert_array_equal(ref.model.flat_params, other.model.flat_params)
    h1 = ref.fit(X, y, epochs=3, batch_size=5, seed=3, validation_data=(X, y))
    h2 = other.fit(Xnc, y, epochs=3, batch_size=5, seed=3, validation_data=(Xnc, y))
    np.testing.assert_array_equal(ref.model.flat_params, other.model.flat_params)
    assert h1.loss == h2.loss
    assert h1.val_loss == h2.val_loss
    # the caller's array is never written to
    np.testing.assert_array_equal(Xnc, Xnc_before)


def test_non_contiguous_labels_and_targets():
    X, y = data(np.float64, n=20)
    y_strided = np.repeat(y, 2)[::2]
    assert not y_strided.flags.c_contiguous
    onehot = np.asfortranarray(np.eye(N_OUT)[y])
    ref, other = classifier(np.float64), classifier(np.float64)
    for a, b in zip(ref.gradients(X, y), other.gradients(X, y_strided)):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(ref.gradients(X, y), other.gradients(X, onehot)):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)


def test_list_input_is_accepted_as_array():
    trainer = classifier(np.float64)
    X, y = data(np.float64)
    np.testing.assert_array_equal(trainer.model.predict(X.tolist()), trainer.model.predict(X))
    assert trainer.evaluate(X.tolist(), y.tolist()) == trainer.evaluate(X, y)

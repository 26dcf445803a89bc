"""The small-network path of ``BackpropTrainer.fit`` (fastbp.small_nets):
kernels generated for one exact architecture, checked against the generic
kernels run on the same samples in the same order.

The reference is ``fb.Trainer.fit_epochs``, the Python loop over
``train_batch`` (the generic step kernel), which visits the samples in the
order the fused kernels do; the generic fused kernel takes the same steps
(test_training, test_plugin_example). float64 must agree bit for bit,
float32 within rounding (the float32 kernels compute in float32 only).

Each architecture compiles once; the cases below are the smallest networks
that, together, cover every activation, loss and optimizer with a handful
of kernels.
"""
import os

import numpy as np
import pytest

import fastbp as fb
from fastbp import compile_cache, small_nets
from fastbp.kernels import activations as act_kernels
from fastbp.kernels import codes
from fastbp.kernels import mlp as mlp_kernels
from fastbp.kernels import small_mlp


def make(sizes, activation, output, loss, optimizer, dtype, weight_decay=0.0, seed=0):
    model = fb.MLP(sizes, activation=activation, output=output, dtype=dtype, seed=seed)
    return fb.BackpropTrainer(model, loss=loss, optimizer=optimizer(),
                              weight_decay=weight_decay)


def targets_for(loss, n, k, dtype, rows=False, seed=1):
    rng = np.random.default_rng(seed)
    if loss == "cross_entropy":
        labels = rng.integers(0, k, n)
        if not rows:
            return labels
        return (0.7 * np.eye(k)[labels] + 0.3 / k).astype(dtype)   # probability rows
    if loss == "binary_cross_entropy":
        return (rng.uniform(size=(n, k)) > 0.5).astype(dtype)
    return rng.uniform(0.0, 1.0, (n, k)).astype(dtype)


def fit_both(monkeypatch, case, dtype, epochs=3, **fit_kw):
    """(small path trainer, history), (generic trainer, history) for ``case``."""
    sizes, activation, output, loss, optimizer, kw = case
    kw = dict(kw)
    n, bs, rows = kw.pop("n", 11), kw.pop("batch_size", 1), kw.pop("rows", False)
    X = np.random.default_rng(0).standard_normal((n, sizes[0])).astype(dtype)
    y = targets_for(loss, n, sizes[-1], dtype, rows)
    out = []
    for generic in (False, True):
        trainer = make(sizes, activation, output, loss, optimizer, dtype, **kw)
        assert (small_nets.small_fit_kernel(trainer.model, trainer.train_hyper,
                                            trainer.optimizer.hyper, bs) is not None)
        with monkeypatch.context() as m:
            if generic:
                m.setattr(fb.BackpropTrainer, "fit_epochs", fb.Trainer.fit_epochs)
            hist = trainer.fit(X, y, epochs=epochs, batch_size=bs, seed=5, **fit_kw)
        out.append((trainer, hist))
    return out


def assert_same_run(a, b, exact):
    (ta, ha), (tb, hb) = a, b
    check = (np.testing.assert_array_equal if exact else
             lambda x, y: np.testing.assert_allclose(x, y, rtol=2e-4, atol=2e-6))
    check(ta.model.flat_params, tb.model.flat_params)
    check(ta.optimizer.state, tb.optimizer.state)
    assert ta.optimizer.t == tb.optimizer.t
    assert ha.iterations == hb.iterations
    if exact:
        np.testing.assert_array_equal(ta.grads, tb.grads)
        assert ha.loss == hb.loss
        assert ha.accuracy == hb.accuracy
    else:
        np.testing.assert_allclose(ha.loss, hb.loss, rtol=1e-4)


# sizes, hidden activation(s), output, loss, optimizer, trainer/fit settings
CASES = {
    "sigmoid-se-sgd": ([2, 2, 2], "sigmoid", "sigmoid", "squared_error", lambda: fb.SGD(0.5),
                       {}),
    "tanh-ce-adam-decay": ([1, 2, 2], "tanh", "softmax", "cross_entropy",
                           lambda: fb.Adam(0.05), dict(weight_decay=0.01, batch_size=4)),
    "relu-leaky-mse-nesterov": ([1, 2, 2, 1], ["relu", "leaky_relu"], "identity", "mse",
                                lambda: fb.SGD(0.05, momentum=0.9, nesterov=True),
                                dict(weight_decay=0.1, batch_size=3)),
    "sigmoid-bce-sgd": ([1, 1, 1], "sigmoid", "sigmoid", "binary_cross_entropy",
                        lambda: fb.SGD(0.5), dict(batch_size=2)),
    "identity-softmax-se-momentum": ([1, 1, 2], "identity", "softmax", "squared_error",
                                     lambda: fb.SGD(0.5, momentum=0.5), dict(batch_size=5)),
}


@pytest.mark.parametrize("case", list(CASES))
def test_float64_takes_the_generic_steps_bit_for_bit(monkeypatch, case):
    small, generic = fit_both(monkeypatch, CASES[case], np.float64)
    assert_same_run(small, generic, exact=True)
    assert small[1].loss[-1] < small[1].loss[0]


def test_cross_entropy_on_probability_rows(monkeypatch):
    sizes, activation, output, loss, optimizer, kw = CASES["tanh-ce-adam-decay"]
    case = (sizes, activation, output, loss, optimizer, dict(kw, rows=True))
    assert_same_run(*fit_both(monkeypatch, case, np.float64), exact=True)


@pytest.mark.parametrize("case", ["sigmoid-se-sgd", "tanh-ce-adam-decay"])
def test_float32_takes_the_generic_steps_within_rounding(monkeypatch, case):
    small, generic = fit_both(monkeypatch, CASES[case], np.float32)
    assert small[0].model.flat_params.dtype == np.float32
    assert_same_run(small, generic, exact=False)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_hand_worked_first_loss(dtype):
    """Mazur's 2-2-2 example: the objective of the first update is 0.298371109."""
    trainer = make([2, 2, 2], "sigmoid", "sigmoid", "squared_error", lambda: fb.SGD(0.5),
                   dtype)
    values = [[[0.15, 0.20], [0.25, 0.30]], [0.35, 0.35], [[0.40, 0.45], [0.50, 0.55]],
              [0.60, 0.60]]
    for p, v in zip(trainer.model.params, values):
        p[...] = v
    hist = trainer.fit(np.array([[0.05, 0.10]], dtype), np.array([[0.01, 0.99]], dtype),
                       epochs=1, batch_size=1)
    assert hist.loss[0] == pytest.approx(0.298371109, abs=1e-7)


def test_result_does_not_depend_on_epoch_grouping(monkeypatch):
    case = CASES["sigmoid-se-sgd"]
    (a, _), _ = fit_both(monkeypatch, case, np.float64, epochs=4)
    monkeypatch.setattr("fastbp.trainer._SECONDS_PER_CALL", 0.0)   # one epoch per call
    (b, _), _ = fit_both(monkeypatch, case, np.float64, epochs=4)
    np.testing.assert_array_equal(a.model.flat_params, b.model.flat_params)


@pytest.mark.parametrize("dtype, at_once", [(np.float64, False), (np.float64, True),
                                             (np.float32, False)])
def test_divergence_stops_where_the_generic_path_stops(monkeypatch, dtype, at_once):
    """A failing update changes nothing: the parameters, optimizer state,
    history and message equal the generic path's. float64: huge SGD steps
    until the loss is not finite, or an update that overflows at once;
    float32: Adam's steps of lr = 1e38 overflow within a few updates."""
    if dtype == np.float64:
        sizes, activation, output, loss, _, _ = CASES["relu-leaky-mse-nesterov"]
        lr = 1e307 if at_once else 1e30
        optimizer = lambda: fb.SGD(lr, momentum=0.9, nesterov=True)    # noqa: E731
    else:
        sizes, activation, output, loss, _, _ = CASES["tanh-ce-adam-decay"]
        optimizer = lambda: fb.Adam(1e38)                               # noqa: E731
    scale = 100.0 if at_once else 1.0
    runs = []
    for generic_path in (False, True):
        trainer = make(sizes, activation, output, loss, optimizer, dtype)
        X = scale * np.random.default_rng(0).standard_normal((20, sizes[0])).astype(dtype)
        y = targets_for(loss, 20, sizes[-1], dtype)
        with monkeypatch.context() as m:
            if generic_path:
                m.setattr(fb.BackpropTrainer, "fit_epochs", fb.Trainer.fit_epochs)
            with pytest.warns(RuntimeWarning):
                hist = trainer.fit(X, y, epochs=3, batch_size=1, seed=1,
                                   on_divergence="stop")
        runs.append((trainer, hist))
    (ts, hs), (tg, hg) = runs
    assert hs.diverged and hg.diverged
    assert np.isfinite(ts.model.flat_params).all() and np.isfinite(ts.optimizer.state).all()
    if at_once:
        assert "overflows to inf" in hs.message and hs.iterations == 0
    assert hs.message == hg.message
    assert hs.iterations == hg.iterations
    if dtype == np.float64:
        np.testing.assert_array_equal(ts.model.flat_params, tg.model.flat_params)
        np.testing.assert_array_equal(ts.optimizer.state, tg.optimizer.state)
        assert hs.loss == hg.loss


def test_dispatch_covers_small_nets_and_falls_back_otherwise(monkeypatch):
    def spec(trainer, batch_size):
        return small_nets.small_net_spec(trainer.model, trainer.train_hyper,
                                         trainer.optimizer.hyper, batch_size)

    tiny = make([2, 2, 2], "sigmoid", "sigmoid", "squared_error", lambda: fb.SGD(0.1),
                np.float64)
    assert spec(tiny, 1) == ((2, 2, 2), (codes.SIGMOID, codes.SIGMOID), codes.SQUARED_ERROR,
                             "sgd", "float64")
    # the generic kernels would call BLAS at this batch size: not bit-identical
    assert tiny.model.blas(1024) is not None and spec(tiny, 1024) is None
    assert spec(tiny, 1023) is not None
    clipped = fb.BackpropTrainer(tiny.model.copy(), loss="squared_error", clip_norm=1.0)
    assert spec(clipped, 1) is None
    width = small_nets.MAX_PARAMS          # 2-w-1 has 4w + 1 parameters
    large = make([2, width, 1], "tanh", "identity", "mse", fb.Adam, np.float64)
    assert large.model.n_params > small_nets.MAX_PARAMS and spec(large, 1) is None

    calls = []

    def generic_epochs(args, data, plan, stats):
        calls.append(plan.batch_size)
        return codes.OK, plan.n_epochs

    monkeypatch.setattr(mlp_kernels, "train_epochs", generic_epochs)
    X, y = np.zeros((4, 2)), np.zeros((4, 2))
    tiny.fit(X, y, epochs=1, batch_size=2)
    assert calls == []
    clipped.fit(X, y, epochs=1, batch_size=2)
    assert calls == [2]


def test_generated_source_lives_in_the_cache_and_is_written_once():
    trainer = make([2, 2, 2], "sigmoid", "sigmoid", "squared_error", lambda: fb.SGD(0.5),
                   np.float64)
    spec = small_nets.small_net_spec(trainer.model, trainer.train_hyper,
                                     trainer.optimizer.hyper, 1)
    small_nets.small_fit_kernel(trainer.model, trainer.train_hyper, trainer.optimizer.hyper, 1)
    folder = compile_cache.generated_source_dir()
    path = os.path.join(folder, small_nets.module_name(spec) + ".py")
    assert os.path.isfile(path)
    package = os.path.dirname(os.path.abspath(fb.__file__))
    assert not os.path.abspath(path).startswith(package)
    with open(path) as f:
        text = f.read()
    assert small_nets.fingerprint() in text and text == small_nets.generate_source(spec)
    stamp = os.stat(path).st_mtime_ns
    small_nets._load(spec)          # an unchanged file is not rewritten (Numba's cache
    assert os.stat(path).st_mtime_ns == stamp  # is keyed on its time stamp)
    # compiled once, the kernel is in Numba's on-disk cache for the next process
    cache = compile_cache.source_cache_dir(folder)
    stem = small_nets.module_name(spec)
    assert any(name.startswith(stem) and name.endswith(".nbi") for name in os.listdir(cache))


def test_sigmoid_select_is_the_generic_sigmoid_bit_for_bit():
    a = np.concatenate([np.linspace(-40, 40, 4001), [0.0, -0.0, 1e-300, -1e-300, 745.0,
                                                     -745.0, 800.0, -800.0, np.inf, -np.inf]])
    ref = np.array([act_kernels.sigmoid_scalar(v) for v in a])
    got = np.array([small_mlp.sigmoid_select(v) for v in a])
    np.testing.assert_array_equal(got, ref)
    assert np.isnan(small_mlp.sigmoid_select(np.nan))


def test_exp_float32_within_one_ulp():
    x = np.concatenate([-np.logspace(-8, 2.02, 20000), np.linspace(-104, 0, 20000)])
    x = x.astype(np.float32)
    got = np.array([small_mlp.exp_float32(v) for v in x], dtype=np.float32)
    exact = np.exp(x.astype(np.float64))
    normal = exact >= np.finfo(np.float32).tiny
    ulps = np.abs(got[normal] - exact[normal]) / np.spacing(exact[normal].astype(np.float32))
    assert ulps.max() <= 1.1
    assert np.all(np.abs(got[~normal] - exact[~normal]) <= 2.0 ** -149)
    special = np.array([0.0, -0.0, -np.inf, -1e4, np.nan], dtype=np.float32)
    out = [small_mlp.exp_float32(v) for v in special]
    assert out[:4] == [1.0, 1.0, 0.0, 0.0] and np.isnan(out[4])

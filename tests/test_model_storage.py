"""A model's one parameter buffer and its lifetime."""
import gc
import weakref

import numpy as np
import pytest

import fastbp as fb

MODELS = [lambda: fb.MLP([3, 4, 2], seed=0),
          lambda: fb.ElmanRNN(2, 3, 2, seed=0)]


@pytest.mark.parametrize("make", MODELS)
def test_an_unreachable_model_is_freed_without_the_cycle_collector(make):
    X = np.zeros((2, 3), np.float32) if isinstance(make(), fb.MLP) \
        else np.zeros((2, 4, 2), np.float32)
    make().predict(X)       # compile first: a cold compile may keep the caller's frame
    model = make()
    model.predict(X)                       # builds its prediction workspace
    ref = weakref.ref(model)
    enabled = gc.isenabled()
    gc.disable()
    try:
        del model
        assert ref() is None
    finally:
        if enabled:
            gc.enable()


@pytest.mark.parametrize("make", MODELS)
def test_assigning_flat_params_copies_into_the_buffer(make):
    model = make()
    buffer, W = model.flat_params, model.params[0]
    new = np.arange(model.n_params, dtype=model.dtype) / model.n_params
    model.flat_params = new
    assert model.flat_params is buffer
    np.testing.assert_array_equal(buffer, new)
    np.testing.assert_array_equal(W.ravel(), new[:W.size])      # the views follow
    model.flat_params = list(new * 2)                           # a list is converted
    np.testing.assert_array_equal(buffer, new * 2)


@pytest.mark.parametrize("make", MODELS)
def test_assigning_flat_params_checks_shape_dtype_and_finiteness(make):
    model = make()
    before = model.flat_params.copy()
    n = model.n_params
    with pytest.raises(ValueError, match=rf"shape \({n},\)"):
        model.flat_params = np.zeros(n + 1, model.dtype)
    with pytest.raises(TypeError, match="float32.*astype"):
        model.flat_params = np.zeros(n, np.float64)
    bad = np.zeros(n, model.dtype)
    bad[1] = np.nan
    with pytest.raises(ValueError, match="finite"):
        model.flat_params = bad
    np.testing.assert_array_equal(model.flat_params, before)

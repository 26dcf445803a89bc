"""The classic 2-2-2 worked example (docs/walkthrough.md), number by number.

2 inputs, 2 sigmoid hidden units, 2 sigmoid outputs, loss "squared_error"
(1/2 sum of squared errors: E_total for one sample), plain gradient descent
at rate 0.6. The published numbers have 5 decimals, hence the tolerance.

Mapping to fastbp's (n_out, n_in) layout: W1 = [[w1, w3], [w2, w4]],
W2 = [[w5, w6], [w7, w8]], both entries of b1 = 0.25 and of b2 = 0.35.
"""
import numpy as np
import pytest

import fastbp as fb
from fastbp.kernels import codes
from fastbp.kernels import losses as kloss
from fastbp.kernels import mlp as kmlp

TOL = 5e-5
DTYPES = (np.float32, np.float64)

I1, I2 = 0.1, 0.5
T1, T2 = 0.05, 0.95
W = dict(w1=0.1, w2=0.2, w3=0.3, w4=0.4, w5=0.5, w6=0.6, w7=0.7, w8=0.8)
B1, B2 = 0.25, 0.35
LR = 0.6

FORWARD = dict(sum_h1=0.41, out_h1=0.60108, sum_h2=0.47, out_h2=0.61538,
               sum_o1=1.01977, out_o1=0.73492, sum_o2=1.26306, out_o2=0.77955)
E1, E2, E_TOTAL = 0.23456, 0.01452, 0.24908
GRADIENTS = dict(w5=0.08020, w6=0.08211, w7=-0.01760, w8=-0.01802, w1=0.00110)
UPDATED = dict(w5=0.45187, w6=0.55073, w7=0.71056, w8=0.81081,
               w1=0.09933, w2=0.19919, w3=0.29667, w4=0.39597)
# the chain-rule factors of dE/dw5: (out_o1 - t1) * out_o1 (1 - out_o1) * out_h1
W5_FACTORS = (0.68492, 0.19480, 0.60108)

W1 = [["w1", "w3"], ["w2", "w4"]]
W2 = [["w5", "w6"], ["w7", "w8"]]
# (layer index into model.params, row, column) of each named weight
WHERE = {name: (0 if name in ("w1", "w2", "w3", "w4") else 2, r, c)
         for M in (W1, W2) for r, row in enumerate(M) for c, name in enumerate(row)}


def set_params(model, layers):
    for p, value in zip(model.params, layers):
        p[...] = value


def example_model(dtype, sizes=(2, 2, 2), output="sigmoid"):
    model = fb.MLP(list(sizes), activation="sigmoid", output=output, dtype=dtype, seed=0)
    W1v = [[W[n] for n in row] for row in W1]
    W2v = [[W[n] for n in row] for row in W2]
    if len(sizes) == 3:
        set_params(model, [W1v, [B1, B1], W2v, [B2, B2]])
    else:
        set_params(model, [W1v, [B1, B1]])
    return model


def data(dtype):
    return np.array([[I1, I2]], dtype=dtype), np.array([[T1, T2]], dtype=dtype)


def weight(params, name):
    layer, r, c = WHERE[name]
    return float(params[layer][r, c])


@pytest.fixture(params=DTYPES, ids=["float32", "float64"])
def dtype(request):
    return request.param


def test_forward_values(dtype):
    X, _ = data(dtype)
    # hidden sums and outputs from one-layer models holding W1, b1
    sum_h = example_model(dtype, (2, 2), "identity").predict(X)[0]
    out_h = example_model(dtype, (2, 2), "sigmoid").predict(X)[0]
    # output sums from the full net with an identity output, outputs from the real one
    sum_o = example_model(dtype, output="identity").predict(X)[0]
    model = example_model(dtype)
    out_o = model.predict(X)[0]
    assert out_o.dtype == np.dtype(dtype)
    got = dict(sum_h1=sum_h[0], sum_h2=sum_h[1], out_h1=out_h[0], out_h2=out_h[1],
               sum_o1=sum_o[0], sum_o2=sum_o[1], out_o1=out_o[0], out_o2=out_o[1])
    for name, value in FORWARD.items():
        assert got[name] == pytest.approx(value, abs=TOL), name


def test_forward_kernel_workspace(dtype):
    """The forward kernel's workspace holds out_h (H_1), out_o (H_2) and sum_o (A_2)."""
    model = example_model(dtype)
    X, _ = data(dtype)
    ws = np.full(model.workspace_size(1), np.nan, dtype=dtype)
    kmlp.forward(X.ravel(), 1, model.flat_params, model.layout, ws, None)
    h_off, a_off, _ = kmlp.output_offsets(model.layout, 1)
    np.testing.assert_allclose(ws[0:2], [FORWARD["out_h1"], FORWARD["out_h2"]], atol=TOL)
    np.testing.assert_allclose(ws[h_off:h_off + 2], [FORWARD["out_o1"], FORWARD["out_o2"]],
                               atol=TOL)
    np.testing.assert_allclose(ws[a_off:a_off + 2], [FORWARD["sum_o1"], FORWARD["sum_o2"]],
                               atol=TOL)


def test_errors_per_output(dtype):
    """E1 and E2 from the loss kernel, one output at a time (rows=1, k=1)."""
    for sum_o, out_o, t, expected in (("sum_o1", "out_o1", T1, E1),
                                      ("sum_o2", "out_o2", T2, E2)):
        ws = np.array([FORWARD[out_o], FORWARD[sum_o], 0.0], dtype=dtype)
        loss, _ = kloss.loss_and_delta(ws, 1, 0, 2, 1, 1, np.empty(0, np.int64),
                                       np.array([[t]], dtype=dtype), codes.SQUARED_ERROR,
                                       codes.SIGMOID)
        assert loss == pytest.approx(expected, abs=TOL)


def test_total_error_objective_and_step_value(dtype):
    model = example_model(dtype)
    trainer = fb.BackpropTrainer(model, loss="squared_error", optimizer=fb.SGD(LR))
    X, Y = data(dtype)
    assert trainer.evaluate(X, Y)["loss"] == pytest.approx(E_TOTAL, abs=TOL)
    assert trainer.objective(X, Y) == pytest.approx(E_TOTAL, abs=TOL)
    assert trainer.step(X, Y) == pytest.approx(E_TOTAL, abs=TOL)
    # ... and the step lowered it
    assert trainer.objective(X, Y) < E_TOTAL - 1e-3


def test_gradients(dtype):
    model = example_model(dtype)
    trainer = fb.BackpropTrainer(model, loss="squared_error", optimizer=fb.SGD(LR))
    grads = trainer.gradients(*data(dtype))
    assert all(g.dtype == np.dtype(dtype) for g in grads)
    for name, value in GRADIENTS.items():
        assert weight(grads, name) == pytest.approx(value, abs=TOL), name
    diff, slope, out_h1 = W5_FACTORS
    assert weight(grads, "w5") == pytest.approx(diff * slope * out_h1, abs=TOL)
    # the output delta dE/dsum_o1 = (out_o1 - t1) * out_o1 (1 - out_o1) is dE/db2[0]
    assert float(grads[3][0]) == pytest.approx(diff * slope, abs=TOL)


def test_one_sgd_step_updates_every_weight(dtype):
    model = example_model(dtype)
    trainer = fb.BackpropTrainer(model, loss="squared_error", optimizer=fb.SGD(LR))
    trainer.step(*data(dtype))
    for name, value in UPDATED.items():
        assert weight(model.params, name) == pytest.approx(value, abs=TOL), name
    # the biases move too (the source keeps them fixed; only weights are listed)
    assert float(model.params[3][0]) < B2

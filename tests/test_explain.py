"""fastbp explain: the 2-2-2 worked example, number by number."""
import re

import numpy as np
import pytest

from fastbp.explain import explain

# the reference example's published values (truncated to 5 decimals in the source)
REFERENCE = {
    r"net_h1 = .* = ([-\d.]+)$": 0.41, r"out_h1 = sigmoid\(net_h1\) = ([-\d.]+)": 0.60108,
    r"net_h2 = .* = ([-\d.]+)$": 0.47, r"out_h2 = sigmoid\(net_h2\) = ([-\d.]+)": 0.61538,
    r"net_o1 = .* = ([-\d.]+)$": 1.01977, r"out_o1 = sigmoid\(net_o1\) = ([-\d.]+)": 0.73492,
    r"net_o2 = .* = ([-\d.]+)$": 1.26306, r"out_o2 = sigmoid\(net_o2\) = ([-\d.]+)": 0.77955,
    r"E_o1 = .* = ([-\d.]+)$": 0.23456, r"E_o2 = .* = ([-\d.]+)$": 0.01452,
    r"E_total = E_o1 \+ E_o2 = ([-\d.]+)": 0.24908,
    r"dE/dout_o1 = out_o1 - t1 = ([-\d.]+)": 0.68492,
    r"dout_o1/dnet_o1 = out_o1 \(1 - out_o1\) = ([-\d.]+)": 0.19480,
    r"w1 = [\d.]+ - 0.6 \* [-\d.]+ = ([-\d.]+)": 0.09933,
    r"w2 = [\d.]+ - 0.6 \* [-\d.]+ = ([-\d.]+)": 0.19919,
    r"w3 = [\d.]+ - 0.6 \* [-\d.]+ = ([-\d.]+)": 0.29667,
    r"w4 = [\d.]+ - 0.6 \* [-\d.]+ = ([-\d.]+)": 0.39597,
    r"w5 = [\d.]+ - 0.6 \* [-\d.]+ = ([-\d.]+)": 0.45187,
    r"w6 = [\d.]+ - 0.6 \* [-\d.]+ = ([-\d.]+)": 0.55073,
    r"w7 = [\d.]+ - 0.6 \* [-\d.]+ = ([-\d.]+)": 0.71056,
    r"w8 = [\d.]+ - 0.6 \* [-\d.]+ = ([-\d.]+)": 0.81081,
}
GRADIENTS = {"w5": 0.08020, "w6": 0.08211, "w7": -0.01760, "w8": -0.01802, "w1": 0.00110}


def _value(text, pattern):
    hits = [float(m.group(1)) for line in text.splitlines()
            for m in [re.search(pattern, line.strip())] if m]
    assert hits, f"no line matches {pattern!r}"
    return hits[0]


def test_report_contains_every_reference_number():
    text = str(explain())
    for pattern, expected in REFERENCE.items():
        # 6 printed decimals against a source truncated to 5
        assert abs(_value(text, pattern) - expected) < 1.1e-5, pattern
    for name, expected in GRADIENTS.items():
        block = text.split(f"dE/d{name} = ")[1].splitlines()[1]
        product = float(re.search(r"= ([-\d.]+)\s+\(fastbp gradient ([-\d.]+)\)", block).group(1))
        assert abs(product - expected) < 1.1e-5, name
    # the w5 factors printed in the source: 0.68492 * 0.19480 * 0.60108
    w5 = text.split("dE/dw5 = ")[1].splitlines()[1]
    factors = [float(v) for v in re.findall(r"-?\d\.\d+", w5.split("=")[1])]
    np.testing.assert_allclose(factors, [0.68492, 0.19480, 0.60108], atol=1.1e-5)


def test_numbers_come_from_the_library_and_agree_with_the_chain_rule():
    e = explain()
    assert e.max_check_error < 1e-15
    np.testing.assert_allclose(e.out_output, [0.73492861, 0.77955388], atol=1e-8)
    assert e.e_total == pytest.approx(0.24908954, abs=1e-8)
    for w in e.weights:
        assert w.product == pytest.approx(np.prod([v for _, v in w.factors]))
        assert w.updated == pytest.approx(w.value - 0.6 * w.gradient, abs=1e-15)
    assert [w.name for w in e.weights] == [f"w{i}" for i in range(1, 9)]


def test_other_numbers_and_bad_input():
    e = explain(weights=[0.0] * 8, biases=[0, 0], inputs=[1, 1], targets=[1, 0], rate=1.0)
    # zero weights: hidden units at 0.5, outputs at 0.5, hidden gradients zero
    np.testing.assert_allclose(e.out_hidden, 0.5)
    np.testing.assert_allclose(e.out_output, 0.5)
    assert all(w.gradient == 0 for w in e.weights[:4])
    assert e.weights[4].gradient == pytest.approx((0.5 - 1) * 0.25 * 0.5)
    with pytest.raises(ValueError, match="weights must hold 8 numbers, got 3"):
        explain(weights=[1, 2, 3])
    with pytest.raises(ValueError, match="rate must be a finite number > 0, got -1"):
        explain(rate=-1)
    with pytest.raises(ValueError, match="inputs must be finite"):
        explain(inputs=[np.nan, 1])

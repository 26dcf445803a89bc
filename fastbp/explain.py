"""One backprop step of a 2-2-2 sigmoid network, number by number.

``fastbp explain`` prints the forward values, the loss, and for every weight
the chain-rule factors whose product is its gradient, then the updated weight.
The numbers come from the library — `fastbp.MLP` forward passes and
`fastbp.BackpropTrainer.gradients` / ``step`` — and each chain-rule
product is checked against the library's gradient. With the default values it
reproduces the classic worked example (i = (0.1, 0.5), w1..w8 = 0.1 .. 0.8,
b1 = 0.25, b2 = 0.35, targets (0.05, 0.95), rate 0.6): out_o1 = 0.73492,
E_total = 0.24908, dE/dw5 = 0.08020, w5 after the step 0.45187, ... (the
published numbers are truncated to 5 decimals; fastbp prints 6, rounded).

Network (weights in fastbp's (n_out, n_in) layout: W1 = [[w1, w3], [w2, w4]],
W2 = [[w5, w6], [w7, w8]]; one bias value per layer, shared by its units)::

    h1 = sigmoid(w1*i1 + w3*i2 + b1)      h2 = sigmoid(w2*i1 + w4*i2 + b1)
    o1 = sigmoid(w5*h1 + w6*h2 + b2)      o2 = sigmoid(w7*h1 + w8*h2 + b2)
    E_total = 1/2 (t1 - o1)^2 + 1/2 (t2 - o2)^2
"""
from dataclasses import dataclass, field

import numpy as np

from .models import MLP
from .optim import SGD
from .backprop import BackpropTrainer

#: the reference example: w1..w8, (b1, b2), (i1, i2), (t1, t2), rate
DEFAULT_WEIGHTS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
DEFAULT_BIASES = (0.25, 0.35)
DEFAULT_INPUTS = (0.1, 0.5)
DEFAULT_TARGETS = (0.05, 0.95)
DEFAULT_RATE = 0.6

#: the chain-rule product and the library's gradient must agree this closely
CHECK_TOLERANCE = 1e-12

# (weight name, layer, row, column): W1 = [[w1, w3], [w2, w4]], W2 = [[w5, w6], [w7, w8]]
_POSITIONS = [("w1", 0, 0, 0), ("w2", 0, 1, 0), ("w3", 0, 0, 1), ("w4", 0, 1, 1),
              ("w5", 1, 0, 0), ("w6", 1, 0, 1), ("w7", 1, 1, 0), ("w8", 1, 1, 1)]


@dataclass
class WeightStep:
    """One weight's gradient as a chain-rule product, and its update.

    Attributes
    ----------
    name : str
        'w1' .. 'w8'.
    value : float
        Weight before the step.
    factors : list of (str, float)
        (symbol, value) pairs whose product is the gradient.
    product : float
        The product of the factors.
    gradient : float
        dE/dw from `fastbp.BackpropTrainer.gradients`.
    updated : float
        The weight after `fastbp.BackpropTrainer.step`.
    """

    name: str
    value: float
    factors: list
    product: float
    gradient: float
    updated: float


@dataclass
class Explanation:
    """Everything `explain` computed (float64 throughout).

    Attributes
    ----------
    inputs, targets : ndarray (2,)
    net_hidden, out_hidden, net_output, out_output : ndarray (2,)
        Pre-activations and sigmoid outputs of both layers.
    errors : ndarray (2,)
        1/2 (t_k - out_ok)^2 per output.
    e_total : float
    rate : float
    weights : list of WeightStep
        w1..w8 in order.
    bias_gradients : ndarray (2,)
        dE/db1 and dE/db2 of the shared biases (sums of the per-unit bias
        gradients of the library's per-unit biases).
    max_check_error : float
        Largest |chain-rule product - library gradient| over w1..w8.
    lines : list of str
        The printed report.
    """

    inputs: np.ndarray
    targets: np.ndarray
    net_hidden: np.ndarray
    out_hidden: np.ndarray
    net_output: np.ndarray
    out_output: np.ndarray
    errors: np.ndarray
    e_total: float
    rate: float
    weights: list = field(default_factory=list)
    bias_gradients: np.ndarray = None
    max_check_error: float = 0.0
    lines: list = field(default_factory=list)

    def __str__(self):
        return "\n".join(self.lines)


def _check_numbers(values, n, argument):
    try:
        a = np.array(values, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise TypeError(f"{argument} must be {n} numbers, got {values!r}") from None
    if a.size != n:
        raise ValueError(f"{argument} must hold {n} numbers, got {a.size}: {values!r}")
    if not np.isfinite(a).all():
        raise ValueError(f"{argument} must be finite, got {values!r}")
    return a


def build_network(weights=DEFAULT_WEIGHTS, biases=DEFAULT_BIASES):
    """The 2-2-2 sigmoid MLP (float64) holding w1..w8 and the shared biases.

    Parameters
    ----------
    weights : sequence of 8 floats
        w1..w8.
    biases : sequence of 2 floats
        b1 (both hidden units) and b2 (both output units).

    Returns
    -------
    fb.MLP
    """
    w = _check_numbers(weights, 8, "weights")
    b = _check_numbers(biases, 2, "biases")
    model = MLP([2, 2, 2], activation="sigmoid", output="sigmoid", dtype=np.float64, seed=0)
    W1, b1, W2, b2 = model.params
    W1[...] = [[w[0], w[2]], [w[1], w[3]]]
    W2[...] = [[w[4], w[5]], [w[6], w[7]]]
    b1[...] = b[0]
    b2[...] = b[1]
    return model


def explain(weights=DEFAULT_WEIGHTS, biases=DEFAULT_BIASES, inputs=DEFAULT_INPUTS,
            targets=DEFAULT_TARGETS, rate=DEFAULT_RATE, digits=6):
    """Compute and describe one gradient-descent step of the 2-2-2 network.

    Parameters
    ----------
    weights : sequence of 8 floats
        w1..w8 (see the module docstring for where each sits).
    biases : sequence of 2 floats
        b1, b2.
    inputs : sequence of 2 floats
        i1, i2.
    targets : sequence of 2 floats
        t1, t2.
    rate : float > 0
        Learning rate of the plain gradient-descent step.
    digits : int >= 1
        Decimals printed (default 6: the published example truncates to 5,
        so its numbers are the first digits of these).

    Returns
    -------
    Explanation
        The numbers and the report lines (``str(explanation)``).

    Raises
    ------
    ArithmeticError
        When a chain-rule product disagrees with the library's gradient by
        more than `CHECK_TOLERANCE` (it never should).
    """
    x = _check_numbers(inputs, 2, "inputs")
    t = _check_numbers(targets, 2, "targets")
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not rate > 0 \
            or not np.isfinite(rate):
        raise ValueError(f"rate must be a finite number > 0, got {rate!r}")
    if isinstance(digits, bool) or not isinstance(digits, int) or digits < 1:
        raise ValueError(f"digits must be an int >= 1, got {digits!r}")
    model = build_network(weights, biases)
    W1, b1, W2, b2 = (p.copy() for p in model.params)
    X, Y = x[None, :], t[None, :]

    # forward values from the library: the hidden layer as a one-layer sigmoid MLP
    hidden = MLP([2, 2], output="sigmoid", dtype=np.float64, seed=0)
    hidden.params[0][...] = W1
    hidden.params[1][...] = b1
    out_h = hidden.predict(X)[0]
    out_o = model.predict(X)[0]
    net_h = W1 @ x + b1
    net_o = W2 @ out_h + b2
    errors = 0.5 * (t - out_o) ** 2

    trainer = BackpropTrainer(model, loss="squared_error", optimizer=SGD(float(rate)))
    grads = trainer.gradients(X, Y)
    e_total = trainer.step(X, Y)
    after = model.params

    # chain-rule factors
    dE_dout_o = out_o - t                   # dE/dout_ok
    dout_dnet_o = out_o * (1 - out_o)       # sigmoid'
    delta_o = dE_dout_o * dout_dnet_o       # dE/dnet_ok
    dE_dout_h = W2.T @ delta_o              # dE/dout_hj = sum_k delta_ok * w_kj
    dout_dnet_h = out_h * (1 - out_h)

    f = f"{{:.{digits}f}}"
    steps = []
    for name, layer, r, c in _POSITIONS:
        if layer == 1:
            factors = [(f"dE/dout_o{r + 1}", dE_dout_o[r]),
                       (f"dout_o{r + 1}/dnet_o{r + 1}", dout_dnet_o[r]),
                       (f"dnet_o{r + 1}/d{name} = out_h{c + 1}", out_h[c])]
            value, gradient, updated = W2[r, c], grads[2][r, c], after[2][r, c]
        else:
            factors = [(f"dE/dout_h{r + 1}", dE_dout_h[r]),
                       (f"dout_h{r + 1}/dnet_h{r + 1}", dout_dnet_h[r]),
                       (f"dnet_h{r + 1}/d{name} = i{c + 1}", x[c])]
            value, gradient, updated = W1[r, c], grads[0][r, c], after[0][r, c]
        product = float(np.prod([v for _, v in factors]))
        steps.append(WeightStep(name, float(value), [(s, float(v)) for s, v in factors],
                                product, float(gradient), float(updated)))
    check = max(abs(s.product - s.gradient) for s in steps)
    if check > CHECK_TOLERANCE:
        raise ArithmeticError(f"chain-rule products differ from the library's gradients by "
                              f"{check:.3g} (tolerance {CHECK_TOLERANCE:g})")
    for s in steps:
        expected = s.value - rate * s.gradient
        if abs(expected - s.updated) > CHECK_TOLERANCE:
            raise ArithmeticError(f"{s.name}: step gave {s.updated!r}, expected "
                                  f"{s.name} - rate * dE/d{s.name} = {expected!r}")
    bias_grads = np.array([grads[1].sum(), grads[3].sum()])

    L = []
    L.append("2-2-2 sigmoid network, squared error, one step of gradient descent "
             f"(rate {rate:g})")
    L.append(f"  inputs i1 = {f.format(x[0])}, i2 = {f.format(x[1])};  targets "
             f"t1 = {f.format(t[0])}, t2 = {f.format(t[1])}")
    L.append(f"  weights w1..w8 = {', '.join(f.format(s.value) for s in sorted(steps, key=lambda s: int(s.name[1:])))};"
             f"  b1 = {f.format(b1[0])}, b2 = {f.format(b2[0])}")
    L.append("")
    L.append("Forward pass")
    for j, (wa, wb) in enumerate((("w1", "w3"), ("w2", "w4"))):
        L.append(f"  net_h{j + 1} = {wa}*i1 + {wb}*i2 + b1 = {f.format(W1[j, 0])}*"
                 f"{f.format(x[0])} {_plus(W1[j, 1], f)}*{f.format(x[1])} "
                 f"{_plus(b1[j], f)} = {f.format(net_h[j])}")
        L.append(f"  out_h{j + 1} = sigmoid(net_h{j + 1}) = {f.format(out_h[j])}")
    for k, (wa, wb) in enumerate((("w5", "w6"), ("w7", "w8"))):
        L.append(f"  net_o{k + 1} = {wa}*out_h1 + {wb}*out_h2 + b2 = {f.format(W2[k, 0])}*"
                 f"{f.format(out_h[0])} {_plus(W2[k, 1], f)}*{f.format(out_h[1])} "
                 f"{_plus(b2[k], f)} = {f.format(net_o[k])}")
        L.append(f"  out_o{k + 1} = sigmoid(net_o{k + 1}) = {f.format(out_o[k])}")
    L.append("")
    L.append("Loss")
    for k in range(2):
        L.append(f"  E_o{k + 1} = 1/2 (t{k + 1} - out_o{k + 1})^2 = 1/2 ({f.format(t[k])} - "
                 f"{f.format(out_o[k])})^2 = {f.format(errors[k])}")
    L.append(f"  E_total = E_o1 + E_o2 = {f.format(e_total)}")
    L.append("")
    L.append("Output layer: dE/dw = dE/dout_o * dout_o/dnet_o * dnet_o/dw")
    for k in range(2):
        L.append(f"  dE/dout_o{k + 1} = out_o{k + 1} - t{k + 1} = {f.format(dE_dout_o[k])};  "
                 f"dout_o{k + 1}/dnet_o{k + 1} = out_o{k + 1} (1 - out_o{k + 1}) = "
                 f"{f.format(dout_dnet_o[k])}")
    by_name = {s.name: s for s in steps}
    for name in ("w5", "w6", "w7", "w8"):
        L.append(_weight_line(by_name[name], f))
    L.append("")
    L.append("Hidden layer: dE/dw = dE/dout_h * dout_h/dnet_h * dnet_h/dw, "
             "with dE/dout_hj = sum over k of dE/dnet_ok * w(o_k <- h_j)")
    for j in range(2):
        wa, wb = ("w5", "w7") if j == 0 else ("w6", "w8")
        L.append(f"  dE/dout_h{j + 1} = {f.format(delta_o[0])}*{wa} {_plus(delta_o[1], f)}*"
                 f"{wb} = {f.format(delta_o[0])}*{f.format(W2[0, j])} "
                 f"{_plus(delta_o[1], f)}*{f.format(W2[1, j])} = {f.format(dE_dout_h[j])};  "
                 f"dout_h{j + 1}/dnet_h{j + 1} = {f.format(dout_dnet_h[j])}")
    for name in ("w1", "w2", "w3", "w4"):
        L.append(_weight_line(by_name[name], f))
    L.append(f"  shared biases: dE/db1 = {f.format(bias_grads[0])}, dE/db2 = "
             f"{f.format(bias_grads[1])} (sum over the layer's units)")
    L.append("")
    L.append(f"Update: w <- w - {rate:g} * dE/dw  (fastbp.BackpropTrainer.step with "
             f"fb.SGD({rate:g}))")
    for name in ("w1", "w2", "w3", "w4", "w5", "w6", "w7", "w8"):
        s = by_name[name]
        L.append(f"  {name} = {f.format(s.value)} - {rate:g} * {f.format(s.gradient)} = "
                 f"{f.format(s.updated)}")
    L.append("")
    L.append(f"Check: every chain-rule product equals fastbp's gradient (largest difference "
             f"{check:.1e}); every updated weight equals w - rate * gradient.")
    ordered = [by_name[f"w{i}"] for i in range(1, 9)]
    return Explanation(x, t, net_h, out_h, net_o, out_o, errors, float(e_total), float(rate),
                       ordered, bias_grads, float(check), L)


def _plus(value, f):
    """A term added to a sum, formatted with ``f``: "+ 0.5" or "- 0.5" (never
    "+ -0.5")."""
    return f"- {f.format(-value)}" if value < 0 else f"+ {f.format(value)}"


def _weight_line(s, f):
    symbols = " * ".join(sym.split(" = ")[0] for sym, _ in s.factors)
    values = " * ".join(f.format(v) for _, v in s.factors)
    return (f"  dE/d{s.name} = {symbols}\n"
            f"         = {values} = {f.format(s.product)}   "
            f"(fastbp gradient {f.format(s.gradient)})")


def run(print_fn=print, **kwargs):
    """Print `explain`'s report; returns the `Explanation`."""
    result = explain(**kwargs)
    for line in result.lines:
        print_fn(line)
    return result

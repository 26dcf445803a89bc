"""Fused ``fit`` for networks small enough to live in registers.

For a small MLP, the generic epoch kernel spends most of each update on
bookkeeping: loops whose bounds come from ``layout``, offsets into flat
buffers, reference counting of array views, and several passes over a
parameter buffer held in memory. Here, the same training loop is written out
for one exact architecture as straight-line Python source (every weight,
gradient and optimizer-state entry a scalar local variable, every loop over
units unrolled), compiled by Numba, and kept in registers for a whole
``fit_epochs`` call. Parameters touch memory only when the call starts and
ends.

The generated code takes the steps of the generic kernels in
:mod:`fastbp.kernels.mlp`, :mod:`fastbp.kernels.losses` and
:mod:`fastbp.kernels.optim`, driven like :func:`fastbp.kernels.epochs.run_epochs`
(the same shuffles, epoch statistics, divergence checks, weight decay and
optimizer state):

* float64: operation for operation (same expressions, operand types, order
  of accumulation and helpers), so the parameters, gradients, optimizer
  state and statistics are the generic path's bit for bit;
* float32: in float32 arithmetic throughout, with fused multiply-adds and an
  inline exp (:func:`fastbp.kernels.small_mlp.exp_float32`), where the
  generic kernels accumulate some sums in float64 and call libm: the same
  steps within float32 rounding, and about 1.7x faster than float32 written
  the generic way.

``tests/test_small_nets.py`` checks both against the generic path.

Which runs take it (:func:`small_fit_kernel`): an MLP of at most
:data:`MAX_PARAMS` parameters, trained by backpropagation with SGD (plain,
momentum or Nesterov) or Adam, any activation, output and loss, weight decay
or none, and a batch size small enough for the generic kernels to use plain
loops instead of BLAS (``model.blas(batch_size) is None``: their results then
agree exactly). Everything else (``clip_norm``, larger networks or batches)
takes the generic kernel.

The source of each architecture is written once to a folder under fastbp's
cache (:func:`fastbp.compile_cache.generated_source_dir`, never inside the
installed package) and imported from there, so Numba's on-disk cache works
for it as for any other kernel: the first run of an architecture compiles
(seconds; far less than the generic epoch kernel it replaces), later
processes load the machine code. The file carries a
fingerprint of this module and of :mod:`fastbp.kernels`; when either changes,
the file is rewritten and its kernel recompiled.
"""
import functools
import hashlib
import importlib.util
import os
import sys

from numba.core import config as numba_config

from .compile_cache import generated_source_dir
from .kernels import KERNELS_DIR, codes
from .kernels.optim import A as MOMENTUM
from .kernels.optim import CLIP, KIND

#: networks with more parameters take the generic kernels: the generated code,
#: and its compile time, grow with the parameter count (42 parameters took 2-3x
#: as long to compile as 12), and beyond a few dozen values the state no longer
#: fits in registers
MAX_PARAMS = 32

#: name of the generated function in each module
_ENTRY = "fit_epochs"

_ACT_NAMES = {codes.IDENTITY: "identity", codes.SIGMOID: "sigmoid", codes.TANH: "tanh",
              codes.RELU: "relu", codes.LEAKY_RELU: "leaky", codes.SOFTMAX: "softmax"}
_LOSS_NAMES = {codes.SQUARED_ERROR: "se", codes.MSE: "mse", codes.CROSS_ENTROPY: "ce",
               codes.BINARY_CROSS_ENTROPY: "bce"}

#: spec -> compiled dispatcher, or None when the source could not be written
_KERNELS = {}


# -- which runs take the small-network path ----------------------------------------------
def optimizer_variant(opt_hyper):
    """'sgd', 'momentum' (with or without Nesterov) or 'adam', from an
    optimizer's hyper-parameter vector."""
    if opt_hyper[KIND] == codes.ADAM:
        return "adam"
    return "momentum" if opt_hyper[MOMENTUM] != 0.0 else "sgd"


def small_net_spec(model, train_hyper, opt_hyper, batch_size):
    """The generated kernel that trains ``model`` with these settings, as a
    hashable spec, or None when the run takes the generic kernels.

    Parameters
    ----------
    model : fb.MLP
    train_hyper : float64 ndarray (3,)
        The trainer's ``[loss code, weight decay, clip norm]``.
    opt_hyper : float64 ndarray (6,)
        The optimizer's hyper-parameters.
    batch_size : int
        The fit's batch size.

    Returns
    -------
    tuple or None
        ``(sizes, activation codes, loss code, optimizer variant, dtype name)``.
    """
    if model.n_params > MAX_PARAMS or model.blas(batch_size) is not None:
        return None
    if train_hyper[CLIP] > 0.0:
        return None
    layout = model.layout
    L = int(layout[0])
    return (tuple(int(s) for s in layout[1:L + 2]),
            tuple(int(c) for c in layout[L + 2:2 * L + 2]),
            int(train_hyper[0]), optimizer_variant(opt_hyper), model.dtype.name)


def small_fit_kernel(model, train_hyper, opt_hyper, batch_size):
    """The compiled whole-epoch kernel for this run (see :func:`small_net_spec`),
    or None when the run takes the generic kernels or the generated source
    cannot be written.

    The kernel is called as ``kernel(params, grads, state, opt_hyper,
    train_hyper, X, labels, targets, order, n_epochs, shuffle, seed,
    first_epoch, batch_size, stats)`` and returns ``(status, epochs_done)``
    as :func:`fastbp.kernels.epochs.run_epochs` does.
    """
    spec = small_net_spec(model, train_hyper, opt_hyper, batch_size)
    if spec is None or numba_config.DISABLE_JIT:
        return None     # (uncompiled, the generic kernels are the ones to run)
    try:
        return _KERNELS[spec]
    except KeyError:
        pass
    try:
        kernel = _load(spec)
    except OSError:
        kernel = None   # an unwritable cache folder: the generic kernels still work
    _KERNELS[spec] = kernel
    return kernel


# -- the source files ----------------------------------------------------------------------
@functools.lru_cache(maxsize=None)
def fingerprint():
    """SHA-1 over this module's source and every kernel module's: the
    generated files depend on both (they inline fastbp's kernels)."""
    h = hashlib.sha1()
    paths = [os.path.abspath(__file__)]
    paths += sorted(os.path.join(KERNELS_DIR, name) for name in os.listdir(KERNELS_DIR)
                    if name.endswith(".py"))
    for path in paths:
        h.update(os.path.basename(path).encode())
        with open(path, "rb") as f:
            h.update(f.read())
    return h.hexdigest()


def module_name(spec):
    """The generated module's name for ``spec``: readable, and unique per spec."""
    sizes, acts, loss, opt, dtype = spec
    text = "x".join(str(s) for s in sizes)
    text += "_" + "_".join(_ACT_NAMES[a] for a in acts)
    return f"mlp_{text}_{_LOSS_NAMES[loss]}_{opt}_{dtype}"


def _load(spec):
    """Write the source of ``spec`` (unless the file already holds it) and
    import its kernel."""
    folder = generated_source_dir()
    os.makedirs(folder, exist_ok=True)
    name = module_name(spec)
    path = os.path.join(folder, name + ".py")
    text = generate_source(spec)
    try:
        with open(path, encoding="utf-8") as f:
            current = f.read()
    except OSError:
        current = None
    if current != text:
        # written beside and renamed: a process importing it never sees half a file
        tmp = f"{path}.{os.getpid()}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    full = f"fastbp_generated.{name}"
    module = sys.modules.get(full)
    if module is None or getattr(module, "__file__", None) != path:
        loader_spec = importlib.util.spec_from_file_location(full, path)
        module = importlib.util.module_from_spec(loader_spec)
        sys.modules[full] = module
        loader_spec.loader.exec_module(module)
    return getattr(module, _ENTRY)


# -- code generation ----------------------------------------------------------------------------
class _Writer:
    def __init__(self):
        self.lines = []
        self.depth = 0

    def __call__(self, *lines):
        for line in lines:
            self.lines.append("    " * self.depth + line if line else "")

    def indent(self):
        self.depth += 1

    def dedent(self):
        self.depth -= 1

    def text(self):
        return "\n".join(self.lines) + "\n"


class _Dialect:
    """How the generated code writes the arithmetic of one dtype.

    The source uses typed module constants (``ZERO``, ``ONE``, ``HALF``,
    ``SLOPE``, ...), which in float64 equal the generic kernels' literals,
    so most expressions read the same in both dtypes.

    float64 copies the generic kernels' expressions with operands of the
    same types, so that both round identically: a sum the generic kernel
    starts from 0.0 starts from 0.0 here too, and exp is libm's. float32
    computes in float32 only (no float64 intermediates, the inline
    :func:`fastbp.kernels.small_mlp.exp_float32`): within float32 rounding of
    the generic kernels, and about twice as fast, as conversions between
    float32 and float64 and library calls sit on the chain of dependent
    operations that one update is.
    """

    def __init__(self, dtype):
        self.exact = dtype == "float64"
        self.dtype = dtype

    def sum_from_zero(self, terms, zero="0.0"):
        """The generic kernels' ``s = 0.0; s += term...`` as one expression."""
        return " + ".join(([zero] if self.exact else []) + terms)

    def exp(self, x):
        return f"np.exp({x})" if self.exact else f"exp_float32({x})"

    def sigmoid(self, a):
        return f"sigmoid_select({a})" if self.exact else f"sigmoid_float32({a})"

    def tanh(self, a):
        return f"tanh64({a})" if self.exact else f"tanh32({a})"

    def scalar(self, expr):
        """A float64 hyper-parameter as the update uses it."""
        return expr if self.exact else f"F({expr})"


def generate_source(spec):
    """Python source of the whole-epoch kernel of ``spec`` (see
    :func:`small_net_spec`).

    The kernel is the generic one (:func:`fastbp.kernels.epochs.run_epochs`
    over :func:`fastbp.kernels.mlp.backprop_step`) written out for one
    architecture: per sample a forward pass, the loss and its delta, the
    backward pass accumulating the batch gradient; per batch the checks and
    the update of :func:`fastbp.kernels.optim.finish_step`; per epoch the
    shuffle and the statistics. The helpers below name the generic function
    each piece copies. Temporaries are assigned once each: Numba's front end
    (SSA reconstruction, type inference), not LLVM, is most of the compile
    time of straight-line code this long.
    """
    sizes, acts, loss, opt, dtype = spec
    D = _Dialect(dtype)
    L = len(sizes) - 1
    k = sizes[-1]
    # flat offsets: every W_l (n_l, n_{l-1}) row-major, then every b_l
    woff, boff = [], []
    w = 0
    for l in range(1, L + 1):
        woff.append(w)
        w += sizes[l] * sizes[l - 1]
    n_weights = w
    for l in range(1, L + 1):
        boff.append(w)
        w += sizes[l]
    n_params = w

    def W(l, i, j):      # parameter variable of W_l[i, j], l = 1..L
        return f"p{woff[l - 1] + i * sizes[l - 1] + j}"

    def B(l, i):
        return f"p{boff[l - 1] + i}"

    def GW(l, i, j):
        return f"g{woff[l - 1] + i * sizes[l - 1] + j}"

    def GB(l, i):
        return f"g{boff[l - 1] + i}"

    def H(l, i):         # output of layer l (H_0 = the input row)
        return f"x{i}" if l == 0 else f"h{l}_{i}"

    P = range(n_params)
    w_ = _Writer()
    w_(f'"""Generated by fastbp.small_nets for {module_name(spec)}; do not edit.',
       f"fingerprint {fingerprint()}",
       '"""',
       "import numpy as np",
       "from numba import njit",
       "",
       "from numba.np.unsafe.ndarray import to_fixed_tuple",
       "",
       "from fastbp.kernels.codes import (KERNEL, LEAKY_SLOPE, NONFINITE_GRADIENT, "
       "NONFINITE_LOSS,",
       "                                  NONFINITE_UPDATE, OK)",
       "from fastbp.kernels.epochs import epoch_seed, record_epoch, shuffle_in_place",
       "from fastbp.kernels.optim import DECAY, LR, A, B, T, _adam_constants, _smallest_normal",
       "from fastbp.kernels.small_mlp import (KERNEL_F32, adam_entry, exp_float32, flush,",
       "                                      leaky_relu, leaky_relu_delta, momentum_entry, "
       "relu,",
       "                                      relu_delta, sigmoid_float32, sigmoid_select, "
       "tanh32, tanh64)",
       "",
       f"F = np.{dtype}",
       "ZERO = F(0.0)",
       "ONE = F(1.0)",
       "SLOPE = F(LEAKY_SLOPE)",
       # loss_and_delta's scale and half of squared_error / mse
       f"SCALE = F({'1.0' if loss == codes.SQUARED_ERROR else f'2.0 / {k}'})",
       f"HALF = F({'0.5' if loss == codes.SQUARED_ERROR else f'1.0 / {k}'})",
       "",
       "",
       f"@njit(**{'KERNEL' if D.exact else 'KERNEL_F32'})",
       f"def {_ENTRY}(params, grads, state, opt_hyper, train_hyper, X, labels, targets, order,",
       "               n_epochs, shuffle, seed, first_epoch, batch_size, stats):")
    w_.indent()
    w_("tiny = _smallest_normal(params)",
       # float64: the generic kernels' float64 scalars; float32: rounded once
       f"lr = {D.scalar('opt_hyper[LR]')}",
       "lam64 = train_hyper[DECAY]",
       f"lam = {D.scalar('lam64')}",
       "t = opt_hyper[T]")
    if opt == "momentum":
        w_(f"mu = {D.scalar('opt_hyper[A]')}", "nesterov = opt_hyper[B] != 0.0")
    pt = ", ".join(f"p{i}" for i in P) + ("," if n_params == 1 else "")
    gt = ", ".join(f"g{i}" for i in P) + ("," if n_params == 1 else "")
    vt = ", ".join(f"v{i}" for i in P) + ("," if n_params == 1 else "")
    st = ", ".join(f"s{i}" for i in P) + ("," if n_params == 1 else "")
    w_(f"{pt} = to_fixed_tuple(params, {n_params})",
       f"{gt} = to_fixed_tuple(grads, {n_params})")
    if opt in ("momentum", "adam"):
        w_(f"{vt} = to_fixed_tuple(state[0], {n_params})")
    if opt == "adam":
        w_(f"{st} = to_fixed_tuple(state[1], {n_params})")
    w_("n = X.shape[0]",
       "use_labels = labels.shape[0] > 0",
       "status = OK",
       "done = n_epochs",
       "for e in range(n_epochs):")
    w_.indent()
    w_("if shuffle:",
       "    shuffle_in_place(order, epoch_seed(seed, first_epoch + e))",
       "loss_acc = 0.0",
       "correct = 0.0",
       # int64 zeros, not literals: a literal argument compiles record_epoch again
       "terms = np.int64(0)",
       "steps = np.int64(0)",
       "for start in range(0, n, batch_size):")
    w_.indent()
    w_("rows = min(batch_size, n - start)",
       f"inv_b = {D.scalar('1.0 / rows')}",
       "scb = SCALE * inv_b",
       # gemm_tn and bias_gradient zero the gradient before accumulating rows
       *(f"g{i} = ZERO" for i in P),
       "loss = 0.0",
       "corr = 0.0",
       "for r in range(rows):")
    w_.indent()
    w_("src = order[start + r]")
    w_(*(f"x{j} = X[src, {j}]" for j in range(sizes[0])))
    _forward(w_, D, sizes, acts, loss, W, B, H)
    delta = _loss_and_delta(w_, D, sizes, acts[-1], loss, H)
    _backward(w_, D, sizes, acts, delta, W, GW, GB, H)
    w_.dedent()
    # optim.check_step, then optim.apply_update, on the locals
    w_("data_loss = loss / rows",
       "objective = data_loss",
       "if not np.isfinite(data_loss):",
       "    status = NONFINITE_LOSS",
       "    break",
       "if lam64 > 0.0:")
    w_.indent()
    for i in range(n_weights):          # add_weight_decay
        w_(f"g{i} = g{i} + lam * p{i}")
    w_(f"pen = {_chain(['0.0'] + [f'p{i} * p{i}' for i in range(n_weights)])}",
       "objective = objective + 0.5 * lam64 * pen")
    w_.dedent()
    _update(w_, D, opt, P)
    w_("loss_acc += objective * rows",
       "correct += corr",
       "terms += rows",
       "steps += 1")
    w_.dedent()
    w_("record_epoch(stats, e, loss_acc, terms, correct, steps, 0.0, np.int64(0))",
       "if status != OK:",
       "    done = e",
       "    break")
    w_.dedent()
    w_(*(f"params[{i}] = p{i}" for i in P))
    w_(*(f"grads[{i}] = g{i}" for i in P))
    if opt in ("momentum", "adam"):
        w_(*(f"state[0, {i}] = v{i}" for i in P))
    if opt == "adam":
        w_(*(f"state[1, {i}] = s{i}" for i in P))
    w_("opt_hyper[T] = t",
       "return status, done")
    return w_.text()


def _chain(parts):
    """``parts`` joined as one left-to-right sum expression."""
    return " + ".join(parts)


def _activate(D, a, code):
    """kernels.activations.activate_inplace of one elementwise unit."""
    if code == codes.SIGMOID:
        return D.sigmoid(a)
    if code == codes.TANH:
        return D.tanh(a)
    if code == codes.RELU:
        return f"relu({a}, ZERO)"
    if code == codes.LEAKY_RELU:
        return f"leaky_relu({a}, SLOPE)"
    return a


def _derivative(d, h, code):
    """kernels.activations.backprop_activation of one elementwise unit:
    d * f'(a), from the output h = f(a)."""
    if code == codes.SIGMOID:
        return f"{d} * ({h} * (ONE - {h}))"
    if code == codes.TANH:
        return f"{d} * (ONE - {h} * {h})"
    if code == codes.RELU:
        return f"relu_delta({d}, {h}, ZERO)"
    if code == codes.LEAKY_RELU:
        return f"leaky_relu_delta({d}, {h}, SLOPE)"
    return d


def _forward(w_, D, sizes, acts, loss, W, B, H):
    """kernels.mlp.forward for one row: gemm_nt, add_bias, the activation."""
    L = len(sizes) - 1
    for l in range(1, L + 1):
        nin, nout = sizes[l - 1], sizes[l]
        for i in range(nout):
            terms = [f"{H(l - 1, j)} * {W(l, i, j)}" for j in range(nin)]
            if D.exact:
                w_(f"a{l}_{i} = {D.sum_from_zero(terms)} + {B(l, i)}")
            else:       # bias first: a chain of fused multiply-adds
                w_(f"a{l}_{i} = {_chain([B(l, i)] + terms)}")
        code = acts[l - 1]
        if l == L and loss in (codes.CROSS_ENTROPY, codes.BINARY_CROSS_ENTROPY):
            continue        # training with a cross-entropy reads the logits only
        if code == codes.SOFTMAX:       # softmax_rows
            w_(f"m{l}_0 = a{l}_0")
            for i in range(1, nout):
                w_(f"m{l}_{i} = a{l}_{i} if a{l}_{i} > m{l}_{i - 1} else m{l}_{i - 1}")
            m = f"m{l}_{nout - 1}"
            for i in range(nout):
                w_(f"e{l}_{i} = {D.exp(f'a{l}_{i} - {m}')}")
            w_(f"inv{l} = ONE / ({D.sum_from_zero([f'e{l}_{i}' for i in range(nout)], 'ZERO')})",
               *(f"{H(l, i)} = e{l}_{i} * inv{l}" for i in range(nout)))
        else:
            w_(*(f"{H(l, i)} = {_activate(D, f'a{l}_{i}', code)}" for i in range(nout)))


def _loss_and_delta(w_, D, sizes, out, loss, H):
    """kernels.losses.loss_and_delta for one row. The loss is summed in
    float64 in either dtype. Returns the names of d(loss)/dA_L."""
    L = len(sizes) - 1
    k = sizes[-1]
    a = [f"a{L}_{j}" for j in range(k)]
    if loss == codes.CROSS_ENTROPY:
        w_("m0 = a{}_0".format(L), "am0 = 0")
        for j in range(1, k):
            w_(f"m{j} = {a[j]} if {a[j]} > m{j - 1} else m{j - 1}",
               f"am{j} = {j} if {a[j]} > m{j - 1} else am{j - 1}")
        m, am = f"m{k - 1}", f"am{k - 1}"
        for j in range(k):
            w_(f"ex{j} = {D.exp(f'{a[j]} - {m}')}")
        w_(f"s = {D.sum_from_zero([f'ex{j}' for j in range(k)], 'ZERO')}",
           f"lse = {m} + np.log(s)", "inv_s = ONE / s", "if use_labels:")
        w_.indent()
        w_("c = labels[src]")
        picked = a[-1]
        for j in range(k - 2, -1, -1):
            picked = f"({a[j]} if c == {j} else {picked})"
        w_(f"loss += lse - {picked}")
        for j in range(k):
            # d_j = p_j / rows, then d_c -= 1 / rows
            w_(f"y{j} = ex{j} * inv_s * inv_b",
               f"d_{j} = y{j} - inv_b if c == {j} else y{j}")
        w_(f"if {am} == c:", "    corr += 1.0")
        w_.dedent()
        w_("else:")
        w_.indent()
        w_(*(f"t{j} = targets[src, {j}]" for j in range(k)))
        w_(f"tsum = {D.sum_from_zero([f't{j}' for j in range(k)], 'ZERO')}", "tc0 = 0",
           "tm0 = t0")
        for j in range(1, k):
            w_(f"tc{j} = {j} if t{j} > tm{j - 1} else tc{j - 1}",
               f"tm{j} = t{j} if t{j} > tm{j - 1} else tm{j - 1}")
        for j in range(k):
            w_(f"if t{j} != 0.0:", f"    loss -= t{j} * ({a[j]} - lse)")
        for j in range(k):
            w_(f"d_{j} = (ex{j} * inv_s * tsum - t{j}) * inv_b")
        w_(f"if {am} == tc{k - 1}:", "    corr += 1.0")
        w_.dedent()
    elif loss == codes.BINARY_CROSS_ENTROPY:
        for j in range(k):
            aj = a[j]
            # the loss's exp(-|a|) is also the probability's (see sigmoid_select)
            w_(f"t{j} = targets[src, {j}]",
               f"ex{j} = {D.exp(f'-abs({aj})')}",
               f"loss += max({aj}, {'0.0' if D.exact else 'ZERO'}) - t{j} * {aj} "
               f"+ np.log1p(ex{j})",
               f"d_{j} = ((ONE if {aj} >= 0 else ex{j}) / (ONE + ex{j}) - t{j}) * inv_b",
               f"if ({aj} > 0) == (t{j} > 0.5):",
               "    corr += 1.0")
    else:
        for j in range(k):
            w_(f"res{j} = {H(L, j)} - targets[src, {j}]",
               f"loss += HALF * res{j} * res{j}",
               f"r_{j} = {f'SCALE * res{j} * inv_b' if D.exact else f'res{j} * scb'}")
        if out == codes.SOFTMAX:
            dot = D.sum_from_zero([f"r_{j} * {H(L, j)}" for j in range(k)], "ZERO")
            w_(f"sd = {dot}", *(f"d_{j} = {H(L, j)} * (r_{j} - sd)" for j in range(k)))
        else:
            w_(*(f"d_{j} = {_derivative(f'r_{j}', H(L, j), out)}" for j in range(k)))
    return [f"d_{j}" for j in range(k)]


def _backward(w_, D, sizes, acts, delta, W, GW, GB, H):
    """kernels.mlp.backward for one row: dW_l += delta_l^T H_{l-1} (gemm_tn,
    accumulated over rows in the dtype), db_l += delta_l, and delta_{l-1} =
    (delta_l W_l) * f'(a_{l-1}) (gemm_nn from a zero of the dtype, then
    backprop_activation)."""
    L = len(sizes) - 1
    for l in range(L, 0, -1):
        nin, nout = sizes[l - 1], sizes[l]
        for i in range(nout):
            for j in range(nin):
                w_(f"{GW(l, i, j)} = {GW(l, i, j)} + {delta[i]} * {H(l - 1, j)}")
        for i in range(nout):
            w_(f"{GB(l, i)} = {GB(l, i)} + {delta[i]}")
        if l == 1:
            break
        new = []
        for j in range(nin):
            terms = [f"{delta[i]} * {W(l, i, j)}" for i in range(nout)]
            w_(f"c{l - 1}_{j} = {D.sum_from_zero(terms, 'ZERO')}")
            w_(f"d{l - 1}_{j} = {_derivative(f'c{l - 1}_{j}', H(l - 1, j), acts[l - 2])}")
            new.append(f"d{l - 1}_{j}")
        delta = new


def _update(w_, D, opt, P):
    """optim.update_is_finite and optim.apply_update on the locals: the new
    values computed once, checked, and kept only when every one is finite.
    A sum of (value * 0) is NaN exactly when some value is NaN or inf."""
    if opt == "sgd":
        for i in P:
            w_(f"q{i} = p{i} - lr * g{i}")
        new = [f"q{i}" for i in P]
    elif opt == "momentum":
        for i in P:
            w_(f"q{i}, u{i} = momentum_entry(p{i}, g{i}, v{i}, lr, mu, nesterov)")
        new = [f"q{i}" for i in P] + [f"u{i}" for i in P]
    else:
        w_("ac = _adam_constants(params, opt_hyper, t + 1.0)")
        for i in P:
            w_(f"q{i}, u{i}, z{i} = adam_entry(p{i}, g{i}, v{i}, s{i}, ac)")
        new = [f"q{i}" for i in P] + [f"u{i}" for i in P] + [f"z{i}" for i in P]
    # check_step names a gradient whose sum of squares (in float64) is not
    # finite; float32 squares cannot overflow float64, so that is any entry
    # not finite
    squares = [f"g{i} * g{i}" if D.exact else f"g{i} * 0.0" for i in P]
    w_(f"chk = {_chain(['ZERO'] + [f'{v} * ZERO' for v in new])}",
       "if chk != chk:",
       f"    sq = {_chain(['0.0'] + squares)}",
       "    status = NONFINITE_GRADIENT if not np.isfinite(sq) else NONFINITE_UPDATE",
       "    break",
       "t += 1.0")
    # optim._flush: a value below the smallest normal number is stored as 0
    for i in P:
        w_(f"p{i} = flush(q{i}, tiny, ZERO)")
        if opt in ("momentum", "adam"):
            w_(f"v{i} = flush(u{i}, tiny, ZERO)")
        if opt == "adam":
            w_(f"s{i} = flush(z{i}, tiny, ZERO)")

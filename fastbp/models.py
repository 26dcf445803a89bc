"""Models: shapes and storage. Every model keeps all its parameters in ONE
flat buffer (weights first, then biases) and exposes them as views.

:class:`MLP` is a fully connected feed-forward network, :class:`ElmanRNN` a
simple recurrent network read out at the last step or at every step.
"""
import functools
import numbers
import warnings

import numpy as np

from .validation import all_finite, check_dtype, check_features, check_seed, check_sequences
from .activations import hidden_code, output_code
from .files import write_model_file
from .kernels import mlp as mlp_kernels
from .kernels import rnn as rnn_kernels
from .kernels.linalg import blas_flag

INITS = ("xavier", "he", "uniform")

#: rows per kernel call in ``predict``
PREDICT_CHUNK = 1024


def mlp_workspace_size(sizes, capacity):
    """Length of the flat MLP workspace for batches of up to ``capacity`` rows.

    See :mod:`fastbp.kernels.mlp` for its layout.
    """
    widths = sizes[1:]
    return capacity * (sum(widths) + widths[-1] + 2 * max(widths))


def warn_if_not_finite(outputs):
    """Warn (RuntimeWarning) when predictions hold NaN or inf: the network's
    arithmetic overflowed on some inputs."""
    if not all_finite(outputs):
        with np.errstate(invalid="ignore"):
            rows = int((~np.isfinite(outputs)).any(axis=1).sum())
        warnings.warn(f"the predictions of {rows} of {outputs.shape[0]} rows are not finite: "
                      "the network's outputs overflow (inputs or parameters too large)",
                      RuntimeWarning, stacklevel=3)


def dense_views(flat, sizes):
    """[W_1, b_1, ..., W_L, b_L] as views into a flat buffer in the MLP layout
    (every W_l (sizes[l], sizes[l-1]) row-major first, then every b_l)."""
    views = []
    woff = 0
    boff = sum(n_in * n_out for n_in, n_out in zip(sizes[:-1], sizes[1:]))
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        views.append(flat[woff:woff + n_in * n_out].reshape(n_out, n_in))
        views.append(flat[boff:boff + n_out])
        woff += n_in * n_out
        boff += n_out
    return views


def aligned_empty(n, dtype):
    """np.empty(n, dtype) whose first entry sits on a 64-byte boundary (a
    view into a slightly larger buffer). BLAS reads an aligned operand
    faster; see :data:`fastbp.kernels.rnn.ALIGN`."""
    dtype = np.dtype(dtype)
    buf = np.empty(n + 64 // dtype.itemsize, dtype=dtype)
    start = (-buf.ctypes.data % 64) // dtype.itemsize
    return buf[start:start + n]


class Workspace:
    """A model's kernel workspace, grown (never shrunk) to the largest batch
    seen, so that repeated calls with any batch size (and, for recurrent
    models, any sequence length up to the longest seen) allocate nothing.
    The buffer starts on a 64-byte boundary (:func:`aligned_empty`).

    It keeps the model's size function, not the model, so a model holding
    its own workspace is freed as soon as it is unreachable (no reference
    cycle for the garbage collector to find).
    """

    def __init__(self, model):
        self._size = model.workspace_size_function()
        self.buffer = np.empty(0, dtype=model.dtype)
        self._rows = self._steps = -1   # the last request, known to fit

    def get(self, rows, steps=None):
        """The flat workspace, large enough for ``rows`` samples (of ``steps``
        time steps for a recurrent model)."""
        # a training loop asks for the same shape every step: answer that
        # without recomputing the size (a measurable part of a tiny step)
        if rows != self._rows or steps != self._steps:
            need = self._size(rows) if steps is None else self._size(rows, steps)
            if need > self.buffer.shape[0]:
                self.buffer = aligned_empty(need, self.buffer.dtype)
            self._rows, self._steps = rows, steps
        return self.buffer


class _Model:
    """What every model shares beyond its shapes: copying and saving, both
    defined by ``get_config`` and the one ``flat_params`` buffer."""

    @property
    def flat_params(self):
        """ndarray (n_params,): the one buffer holding every parameter.
        ``params`` are views into it. Assigning to it copies the new values
        into this buffer (same shape and dtype, finite), so the views stay
        valid."""
        return self._flat_params

    @flat_params.setter
    def flat_params(self, values):
        if not isinstance(values, np.ndarray):
            values = np.asarray(values, dtype=self.dtype)
        if values.dtype != self.dtype:
            raise TypeError(f"flat_params must have the model's dtype {self.dtype.name}, got "
                            f"{values.dtype.name}; convert with .astype(np.{self.dtype.name})")
        if values.shape != (self.n_params,):
            raise ValueError(f"flat_params must have shape ({self.n_params},), got "
                             f"{values.shape}")
        if not all_finite(values):
            raise ValueError("flat_params must be finite; got NaN or inf")
        self._flat_params[...] = values

    @property
    def layout(self):
        """The int64 vector that describes the network to :mod:`fastbp.kernels`
        (MLP: [L, sizes (L + 1), activation codes (L)]; ElmanRNN: [input,
        hidden, output, activation code, output code, readout is "all"]). For
        trainers that call the kernels directly; never modify it."""
        return self._layout

    def copy(self):
        """An independent model with the same architecture and parameters."""
        other = type(self)(**self.get_config())
        other.flat_params[...] = self.flat_params
        return other

    def save(self, path):
        """Write architecture, dtype and parameters to one ``.npz`` file.

        See :func:`fastbp.load`.
        """
        write_model_file(path, self.kind, self.get_config(), {"flat_params": self.flat_params})


def _rng(seed):
    seed = check_seed(seed, "seed", allow_generator=True)
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


def init_recurrent(rng, W, init):
    """Fill a square recurrent matrix W (h, h) in place.

    orthogonal: the Q factor of a standard normal matrix's QR decomposition,
    sign-corrected so that it is uniformly distributed (Saxe et al. 2014;
    Mezzadri 2007); every singular value is 1, so gradients through time
    neither explode nor vanish at the start. identity: W = I (the IRNN of
    Le et al. 2015, for ReLU networks). Other names: as :func:`init_dense`.
    """
    if init == "orthogonal":
        q, r = np.linalg.qr(rng.standard_normal(W.shape))
        W[...] = q * np.sign(np.diag(r))
    elif init == "identity":
        W[...] = np.eye(W.shape[0])
    else:
        init_dense(rng, W, np.empty(0), init)


def init_dense(rng, W, b, init):
    """Fill one dense layer's W (n_out, n_in) and b (n_out,) in place.

    xavier: W ~ U(-r, r), r = sqrt(6 / (n_in + n_out)) (Glorot & Bengio 2010), b = 0.
    he: W ~ N(0, 2 / n_in) (He et al. 2015), b = 0.
    uniform: W, b ~ U(-1/sqrt(n_in), 1/sqrt(n_in)) (torch.nn.Linear's default).
    Values are drawn in float64, so a seed gives the same model in either dtype
    up to rounding.
    """
    n_out, n_in = W.shape
    if init == "xavier":
        r = np.sqrt(6.0 / (n_in + n_out))
        W[...] = rng.uniform(-r, r, size=W.shape)
        b[...] = 0.0
    elif init == "he":
        W[...] = rng.normal(0.0, np.sqrt(2.0 / n_in), size=W.shape)
        b[...] = 0.0
    else:
        r = 1.0 / np.sqrt(n_in)
        W[...] = rng.uniform(-r, r, size=W.shape)
        b[...] = rng.uniform(-r, r, size=b.shape)


class MLP(_Model):
    """Fully connected feed-forward network.

    h_0 = x;  h_l = f_l(W_l h_{l-1} + b_l), l = 1..L.

    Parameters
    ----------
    sizes : sequence of int
        Layer widths [n_inputs, hidden..., n_outputs]; at least two entries.
    activation : str or sequence of str
        Hidden activation(s): 'sigmoid', 'tanh', 'relu', 'leaky_relu'
        (slope 0.01), 'identity'; one name for every hidden layer or one per
        hidden layer (len(sizes) - 2 names).
    output : str
        Output activation: 'identity', 'sigmoid' or 'softmax'.
    dtype : np.float32 or np.float64
    seed : int, numpy Generator or None
        Seed of the initialisation.
    init : {'xavier', 'he', 'uniform'}
        See :func:`init_dense`.

    Attributes
    ----------
    flat_params : ndarray (n_params,)
        The one buffer holding every parameter: W_1..W_L, then b_1..b_L.
        Assigning to it copies into the buffer (see :attr:`flat_params`).
    params : list of ndarray
        [W_1, b_1, ..., W_L, b_L], W_l of shape (sizes[l], sizes[l-1]), b_l of
        shape (sizes[l],); views into ``flat_params``.
    max_layer_size : int
        The largest weight matrix's entry count (decides :meth:`blas`).
    """

    kind = "MLP"

    def __init__(self, sizes, activation="relu", output="identity", dtype=np.float32,
                 seed=None, init="xavier"):
        try:
            sizes = list(sizes)
        except TypeError:
            raise TypeError(f"sizes must be a sequence of positive integers, got {sizes!r}") from None
        for s in sizes:
            if isinstance(s, bool) or not isinstance(s, numbers.Integral):
                raise TypeError(f"sizes must hold integers, got {s!r} in sizes={sizes}")
        sizes = [int(s) for s in sizes]
        if len(sizes) < 2 or min(sizes) < 1:
            raise ValueError(f"sizes must list at least an input and an output width, all >= 1; "
                             f"got {sizes}")
        n_hidden = len(sizes) - 2
        if isinstance(activation, str):
            activations = [activation] * n_hidden
        elif isinstance(activation, (list, tuple)):
            activations = list(activation)
        else:
            raise TypeError(f"activation must be a name or a list of names (one per hidden "
                            f"layer), got {activation!r}")
        if len(activations) != n_hidden:
            raise ValueError(f"activation lists {len(activations)} names but sizes={sizes} "
                             f"has {n_hidden} hidden layers; give one name per hidden layer")
        codes = [hidden_code(a, "activation") for a in activations]
        codes.append(output_code(output))
        if init not in INITS:
            raise ValueError(f"init={init!r} is not known; expected one of {list(INITS)}")
        self.sizes = sizes
        self.activations = activations
        self.output = output
        self.dtype = check_dtype(dtype)
        self.init = init
        L = len(sizes) - 1
        self._layout = np.array([L] + sizes + codes, dtype=np.int64)
        self.n_weights = sum(sizes[l] * sizes[l + 1] for l in range(L))
        self.n_params = self.n_weights + sum(sizes[1:])
        self.max_layer_size = max(sizes[l] * sizes[l + 1] for l in range(L))
        self._flat_params = np.zeros(self.n_params, dtype=self.dtype)
        self.params = self.views(self.flat_params)
        self._predict_ws = Workspace(self)
        self.initialize(seed)

    # -- storage -------------------------------------------------------------
    def views(self, flat):
        """[W_1, b_1, ..., W_L, b_L] as views into a buffer laid out like flat_params."""
        return dense_views(flat, self.sizes)

    def initialize(self, seed=None):
        """Draw fresh parameters in place (the views in ``params`` stay valid)."""
        rng = _rng(seed)
        for W, b in zip(self.params[0::2], self.params[1::2]):
            init_dense(rng, W, b, self.init)

    @property
    def n_inputs(self):
        return self.sizes[0]

    @property
    def n_outputs(self):
        return self.sizes[-1]

    @property
    def n_layers(self):
        """Number of weight layers L."""
        return len(self.sizes) - 1

    def workspace_size(self, capacity):
        """Length of the kernel workspace for batches of up to ``capacity`` rows."""
        return mlp_workspace_size(self.sizes, capacity)

    def workspace_size_function(self):
        """:meth:`workspace_size` as a function that holds no reference to
        the model: ``f(capacity) -> int``."""
        return functools.partial(mlp_workspace_size, list(self.sizes))

    def blas(self, rows):
        """The kernels' ``blas`` argument for batches of ``rows``: None (plain
        loops, for tiny products) or 1 (BLAS); see :mod:`fastbp.kernels.linalg`."""
        return blas_flag(rows, self.max_layer_size)

    # -- use -----------------------------------------------------------------
    def predict(self, X):
        """Network outputs.

        Parameters
        ----------
        X : ndarray (n_samples, n_inputs) of the model's dtype

        Returns
        -------
        ndarray (n_samples, n_outputs) of the model's dtype; probabilities for
        a softmax or sigmoid output.
        """
        X = check_features(X, self.n_inputs, self.dtype)
        capacity = min(X.shape[0], PREDICT_CHUNK)
        ws = self._predict_ws.get(capacity)
        out = np.empty((X.shape[0], self.n_outputs), dtype=self.dtype)
        mlp_kernels.predict_chunked(X, self.flat_params, ws, self._layout, capacity, out,
                                    self.blas(capacity))
        warn_if_not_finite(out)
        return out

    def get_config(self):
        """Constructor arguments that rebuild this architecture (no parameters)."""
        return {"sizes": list(self.sizes), "activation": list(self.activations),
                "output": self.output, "dtype": self.dtype.name, "init": self.init}

    def __repr__(self):
        acts = self.activations[0] if len(set(self.activations)) == 1 else self.activations
        if not self.activations:
            acts = None
        return (f"MLP({self.sizes}, activation={acts!r}, output={self.output!r}, "
                f"dtype=np.{self.dtype.name}, params={self.n_params})")


READOUTS = ("last", "all")
RECURRENT_INITS = ("orthogonal", "identity") + INITS


def _check_size(value, argument):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{argument} must be a positive integer, got {value!r}")
    if value < 1:
        raise ValueError(f"{argument} must be >= 1, got {value}")
    return int(value)


class ElmanRNN(_Model):
    """Elman (simple) recurrent network.

    h_0 = 0 (or a given state);  h_t = f(W_in x_t + W_rec h_{t-1} + b);
    y_t = g(W_out h_t + b_out), read out at the last step (``readout="last"``,
    one output row per sequence) or at every step (``readout="all"``).

    Parameters
    ----------
    input_size, hidden_size, output_size : int >= 1
        i, h and o: features per time step, state width, outputs per readout.
    activation : str
        Hidden activation f: 'tanh' (default), 'relu', or any other hidden
        activation of :class:`MLP` ('sigmoid', 'leaky_relu', 'identity').
    readout : {'last', 'all'}
        Outputs from the last state only, or from every state.
    output : str
        Output activation g: 'identity' (logits for cross-entropy), 'sigmoid'
        or 'softmax'.
    dtype : np.float32 or np.float64
    seed : int, numpy Generator or None
        Seed of the initialisation.
    init : {'xavier', 'he', 'uniform'}
        Initialisation of W_in, W_out and the biases (see :func:`init_dense`).
    recurrent_init : {'orthogonal', 'identity', 'xavier', 'he', 'uniform'} or None
        Initialisation of W_rec (see :func:`init_recurrent`); None uses
        ``init``.

    Attributes
    ----------
    flat_params : ndarray (n_params,)
        The one buffer: W_in, W_rec, W_out, then b, b_out. Assigning to it
        copies into the buffer (see :attr:`flat_params`).
    params : list of ndarray
        [W_in (h, i), W_rec (h, h), b (h,), W_out (o, h), b_out (o,)], views
        into ``flat_params``.
    max_layer_size : int
        The largest weight matrix's entry count (decides :meth:`blas`).

    Notes
    -----
    Sequences are arrays X of shape (n_sequences, T, input_size); every
    sequence of one array has the same length T.
    """

    kind = "ElmanRNN"

    def __init__(self, input_size, hidden_size, output_size, activation="tanh", readout="last",
                 output="identity", dtype=np.float32, seed=None, init="xavier",
                 recurrent_init=None):
        i = _check_size(input_size, "input_size")
        h = _check_size(hidden_size, "hidden_size")
        o = _check_size(output_size, "output_size")
        act = hidden_code(activation, "activation")
        out = output_code(output)
        if readout not in READOUTS:
            raise ValueError(f"readout={readout!r} is not known; expected 'last' (one output "
                             f"per sequence) or 'all' (one output per time step)")
        if init not in INITS:
            raise ValueError(f"init={init!r} is not known; expected one of {list(INITS)}")
        if recurrent_init is not None and recurrent_init not in RECURRENT_INITS:
            raise ValueError(f"recurrent_init={recurrent_init!r} is not known; expected None "
                             f"or one of {list(RECURRENT_INITS)}")
        self.input_size, self.hidden_size, self.output_size = i, h, o
        self.activation = activation
        self.readout = readout
        self.output = output
        self.dtype = check_dtype(dtype)
        self.init = init
        self.recurrent_init = recurrent_init
        self._layout = np.array([i, h, o, act, out, readout == "all"], dtype=np.int64)
        self.n_weights = h * i + h * h + o * h
        self.n_params = self.n_weights + h + o
        self.max_layer_size = max(h * i, h * h, o * h)
        self._flat_params = np.zeros(self.n_params, dtype=self.dtype)
        self.params = self.views(self.flat_params)
        self._predict_ws = Workspace(self)
        self.initialize(seed)

    # -- storage -------------------------------------------------------------
    def views(self, flat):
        """[W_in, W_rec, b, W_out, b_out] as views into a buffer laid out like
        flat_params (weights W_in, W_rec, W_out first, then b, b_out)."""
        i, h, o = self.input_size, self.hidden_size, self.output_size
        w_rec = h * i
        w_out = w_rec + h * h
        nw = self.n_weights
        return [flat[:w_rec].reshape(h, i), flat[w_rec:w_out].reshape(h, h), flat[nw:nw + h],
                flat[w_out:nw].reshape(o, h), flat[nw + h:nw + h + o]]

    def initialize(self, seed=None):
        """Draw fresh parameters in place (the views in ``params`` stay valid)."""
        rng = _rng(seed)
        W_in, W_rec, b, W_out, b_out = self.params
        init_dense(rng, W_in, b, self.init)
        init_recurrent(rng, W_rec, self.recurrent_init or self.init)
        init_dense(rng, W_out, b_out, self.init)

    @property
    def n_inputs(self):
        """Features per time step (input_size)."""
        return self.input_size

    @property
    def n_outputs(self):
        """Outputs per readout (output_size)."""
        return self.output_size

    def workspace_size(self, capacity, steps):
        """Length of the kernel workspace for up to ``capacity`` sequences of
        up to ``steps`` time steps."""
        return rnn_kernels.workspace_size(self.input_size, self.hidden_size, self.output_size,
                                          self.readout == "all", capacity, steps)

    def workspace_size_function(self):
        """:meth:`workspace_size` as a function that holds no reference to
        the model: ``f(capacity, steps) -> int``."""
        return functools.partial(rnn_kernels.workspace_size, self.input_size, self.hidden_size,
                                 self.output_size, self.readout == "all")

    def blas(self, rows, steps):
        """The kernels' ``blas`` argument (None or 1) for ``rows`` sequences of
        ``steps`` steps; see :mod:`fastbp.kernels.linalg`."""
        return blas_flag(rows * steps, self.max_layer_size)

    # -- use -----------------------------------------------------------------
    def predict(self, X, h0=None, return_state=False):
        """Network outputs for a batch of sequences.

        Parameters
        ----------
        X : ndarray (n_sequences, T, input_size) of the model's dtype
        h0 : ndarray (n_sequences, hidden_size) of the model's dtype, or None
            Initial states; None starts from zeros. Pass the state returned by
            an earlier call to continue those sequences.
        return_state : bool
            Also return the final states h_T.

        Returns
        -------
        outputs : ndarray (n_sequences, output_size) for readout 'last', or
            (n_sequences, T, output_size) for 'all'; probabilities for a
            softmax or sigmoid output.
        state : ndarray (n_sequences, hidden_size)
            Only with ``return_state=True``.
        """
        X = check_sequences(X, self.input_size, self.dtype)
        n, T = X.shape[0], X.shape[1]
        if h0 is None:
            h0 = np.empty((0, 0), dtype=self.dtype)
        else:
            h0 = check_features(h0, self.hidden_size, self.dtype, "h0",
                                shape_hint="(n_sequences, hidden_size)")
            if h0.shape[0] != n:
                raise ValueError(f"h0 has {h0.shape[0]} states (shape {h0.shape}) but X has "
                                 f"{n} sequences; expected shape ({n}, {self.hidden_size})")
        capacity = min(n, max(1, PREDICT_CHUNK // T))
        ws = self._predict_ws.get(capacity, T)
        per_seq = T if self.readout == "all" else 1
        out = np.empty((n * per_seq, self.output_size), dtype=self.dtype)
        state = np.empty((n, self.hidden_size), dtype=self.dtype)
        rnn_kernels.predict_chunked(X, h0, self.flat_params, ws, self._layout, capacity, out,
                                    state, self.blas(capacity, T))
        warn_if_not_finite(out)
        if self.readout == "all":
            out = out.reshape(n, T, self.output_size)
        return (out, state) if return_state else out

    def get_config(self):
        """Constructor arguments that rebuild this architecture (no parameters)."""
        return {"input_size": self.input_size, "hidden_size": self.hidden_size,
                "output_size": self.output_size, "activation": self.activation,
                "readout": self.readout, "output": self.output, "dtype": self.dtype.name,
                "init": self.init, "recurrent_init": self.recurrent_init}

    def __repr__(self):
        return (f"ElmanRNN(input_size={self.input_size}, hidden_size={self.hidden_size}, "
                f"output_size={self.output_size}, activation={self.activation!r}, "
                f"readout={self.readout!r}, output={self.output!r}, "
                f"dtype=np.{self.dtype.name}, params={self.n_params})")

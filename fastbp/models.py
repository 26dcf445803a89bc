"""Models: shapes and storage. Every model keeps all its parameters in ONE
flat buffer (weights first, then biases) and exposes them as views."""
import numbers

import numpy as np

from ._validation import check_dtype, check_features, check_seed
from .activations import hidden_code, output_code
from .kernels import mlp as mlp_kernels
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


class Workspace:
    """A model's kernel workspace, grown (never shrunk) to the largest batch
    seen, so that repeated calls with any batch size allocate nothing."""

    def __init__(self, model):
        self.model = model
        self.capacity = 0
        self.buffer = np.empty(0, dtype=model.dtype)

    def get(self, rows):
        """The flat workspace, holding batches of at least ``rows`` rows."""
        if rows > self.capacity:
            self.buffer = np.empty(self.model.workspace_size(rows), dtype=self.model.dtype)
            self.capacity = rows
        return self.buffer


def _rng(seed):
    seed = check_seed(seed, "seed", allow_generator=True)
    return seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)


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


class MLP:
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
    params : list of ndarray
        [W_1, b_1, ..., W_L, b_L], W_l of shape (sizes[l], sizes[l-1]), b_l of
        shape (sizes[l],); views into ``flat_params``.
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
        self._max_layer_size = max(sizes[l] * sizes[l + 1] for l in range(L))
        self.flat_params = np.zeros(self.n_params, dtype=self.dtype)
        self.params = self._views(self.flat_params)
        self._predict_ws = Workspace(self)
        self.initialize(seed)

    # -- storage -------------------------------------------------------------
    def _views(self, flat):
        """[W_1, b_1, ..., W_L, b_L] as views into a buffer laid out like flat_params."""
        views = []
        woff, boff = 0, self.n_weights
        for n_in, n_out in zip(self.sizes[:-1], self.sizes[1:]):
            views.append(flat[woff:woff + n_in * n_out].reshape(n_out, n_in))
            views.append(flat[boff:boff + n_out])
            woff += n_in * n_out
            boff += n_out
        return views

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

    def _blas(self, rows):
        """Kernel ``blas`` argument for batches of ``rows`` (see fastbp.kernels.linalg)."""
        return blas_flag(rows, self._max_layer_size)

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
                                    self._blas(capacity))
        return out

    def get_config(self):
        """Constructor arguments that rebuild this architecture (no parameters)."""
        return {"sizes": list(self.sizes), "activation": list(self.activations),
                "output": self.output, "dtype": self.dtype.name, "init": self.init}

    def copy(self):
        """An independent model with the same architecture and parameters."""
        cfg = self.get_config()
        other = type(self)(**cfg)
        other.flat_params[...] = self.flat_params
        return other

    def save(self, path):
        """Write architecture, dtype and parameters to one ``.npz`` file.

        See :func:`fastbp.load`.
        """
        from .io import save_model
        save_model(self, path)

    def __repr__(self):
        acts = self.activations[0] if len(set(self.activations)) == 1 else self.activations
        if not self.activations:
            acts = None
        return (f"MLP({self.sizes}, activation={acts!r}, output={self.output!r}, "
                f"dtype=np.{self.dtype.name}, params={self.n_params})")

"""Difference target propagation (Lee, Zhang, Fischer, Bengio, ECML-PKDD 2015).

For an MLP h_0 = x, a_l = W_l h_{l-1} + b_l, h_l = f_l(a_l), l = 1..L, each
layer receives a target instead of a gradient:

* top target  h^_{L-1} = h_{L-1} - target_step * dL/dh_{L-1}, with L the
  per-sample loss (so target_step does not depend on the batch size); the
  output layer trains on the gradient of the mean loss;
* lower targets through learned inverses g_l(h) = tanh(V_l h + c_l),
  V_l of shape (n_{l-1}, n_l), l = 2..L-1 (no g_1), with the difference
  correction  h^_{l-1} = h_{l-1} + g_l(h^_l) - g_l(h_l)  (``difference=False``:
  plain target propagation h^_{l-1} = g_l(h^_l));
* hidden layer l minimises mean_batch 1/2 ||f_l(W_l h_{l-1} + b_l) - h^_l||^2
  over its own (W_l, b_l), inputs and targets held constant;
* inverse l is a denoiser: it minimises
  mean_batch 1/2 ||g_l(f_l(h_{l-1} + eps)) - (h_{l-1} + eps)||^2 over
  (V_l, c_l), eps ~ N(0, sigma^2), with its own optimizer.

The forward direction goes through the usual weight decay, clipping,
finiteness check and optimizer update (:func:`fastbp.kernels.optim.finish_step`),
the inverse direction through the same tail with the inverse optimizer (no
decay, no clipping).
"""
import numpy as np

from fastbp.errors import DivergenceError
from fastbp.kernels import codes
from fastbp.kernels.codes import IDENTITY, TANH
from fastbp.kernels.random import new_state as new_rng_state
from fastbp.optim import get_optimizer
from fastbp.trainer import Trainer
from fastbp.validation import (check_features, check_nonnegative_float, check_positive_float,
                               check_seed)

from . import _dtp_kernels as K
from . import _kernels

__all__ = ["DTPTrainer"]

_INVERSE_ACTIVATIONS = {"tanh": TANH, "identity": IDENTITY}


def update_alone(trainer, X, step, what):
    """One update of a target-propagation trainer's extra parameter set alone
    on the batch X: ``step(trainer._kernel_args(rows), x, rows)`` returns
    (its loss before the update, status). Returns that loss as a float;
    raises DivergenceError (nothing changed) when the step failed."""
    X = check_features(X, trainer.model.n_inputs, trainer.model.dtype, "X")
    rows = X.shape[0]
    loss, status = step(trainer._kernel_args(rows), X.reshape(-1), rows)
    if status != codes.OK:
        raise DivergenceError(f"a non-finite loss or update of the {what}; the {what} were "
                              "left as they were")
    return float(loss)


def glorot_uniform(rng, matrices):
    """Fill each (n_out, n_in) matrix in place with U(-r, r), r = sqrt(6 / (n_out + n_in))."""
    for M in matrices:
        r = np.sqrt(6.0 / (M.shape[0] + M.shape[1]))
        M[...] = rng.uniform(-r, r, size=M.shape)


class DTPTrainer(Trainer):
    """Difference target propagation (Lee et al. 2015) for :class:`fastbp.MLP`.

    Parameters
    ----------
    model : fb.MLP
    loss, optimizer, weight_decay, clip_norm
        As for :class:`fastbp.Trainer` (they apply to the forward weights).
    target_step : float > 0
        eta_hat: the top target is h_{L-1} - target_step * dL/dh_{L-1}, L the
        per-sample loss.
    sigma : float >= 0
        Standard deviation of the denoising noise of the inverses.
    inverse_optimizer : fb.SGD, fb.Adam, name or None (Adam(1e-3))
        Bound to the inverse buffer; its own state.
    difference : bool
        Difference correction (DTP) or plain target propagation.
    schedule : {'alternate', 'joint'}
        ``fit``: per epoch one pass training the inverses then one pass training
        the forward weights ('alternate', as in the paper), or both on every
        batch ('joint'). ``step`` always does one joint update.
    seed : int or None
        Seed of the inverses' initialisation and of the denoising noise
        (the trainer's own generator, saved with its state, so the same
        seed gives the same run wherever and whenever it is trained).
    inverse_activation : {'tanh', 'identity'}
        f_inv in g_l(h) = f_inv(V_l h + c_l); 'identity' gives linear inverses
        (e.g. to substitute exact inverses of a linear network in tests).

    Attributes
    ----------
    inverse_params : ndarray
        Flat buffer: V_2..V_{L-1} then c_2..c_{L-1}.
    inverses : list of ndarray
        [V_2, c_2, ..., V_{L-1}, c_{L-1}], views into ``inverse_params``.

    Examples
    --------
    Both updates on every batch, after a few denoising updates of the
    inverses alone:

    >>> import alternatives
    >>> model = fb.MLP([64, 128, 128, 10], activation="tanh", output="softmax", seed=0)
    >>> dtp = alternatives.DTPTrainer(model, schedule="joint", seed=0)
    >>> for start in range(0, 256, 32):                             # doctest: +SKIP
    ...     dtp.train_inverses(X[start:start + 32])
    >>> history = dtp.fit(X, y, epochs=20, batch_size=32)          # doctest: +SKIP
    """

    name = "dtp"
    repr_options = ("target_step", "sigma", "inverse_optimizer", "difference", "schedule",
                    "seed")
    search_optimizers = {"inverse_lr": "inverse_optimizer"}

    def __init__(self, model, loss=None, optimizer=None, weight_decay=0.0, clip_norm=None,
                 target_step=0.1, sigma=0.1, inverse_optimizer=None, difference=True,
                 schedule="alternate", seed=None, inverse_activation="tanh"):
        self.target_step = check_positive_float(target_step, "target_step")
        self.sigma = check_nonnegative_float(sigma, "sigma")
        if schedule not in ("alternate", "joint"):
            raise ValueError(f"schedule={schedule!r}; expected 'alternate' or 'joint'")
        if inverse_activation not in _INVERSE_ACTIVATIONS:
            raise ValueError(f"inverse_activation={inverse_activation!r}; expected one of "
                             f"{list(_INVERSE_ACTIVATIONS)}")
        self.schedule = schedule
        self.difference = bool(difference)
        self.inverse_activation = inverse_activation
        self.seed = check_seed(seed, "seed")
        inverse_optimizer = get_optimizer(inverse_optimizer)   # checked before any binding
        super().__init__(model, loss=loss, optimizer=optimizer, weight_decay=weight_decay,
                         clip_norm=clip_norm)
        layout = model.layout
        self._inverse = self.add_parameter_set("inverse", int(K.inverse_size(layout)),
                                               inverse_optimizer, "inverse_optimizer")
        self.inverse_optimizer = self._inverse.optimizer
        self.inverse_params = self._inverse.params
        self.inverses = self._inverse_views(self.inverse_params)
        rng = np.random.default_rng(self.seed)
        glorot_uniform(rng, self.inverses[0::2])
        self._rng = new_rng_state(int(rng.integers(0, 2**63 - 1)))
        self._inv_code = _INVERSE_ACTIVATIONS[inverse_activation]
        self._mw = int(K.max_width(layout))
        self._tw = np.zeros(0, dtype=model.dtype)
        self._args = None

    @classmethod
    def search_space(cls, task=None, model=None):
        """The common space (see :meth:`fastbp.Trainer.search_space`),
        ``target_step`` in [0.01, 1] and the noise ``sigma`` in [0.001, 0.5]
        (both log-uniform) and, when the model has inverses (3 layers or
        more), ``inverse_lr``: the rate of an Adam ``inverse_optimizer``, in
        [1e-4, 1e-2]."""
        from fastbp import LogUniform
        space = super().search_space(task, model)
        space["target_step"] = LogUniform(0.01, 1.0)
        space["sigma"] = LogUniform(1e-3, 0.5)
        if model is None or model.n_layers >= 3:
            space["inverse_lr"] = LogUniform(1e-4, 1e-2)
        return space


    def _inverse_views(self, flat):
        sizes = self.model.sizes
        L = len(sizes) - 1
        Vs, cs, off = [], [], 0
        for l in range(2, L):
            n_prev, n_l = sizes[l - 1], sizes[l]
            Vs.append(flat[off:off + n_prev * n_l].reshape(n_prev, n_l))
            off += n_prev * n_l
        for l in range(2, L):
            n_prev = sizes[l - 1]
            cs.append(flat[off:off + n_prev])
            off += n_prev
        out = []
        for V, c in zip(Vs, cs):
            out += [V, c]
        return out

    def set_exact_linear_inverses(self):
        """Testing hook for linear networks with ``inverse_activation='identity'``:
        V_l = W_l^+ (pseudo-inverse; W_l^T for orthogonal W_l), c_l = -V_l b_l,
        so that g_l(f_l(h)) = h whenever f_l is the identity and W_l is invertible."""
        if self.inverse_activation != "identity":
            raise ValueError("exact linear inverses need inverse_activation='identity'")
        p = self.model.params
        for i, l in enumerate(range(2, self.model.n_layers)):
            W, b = p[2 * (l - 1)], p[2 * (l - 1) + 1]
            V = np.linalg.pinv(W.astype(np.float64))
            self.inverses[2 * i][...] = V
            self.inverses[2 * i + 1][...] = -V @ b.astype(np.float64)

    # -- buffers -------------------------------------------------------------------
    def _target_ws(self, rows):
        need = 4 * rows * self._mw
        if self._tw.shape[0] < need:
            self._tw = np.zeros(need, dtype=self.model.dtype)
        return self._tw

    # -- steps ---------------------------------------------------------------------
    def _kernel_args(self, rows):
        """The kernels' :data:`~alternatives._dtp_kernels.DTPArgs` for a batch of
        ``rows``, rebuilt only when a buffer grows or the BLAS switch changes."""
        m = self.model
        ws, tw, blas = self.workspace(rows), self._target_ws(rows), m.blas(rows)
        args = self._args
        if args is None or args.ws is not ws or args.tw is not tw or args.blas != blas:
            # without inverses (one hidden layer) `fit_epochs` makes one pass per
            # epoch, which must then train the forward weights, not the inverses
            alternate = self.schedule == "alternate" and self.inverse_params.shape[0] > 0
            args = self._args = K.DTPArgs(self.step_arrays, self._inverse.step_arrays, ws, tw,
                                          m.layout, self.target_step, self.difference,
                                          self.sigma, self._inv_code, alternate, self._rng,
                                          blas)
        return args

    def train_batch(self, X, labels, targets):
        rows = X.shape[0]
        return K.joint_step(self._kernel_args(rows), X.reshape(-1), labels, targets, rows,
                            True)

    def fit_epochs(self, data, plan, stats):
        args = self._kernel_args(plan.batch_size)
        passes = 2 if args.alternate else 1
        return _kernels.train_epochs(args, data, plan._replace(passes=passes), stats)

    def train_inverses(self, X):
        """One update of the inverses on the batch X, a (batch, n_inputs)
        array of the model's dtype (forward weights unchanged). Returns the
        mean reconstruction loss before the update (a float)."""
        return update_alone(self, X, K.inverse_step, "inverses")

    def state_arrays(self):
        """The optimizer's and the inverses' state (see
        :meth:`fastbp.Trainer.state_arrays`) and the noise generator's state."""
        return {**super().state_arrays(), "rng_state": self._rng}

    def update_directions(self, X, y):
        """The DTP direction of the forward parameters on one batch (before
        clipping), without updating anything.

        Returns
        -------
        list of ndarray
            Fresh arrays aligned with ``model.params``: [dW_1, db_1, ..., dW_L,
            db_L]: the local target-loss gradients of the hidden layers and the
            mean-loss gradient of the output layer, plus ``weight_decay * W_l``.
        """
        X, labels, targets = self.prepare(X, y)
        rows = X.shape[0]
        K.forward_directions(self._kernel_args(rows), X.reshape(-1), labels, targets, rows)
        return self.directions_from_grads()

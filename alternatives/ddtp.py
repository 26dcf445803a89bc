"""DDTP-linear: direct difference target propagation with linear feedback
(Meulemans, Carzaniga, Suykens, Sacramento, Grewe, NeurIPS 2020, "A theoretical
framework for target propagation").

For an MLP h_0 = x, a_l = W_l h_{l-1} + b_l, h_l = f_l(a_l), l = 1..L:

* output target  tau_L = a_L - target_step * dL/da_L, L the per-sample loss
  (so target_step does not depend on the batch size); the output layer trains
  on the gradient of the mean loss;
* each hidden layer l = 1..L-1 has a direct linear feedback Q_l of shape
  (n_l, n_L) from the output pre-activation:
  h^_l = h_l + Q_l tau_L - Q_l a_L  (= h_l - target_step * Q_l dL/da_L);
* hidden layer l minimises mean_batch 1/2 ||f_l(W_l h_{l-1} + b_l) - h^_l||^2
  over its own (W_l, b_l), inputs and targets held constant;
* Q_l minimises the difference reconstruction loss
  mean_batch 1/2 ||Q_l (a_L(h_l + eps) - a_L(h_l)) - eps||^2, eps ~ N(0, sigma^2),
  a_L(.) layers l+1..L applied to h_l (up to the output pre-activation), with
  its own optimizer.
"""
import numpy as np

from fastbp.validation import (
    check_features,
    check_int_at_least,
    check_nonnegative_float,
    check_positive_float,
    check_seed,
)
from fastbp.kernels import codes
from fastbp.kernels.mlp import forward
from fastbp.kernels.random import fill_normal
from fastbp.kernels.random import new_state as new_rng_state
from fastbp.optim import Adam, get_optimizer
from fastbp.trainer import Trainer

from . import _ddtp_kernels as K
from . import _kernels
from ._dtp_kernels import max_width
from .target_propagation import glorot_uniform, update_alone

__all__ = ["DDTPTrainer"]


class DDTPTrainer(Trainer):
    """DDTP-linear (Meulemans et al. 2020) for :class:`fastbp.MLP`.

    Why it fixes DTP's weakness: DTP sends targets down a chain of learned
    layer-wise inverses, so inversion errors compound with depth and its
    targets approximate Gauss-Newton targets only when those inverses are
    exact. DDTP-linear instead maps the output error straight to every hidden
    layer with a direct feedback Q_l trained on the difference reconstruction
    loss, which drives Q_l towards a (damped) pseudo-inverse of the Jacobian
    d a_L / d h_l and so aligns each hidden target with the Gauss-Newton
    (gradient-related) direction without any chain of learned inverses.

    Parameters
    ----------
    model, loss, optimizer, weight_decay, clip_norm
        As for :class:`DTPTrainer`.
    target_step : float > 0
        beta: tau_L = a_L - target_step * dL/da_L, L the per-sample loss.
    sigma : float >= 0
        Standard deviation of the feedback-training noise.
    feedback_optimizer : fb.SGD, fb.Adam, name or None (Adam(1e-3))
        Bound to the feedback buffer; its own state (no decay, no clipping).
    feedback_seed : int or None
        Seed of the feedback initialisation (Glorot uniform) and of the
        feedback-training noise (the trainer's own generator, saved with its
        state, so the same seed gives the same run wherever it is trained).
    pretrain_epochs : int >= 0
        Feedback-only epochs (same data, batch size and shuffling) run at the
        start of the first ``fit`` of this trainer, before any forward update;
        later ``fit`` calls do not repeat them. ``step`` never pretrains.

    Attributes
    ----------
    feedback_params : ndarray
        Flat buffer: Q_1..Q_{L-1}, row-major.
    feedback : list of ndarray
        [Q_1, ..., Q_{L-1}], Q_l of shape (n_l, n_L), views into ``feedback_params``.

    Notes
    -----
    ``step`` and every ``fit`` epoch make one joint update per batch: the
    forward weights (targets from the feedback before the step) and the
    feedback, both from the same forward pass, all-or-nothing (a non-finite
    loss or update in either leaves everything unchanged).

    Examples
    --------
    Two feedback-only epochs before the first joint one; the hidden targets
    of a batch:

    >>> import alternatives
    >>> model = fb.MLP([64, 128, 128, 10], activation="tanh", output="softmax", seed=0)
    >>> ddtp = alternatives.DDTPTrainer(model, pretrain_epochs=2, feedback_seed=0)
    >>> history = ddtp.fit(X, y, epochs=20, batch_size=32)         # doctest: +SKIP
    >>> h1, h2 = ddtp.hidden_targets(X[:8], y[:8])                  # doctest: +SKIP
    """

    name = "ddtp"
    repr_options = ("target_step", "sigma", "feedback_optimizer", "pretrain_epochs",
                    "feedback_seed")
    search_optimizers = {"feedback_lr": "feedback_optimizer"}

    def __init__(self, model, loss=None, optimizer=None, weight_decay=0.0, clip_norm=None,
                 target_step=0.1, sigma=0.1, feedback_optimizer=None, feedback_seed=None,
                 pretrain_epochs=1):
        self.target_step = check_positive_float(target_step, "target_step")
        self.sigma = check_nonnegative_float(sigma, "sigma")
        self.pretrain_epochs = check_int_at_least(pretrain_epochs, "pretrain_epochs", 0)
        self.feedback_seed = check_seed(feedback_seed, "feedback_seed")
        f_opt = Adam(1e-3) if feedback_optimizer is None else get_optimizer(feedback_optimizer)
        super().__init__(model, loss=loss, optimizer=optimizer, weight_decay=weight_decay,
                         clip_norm=clip_norm)
        layout = model.layout
        self._feedback = self.add_parameter_set("feedback", int(K.feedback_size(layout)), f_opt,
                                                "feedback_optimizer")
        self.feedback_optimizer = f_opt
        self.feedback_params = self._feedback.params
        self.feedback = self._feedback_views(self.feedback_params)
        rng = np.random.default_rng(self.feedback_seed)
        glorot_uniform(rng, self.feedback)
        self._rng = new_rng_state(int(rng.integers(0, 2**63 - 1)))
        self._mw = int(max_width(layout))
        self._nh = sum(model.sizes[1:-1])
        self._rows = 0
        self._tgt = self._eps = self._tw = np.zeros(0, dtype=model.dtype)
        self._pretrained = np.zeros(1, dtype=np.int8)  # array: saved by save_state
        self._args = None

    @classmethod
    def search_space(cls, task=None, model=None):
        """The common space (see :meth:`fastbp.Trainer.search_space`),
        ``target_step`` in [0.01, 1] and the noise ``sigma`` in [0.001, 0.5]
        (both log-uniform), and ``feedback_lr``: the rate of an Adam
        ``feedback_optimizer``, in [1e-4, 1e-2]."""
        from fastbp import LogUniform
        space = super().search_space(task, model)
        space["target_step"] = LogUniform(0.01, 1.0)
        space["sigma"] = LogUniform(1e-3, 0.5)
        space["feedback_lr"] = LogUniform(1e-4, 1e-2)
        return space


    def _feedback_views(self, flat):
        sizes = self.model.sizes
        k = sizes[-1]
        out, off = [], 0
        for n_l in sizes[1:-1]:
            out.append(flat[off:off + n_l * k].reshape(n_l, k))
            off += n_l * k
        return out

    def _blocks(self, flat, rows):
        out, off = [], 0
        for n_l in self.model.sizes[1:-1]:
            out.append(flat[off:off + rows * n_l].reshape(rows, n_l))
            off += rows * n_l
        return out

    # -- buffers -------------------------------------------------------------------
    def _buffers(self, rows):
        """(targets, noise, scratch) buffers for ``rows`` rows, grown, never per step."""
        if rows > self._rows:
            dt = self.model.dtype
            self._tgt = np.zeros(rows * self._nh, dtype=dt)
            self._eps = np.zeros(rows * self._nh, dtype=dt)
            self._tw = np.zeros(3 * rows * self._mw, dtype=dt)
            self._rows = rows
        return self._tgt, self._eps, self._tw

    # -- steps ---------------------------------------------------------------------
    def _kernel_args(self, rows):
        """The kernels' :data:`~alternatives._ddtp_kernels.DDTPArgs` for a batch
        of ``rows``, rebuilt only when a buffer grows or the BLAS switch changes."""
        m = self.model
        ws, blas = self.workspace(rows), m.blas(rows)
        tgt, eps, tw = self._buffers(rows)
        args = self._args
        if args is None or args.ws is not ws or args.tw is not tw or args.blas != blas:
            args = self._args = K.DDTPArgs(self.step_arrays, self._feedback.step_arrays, ws,
                                           tgt, eps, tw, m.layout, self.target_step,
                                           self.sigma, self._rng, blas, False)
        return args

    def train_batch(self, X, labels, targets):
        rows = X.shape[0]
        return K.joint_step(self._kernel_args(rows), X.reshape(-1), labels, targets, rows)

    def fit_epochs(self, data, plan, stats):
        args = self._kernel_args(plan.batch_size)
        if not self._pretrained[0] and self.pretrain_epochs and self.feedback_params.size:
            # its own shuffling stream, so the joint epochs see the same orders either way
            pre = plan._replace(n_epochs=self.pretrain_epochs, first_epoch=0,
                                seed=plan.seed ^ np.uint64(0x5DEECE66D))
            status, _ = _kernels.train_epochs(args._replace(pretrain=True), data, pre,
                                              np.zeros((self.pretrain_epochs, 4)))
            if status != codes.OK:
                stats[0] = (0.0, 0.0, 0, np.nan)
                return status, 0
        status, ran = _kernels.train_epochs(args, data, plan, stats)
        if status == codes.OK or ran > 0:
            self._pretrained[0] = 1
        return status, ran

    def train_feedback(self, X):
        """One update of the feedback on the batch X (forward weights unchanged).
        Returns the mean difference reconstruction loss before the update."""
        return update_alone(self, X, K.feedback_step, "feedback matrices")

    def feedback_directions(self, X, noise=None):
        """The feedback-training direction on the batch X, without updating anything.

        Parameters
        ----------
        X : ndarray (rows, n_inputs)
        noise : list of ndarray or None
            One (rows, n_l) perturbation per hidden layer; None draws
            N(0, sigma^2) noise.

        Returns
        -------
        (list of ndarray, float)
            [dQ_1, ..., dQ_{L-1}] (fresh arrays) and the mean reconstruction loss.
        """
        m = self.model
        X = check_features(X, m.n_inputs, m.dtype, "X")
        rows = X.shape[0]
        args = self._kernel_args(rows)
        if noise is None:
            fill_normal(args.eps, rows * self._nh, self.sigma, self._rng)
        else:
            blocks = self._blocks(args.eps, rows)
            if len(noise) != len(blocks):
                raise ValueError(f"noise must hold {len(blocks)} arrays, got {len(noise)}")
            for b, e in zip(blocks, noise):
                b[...] = e
        forward(X.reshape(-1), rows, m.flat_params, m.layout, args.ws, args.blas)
        loss = K.feedback_directions(args, rows)
        return [g.copy() for g in self._feedback_views(self._feedback.grads)], float(loss)

    def _forward_directions(self, X, y):
        X, labels, targets = self.prepare(X, y)
        rows = X.shape[0]
        K.forward_directions(self._kernel_args(rows), X.reshape(-1), labels, targets, rows)
        return rows

    def hidden_targets(self, X, y):
        """The hidden targets [h^_1, ..., h^_{L-1}] (fresh (rows, n_l) arrays) on
        one batch, without updating anything."""
        rows = self._forward_directions(X, y)
        return [t.copy() for t in self._blocks(self._tgt, rows)]

    def state_arrays(self):
        """The optimizer's and the feedback's state (see
        :meth:`fastbp.Trainer.state_arrays`), and whether the feedback
        pre-training has run, and the noise generator's state."""
        return {**super().state_arrays(), "pretrained": self._pretrained,
                "rng_state": self._rng}

    def update_directions(self, X, y):
        """The DDTP direction of the forward parameters on one batch, laid out
        and made up as :meth:`DTPTrainer.update_directions`'s (hidden targets
        from the direct feedback instead of the inverses), without updating
        anything."""
        self._forward_directions(X, y)
        return self.directions_from_grads()

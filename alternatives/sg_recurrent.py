"""Synthetic gradients for truncated backpropagation through time in
:class:`fastbp.ElmanRNN` (Jaderberg et al. 2017, "Decoupled neural interfaces
using synthetic gradients", section 3.1).

Truncated BPTT cuts the gradient at every window boundary, so a window never
learns how its last state affects later losses. Here a small network M
predicts that missing gradient from the state: at the end of each window
(except the last) its prediction, scaled, is injected as dJ/dh_{t1} into the
window's BPTT, and M is trained toward the gradient that reaches the window's
first state (the window's own losses plus the injected prediction, i.e.
bootstrapped in time, like a temporal-difference value estimate).
"""
import numpy as np

from fastbp.validation import (
    check_int_at_least,
    check_nonnegative_float,
    check_positive_int,
    check_seed,
)
from fastbp.kernels import codes
from fastbp.kernels.linalg import blas_flag
from fastbp.models import ElmanRNN, dense_views, init_dense, mlp_workspace_size
from fastbp.optim import Adam, get_optimizer
from fastbp.trainer import IN_ORDER, Trainer

from . import _sg_rnn_kernels as K

__all__ = ["RecurrentSyntheticGradientTrainer"]

_NO_LABELS = np.empty(0, dtype=np.int64)

#: the synthetic-gradient modules' default Adam rate (raised to the network's
#: own Adam rate when that is higher): modules slower than the network leave
#: the layers below them following stale or zero synthetic gradients
MODULE_LR = 1e-2


def default_module_optimizer(optimizer):
    """The default optimizer of synthetic-gradient modules: ``fb.Adam(lr)``
    with ``lr = max(MODULE_LR, optimizer.lr)`` when the network's optimizer
    is an ``fb.Adam``, else ``fb.Adam(MODULE_LR)``, so the modules learn at
    least as fast as the network.

    Parameters
    ----------
    optimizer : fb.SGD, fb.Adam, name or None
        The network's optimizer as given to the trainer (None and names mean
        the optimizer's defaults, Adam(1e-3) for ``"adam"``).

    Returns
    -------
    fb.Adam
        A fresh optimizer (never ``optimizer`` itself).
    """
    lr = MODULE_LR
    if isinstance(optimizer, Adam):
        lr = max(lr, optimizer.lr)
    return Adam(lr)


def add_modules(trainer, size, sg_optimizer, optimizer):
    """Declare a trainer's synthetic-gradient modules: the parameter set
    ``"sg"`` of ``size`` entries, updated by ``sg_optimizer`` (None:
    :func:`default_module_optimizer` of the network's ``optimizer`` as
    given). Sets ``trainer.sg_optimizer`` and ``trainer.sg_params``.

    Returns
    -------
    fastbp.parameter_sets.ParameterSet
    """
    opt = (default_module_optimizer(optimizer) if sg_optimizer is None
           else get_optimizer(sg_optimizer))
    modules = trainer.add_parameter_set("sg", size, opt, "sg_optimizer")
    trainer.sg_optimizer = opt
    trainer.sg_params = modules.params
    return modules


class RecurrentSyntheticGradientTrainer(Trainer):
    """Truncated BPTT with synthetic gradients for :class:`fastbp.ElmanRNN`.

    Usually built through ``alternatives.SyntheticGradientTrainer(rnn, ...,
    truncate=k)``.

    For each batch of sequences the steps are cut into windows of ``truncate``
    steps processed in order, the state carried across (as
    ``fb.BackpropTrainer(rnn, truncate=k)`` does). For window (t0, t1]:

    * dJ/dh_{t1} += sg_scale * M(h_{t1}) / batch, when t1 < T and at least
      ``warmup`` updates have been applied (the synthetic gradient of every
      loss after the window);
    * BPTT through the window, one update of the network;
    * for t0 > 0, M is trained by squared error on the pair (h_{t0}, batch *
      dJ/dh_{t0}): the per-sequence gradient that reached the window's first
      state, which includes the injected prediction (bootstrapping).

    With readout 'last' only the final window has a loss; the earlier windows
    then learn from the synthetic gradient alone, which is what lets the
    network use information from before the final window.

    Parameters
    ----------
    model : fb.ElmanRNN
    loss, optimizer, weight_decay, clip_norm
        As for :class:`fastbp.Trainer` (for the network).
    truncate : int >= 1
        Window length k.
    sg_hidden : int >= 0
        0: M is linear (h -> h); n > 0: one hidden ReLU layer of n units.
        M's last layer starts at zero, so the first predictions are zero.
    sg_optimizer : fb.SGD, fb.Adam, name or None
        M's optimizer; must not be ``optimizer`` itself. None: Adam(1e-2),
        or Adam at the network's rate when the network's Adam is faster
        (`default_module_optimizer`): on the echo task, M at Adam(1e-3)
        lagged the network and reached 0.62 against 0.78 at scale 0.1, 5
        seeds; see docs/synthetic-gradients.md. M reads the state only, never
        a label: what it predicts is the gradient of losses after the window,
        whose labels lie in the future.
    sg_scale : float >= 0
        Factor on the injected prediction (0.1 in the paper's setting; it also
        discounts the bootstrapped future window by window).
    warmup : int >= 0
        Network updates of plain truncated BPTT (nothing injected, M trains)
        before the synthetic gradient is used.
    sg_seed : int or None
        Seed of M's hidden layer initialisation.

    Attributes
    ----------
    sg_params : ndarray
        M's flat parameters (fastbp MLP layout: weights, then biases).
    sg_errors : list of float
        M's mean squared error (1/2 ||M(h) - g||^2 per row) for every epoch of
        ``fit`` (NaN for an epoch in which it did not train).
    """

    name = "sg"
    search_optimizers = {"sg_lr": "sg_optimizer"}
    supported_models = (ElmanRNN,)
    repr_options = ("truncate", "sg_hidden", "sg_scale", "warmup")

    def __init__(self, model, loss=None, optimizer=None, weight_decay=0.0, clip_norm=None,
                 truncate=None, sg_hidden=0, sg_optimizer=None, sg_scale=0.1, warmup=0,
                 sg_seed=None):
        if truncate is None:
            raise ValueError("truncate is required for synthetic-gradient training of a "
                             "recurrent model: give the window length, e.g. truncate=8")
        self.truncate = check_positive_int(truncate, "truncate")
        self.sg_hidden = check_int_at_least(sg_hidden, "sg_hidden", 0)
        self.sg_scale = check_nonnegative_float(sg_scale, "sg_scale")
        self.warmup = check_int_at_least(warmup, "warmup", 0)
        self.sg_seed = check_seed(sg_seed, "sg_seed")
        super().__init__(model, loss=loss, optimizer=optimizer, weight_decay=weight_decay,
                         clip_norm=clip_norm)
        h = model.hidden_size
        sizes = [h, self.sg_hidden, h] if self.sg_hidden else [h, h]
        acts = [codes.RELU] * (len(sizes) - 2) + [codes.IDENTITY]
        self._m_layout = np.array([len(sizes) - 1] + sizes + acts, dtype=np.int64)
        self._m_sizes = sizes
        n_m = sum(a * b for a, b in zip(sizes[:-1], sizes[1:])) + sum(sizes[1:])
        self._m = add_modules(self, n_m, sg_optimizer, optimizer)
        self._m_max_layer = max(a * b for a, b in zip(sizes[:-1], sizes[1:]))
        if self.sg_hidden:
            W1, b1 = self._sg_views(self.sg_params)[:2]
            init_dense(np.random.default_rng(self.sg_seed), W1, b1, "he")
        self._m_rows = 0
        self._m_ws = self._m_targets = self._inject = None
        self.sg_errors = []

    @classmethod
    def search_space(cls, task=None, model=None):
        """The common space (see :meth:`fastbp.Trainer.search_space`),
        ``sg_lr``: the rate of M's Adam ``sg_optimizer``, log-uniform in
        [1e-4, 1e-1], ``sg_scale``, log-uniform in [0.01, 3], and the window
        ``truncate``: half, once or twice the task's window for ``"sg"``
        (4, 8 or 16 without one)."""
        from fastbp import Choice, LogUniform
        space = super().search_space(task, model)
        space["sg_lr"] = LogUniform(1e-4, 1e-1)
        space["sg_scale"] = LogUniform(0.01, 3.0)
        k = None
        if task is not None:
            k = task.trainer_options.get(cls.name, {}).get("truncate")
        space["truncate"] = Choice(sorted({max(1, k // 2), k, 2 * k}) if k else [4, 8, 16])
        return space


    def _sg_views(self, flat):
        """[W_1, b_1, ..., W_L, b_L] of M, views into a buffer like sg_params."""
        return dense_views(flat, self._m_sizes)

    @property
    def sg_module(self):
        """M's parameters [W_1, b_1, ...] (views into ``sg_params``)."""
        return self._sg_views(self.sg_params)

    def _m_buffers(self, rows):
        """M's workspace, target rows (rows, h) and the injection buffer, grown
        to ``rows`` sequences (never per step)."""
        if rows > self._m_rows:
            h = self.model.hidden_size
            dtype = self.model.dtype
            self._m_ws = np.empty(mlp_workspace_size(self._m_sizes, rows), dtype=dtype)
            self._m_targets = np.empty((rows, h), dtype=dtype)
            self._inject = np.empty(rows * h, dtype=dtype)
            self._m_rows = rows
        return self._m_ws, self._m_targets, self._inject

    def _m_blas(self, rows):
        return blas_flag(rows, self._m_max_layer)

    def _kernel_args(self, rows, T):
        m = self.model
        mws, mtargets, inject = self._m_buffers(rows)
        return K.SGTBPTTArgs(self.step_arrays, self._m.step_arrays, self.workspace(rows, T),
                             m.layout, self.truncate, mws, self._m_layout, _NO_LABELS,
                             mtargets, inject, self.sg_scale, self.warmup, m.blas(rows, T),
                             self._m_blas(rows))

    # -- training ------------------------------------------------------------------
    def train_batch(self, X, labels, targets):
        obj, correct, status, _ = self._run_batch(X, labels, targets, apply=True)
        return obj, correct, status

    def _run_batch(self, X, labels, targets, apply, acc=None):
        rows, T = X.shape[0], X.shape[1]
        lb, tb = self.sequence_buffers(rows, T, labels.size > 0)
        if acc is None:
            acc = self.model.flat_params[:0]
        return K.train_step(self._kernel_args(rows, T), X, labels, targets, IN_ORDER, lb, tb,
                            apply, acc)

    def fit_epochs(self, data, plan, stats):
        args = self._kernel_args(plan.batch_size, data.X.shape[1])
        status, ran = K.train_epochs(args, data, plan, stats)
        self.sg_errors.extend(float(v) for v in stats[:ran, 3])
        return status, ran

    def synthetic_gradient(self, states):
        """M's prediction of the per-sequence gradient of all future losses
        with respect to the given states (unscaled).

        Parameters
        ----------
        states : ndarray (n, hidden_size) of the model's dtype

        Returns
        -------
        ndarray (n, hidden_size)
        """
        from fastbp.validation import check_features
        m = self.model
        states = check_features(states, m.hidden_size, m.dtype, "states",
                                shape_hint="(n, hidden_size)")
        n = states.shape[0]
        mws, _, _ = self._m_buffers(n)
        out = np.empty(n * m.hidden_size, dtype=m.dtype)
        K.predict_gradient(states.reshape(-1), n, self.sg_params, self._m_layout, mws, out,
                           self._m_blas(n))
        return out.reshape(n, m.hidden_size)

    def update_directions(self, X, y):
        """The sum over the windows of one batch of the gradients this trainer
        would follow (injected synthetic gradients included once the warm-up is
        over), all at the current parameters; nothing is updated.

        Parameters
        ----------
        X : ndarray (batch, T, input_size); y : targets for X

        Returns
        -------
        list of ndarray aligned with ``model.params``
        """
        X, labels, targets = self.prepare(X, y)
        acc = np.zeros(self.model.n_params, dtype=self.model.dtype)
        self._run_batch(X, labels, targets, apply=False, acc=acc)
        return [v.copy() for v in self.model.views(acc)]

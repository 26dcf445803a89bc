"""Feedback alignment (Lillicrap et al. 2016) and direct feedback alignment
(Nokland 2016): backpropagation's forward pass and weight-gradient formula,
with the error carried backward through fixed random matrices instead of the
transposed forward weights.

For an MLP h_0 = x, a_l = W_l h_{l-1} + b_l, h_l = f_l(a_l), l = 1..L, and
e = dL/da_L (the output delta of the loss; softmax + cross-entropy: p - y):

* backprop:  delta_L = e,  delta_l = (W_{l+1}^T delta_{l+1}) * f_l'(a_l)
* FA:        delta_L = e,  delta_l = (B_{l+1}^T delta_{l+1}) * f_l'(a_l),
  B_{l+1} fixed, of W_{l+1}'s shape (n_{l+1}, n_l)
* DFA:       delta_L = e,  delta_l = (B_l^T e) * f_l'(a_l),
  B_l fixed, of shape (n_L, n_l)

and in every case dW_l = delta_l h_{l-1}^T, db_l = delta_l, averaged over the
batch (the kernels store samples as rows, so they compute delta_l^T H_{l-1}).
The direction then goes through the usual weight decay, clipping,
finiteness check and optimizer update (:func:`fastbp.kernels.optim.finish_step`).
"""
import numpy as np

from fastbp.validation import check_positive_float, check_seed
from fastbp.trainer import Trainer

from . import _kernels

__all__ = ["FATrainer", "DFATrainer"]


class _FeedbackTrainer(Trainer):
    """Shared machinery: the fixed feedback buffer, one fused step kernel, a
    fused epoch kernel, and :meth:`update_directions`."""

    _mode = None
    repr_options = ("feedback_seed", "feedback_scale")

    def __init__(self, model, loss=None, optimizer=None, weight_decay=0.0, clip_norm=None,
                 feedback_seed=None, feedback_scale=1.0):
        self.feedback_scale = check_positive_float(feedback_scale, "feedback_scale")
        self.feedback_seed = check_seed(feedback_seed, "feedback_seed")
        super().__init__(model, loss=loss, optimizer=optimizer, weight_decay=weight_decay,
                         clip_norm=clip_norm)
        self._feedback = self.add_parameter_set("feedback", self._feedback_size(),
                                                optimizer=False).params
        self.feedback = self._feedback_views(self._feedback)
        rng = np.random.default_rng(self.feedback_seed)
        for B in self.feedback:   # B_l's rows: the deltas each backward entry sums
            r = self.feedback_scale / np.sqrt(B.shape[0])
            B[...] = rng.uniform(-r, r, size=B.shape)  # drawn in float64, then cast

    @classmethod
    def search_space(cls, task=None, model=None):
        """The common space (see :meth:`fastbp.Trainer.search_space`) and
        ``feedback_scale``, log-uniform in [0.1, 10]."""
        from fastbp import LogUniform
        space = super().search_space(task, model)
        space["feedback_scale"] = LogUniform(0.1, 10.0)
        return space

    # -- subclass hooks ---------------------------------------------------------
    def _feedback_size(self):
        raise NotImplementedError

    def _feedback_views(self, flat):
        raise NotImplementedError

    # -- steps ---------------------------------------------------------------------
    def _kernel_args(self, rows):
        m = self.model
        return _kernels.FeedbackArgs(*self.step_arrays, self._feedback, self.workspace(rows),
                                     m.layout, self._mode, m.blas(rows))

    def train_batch(self, X, labels, targets):
        rows = X.shape[0]
        return _kernels.train_step(self._kernel_args(rows), X.reshape(-1), labels, targets,
                                   rows)

    def fit_epochs(self, data, plan, stats):
        return _kernels.train_epochs(self._kernel_args(plan.batch_size), data, plan, stats)

    def update_directions(self, X, y):
        """See :meth:`fastbp.Trainer.update_directions`: here the feedback
        direction of the mean loss, plus ``weight_decay * W_l`` on the weights."""
        X, labels, targets = self.prepare(X, y)
        rows = X.shape[0]
        _kernels.loss_directions(self._kernel_args(rows), X.reshape(-1), labels, targets, rows)
        return self.directions_from_grads()


class FATrainer(_FeedbackTrainer):
    """Feedback alignment (Lillicrap et al. 2016).

    The backward pass propagates deltas through fixed random matrices B_l
    instead of W_l: delta_{l-1} = (B_l^T delta_l) * f'(a_{l-1}), with B_l of
    W_l's shape (n_l, n_{l-1}); dW_l = delta_l h_{l-1}^T as in backprop. The
    step runs fastbp's own forward, loss and backward kernels, the last with
    the feedback buffer in place of the parameters, so it costs exactly what a
    backprop step costs.

    Parameters
    ----------
    model : fb.MLP
    loss, optimizer, weight_decay, clip_norm
        As for :class:`fastbp.Trainer`.
    feedback_seed : int or None
        Seed of the feedback matrices (drawn once, never changed).
    feedback_scale : float > 0
        B_l ~ U(-r, r) elementwise, r = feedback_scale / sqrt(n_l) (n_l: the
        number of deltas each backward entry sums over; drawn in float64, then
        cast to the model's dtype).

    Attributes
    ----------
    feedback : list of ndarray
        [B_1, ..., B_L], B_l of shape (n_l, n_{l-1}): views into the trainer's
        flat feedback buffer, which is laid out like ``model.flat_params``
        (its bias slots are unused and zero). B_1 is never used (no delta is
        propagated to the input). Writable, e.g. to set B_l = W_l.

    Examples
    --------
    >>> import alternatives
    >>> model = fb.MLP([64, 128, 10], activation="tanh", output="softmax", seed=0)
    >>> trainer = alternatives.FATrainer(model, optimizer=fb.Adam(1e-3), feedback_seed=1)
    >>> history = trainer.fit(X, y, epochs=20, batch_size=32)      # doctest: +SKIP
    """

    name = "fa"
    _mode = _kernels.FA

    def _feedback_size(self):
        return self.model.n_params

    def _feedback_views(self, flat):
        return self.model.views(flat)[0::2]


class DFATrainer(_FeedbackTrainer):
    """Direct feedback alignment (Nokland 2016).

    With e = dL/da_L (the output delta, e.g. p - y for softmax +
    cross-entropy), the output layer uses delta_L = e and every hidden layer
    l < L receives delta_l = (B_l^T e) * f_l'(a_l) from the output directly
    through a fixed random B_l of shape (n_L, n_l); dW_l = delta_l h_{l-1}^T.
    The layers' deltas do not depend on each other or on any W.

    Parameters
    ----------
    model, loss, optimizer, weight_decay, clip_norm, feedback_seed
        As for :class:`FATrainer`.
    feedback_scale : float > 0
        B_l ~ U(-r, r) elementwise, r = feedback_scale / sqrt(n_L) (n_L: the
        fan-in of the feedback map e -> delta_l; drawn in float64, then cast
        to the model's dtype).

    Attributes
    ----------
    feedback : list of ndarray
        [B_1, ..., B_{L-1}], B_l of shape (n_L, n_l): views into the trainer's
        flat feedback buffer of n_L * (n_1 + ... + n_{L-1}) entries. Empty for
        a network without hidden layers (DFA is then plain gradient descent).

    Examples
    --------
    Every hidden layer hears the 10 outputs directly:

    >>> import alternatives
    >>> net = fb.MLP([64, 128, 128, 10], activation="tanh", output="softmax", seed=0)
    >>> dfa = alternatives.DFATrainer(net, optimizer=fb.Adam(1e-3), feedback_seed=1)
    >>> [B.shape for B in dfa.feedback]
    [(10, 128), (10, 128)]
    """

    name = "dfa"
    _mode = _kernels.DFA

    def _feedback_size(self):
        sizes = self.model.sizes
        return sizes[-1] * sum(sizes[1:-1])

    def _feedback_views(self, flat):
        k = self.model.n_outputs
        views, off = [], 0
        for n in self.model.sizes[1:-1]:
            views.append(flat[off:off + k * n].reshape(k, n))
            off += k * n
        return views

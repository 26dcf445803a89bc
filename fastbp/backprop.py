"""Backpropagation (through time, full or truncated, for recurrent models):
exact gradients, whole epochs in one compiled kernel."""

import contextlib

from .kernels import mlp as mlp_kernels
from .kernels import rnn as rnn_kernels
from .kernels.linalg import SMALL_GEMM
from .kernels.optim import CLIP, LOSS
from .models import MLP, ElmanRNN
from .small_nets import optimizer_variant, small_fit_kernel
from .threads import blas_controllers, small_kernel_limit
from .trainer import Trainer
from .validation import check_positive_int

__all__ = ["BackpropTrainer"]

#: a recurrent step's (rows, h) x (h, h) products up to this many multiply-adds
#: run on one BLAS thread (see :class:`_OneBlasThread`)
ONE_THREAD_PRODUCT = 1 << 22


_NO_SCOPE = contextlib.nullcontext()


class _OneBlasThread:
    """Every BLAS library at one thread for the duration of a recurrent
    kernel whose per-step products go to BLAS but are small (up to
    :data:`ONE_THREAD_PRODUCT` multiply-adds), then back to what it was.

    Two threads gain nothing on such products (the products of an h128 T40
    b32 step: 1.09 ms on two threads, 1.13 on one), and when anything else
    holds the second core -- another process, or NumPy's own BLAS threads
    still spinning after a NumPy product -- the two OpenBLAS threads of
    every product wait on each other: steps measured 24-32 ms instead of
    1.1. Through threadpoolctl's per-library controllers (about 7 us per
    step); without threadpoolctl nothing changes.
    """

    @staticmethod
    def libraries():
        """The BLAS libraries to drive (:func:`fastbp.threads.blas_controllers`)."""
        return blas_controllers()

    def __enter__(self):
        libs = self.libraries()
        self._before = [lib.get_num_threads() for lib in libs]
        for lib, n in zip(libs, self._before):
            if n != 1:
                lib.set_num_threads(1)
        return self

    def __exit__(self, *exc):
        for lib, n in zip(self.libraries(), self._before):
            if n != 1:
                lib.set_num_threads(n)
        return False


class BackpropTrainer(Trainer):
    """Exact gradients by backpropagation (through time, for recurrent
    models); whole epochs in one compiled kernel.

    Parameters
    ----------
    model : fb.MLP or fb.ElmanRNN
    loss, optimizer, weight_decay, clip_norm
        As for :class:`Trainer`.
    truncate : int >= 1 or None
        Recurrent models only. None trains with full backpropagation through
        time (BPTT): one update per batch, gradients through all T steps.
        An int k trains with truncated BPTT: each batch of sequences is cut
        into windows of k steps, processed in order::

            steps   1 ... k | k+1 ... 2k | ... | ... T
            state   h_0 --> h_k ------> h_2k --> ...      (carried forward)
            grads   <----   | <-------   |                (stop at each "|")

        the state h_k leaving a window is the (constant) initial state of the
        next one, no gradient crosses a window boundary, and the parameters
        are updated once per window that has a loss term: window w minimises
        J_w = mean over its steps' losses (readout 'all'); with readout
        'last' only the final window has a loss, so earlier windows only
        advance the state. Windows are computed with the parameters updated
        by the previous window.

    Examples
    --------
    >>> model = fb.MLP([64, 128, 10], activation="relu", output="softmax", seed=0)
    >>> trainer = fb.BackpropTrainer(model, loss="cross_entropy", optimizer=fb.Adam(1e-3))
    >>> history = trainer.fit(X, y, epochs=20, batch_size=32)      # doctest: +SKIP
    >>> rnn = fb.ElmanRNN(input_size=1, hidden_size=64, output_size=1, readout="all")
    >>> tbptt = fb.BackpropTrainer(rnn, loss="mse", optimizer=fb.SGD(0.01), truncate=10)
    """

    name = "backprop"
    supported_models = (MLP, ElmanRNN)

    def __init__(self, model, loss=None, optimizer=None, weight_decay=0.0, clip_norm=None,
                 truncate=None):
        if truncate is not None:
            truncate = check_positive_int(truncate, "truncate", allow_none=True)
            if not isinstance(model, ElmanRNN):
                raise ValueError(f"truncate={truncate} applies to recurrent models "
                                 f"(fb.ElmanRNN); model is {type(model).__name__}, leave "
                                 "truncate=None")
        super().__init__(model, loss, optimizer, weight_decay, clip_norm)
        self.truncate = truncate
        self._small = (None, None)   # (settings, kernel) of the last fit_epochs
        self._scope_shape = self._one_thread = None   # of the last _blas_scope

    def kernel_args(self, rows, steps=None):
        """The step kernels' arrays for batches of ``rows`` samples (of
        ``steps`` time steps): a :data:`fastbp.kernels.mlp.BackpropArgs`, or
        a :data:`fastbp.kernels.rnn.BPTTArgs` for a recurrent model."""
        m = self.model
        opt = self.optimizer
        if self._recurrent:
            return rnn_kernels.BPTTArgs(m.flat_params, self.grads, opt.state, opt.hyper,
                                        self.train_hyper, self.workspace(rows, steps),
                                        m.layout, self.truncate or 0,
                                        self._recurrent_blas(rows, steps))
        return mlp_kernels.BackpropArgs(m.flat_params, self.grads, opt.state, opt.hyper,
                                        self.train_hyper, self.workspace(rows), m.layout,
                                        m.blas(rows))

    def _blas_scope(self, rows, steps):
        """A context for a recurrent kernel on ``rows`` sequences of ``steps``
        steps: :class:`_OneBlasThread` when its per-step products go to BLAS
        and are small, else one that does nothing."""
        self._set_scope(rows, steps)
        return _OneBlasThread() if self._one_thread else _NO_SCOPE

    def _set_scope(self, rows, steps):
        """Decide, once per shape, whether a recurrent kernel on ``rows``
        sequences of ``steps`` steps runs on one BLAS thread."""
        if self._scope_shape != (rows, steps):
            h = self.model.hidden_size
            product = rows * h * h
            self._scope_shape = (rows, steps)
            self._one_thread = (self.model.blas(rows, steps) is not None
                                and SMALL_GEMM <= product <= ONE_THREAD_PRODUCT)

    def _recurrent_blas(self, rows, steps):
        """The recurrent kernels' ``blas`` argument for this shape: under the
        one-thread scope, the small-matrix limit that splits the products of
        the whole window into row blocks when this BLAS gains by it (see
        :func:`fastbp.threads.small_kernel_limit`); else the model's flag."""
        self._set_scope(rows, steps)
        if self._one_thread:
            return small_kernel_limit()
        return self.model.blas(rows, steps)

    def train_batch(self, X, labels, targets):
        rows = X.shape[0]
        if self._recurrent:
            T = X.shape[1]
            m, opt = self.model, self.optimizer
            lb, tb = self.sequence_buffers(rows, T, labels.size > 0)
            with self._blas_scope(rows, T):
                return rnn_kernels.train_step(m.flat_params, self.grads, opt.state, opt.hyper,
                                              self.train_hyper, self.workspace(rows, T),
                                              m.layout, self.truncate or 0,
                                              self._recurrent_blas(rows, T), X, labels, targets,
                                              lb, tb)
        m, opt = self.model, self.optimizer
        return mlp_kernels.train_step(X.reshape(-1), labels, targets, rows, m.flat_params,
                                      self.grads, opt.state, opt.hyper, self.train_hyper,
                                      self.workspace(rows), m.layout, m.blas(rows))

    def fit_epochs(self, data, plan, stats):
        """Whole epochs in one compiled call: for an MLP small enough to live
        in registers, a kernel generated for its exact shape (see
        :mod:`fastbp.small_nets`: the generic kernels' steps, bit for bit in
        float64 and within rounding in float32), otherwise the generic epoch
        kernel."""
        if self._recurrent:
            args = self.kernel_args(plan.batch_size, data.X.shape[1])
            with self._blas_scope(plan.batch_size, data.X.shape[1]):
                return rnn_kernels.train_epochs(args, data, plan, stats)
        m, opt = self.model, self.optimizer
        settings = (plan.batch_size, optimizer_variant(opt.hyper), self.train_hyper[LOSS],
                    self.train_hyper[CLIP])
        if settings != self._small[0]:
            self._small = (settings, small_fit_kernel(m, self.train_hyper, opt.hyper,
                                                      plan.batch_size))
        small = self._small[1]
        if small is not None:
            return small(m.flat_params, self.grads, opt.state, opt.hyper, self.train_hyper,
                         data.X, data.labels, data.targets, data.order, plan.n_epochs,
                         plan.shuffle, plan.seed, plan.first_epoch, plan.batch_size, stats)
        return mlp_kernels.train_epochs(self.kernel_args(plan.batch_size), data, plan, stats)

    def gradients(self, X, y):
        """Gradient of the objective J (mean loss + weight-decay penalty) on one
        batch, without updating anything and without clipping.

        With ``truncate=k`` (recurrent models), the truncated-BPTT gradient at
        the current parameters: the gradient of the mean loss over all steps
        with every path through a window boundary (a state h_s, s a multiple
        of k) cut, i.e. the sum of the windows' gradients, each window's loss
        terms weighted by 1 / (number of loss terms in the batch). It equals
        the full gradient when k >= T.

        Parameters
        ----------
        X : ndarray (batch, n_inputs), or (batch, T, input_size) for a recurrent model
        y : targets for X

        Returns
        -------
        list of ndarray
            Fresh arrays aligned with ``model.params``: [dJ/dW_1, dJ/db_1, ...]
            (for an ElmanRNN [dJ/dW_in, dJ/dW_rec, dJ/db, dJ/dW_out, dJ/db_out]).
        """
        X, labels, targets = self.prepare(X, y)
        m = self.model
        rows = X.shape[0]
        loss_code = int(self.train_hyper[LOSS])
        if self._recurrent:
            T = X.shape[1]
            ws = self.workspace(rows, T)
            lb, tb = self.sequence_buffers(rows, T, labels.size > 0)
            with self._blas_scope(rows, T):
                rnn_kernels.sequence_gradients(X, labels, targets, m.flat_params, self.grads, ws,
                                               m.layout, lb, tb, loss_code, self.truncate or 0,
                                               self._recurrent_blas(rows, T))
        else:
            ws = self.workspace(rows)
            mlp_kernels.loss_gradients(X.reshape(-1), labels, targets, rows, m.flat_params,
                                       self.grads, ws, m.layout, loss_code, m.blas(rows))
        return self.directions_from_grads()

    def update_directions(self, X, y):
        """For backprop the update direction is the gradient: see :meth:`gradients`."""
        return self.gradients(X, y)

    def __repr__(self):
        text = super().__repr__()
        return text[:-1] + f", truncate={self.truncate})" if self.truncate else text

"""The HSIC bottleneck (Ma, Lewis & Kleijn, AAAI 2020) for fb.MLP.

For an MLP h_0 = x, a_l = W_l h_{l-1} + b_l, h_l = f_l(a_l), l = 1..L, and a
batch of m samples (X, its one-hot labels Y, the hidden outputs Z_l = H_l as
m rows):

* every hidden layer l < L minimises its own objective
  J_l = nHSIC(Z_l, X) - beta nHSIC(Z_l, Y) over (W_l, b_l) alone, Z_{l-1}
  held fixed (no gradient crosses a layer), with
  nHSIC(A, B) = tr(R_A R_B), R = K~ (K~ + epsilon m I)^-1, K~ = H K H and the
  Gaussian kernel K[i, j] = exp(-||a_i - a_j||^2 / (2 sigma^2 d)) (d the
  width of A; see :func:`alternatives.nhsic`); Z_l enters the kernel scaled
  down to spread ``max_spread`` when its spread is larger (fastbp has no
  BatchNorm to pin the activations' scale);
* the layers are updated bottom-up within a batch, each from the output of
  the layers below as they are after their own update (one pass up);
* the output layer L is the "format" layer: it trains on the model's loss
  from H_{L-1}, the hidden layers' output; HSIC leaves the class order
  of a representation free, so only a trained readout can be scored.

The kernels are in :mod:`alternatives._hsic_step` (the step) and
:mod:`alternatives._hsic_kernels` (Gram matrices, normalised HSIC and dJ/dZ).
"""
import numpy as np

from fastbp.kernels import codes
from fastbp.models import MLP
from fastbp.trainer import Trainer
from fastbp.validation import (check_nonnegative_float, check_positive_float,
                               check_positive_int)

from . import _hsic_step as K
from ._hsic_kernels import hsic_workspace

__all__ = ["HSICTrainer"]

FORMATS = ("joint", "after")


class HSICTrainer(Trainer):
    """The HSIC bottleneck (Ma, Lewis & Kleijn 2020) for :class:`fastbp.MLP`.

    Each hidden layer l minimises J_l = nHSIC(Z_l, X) - beta nHSIC(Z_l, Y)
    over its own (W_l, b_l), Z_l its output on the batch (seen at a spread
    of at most ``max_spread``), Y the one-hot labels (or the target rows as
    given); the layers are updated bottom-up,
    each from the output of the layers below after their update. The output
    layer is the format layer, trained on the model's loss from the last
    hidden representation: at every step (``format="joint"``) or in the last
    ``format_epochs`` epochs of each ``fit`` call with the hidden layers
    frozen (``format="after"``, the paper's protocol). Accuracy and loss are
    always those of the model, i.e. of its trained output layer.

    Parameters
    ----------
    model : fb.MLP
    loss, optimizer
        As for :class:`fastbp.Trainer`. The one optimizer updates every
        layer, each layer's slices in turn (see Notes).
    sigma : float > 0
        Kernel width, shared by X, Y and every Z_l (distances are divided
        by each variable's width, so one sigma fits all).
    beta : float >= 0
        Weight of nHSIC(Z_l, Y). nHSIC(Z_l, X) can reach m - 1 for a batch
        of m rows while nHSIC(Z_l, Y) stays below k - 1 for k classes, so
        beta should be about (m - 1) / (k - 1) or more for the label term
        to win (see the documentation page).
    epsilon : float > 0
        Regulariser of R = K~ (K~ + epsilon m I)^-1.
    format : {'joint', 'after'}
        When the output layer trains (see above).
    format_epochs : int >= 1
        With ``format="after"``: the last ``format_epochs`` epochs of each
        ``fit`` call train the output layer alone, the first
        max(1, epochs - format_epochs) epochs the hidden layers alone.
        Ignored with ``format="joint"``.
    weight_decay : float >= 0
        L2 penalty lambda on every W_l (not on biases), added to each
        layer's own gradient.
    clip_norm : float > 0 or None
        Rescales each layer's gradient (W_l and b_l together) to at most this
        L2 norm: the layers have separate objectives, and layer l + 1's
        gradient exists only after layer l's update.
    max_spread : float > 0 or None
        Z_l enters the kernel as Z_l min(1, max_spread / s), s its spread
        (the root mean square of its entries about their column means), and
        the gradient follows that map. Without BatchNorm (the reference's
        blocks pin the scale with one) an unbounded activation's scale is
        the objective's easiest lever: growing it drives K_Z towards the
        identity, where nHSIC(Z, Y) is largest. At the default 1 the cap
        never binds on tanh or sigmoid layers (their spread is at most 1).
        None: the kernel sees Z_l as it is, as in the reference.

    Attributes
    ----------
    hsic_objectives : list of float
        Per ``fit`` epoch, the mean over its batches of sum_l J_l (NaN for a
        format epoch).
    last_nhsic : ndarray (L - 1, 2)
        nHSIC(Z_l, X) and nHSIC(Z_l, Y) of each hidden layer on the last
        batch that trained it, before its update (NaN before any).

    Notes
    -----
    A step is one optimizer step: each layer's update is the optimizer's
    rule on that layer's slices with the update count held at its value
    before the step (so a layer moves as one step over the whole buffer
    would move it), and the count advances by one per step, whatever the
    phase. All or nothing: a non-finite J_l, loss or update leaves every
    parameter and the optimizer state as before the step (each layer is
    updated in place, the next layer's input computed from it, its old
    values saved by the update's own pass to a backup that a failing step
    restores).

    Every step needs at least 2 samples. In ``fit``, when n mod batch_size
    is 1, the last batch of the epoch takes the leftover sample (batches of
    batch_size, ..., batch_size + 1), so every sample trains every epoch.

    Examples
    --------
    The paper's protocol: 10 epochs of HSIC on the hidden layers, then 5 on
    the output layer alone (accuracy stays at chance until those).

    >>> trainer = alternatives.HSICTrainer(model, format="after", format_epochs=5)
    >>> history = trainer.fit(X, y, epochs=15, batch_size=64)     # doctest: +SKIP
    >>> trainer.last_nhsic     # nHSIC(Z_l, X), nHSIC(Z_l, Y) per hidden layer  # doctest: +SKIP
    """

    name = "hsic"
    supported_models = (MLP,)
    repr_options = ("sigma", "beta", "epsilon", "max_spread", "format", "format_epochs")

    def __init__(self, model, loss=None, optimizer=None, *, sigma=5.0, beta=50.0,
                 epsilon=1e-5, format="joint", format_epochs=5, weight_decay=0.0,
                 clip_norm=None, max_spread=1.0):
        self.sigma = check_positive_float(sigma, "sigma")
        self.beta = check_nonnegative_float(beta, "beta")
        self.epsilon = check_positive_float(epsilon, "epsilon")
        if format not in FORMATS:
            raise ValueError(f"format={format!r}; expected 'joint' (the output layer trains at "
                             "every step) or 'after' (it trains in the last format_epochs "
                             "epochs of each fit, the hidden layers frozen)")
        self.format = format
        self.format_epochs = check_positive_int(format_epochs, "format_epochs")
        self.max_spread = (None if max_spread is None
                           else check_positive_float(max_spread, "max_spread"))
        super().__init__(model, loss=loss, optimizer=optimizer, weight_decay=weight_decay,
                         clip_norm=clip_norm)
        sizes = model.sizes
        self._d_max = max(sizes[0], sizes[-1], *sizes[1:-1])
        self._capacity = 0
        self._backup_params = np.zeros_like(model.flat_params)
        self._backup_state = np.zeros(self.optimizer.state.size, dtype=model.dtype)
        self._info = np.full((len(sizes) - 2, 2), np.nan)
        self._step_phase = K.JOINT if format == "joint" else K.HSIC
        self._only_format = False
        self._epochs_in_fit = None
        self.hsic_objectives = []

    @classmethod
    def search_space(cls, task=None, model=None):
        """The common space (see :meth:`fastbp.Trainer.search_space`), the
        kernel width ``sigma`` log-uniform in [0.5, 20] and ``beta``
        log-uniform in [1, 500]."""
        from fastbp import LogUniform
        space = super().search_space(task, model)
        space["sigma"] = LogUniform(0.5, 20.0)
        space["beta"] = LogUniform(1.0, 500.0)
        return space

    @property
    def last_nhsic(self):
        """(L - 1, 2): nHSIC(Z_l, X), nHSIC(Z_l, Y) per hidden layer (a copy)."""
        return self._info.copy()

    # -- buffers -------------------------------------------------------------------
    def _grow(self, rows):
        """The HSIC buffers for batches of up to ``rows`` rows, grown, never per step."""
        if rows > self._capacity:
            self._hws = hsic_workspace(rows, self._d_max)
            self._rx, self._ry, self._s = (np.zeros(rows * rows) for _ in range(3))
            self._y = np.zeros((rows, self.model.n_outputs))
            self._zs, self._gs = (np.zeros(rows * self._d_max) for _ in range(2))
            self._capacity = rows

    def _kernel_args(self, rows, phase):
        m = self.model
        self._grow(rows)
        return K.HSICArgs(self.step_arrays, self.workspace(rows), m.layout, m.blas(rows),
                          self._hws, self._rx, self._ry, self._s, self._y,
                          self._zs, self._gs, self._backup_params, self._backup_state,
                          self._info,
                          self.sigma, self.beta, self.epsilon,
                          np.inf if self.max_spread is None else self.max_spread, phase)

    @staticmethod
    def _check_rows(rows, argument="X"):
        if rows < 2:
            raise ValueError(f"HSICTrainer needs at least 2 samples per batch (HSIC of a single "
                             f"sample is undefined); {argument} has {rows} row(s)")

    # -- steps ---------------------------------------------------------------------
    def train_batch(self, X, labels, targets):
        rows = X.shape[0]
        self._check_rows(rows)
        obj, correct, status, _ = K.train_step(self._kernel_args(rows, self._step_phase),
                                               X.reshape(-1), labels, targets, rows)
        return obj, correct, status

    def format_step(self, X, y):
        """One update of the output layer alone (hidden layers unchanged) on
        one batch of at least 2 samples; returns the batch objective (mean
        loss + weight-decay penalty) before the update.

        Raises
        ------
        DivergenceError
            The loss or the update was not finite; nothing was updated.
        """
        self._step_phase = K.FORMAT
        try:
            return self.step(X, y)
        finally:
            self._step_phase = K.JOINT if self.format == "joint" else K.HSIC

    def _phase(self, epoch):
        """The phase of epoch ``epoch`` (0-based) of the current fit call."""
        if self._only_format:
            return K.FORMAT
        if self.format == "joint":
            return K.JOINT
        total = self._epochs_in_fit
        if total is None:
            return K.HSIC
        return K.HSIC if epoch < max(1, total - self.format_epochs) else K.FORMAT

    def epoch_data(self, X, labels, targets, order, batch_size):
        # one row more than a batch: the last batch may take a leftover sample
        return super().epoch_data(X, labels, targets, order, batch_size + 1)

    def fit_epochs(self, data, plan, stats):
        n = data.X.shape[0]
        if plan.batch_size < 2:
            what = f"X has {n} sample" if n < 2 else f"batch_size={plan.batch_size}"
            raise ValueError(f"HSICTrainer needs batches of at least 2 samples (HSIC of a "
                             f"single sample is undefined); {what}")
        done = 0
        while done < plan.n_epochs:
            first = plan.first_epoch + done
            phase = self._phase(first)
            count = 1
            while done + count < plan.n_epochs and self._phase(first + count) == phase:
                count += 1
            args = self._kernel_args(plan.batch_size + 1, phase)
            status, ran = K.train_epochs(args, data,
                                         plan._replace(n_epochs=count, first_epoch=first),
                                         stats[done:done + count])
            self.hsic_objectives.extend(float(v) for v in stats[done:done + ran, 3])
            done += ran
            if status != codes.OK:
                return status, done
        return codes.OK, plan.n_epochs

    # -- fitting -------------------------------------------------------------------
    def fit(self, X, y, epochs=1, batch_size=32, shuffle=True, validation_data=None,
            progress=False, seed=None, on_divergence="raise", callbacks=None):
        """Train for ``epochs`` passes over (X, y); see :meth:`fastbp.Trainer.fit`.

        With ``format="joint"`` every epoch trains every layer. With
        ``format="after"`` the first max(1, epochs - format_epochs) epochs
        train the hidden layers alone (HSIC phase; the output layer is
        evaluated but not updated) and the remaining ones the output layer
        alone (format phase; the hidden layers stay bit-for-bit as they
        were). Batches need at least 2 samples (``batch_size`` >= 2).
        """
        self._epochs_in_fit = epochs
        try:
            return super().fit(X, y, epochs=epochs, batch_size=batch_size, shuffle=shuffle,
                               validation_data=validation_data, progress=progress, seed=seed,
                               on_divergence=on_divergence, callbacks=callbacks)
        finally:
            self._epochs_in_fit = None

    def fit_format(self, X, y, epochs=1, batch_size=32, **fit_options):
        """Train the output (format) layer alone for ``epochs`` epochs, the
        hidden layers frozen bit-for-bit, whatever ``format`` is: e.g. to
        format a network after HSIC training of one's own schedule.
        ``fit_options`` are those of :meth:`fit`. Returns the History."""
        self._only_format = True
        try:
            return self.fit(X, y, epochs=epochs, batch_size=batch_size, **fit_options)
        finally:
            self._only_format = False

    # -- inspection ----------------------------------------------------------------
    def update_directions(self, X, y):
        """The direction each layer would follow at the current parameters,
        without updating anything: each hidden layer's dJ_l/d(W_l, b_l) with
        every layer as it is now, and the output layer's mean-loss gradient,
        plus ``weight_decay * W_l`` on the weights (before clipping).

        Returns
        -------
        list of ndarray
            Fresh arrays aligned with ``model.params``.
        """
        X, labels, targets = self.prepare(X, y)
        rows = X.shape[0]
        self._check_rows(rows)
        K.hsic_pass(self._kernel_args(rows, K.JOINT), X.reshape(-1), labels, targets, rows,
                    False)
        return self.directions_from_grads()

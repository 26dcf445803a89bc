"""The base class of every trainer, and the surface a new learning rule is written on.

:class:`Trainer` holds what every trainer shares: input checks, the ``fit``
loop, ``evaluate``, saving and resuming, divergence handling. A learning rule
subclasses it and implements

* :meth:`Trainer.train_batch`: one update on one prepared batch (required);
* :meth:`Trainer.fit_epochs`: whole epochs in one compiled call (optional;
  the default loops over ``train_batch`` in Python);
* :meth:`Trainer.update_directions`: the direction it would apply, for the
  alignment angles of ``fastbp compare``;

and uses :meth:`Trainer.prepare`, :meth:`Trainer.workspace`,
:attr:`Trainer.grads`, :meth:`Trainer.step_arrays`,
:meth:`Trainer.add_parameter_set` and the model's ``layout``, ``views`` and
``blas``. See the "Writing a trainer" page of the documentation.
"""
import time
import warnings

import numpy as np

from .errors import DivergenceError
from .files import read_arrays
from .history import History
from .io import load, save_model
from .kernels import codes
from .kernels import mlp as mlp_kernels
from .kernels import rnn as rnn_kernels
from .kernels.epochs import EpochData, EpochPlan, epoch_seed, shuffle_in_place
from .kernels.optim import LOSS, StepArrays, add_weight_decay
from .losses import (LOSSES, check_loss, is_classification, prepare_sequence_targets,
                     prepare_targets)
from .models import MLP, ElmanRNN, Workspace
from .optim import get_optimizer
from .parameter_sets import ParameterSet
from .progress import progress_bar
from .validation import (all_finite, check_features, check_nonnegative_float, check_positive_float,
                         check_positive_int, check_seed, check_sequences)

#: rows per kernel call in ``evaluate``
EVAL_CHUNK = 1024
#: fit runs several epochs per kernel call until a call takes about this long
_SECONDS_PER_CALL = 0.05
#: parameters above this magnitude count as grown by training, not as ordinary
ORDINARY_WEIGHT = 1e4
#: fit warns (once) when an epoch's loss exceeds the first epoch's by this factor
LOSS_GROWTH = 1e3
#: the kernels' "no sample order" (samples taken in order)
IN_ORDER = np.empty(0, dtype=np.int64)

_FAILURES = {codes.NONFINITE_LOSS: "a non-finite loss",
             codes.NONFINITE_GRADIENT: "a non-finite gradient",
             codes.NONFINITE_UPDATE: "a parameter update that overflows to inf"}


class Trainer:
    """Base class of every trainer.

    Parameters
    ----------
    model : fb.MLP, or fb.ElmanRNN for trainers that support it (see
        ``supported_models``)
    loss : str or None
        A name in :data:`fastbp.losses.LOSSES`; None picks the natural loss of
        the model's output (softmax: cross_entropy, sigmoid:
        binary_cross_entropy, identity: mse).
    optimizer : fb.SGD, fb.Adam, 'sgd', 'adam' or None (Adam(1e-3))
        Bound to this trainer: its state is sized for ``model``.
    weight_decay : float >= 0
        L2 penalty lambda: the objective is J = loss + lambda/2 * sum_l
        ||W_l||_F^2 (biases are not decayed).
    clip_norm : float > 0 or None
        When set, the gradient is rescaled so that its global L2 norm (over all
        parameters) is at most ``clip_norm`` before the update.
    """

    #: registry name (set by subclasses)
    name = None
    #: model classes this trainer can train
    supported_models = (MLP,)
    #: trainer classes registered under the same name for models this one does
    #: not train (e.g. a recurrent variant): :func:`fastbp.get_trainer` with a
    #: model picks the first of (cls, *variants) that supports it
    variants = ()
    #: search-space keys that are the learning rate of an Adam optimizer
    #: argument of the constructor, e.g. ``{"sg_lr": "sg_optimizer"}`` (see
    #: :meth:`search_arguments`)
    search_optimizers = {}
    #: constructor options that ``repr`` shows after the common ones, in order
    #: (attribute names; an option whose value is None is left out)
    repr_options = ()

    @classmethod
    def supports(cls, model):
        """True when this trainer class can train ``model``."""
        return isinstance(model, cls.supported_models)

    @classmethod
    def search_space(cls, task=None, model=None):
        """What ``fastbp tune`` may vary for this trainer: name -> distribution.

        The common space, which every trainer inherits: the learning rate,
        log-uniform over a factor of 10 either side of the task's rate, and
        the weight decay. A trainer with knobs of its own extends it::

            @classmethod
            def search_space(cls, task=None, model=None):
                space = super().search_space(task, model)
                space["feedback_scale"] = fb.LogUniform(0.1, 10.0)
                return space

        Keys are constructor arguments, ``lr`` (the rate of the run's
        optimizer, of the task's kind), or names that
        :meth:`search_arguments` turns into constructor arguments.

        Parameters
        ----------
        task : fastbp.tasks.Task or None
            The task being tuned (its optimizer's rate centres the learning
            rate range; trainer options it sets, such as a truncation window,
            centre theirs). None: Adam's default rate 1e-3.
        model : fb.MLP, fb.ElmanRNN or None
            The task's model, for spaces that depend on its shape.

        Returns
        -------
        dict of str -> fastbp.search_space.Distribution
            ``fb.LogUniform``, ``fb.Uniform``, ``fb.IntRange`` or ``fb.Choice``
            values.
        """
        from .search_space import Choice, LogUniform
        lr = 1e-3
        if task is not None:
            lr = float(task.optimizer[1]["lr"])
        return {"lr": LogUniform(lr / 10, lr * 10),
                "weight_decay": Choice([0.0, 1e-5, 1e-4, 1e-3])}

    @classmethod
    def search_arguments(cls, values):
        """Constructor arguments for sampled search-space values.

        Each key of :attr:`search_optimizers` found in ``values`` becomes
        ``fb.Adam(value)`` under the constructor argument it names (so that
        tuning files keep the plain rate, ``"sg_lr": 0.003``); every other
        value is a constructor argument as it is. Override for other
        conversions.

        Parameters
        ----------
        values : dict
            Sampled values of :meth:`search_space`'s keys, without ``lr``
            (which sets the run's optimizer).

        Returns
        -------
        dict
            Keyword arguments for the constructor.
        """
        from .optim import Adam
        args = dict(values)
        for key, argument in cls.search_optimizers.items():
            if key in args:
                args[argument] = Adam(args.pop(key))
        return args

    def __init__(self, model, loss=None, optimizer=None, weight_decay=0.0, clip_norm=None):
        if not self.supports(model):
            names = " or ".join(f"fb.{c.__name__}" for c in self.supported_models)
            raise TypeError(f"{type(self).__name__} trains {names} models; model is "
                            f"{type(model).__name__}")
        self.model = model
        self._recurrent = isinstance(model, ElmanRNN)
        self.loss = check_loss(loss, model.output)
        self.optimizer = get_optimizer(optimizer)
        self.weight_decay = check_nonnegative_float(weight_decay, "weight_decay")
        self.clip_norm = (None if clip_norm is None
                          else check_positive_float(clip_norm, "clip_norm"))
        # bound last: a constructor that fails leaves the optimizer unbound
        self.optimizer.bind(model.n_params, model.dtype)
        self.train_hyper = np.array([LOSSES[self.loss], self.weight_decay,
                                      self.clip_norm or 0.0], dtype=np.float64)
        self._classifier = is_classification(self.loss)
        self.grads = np.zeros(model.n_params, dtype=model.dtype)
        self._ws = Workspace(model)
        self._gather = None
        self._labels_buffers = None
        self._parameter_sets = {}
        self._step_arrays = StepArrays(model.flat_params, self.grads, self.optimizer.state,
                                       self.optimizer.hyper, self.train_hyper)

    # -- preparation -----------------------------------------------------------
    def prepare(self, X, y, names=("X", "y")):
        """Validate (X, y) and return them as the kernels take them.

        Parameters
        ----------
        X : ndarray (n_samples, n_inputs), or (n, T, input_size) for a
            recurrent model, of the model's dtype
        y : targets for X (see :func:`fastbp.losses.prepare_targets`)
        names : (str, str)
            Argument names used in error messages.

        Returns
        -------
        X : ndarray, C-contiguous, of the model's dtype
        labels : int64 ndarray (n,) for class labels, else empty (0,)
        targets : ndarray (n, n_outputs) of target rows, else empty (0, 0)
            For a recurrent model with readout 'all' the rows are per step.
        """
        m = self.model
        if self._recurrent:
            X = check_sequences(X, m.n_inputs, m.dtype, names[0])
            labels, targets = prepare_sequence_targets(y, self.loss, X.shape[0], X.shape[1],
                                                       m.n_outputs, m.readout, m.dtype,
                                                       names[1], names[0])
            return X, labels, targets
        X = check_features(X, m.n_inputs, m.dtype, names[0])
        labels, targets = prepare_targets(y, self.loss, X.shape[0], m.n_outputs, m.dtype,
                                          names[1], names[0])
        return X, labels, targets

    def workspace(self, rows, steps=None):
        """The model's kernel workspace (see :mod:`fastbp.kernels.mlp` for its
        layout), grown, never per step, to hold ``rows`` rows (of ``steps``
        time steps for a recurrent model).

        Returns
        -------
        ndarray (at least ``model.workspace_size(rows[, steps])``,) of the model's dtype
        """
        return self._ws.get(rows, steps)

    def _label_target_buffers(self, slot, rows, use_labels):
        """Kernel label and target buffers of ``rows`` rows, kept in attribute
        ``slot`` and grown, never per step: int64 labels (rows,) and empty
        targets (0, 0), or empty labels (0,) and target rows (rows,
        n_outputs)."""
        m = self.model
        cached = getattr(self, slot)
        if cached is None or cached[0] < rows or cached[1] != use_labels:
            if use_labels:
                lb = np.empty(rows, dtype=np.int64)
                tb = np.empty((0, 0), dtype=m.dtype)
            else:
                lb = np.empty(0, dtype=np.int64)
                tb = np.empty((rows, m.n_outputs), dtype=m.dtype)
            cached = (rows, use_labels, lb, tb)
            setattr(self, slot, cached)
        return cached[2], cached[3]

    def batch_buffers(self, batch_size, use_labels):
        """Batch buffers for fused epoch kernels (see
        :func:`fastbp.kernels.mlp.gather_batch`): flat inputs of batch_size *
        n_inputs, and int64 labels (batch_size,) or target rows
        (batch_size, n_outputs), the unused one empty. Kept between calls."""
        m = self.model
        if self._gather is None or self._gather.shape[0] < batch_size * m.n_inputs:
            self._gather = np.empty(batch_size * m.n_inputs, dtype=m.dtype)
        lb, tb = self._label_target_buffers("_labels_buffers", batch_size, use_labels)
        return self._gather, lb, tb

    def sequence_buffers(self, rows, steps, use_labels):
        """Time-major label and target buffers of recurrent kernels for
        ``rows`` sequences of ``steps`` steps: int64 labels (rows * Tl,) and
        target rows (rows * Tl, n_outputs), Tl = steps for readout 'all' and
        1 for 'last', the unused one empty. Grown, never per step."""
        need = rows * (steps if self.model.readout == "all" else 1)
        return self._label_target_buffers("_labels_buffers", need, use_labels)

    def _n_terms(self, labels, targets):
        """Loss terms in a prepared target set: samples (MLP, RNN readout
        'last') or sequences x steps (RNN readout 'all')."""
        return labels.size if labels.size else targets.size // self.model.n_outputs

    def _accuracy_denominator(self, labels, targets):
        n = self._n_terms(labels, targets)
        return n * self.model.n_outputs if self.loss == "binary_cross_entropy" else n

    def _divergence_message(self, status, where, data):
        """Say what failed and its likely cause: data that overflow the
        network at ordinary parameters, or else the learning (a step too
        large, parameters grown over earlier steps, exploding gradients)."""
        X, labels, targets = data
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            at_start = self._evaluate_prepared(*data)["loss"]
            try:   # the direction comes before any learning rate scales it
                y = labels if labels.size else targets
                direction_ok = all(all_finite(d) for d in self.update_directions(X, y))
            except (NotImplementedError, ValueError, TypeError):
                direction_ok = True
            largest_x = float(np.max(np.abs(X))) if X.size else 0.0
            largest_w = float(np.max(np.abs(self.model.flat_params)))
        head = (f"{_FAILURES[status]} {where}; the parameters were left as they were before "
                "that step. ")
        if not (np.isfinite(at_start) and direction_ok) and largest_w <= ORDINARY_WEIGHT:
            return head + (f"The loss or its gradient is not finite even at those "
                           f"parameters (all |w| <= {largest_w:.3g}), so the data, not the "
                           f"learning rate, is the likely cause: inputs up to "
                           f"|x| = {largest_x:.3g} or the targets "
                           f"overflow the network's {self.model.dtype.name} arithmetic; "
                           "scale them.")
        grown = (f"The parameters have grown to |w| = {largest_w:.3g}. "
                 if largest_w > ORDINARY_WEIGHT else "")
        clip = "" if self.clip_norm else " or gradient clipping (clip_norm=1.0)"
        return head + grown + (f"The learning rate (lr={self.optimizer.lr:g}) may be too "
                               f"large for this problem: try a smaller learning rate{clip}.")

    # -- what an extension declares and uses --------------------------------------
    def add_parameter_set(self, name, size, optimizer=None, argument=None):
        """Declare an extra parameter set (feedback matrices, inverses, modules,
        memory) that this trainer keeps beside the model's parameters.

        The set is saved and restored by :meth:`save_state` and
        :meth:`load_state` (values and optimizer state) without further code,
        and its :attr:`~fastbp.ParameterSet.step_arrays` go to
        :func:`fastbp.kernels.optim.finish_steps`, which updates it together
        with the model all or nothing.

        Parameters
        ----------
        name : str
            An identifier, unique within this trainer.
        size : int >= 0
            Number of parameters, stored flat in the model's dtype.
        optimizer : fb.SGD, fb.Adam, 'sgd', 'adam', None (Adam(1e-3)) or False
            The set's own optimizer, bound here; False for a fixed set.
        argument : str or None
            The constructor argument ``optimizer`` came from, for error messages.

        Returns
        -------
        ParameterSet
        """
        if name in self._parameter_sets:
            raise ValueError(f"this trainer already has a parameter set named {name!r}")
        if optimizer is not None and optimizer is self.optimizer:
            what = argument or f"the optimizer of parameter set {name!r}"
            raise ValueError(f"{what} must be a different object from optimizer (each holds "
                             "its own state)")
        pset = ParameterSet(name, size, self.model.dtype, optimizer)
        self._parameter_sets[name] = pset
        return pset

    @property
    def parameter_sets(self):
        """The declared extra parameter sets, name -> :class:`fastbp.ParameterSet`
        (a copy of the mapping; the sets themselves are live)."""
        return dict(self._parameter_sets)

    @property
    def step_arrays(self):
        """The model's parameters, :attr:`grads`, the optimizer's state and
        hyper-parameters and :attr:`train_hyper`, bundled as one
        :data:`fastbp.kernels.optim.StepArrays` for step kernels."""
        return self._step_arrays

    def directions_from_grads(self):
        """The usual ending of :meth:`update_directions` (and of
        ``gradients``): add the weight-decay term lambda * W_l to the
        direction a kernel left in :attr:`grads` and return it as fresh
        arrays.

        Returns
        -------
        list of ndarray
            Copies aligned with ``model.params``, of the model's dtype.
        """
        m = self.model
        if self.weight_decay:
            add_weight_decay(m.flat_params, self.grads, m.n_weights, self.weight_decay)
        return [g.copy() for g in m.views(self.grads)]

    # -- the hooks a trainer implements ---------------------------------------------
    def train_batch(self, X, labels, targets):
        """One update on one prepared batch: the hook every trainer implements.

        Parameters
        ----------
        X, labels, targets
            As returned by :meth:`prepare`.

        Returns
        -------
        objective : float
            The batch objective before the update (mean loss + penalty).
        n_correct : float
            Correct predictions in the batch (0 for a regression loss).
        status : int
            :data:`fastbp.kernels.codes.OK`, or the failure code; then no
            parameter of the model or of any parameter set may have changed.
        """
        raise NotImplementedError(f"{type(self).__name__} does not implement train_batch")

    def update_directions(self, X, y):
        """The update direction this trainer would apply on (X, y), before
        clipping, without changing anything.

        Parameters
        ----------
        X : ndarray (batch, n_inputs) of the model's dtype
        y : targets for X

        Returns
        -------
        list of ndarray
            Fresh arrays aligned with ``model.params``.
        """
        raise NotImplementedError(f"{type(self).__name__} does not implement "
                                  "update_directions")

    def fit_epochs(self, data, plan, stats):
        """Run whole epochs: the optional hook of trainers with a fused epoch
        kernel, which call :func:`fastbp.kernels.epochs.run_epochs` from a
        cached entry point of their own.

        This default loops in Python over :meth:`train_batch`, visiting the
        samples in the same order as the kernels do (so a rule's fused and
        unfused versions take identical steps), with ``plan.passes`` = 1.

        Parameters
        ----------
        data : fastbp.kernels.epochs.EpochData
            From :meth:`epoch_data`; ``data.order`` is shuffled in place.
        plan : fastbp.kernels.epochs.EpochPlan
        stats : float64 ndarray (plan.n_epochs, 4)
            Receives per epoch the mean objective, the number correct, the
            updates applied and a trainer-specific statistic (NaN if none).

        Returns
        -------
        status : int
            OK, or the failure code of the step that stopped training.
        epochs_done : int
            Epochs completed before it.
        """
        X, labels, targets, order = data.X, data.labels, data.targets, data.order
        n = X.shape[0]
        use_labels = labels.shape[0] > 0
        for e in range(plan.n_epochs):
            if plan.shuffle:
                seed = np.uint64(epoch_seed(plan.seed, plan.first_epoch + e))
                shuffle_in_place(order, seed)
            loss_acc = correct = 0.0
            steps = 0
            for start in range(0, n, plan.batch_size):
                idx = order[start:start + plan.batch_size]
                xb = X[idx]
                lb = labels[idx] if use_labels else labels
                tb = targets if use_labels else targets[idx]
                obj, c, status = self.train_batch(xb, lb, tb)
                if status != codes.OK:
                    stats[e] = (loss_acc / max(start, 1), correct, steps, np.nan)
                    return status, e
                loss_acc += obj * len(idx)
                correct += c
                steps += 1
            stats[e] = (loss_acc / n, correct, steps, np.nan)
        return codes.OK, plan.n_epochs

    def epoch_data(self, X, labels, targets, order, batch_size):
        """The training set and this trainer's batch buffers for
        :meth:`fit_epochs`.

        Parameters
        ----------
        X, labels, targets
            As returned by :meth:`prepare`.
        order : int64 ndarray (n_samples,)
            The sample order, shuffled in place by the epoch driver.
        batch_size : int

        Returns
        -------
        fastbp.kernels.epochs.EpochData
            For an MLP, ``xb``/``lb``/``tb`` are :meth:`batch_buffers`; for a
            recurrent model the inputs are gathered into the workspace, so
            ``xb`` is empty and ``lb``/``tb`` are :meth:`sequence_buffers`.
        """
        use_labels = labels.shape[0] > 0
        if self._recurrent:
            lb, tb = self.sequence_buffers(batch_size, X.shape[1], use_labels)
            xb = np.empty(0, dtype=self.model.dtype)
        else:
            xb, lb, tb = self.batch_buffers(batch_size, use_labels)
        return EpochData(X, labels, targets, order, xb, lb, tb)

    # -- public API ----------------------------------------------------------------
    def step(self, X, y):
        """One parameter update on one batch.

        Parameters
        ----------
        X : ndarray (batch, n_inputs) of the model's dtype
        y : targets for X (see :func:`fastbp.losses.prepare_targets`)

        Returns
        -------
        float
            The batch objective (mean loss + weight-decay penalty) before the update.

        Raises
        ------
        DivergenceError
            The loss or gradient was not finite; nothing was updated.
        """
        data = self.prepare(X, y)
        obj, _, status = self.train_batch(*data)
        if status != codes.OK:
            raise DivergenceError(self._divergence_message(status, "at this step", data))
        return float(obj)

    def evaluate(self, X, y):
        """Mean data loss (no weight-decay penalty) and, for classification
        losses, accuracy of the current model on (X, y).

        Parameters
        ----------
        X : ndarray (n_samples, n_inputs)
        y : targets for X

        Returns
        -------
        dict
            {"loss": float} plus "accuracy" for cross_entropy (argmax) and
            binary_cross_entropy (fraction of outputs on the right side of 0.5).
        """
        return self._evaluate_prepared(*self.prepare(X, y))

    def _evaluate_prepared(self, X, labels, targets):
        m = self.model
        n = X.shape[0]
        loss_code = int(self.train_hyper[LOSS])
        if self._recurrent:
            T = X.shape[1]
            chunk = min(n, max(1, EVAL_CHUNK // T))
            ws = self.workspace(chunk, T)
            lb, tb = self.sequence_buffers(chunk, T, labels.size > 0)
            loss, correct = rnn_kernels.evaluate_chunked(
                X, labels, targets, IN_ORDER, m.flat_params, ws, m.layout, lb, tb,
                loss_code, chunk, m.blas(chunk, T))
        else:
            chunk = min(n, EVAL_CHUNK)
            ws = self.workspace(chunk)
            loss, correct = mlp_kernels.evaluate_chunked(
                X, labels, targets, m.flat_params, ws, m.layout, loss_code, chunk,
                m.blas(chunk))
        out = {"loss": loss / self._n_terms(labels, targets)}
        if self._classifier:
            out["accuracy"] = correct / self._accuracy_denominator(labels, targets)
        if not np.isfinite(out["loss"]):
            if self._classifier:
                out["accuracy"] = float("nan")   # never a count over NaN outputs
            warnings.warn("the loss on this data is not finite: the network's outputs "
                          "overflow (inputs or parameters too large); loss and accuracy "
                          "are NaN", RuntimeWarning, stacklevel=3)
        return out

    def objective(self, X, y):
        """J = mean loss on (X, y) + lambda/2 * sum ||W_l||_F^2: the function
        whose gradient :meth:`BackpropTrainer.gradients` returns."""
        value = self.evaluate(X, y)["loss"]
        if self.weight_decay:
            w = self.model.flat_params[:self.model.n_weights].astype(np.float64)
            value += 0.5 * self.weight_decay * float(w @ w)
        return value

    def fit(self, X, y, epochs=1, batch_size=32, shuffle=True, validation_data=None,
            progress=False, seed=None, on_divergence="raise", callbacks=None):
        """Train for ``epochs`` passes over (X, y).

        Parameters
        ----------
        X : ndarray (n_samples, n_inputs) of the model's dtype
        y : targets for X
        epochs : int >= 1
        batch_size : int >= 1 or None
            Samples per update: 1 updates after every sample, None after the
            whole set (full batch); larger than n_samples means full batch.
        shuffle : bool
            Visit the samples in a new random order every epoch.
        validation_data : (X_val, y_val) or None
            Evaluated after every epoch.
        progress : bool
            Show a progress bar (tqdm when installed).
        seed : int or None
            Seed of the shuffling.
        on_divergence : {'raise', 'stop'}
            What to do when a step's loss or gradient is not finite: raise
            :class:`fastbp.DivergenceError` (carrying ``.history``), or stop
            with a RuntimeWarning and return the history with
            ``diverged=True``. Either way the parameters are those from before
            the failing step.
        callbacks : sequence of callables or None
            Each is called as ``callback(trainer, epoch, history)`` after every
            completed epoch (``epoch`` counts from 1) and may append to
            ``history.records``. With callbacks, every epoch runs in a kernel
            call of its own.

        Returns
        -------
        History
        """
        X, labels, targets = self.prepare(X, y)
        epochs = check_positive_int(epochs, "epochs")
        seed = check_seed(seed, "seed")
        batch_size = check_positive_int(batch_size, "batch_size", allow_none=True)
        if on_divergence not in ("raise", "stop"):
            raise ValueError(f"on_divergence={on_divergence!r}; expected 'raise' or 'stop'")
        callbacks = list(callbacks) if callbacks is not None else []
        for cb in callbacks:
            if not callable(cb):
                raise TypeError(f"callbacks must hold callables, got {cb!r}")
        val = None
        if validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
                what = type(validation_data).__name__
                if isinstance(validation_data, (tuple, list)):
                    what += f" of {len(validation_data)} entries"
                raise ValueError(f"validation_data must be a pair (X_val, y_val), got {what}")
            val = self.prepare(*validation_data,
                                names=("validation_data[0]", "validation_data[1]"))
        n = X.shape[0]
        denominator = self._accuracy_denominator(labels, targets)
        bs = n if batch_size is None else min(batch_size, n)
        rng = np.random.default_rng(seed)
        order = np.arange(n, dtype=np.int64)
        data = self.epoch_data(X, labels, targets, order, bs)
        stats = np.zeros((epochs, 4), dtype=np.float64)
        hist = History(accuracy=[] if self._classifier else None,
                       val_loss=[] if val is not None else None,
                       val_accuracy=[] if val is not None and self._classifier else None)
        bar = progress_bar(epochs) if progress else None
        t0 = time.perf_counter()
        shuffle_seed = int(rng.integers(0, 2**63 - 1))
        done, chunk = 0, 1
        growth_warned = False
        try:
            while done < epochs:
                k = 1 if val is not None or callbacks else min(chunk, epochs - done)
                t1 = time.perf_counter()
                plan = EpochPlan(k, bool(shuffle), np.uint64(shuffle_seed), done, bs, 1)
                status, ran = self.fit_epochs(data, plan, stats[done:done + k])
                dt = time.perf_counter() - t1
                for e in range(done, done + ran):
                    self._record_epoch(hist, stats[e], denominator, dt / max(ran, 1), val)
                    first, last = hist.loss[0], hist.loss[-1]
                    if not growth_warned and last > LOSS_GROWTH * max(first, 1e-3):
                        growth_warned = True
                        warnings.warn(f"the training loss grew from {first:.4g} in epoch 1 to "
                                      f"{last:.4g} in epoch {e + 1}: training is diverging "
                                      f"without overflowing; the learning rate "
                                      f"(lr={self.optimizer.lr:g}) may be too large",
                                      RuntimeWarning, stacklevel=2)
                    for cb in callbacks:
                        cb(self, e + 1, hist)
                    hist.wall_time.append(time.perf_counter() - t0)
                hist.iterations += int(stats[done:done + ran, 2].sum())
                if status != codes.OK:
                    hist.iterations += int(stats[done + ran, 2])
                    epoch = done + ran + 1
                    hist.diverged = True
                    hist.message = self._divergence_message(status, f"in epoch {epoch}",
                                                            (X, labels, targets))
                    hist.training_time = time.perf_counter() - t0
                    if on_divergence == "raise":
                        raise DivergenceError(hist.message, epoch=epoch, history=hist)
                    warnings.warn(hist.message, RuntimeWarning, stacklevel=2)
                    return hist
                done += ran
                if bar is not None:
                    bar.update(ran, self._progress_metrics(hist))
                if dt < _SECONDS_PER_CALL:
                    chunk = min(8 * k, max(k, int(k * _SECONDS_PER_CALL / max(dt, 1e-7))))
        finally:
            if bar is not None:
                bar.close()
        hist.training_time = time.perf_counter() - t0
        return hist

    def _record_epoch(self, hist, row, denominator, seconds, val):
        hist.loss.append(float(row[0]))
        if self._classifier:
            hist.accuracy.append(float(row[1]) / denominator)
        hist.epoch_time.append(seconds)
        if val is not None:
            metrics = self._evaluate_prepared(*val)
            hist.val_loss.append(metrics["loss"])
            if self._classifier:
                hist.val_accuracy.append(metrics["accuracy"])

    @staticmethod
    def _progress_metrics(hist):
        metrics = {"loss": hist.loss[-1]}
        if hist.accuracy:
            metrics["acc"] = hist.accuracy[-1]
        if hist.val_loss:
            metrics["val_loss"] = hist.val_loss[-1]
        if hist.val_accuracy:
            metrics["val_acc"] = hist.val_accuracy[-1]
        return metrics

    # -- saving ------------------------------------------------------------------
    def state_arrays(self):
        """Arrays this trainer owns and updates in place, beyond the model:
        name -> array. Saved by :meth:`save_state`, restored in place by
        :meth:`load_state`: the optimizer's state and every declared
        parameter set's arrays. A subclass adds other state it keeps (e.g.
        a flag) by extending the dict.

        Returns
        -------
        dict of str -> ndarray
        """
        arrays = {"optimizer_state": self.optimizer.state,
                  "optimizer_hyper": self.optimizer.hyper}
        for pset in self._parameter_sets.values():
            arrays.update(pset.state_arrays())
        return arrays

    def save_state(self, path):
        """Write the model and this trainer's state to one ``.npz`` file.

        ``fb.load(path)`` reads the model alone; :meth:`load_state` restores
        everything into a trainer built the same way, so training resumes
        exactly where it stopped (optimizer moments and step count included).

        Parameters
        ----------
        path : str or os.PathLike
        """
        arrays = {f"trainer/{k}": v for k, v in self.state_arrays().items()}
        arrays["trainer_class"] = np.str_(type(self).__name__)
        save_model(self.model, path, extra=arrays)

    def load_state(self, path):
        """Restore what :meth:`save_state` wrote into this trainer and its model.

        The trainer must be of the same class with the same architecture and
        dtype; nothing is changed unless every array fits. The file's
        optimizer settings win (learning rate, coefficients, update count and
        state are restored exactly, so training resumes as if it had never
        stopped); weight decay and clipping are the constructor's, as they
        are not part of the state.

        Parameters
        ----------
        path : str or os.PathLike

        Raises
        ------
        ValueError
            The file is not a trainer state of this class, an array's shape or
            dtype differs, an optimizer's hyper-parameters or state are not
            valid, or a parameter set holds NaN or inf (the message names it).
        """
        model = load(path)
        own = self.state_arrays()
        names = ["trainer_class"] + [f"trainer/{k}" for k in own]
        arrays = read_arrays(path, names)
        cls = str(arrays["trainer_class"])
        if cls != type(self).__name__:
            raise ValueError(f"{path!r} holds the state of a {cls}, not a {type(self).__name__}")
        if model.get_config() != self.model.get_config():
            raise ValueError(f"{path!r} holds {model!r}, but this trainer's model is "
                             f"{self.model!r}")
        for k, dest in own.items():
            src = arrays[f"trainer/{k}"]
            if src.shape != dest.shape or src.dtype != dest.dtype:
                raise ValueError(f"{path!r}: trainer/{k} has shape {src.shape} and dtype "
                                 f"{src.dtype}; this trainer expects {dest.shape}, {dest.dtype}")
        optimizers = {"optimizer": self.optimizer}
        for name, pset in self._parameter_sets.items():
            values = arrays[f"trainer/{name}_params"]
            if not all_finite(values):
                bad = int(np.flatnonzero(~np.isfinite(values))[0])
                raise ValueError(f"{path!r}: trainer/{name}_params[{bad}] is {values[bad]}; "
                                 "a saved parameter set must be finite")
            if pset.optimizer is not None:
                optimizers[f"{name}_optimizer"] = pset.optimizer
        for prefix, opt in optimizers.items():
            opt.check_loaded(arrays[f"trainer/{prefix}_hyper"], arrays[f"trainer/{prefix}_state"],
                             repr(path), hyper_name=f"trainer/{prefix}_hyper",
                             state_name=f"trainer/{prefix}_state")
        self.model.flat_params[...] = model.flat_params
        for k, dest in own.items():
            dest[...] = arrays[f"trainer/{k}"]

    def __repr__(self):
        extra = ""
        if self.weight_decay:
            extra += f", weight_decay={self.weight_decay}"
        if self.clip_norm:
            extra += f", clip_norm={self.clip_norm}"
        for name in self.repr_options:
            value = getattr(self, name)
            if value is not None:
                shown = f"{value:g}" if isinstance(value, float) else repr(value)
                extra += f", {name}={shown}"
        return f"{type(self).__name__}({self.model!r}, loss={self.loss!r}, " \
               f"optimizer={self.optimizer!r}{extra})"

"""Synthetic gradients: decoupled neural interfaces (Jaderberg, Czarnecki,
Osindero, Vinyals, Graves, Silver, Kavukcuoglu, ICML 2017), for fb.MLP.

For an MLP h_0 = x, a_l = W_l h_{l-1} + b_l, h_l = f_l(a_l), l = 1..L, a set
D of decoupled hidden layers (1-based indices l in 1..L-1; h_l is the
*post-activation* output of hidden layer l) and the per-sample loss L_i:

* next to each l in D a module M_l predicts g^_l = M_l(h_l [, c]) ~ dL_i/dh_l,
  c the one-hot label (cDNI, ``conditioned=True``; the target row when the
  targets are rows). M_l is linear (``sg_hidden=0``) or has one hidden ReLU
  layer; its last layer starts at zero, so training starts from g^_l = 0;
* the backward pass is backprop's, cut at every l in D: the gradient that
  arrives at h_l from above, G_l = W_{l+1}^T delta_{l+1} (per sample), is
  replaced by g^_l, so layer l (and the layers below it down to the next
  decoupled layer) update along the synthetic gradient pushed through their
  own Jacobians only: delta_l = g^_l * f_l'(a_l), dW_l = mean_i delta_l h_{l-1}^T;
* M_l minimises mean_batch 1/2 ||g^_l - G_l||^2 over its own parameters
  (h_l, c, G_l held constant). G_l is the true backpropagated gradient when
  no layer above l is decoupled, and the bootstrapped one otherwise: the
  synthetic gradient g^_j of the next decoupled layer j > l pushed back
  through layers j..l+1 (with j = l+1: W_{l+1}^T (g^_{l+1} * f'(a_{l+1}))).

The implementation lives in :mod:`alternatives._sg_kernels` (locked schedule)
and :mod:`alternatives._sg_concurrent` (one thread per layer group).
"""
import numpy as np

from fastbp.validation import check_int_at_least, check_seed
from fastbp.kernels import codes
from fastbp.kernels.linalg import blas_flag
from fastbp.kernels.epochs import epoch_seed, shuffle_in_place
from fastbp.models import MLP, ElmanRNN
from fastbp.threads import blas_limit
from fastbp.trainer import Trainer

from . import _sg_concurrent
from . import _sg_kernels as K
from .sg_recurrent import RecurrentSyntheticGradientTrainer, add_modules

__all__ = ["SyntheticGradientTrainer"]

SCHEDULES = ("locked", "concurrent")


class SyntheticGradientTrainer(Trainer):
    """Synthetic gradients / decoupled neural interfaces (Jaderberg et al.
    2017) for :class:`fastbp.MLP`: cDNI by default, DNI with
    ``conditioned=False``.

    The defaults (label-conditioned linear modules, trained by Adam at least
    as fast as the network) are a setting that learns: an unconditioned
    linear module directly below a softmax output cannot predict anything
    once the output layer has fitted its inputs (the best linear predictor
    of W_L^T (p - y) from [h, 1] is zero there; docs/synthetic-gradients.md
    derives it).

    Parameters
    ----------
    model : fb.MLP
        For an fb.ElmanRNN, the truncated-BPTT variant is
        :class:`alternatives.RecurrentSyntheticGradientTrainer`, registered
        under the same name: ``fb.get_trainer("sg", model)`` returns the
        class for the model.
    loss, optimizer
        As for :class:`fastbp.Trainer` (the optimizer updates the model).
    sg_hidden : int >= 0
        0: linear modules; m > 0: one hidden ReLU layer of m units per module.
    conditioned : bool
        cDNI (default): the modules also read the label as a one-hot row (or
        the target row, for targets given as rows). False gives DNI, which
        with linear modules cannot learn the layer below a trained softmax
        output (see above).
    decoupled : 'all' or sequence of int
        The hidden layers that get a module: 1-based indices in 1..L-1
        (l means h_l, the output of W_l). 'all' decouples every hidden layer;
        an empty list gives plain backprop.
    sg_optimizer : fb.SGD, fb.Adam, name or None
        Updates the modules; must not be ``optimizer``. No weight decay or
        clipping applies to the modules. None: Adam(1e-2), or Adam at the
        network's rate when the network's Adam is faster (see
        ``alternatives.sg_recurrent.default_module_optimizer``): modules
        slower than the network leave the hidden layers at chance.
    weight_decay, clip_norm
        As for :class:`fastbp.Trainer`, on the model's update only. In the
        concurrent schedule the norm is clipped per layer group.
    schedule : {'locked', 'concurrent'}
        How ``fit`` runs. 'locked': one thread, every batch's updates from one
        forward pass with the parameters before the batch (see
        :mod:`alternatives._sg_kernels`). 'concurrent': one thread per layer
        group (groups end at the decoupled layers), GIL-free kernels, bounded
        queues between groups; the modules' training targets arrive
        ``staleness`` batches late (see :mod:`alternatives._sg_concurrent`).
        While it runs, BLAS uses one thread per call (through threadpoolctl,
        when installed): the groups' threads already occupy the cores.
        ``step`` and ``update_directions`` are always locked.
    staleness : int >= 0
        Concurrent schedule only: module l is updated on batch t - staleness
        while its layer group runs batch t. 0 reproduces the locked schedule
        exactly (and leaves nothing to overlap).
    sg_seed : int or None
        Seed of the modules' first-layer initialisation (sg_hidden > 0:
        He-normal; the last layer is always zero).

    Attributes
    ----------
    decoupled : tuple of int
        The decoupled layers, ascending.
    sg_params : ndarray
        Flat buffer of every module's parameters, module after module.
    modules : list of list of ndarray
        Per decoupled layer l (n = n_l units, k = n_outputs, m = sg_hidden),
        views into ``sg_params``: linear: [Wh (n, n), Wc (n, k), b (n)];
        hidden: [Ph (m, n), Pc (m, k), p (m), U (n, m), u (n)]; the Wc/Pc
        entries only when conditioned. prediction = h Wh^T + c Wc^T + b, or
        relu(h Ph^T + c Pc^T + p) U^T + u.
    sg_losses : list of float
        The mean module loss (summed over modules) of each ``fit`` epoch.
    last_sg_loss : float or None
        The module loss of the last ``step``.

    Examples
    --------
    Modules with 64 hidden units, each layer group in a thread of its own,
    then how far the modules' predictions are from the gradients they stand
    for:

    >>> trainer = alternatives.SyntheticGradientTrainer(                # doctest: +SKIP
    ...     model, optimizer=fb.Adam(1e-3), sg_hidden=64, schedule="concurrent")
    >>> trainer.fit(X, y, epochs=30, batch_size=128).loss[-1]         # doctest: +SKIP
    >>> trainer.sg_losses[-1]                                         # doctest: +SKIP
    """

    name = "sg"
    search_optimizers = {"sg_lr": "sg_optimizer"}
    supported_models = (MLP,)
    variants = (RecurrentSyntheticGradientTrainer,)
    repr_options = ("sg_hidden", "conditioned", "decoupled", "sg_optimizer", "schedule",
                    "staleness")

    def __init__(self, model, loss=None, optimizer=None, sg_hidden=0, conditioned=True,
                 decoupled="all", sg_optimizer=None, weight_decay=0.0, clip_norm=None,
                 schedule="locked", staleness=1, sg_seed=None):
        if isinstance(model, ElmanRNN):
            raise TypeError("SyntheticGradientTrainer trains fb.MLP models; for an fb.ElmanRNN "
                            "use alternatives.RecurrentSyntheticGradientTrainer(model, "
                            "truncate=k, ...) (fastbp compare picks it for 'sg' by itself)")
        if not isinstance(model, MLP):
            raise TypeError(f"SyntheticGradientTrainer trains fb.MLP models; model is "
                            f"{type(model).__name__}")
        self.sg_hidden = check_int_at_least(sg_hidden, "sg_hidden", 0)
        if not isinstance(conditioned, (bool, np.bool_)):
            raise TypeError(f"conditioned must be a bool, got {conditioned!r}")
        self.conditioned = bool(conditioned)
        self.decoupled = self._check_decoupled(decoupled, model.n_layers)
        if schedule not in SCHEDULES:
            raise ValueError(f"schedule={schedule!r}; expected one of {list(SCHEDULES)}")
        self.schedule = schedule
        self.staleness = check_int_at_least(staleness, "staleness", 0)
        if schedule == "concurrent" and not self.decoupled:
            raise ValueError("schedule='concurrent' needs at least one decoupled layer "
                             "(decoupled=[]: there is nothing to run concurrently)")
        self.sg_seed = check_seed(sg_seed, "sg_seed")
        super().__init__(model, loss=loss, optimizer=optimizer, weight_decay=weight_decay,
                         clip_norm=clip_norm)
        self._sgl = self._module_layout(model.sizes)
        table = self._sgl.table
        self._sg = add_modules(self, int(table[:, K.SIZE].sum()), sg_optimizer, optimizer)
        self.modules = self._module_views(self.sg_params)
        if self.sg_hidden:
            # first layer He-normal over the module's whole input (h_l and c)
            rng = np.random.default_rng(self.sg_seed)
            for views, l in zip(self.modules, self.decoupled):
                fan_in = model.sizes[l] + (model.n_outputs if self.conditioned else 0)
                for first in views[:2 if self.conditioned else 1]:
                    first[...] = rng.normal(0.0, np.sqrt(2.0 / fan_in), size=first.shape)
        sizes = [model.sizes[l] * (model.sizes[l] + model.n_outputs) for l in self.decoupled]
        sizes += [max(self.sg_hidden, 1) * (model.sizes[l] + model.n_outputs)
                  for l in self.decoupled]
        self._max_product = max([model.max_layer_size] + sizes)
        self._sw = np.zeros(0, dtype=model.dtype)
        self._sw_rows = 0
        self._uses_labels = None
        self._pipeline = None
        self.sg_losses = []
        self.last_sg_loss = None

    @classmethod
    def search_space(cls, task=None, model=None):
        """The common space (see :meth:`fastbp.Trainer.search_space`),
        ``sg_lr``: the rate of an Adam ``sg_optimizer`` for the modules,
        log-uniform in [1e-4, 1e-1], and ``conditioned`` (DNI or cDNI)."""
        from fastbp import Choice, LogUniform
        space = super().search_space(task, model)
        space["sg_lr"] = LogUniform(1e-4, 1e-1)
        space["conditioned"] = Choice([True, False])
        return space


    @staticmethod
    def _check_decoupled(decoupled, L):
        hidden = list(range(1, L))
        if isinstance(decoupled, str):
            if decoupled != "all":
                raise ValueError(f"decoupled={decoupled!r}; expected 'all' or a list of "
                                 f"hidden-layer indices in {hidden}")
            return tuple(hidden)
        try:
            items = list(decoupled)
        except TypeError:
            raise TypeError(f"decoupled must be 'all' or a sequence of ints, got "
                            f"{decoupled!r}") from None
        out = []
        for l in items:
            if isinstance(l, bool) or not isinstance(l, (int, np.integer)):
                raise TypeError(f"decoupled must hold ints, got {l!r} in {items}")
            if not 1 <= l <= L - 1:
                raise ValueError(f"decoupled contains {l}, which is not a hidden layer: "
                                 f"expected indices in {hidden} (1-based, h_l = output of W_l)")
            if int(l) in out:
                raise ValueError(f"decoupled lists layer {l} twice: {items}")
            out.append(int(l))
        return tuple(sorted(out))

    def _module_layout(self, sizes):
        """The modules as the kernels see them (see :data:`_sg_kernels.SGLayout`)."""
        m = self.sg_hidden
        k = sizes[-1] if self.conditioned else 0
        table = np.zeros((len(self.decoupled), 6), dtype=np.int64)
        param = block = 0
        for row, l in zip(table, self.decoupled):
            n = sizes[l]
            size = n * (n + k) + n if m == 0 else m * (n + k) + m + n * m + n
            row[:] = l, n, param, size, block, sum(sizes[1:l])
            param += size
            block += n
        return K.SGLayout(table, int(m), int(k))

    def _module_views(self, flat):
        m, k, cond = self.sg_hidden, self.model.n_outputs, self.conditioned
        out, off = [], 0

        def take(shape):
            nonlocal off
            size = int(np.prod(shape))
            v = flat[off:off + size].reshape(shape)
            off += size
            return v

        for l in self.decoupled:
            n = self.model.sizes[l]
            first = n if m == 0 else m
            views = [take((first, n))]
            if cond:
                views.append(take((first, k)))
            views.append(take((first,)))
            if m:
                views += [take((n, m)), take((n,))]
            out.append(views)
        assert off == flat.shape[0]
        return out

    # -- buffers ---------------------------------------------------------------------
    def _sg_blas(self, rows):
        return blas_flag(rows, self._max_product)

    def _sg_workspace(self, rows):
        """The module workspace (P, T, Z, DZ, R: see :func:`_sg_kernels.sw_offsets`)."""
        if rows > self._sw_rows:
            widths = self._sgl.table[:, K.WIDTH]
            m = self.sg_hidden
            size = rows * (2 * widths.sum() + m * (widths.shape[0] + 1) + widths.max(initial=0))
            self._sw = np.zeros(int(size), dtype=self.model.dtype)
            self._sw_rows = rows
        return self._sw

    # -- steps -----------------------------------------------------------------------
    def _kernel_args(self, rows):
        m = self.model
        return K.SGArgs(self.step_arrays, self._sg.step_arrays, self.workspace(rows),
                        self._sg_workspace(rows), m.layout, self._sgl, self._sg_blas(rows))

    def train_batch(self, X, labels, targets):
        rows = X.shape[0]
        obj, correct, status, sg_loss = K.joint_step(self._kernel_args(rows), X.reshape(-1),
                                                     labels, targets, rows)
        if status == codes.OK:
            self.last_sg_loss = float(sg_loss)
        return obj, correct, status

    def fit_epochs(self, data, plan, stats):
        self._uses_labels = data.labels.shape[0] > 0
        if self.schedule == "concurrent":
            return self._fit_concurrent(data, plan, stats)
        status, ran = K.train_epochs(self._kernel_args(plan.batch_size), data, plan, stats)
        self.sg_losses.extend(float(v) for v in stats[:ran, 3])
        return status, ran

    def _fit_concurrent(self, data, plan, stats, threaded=True):
        if self._pipeline is None:
            self._pipeline = _sg_concurrent.Pipeline(self)
        X, labels, targets, order = data.X, data.labels, data.targets, data.order
        n = X.shape[0]
        with blas_limit(1):   # one thread per layer group already fills the cores
            for e in range(plan.n_epochs):
                if plan.shuffle:
                    seed = np.uint64(epoch_seed(plan.seed, plan.first_epoch + e))
                    shuffle_in_place(order, seed)
                status, (obj, correct, steps, sg_loss) = _sg_concurrent.run_epoch(
                    self, X, labels, targets, order, plan.batch_size, self.staleness, threaded)
                stats[e] = (obj / n, correct, steps, sg_loss / n)
                if status != codes.OK:
                    return int(status), e
                self.sg_losses.append(sg_loss / n)
        return codes.OK, plan.n_epochs

    # -- inspection ------------------------------------------------------------------
    def _directions(self, X, y, given=None):
        """Run the locked directions kernel on one batch; returns rows."""
        X, labels, targets = self.prepare(X, y)
        rows = X.shape[0]
        args = self._kernel_args(rows)
        sw = args.sw
        if given is not None:
            blocks = self._blocks(sw, rows, 0)
            if not isinstance(given, (list, tuple)) or len(given) != len(blocks):
                raise ValueError(f"synthetic must be a list of {len(blocks)} arrays (one per "
                                 f"decoupled layer {list(self.decoupled)}), got "
                                 f"{type(given).__name__}"
                                 f"{' of ' + str(len(given)) if hasattr(given, '__len__') else ''}")
            for i, (b, g) in enumerate(zip(blocks, given)):
                g = np.asarray(g)
                if g.shape != b.shape:
                    raise ValueError(f"synthetic[{i}] has shape {g.shape}; expected {b.shape} "
                                     f"(rows, n_{self.decoupled[i]})")
                b[...] = g
        K.directions(args, X.reshape(-1), labels, targets, rows, given is not None)
        return rows, labels, targets

    def _blocks(self, sw, rows, which):
        """The P (which=0) or T (which=1) blocks of the module workspace."""
        S = sum(self.model.sizes[l] for l in self.decoupled)
        out, off = [], which * rows * S
        for l in self.decoupled:
            n = self.model.sizes[l]
            out.append(sw[off:off + rows * n].reshape(rows, n))
            off += rows * n
        return out

    def update_directions(self, X, y, synthetic=None):
        """The direction this trainer applies to ``model.params`` on one batch
        (before clipping), without updating anything.

        Parameters
        ----------
        X : ndarray (batch, n_inputs) of the model's dtype
        y : targets for X (see :func:`fastbp.losses.prepare_targets`)
        synthetic : list of ndarray or None
            One (batch, n_l) array per decoupled layer, in ``decoupled``
            order: per-sample gradients used in place of the modules'
            predictions (e.g. the true dL_i/dh_l, to check that a perfect
            module gives backprop's update).

        Returns
        -------
        list of ndarray
            Fresh arrays aligned with ``model.params``: [dW_1, db_1, ..., dW_L,
            db_L], of the model's dtype: the synthetic-gradient direction of the
            mean loss plus ``weight_decay * W_l``.
        """
        self._directions(X, y, synthetic)
        return self.directions_from_grads()

    def synthetic_gradients(self, X, y):
        """The modules' predictions and their training targets on one batch.

        Returns
        -------
        predictions, targets : list of ndarray
            One (batch, n_l) array each per decoupled layer (fresh copies):
            g^_l = M_l(h_l [, c]) and G_l, the gradient arriving at h_l from
            above (true or bootstrapped), both per sample (d loss_i / d h_l).
        """
        rows, _, _ = self._directions(X, y)
        sw = self._sw
        return ([b.copy() for b in self._blocks(sw, rows, 0)],
                [b.copy() for b in self._blocks(sw, rows, 1)])

    def module_directions(self, X, y):
        """The modules' training direction on one batch, without updating.

        Returns
        -------
        (list of list of ndarray, float)
            Gradients shaped like ``modules`` (fresh arrays) and the module loss
            sum_l mean_batch 1/2 ||g^_l - G_l||^2.
        """
        rows, labels, targets = self._directions(X, y)
        loss = K.module_directions(self._kernel_args(rows), labels, targets, rows)
        grads = self._module_views(self._sg.grads)
        return [[g.copy() for g in views] for views in grads], float(loss)

    def state_arrays(self):
        """Model optimizer state, the modules and their optimizer's state."""
        return {**super().state_arrays(), "sg_params": self.sg_params,
                "sg_optimizer_state": self.sg_optimizer.state,
                "sg_optimizer_hyper": self.sg_optimizer.hyper}

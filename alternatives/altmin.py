"""Online alternating minimisation with auxiliary variables (Choromanska et
al., ICML 2019) for fb.MLP: AM-SGD / AM-Adam, and AM-mem.

For an MLP h_0 = x, a_l = W_l h_{l-1} + b_l, h_l = f_l(a_l), l = 1..L, the
hidden pre-activations become free "codes" c_l (l = 1..L-1). Per mini-batch
(nothing but the optimizer state and, for AM-mem, the memory is carried from
one batch to the next):

1. a forward pass gives c0_l = a_l;
2. codes, top down, each by ``code_steps`` Nesterov steps from c0_l (every
   squared distance a mean over its entries)::

       top:    (1/mu) loss(W_L f(c) + b_L, y) + mean((c - c0_{L-1})^2)
       lower:  mean((W_{l+1} f(c) + b_{l+1} - c*_{l+1})^2) + mean((c - c0_l)^2)

3. weights: the output layer takes one optimizer step on the model's loss
   at f(c*_{L-1}) (the batch mean, as backprop's), every hidden layer one
   optimizer step on its own regression mean((W_l f(c*_{l-1}) + b_l -
   c*_l)^2) (f(c*_0) = x), which depends on no other layer's update;
4. AM-mem (``memory=decay``): the hidden layers instead keep
   A_l = sum a a^T and B_l = sum c*_l a^T (a = [f(c*_{l-1}), 1]) over the
   batches seen and take one Gauss-Seidel sweep on [W_l b_l] A_l = B_l.

The kernels are in :mod:`alternatives._altmin_kernels`; the documentation
page "Alternating minimisation" has the equations, the costs and how the
defaults were chosen.
"""
import numbers

import numpy as np

from fastbp.models import MLP
from fastbp.trainer import Trainer
from fastbp.validation import check_nonnegative_float, check_positive_float, check_positive_int

from . import _altmin_kernels as K
from . import _kernels

__all__ = ["AltMinTrainer"]


def _check_unit_interval(value, argument, what):
    """A finite real in [0, 1), returned as float."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{argument} must be {what}, got {value!r}")
    value = float(value)
    if not 0.0 <= value < 1.0:    # NaN fails too
        raise ValueError(f"{argument} must be {what}, got {value}")
    return value


class AltMinTrainer(Trainer):
    """Online alternating minimisation with auxiliary variables (Choromanska
    et al. 2019) for :class:`fastbp.MLP`.

    Each step optimises the hidden pre-activations of the batch as free
    codes (top layer first, each by ``code_steps`` Nesterov steps), then
    updates every layer from the codes alone: the output layer on the
    model's loss at the top code, each hidden layer on its own regression
    onto its code (see the module docstring for the objectives). Loss and
    accuracy are those of the forward pass before the update, as for
    backprop.

    Parameters
    ----------
    model : fb.MLP
    loss, optimizer
        As for :class:`fastbp.Trainer` (Adam(1e-3) by default: AM-Adam).
        Without memory the optimizer takes one step on every layer's
        direction; with memory only on the output layer.
    mu : float > 0
        Weight of the top code's proximity term against the loss: the top
        code minimises (1/mu) loss + mean((c - c0)^2). Small mu lets the top
        code follow the loss; mu -> infinity keeps every code at its forward
        value (the hidden layers then do not move).
    code_steps : int >= 1
        Nesterov steps per code per batch.
    code_lr : float > 0
        Step size of the code steps. The lower codes' objectives are means
        over rows * width entries, so a lower code moves by about
        2 * code_lr / (rows * width) times its residual per step: choose
        code_lr with the batch size and the widths in mind (see the
        documentation page).
    code_momentum : float in [0, 1)
        Nesterov momentum of the code steps (velocity 0 at each code's start).
    memory : None or float in [0, 1)
        None: AM-SGD / AM-Adam (every layer one optimizer step). A number
        ``decay`` turns on AM-mem: each hidden layer keeps its memory
        A <- (1 - decay) A + sum a a^T, B <- (1 - decay) B + sum c* a^T, so
        ``decay`` is the fraction of the memory forgotten per batch: 0 sums
        every batch seen (the sweeps' fixed point is the least-squares fit
        W = B A^-1 over all of them); otherwise batch t - k weighs
        (1 - decay)^k. The memory is saved by :meth:`save_state`.
    ridge : float >= 0 or None
        AM-mem only (None without memory): the sweeps solve
        [W b] (A + ridge P) = B, P the identity without the bias entry (the
        hidden layers' weight decay; ``weight_decay`` then reaches only
        W_L). None means 1.0: without it the first batches' sums (rank at
        most the batch size) let the sweeps grow weights along directions
        no sample constrains, and on digits the run diverged.
    weight_decay, clip_norm
        As for :class:`fastbp.Trainer`; with memory they act on the output
        layer's update only.

    Attributes
    ----------
    mu, code_steps, code_lr, code_momentum, memory, ridge
        The settings, fixed at construction (``ridge`` as used: 1.0 for
        None with memory, None without memory).

    Notes
    -----
    All or nothing: a non-finite loss, gradient, update, memory or swept
    weight leaves the parameters, the optimizer state and the memory as
    before the step. A step of L layers costs about (6 + 4 code_steps) / 6
    backprop steps when every layer costs the same (the documentation page
    has measured ratios); AM-mem adds a sweep of n_out (n_in + 1)^2
    multiply-adds per hidden layer.

    Examples
    --------
    AM-Adam with three code steps, and AM-mem, whose memory forgets a tenth
    per batch and holds one pair (A, B) per hidden layer:

    >>> import alternatives
    >>> model = fb.MLP([64, 100, 100, 10], activation="relu", output="softmax", seed=0)
    >>> am = alternatives.AltMinTrainer(model, optimizer=fb.Adam(1e-3), code_steps=3)
    >>> mem = alternatives.AltMinTrainer(model.copy(), memory=0.1)
    >>> [A.shape for A, B in mem.memory_matrices()]
    [(65, 65), (101, 101)]
    """

    name = "altmin"
    supported_models = (MLP,)
    repr_options = ("mu", "code_steps", "code_lr", "code_momentum", "memory", "ridge")

    def __init__(self, model, loss=None, optimizer=None, *, mu=1.0, code_steps=5,
                 code_lr=1.0, code_momentum=0.9, memory=None, ridge=None, weight_decay=0.0,
                 clip_norm=None):
        self.mu = check_positive_float(mu, "mu")
        self.code_steps = check_positive_int(code_steps, "code_steps")
        self.code_lr = check_positive_float(code_lr, "code_lr")
        self.code_momentum = _check_unit_interval(code_momentum, "code_momentum",
                                                  "a number in [0, 1)")
        if memory is not None:
            memory = _check_unit_interval(memory, "memory", "None or a decay in [0, 1) (the "
                                          "fraction of the memory forgotten per batch)")
        self.memory = memory
        if memory is None:
            if ridge is not None:
                raise ValueError(f"ridge={ridge!r} applies to AM-mem only; pass memory=decay or "
                                 "leave ridge=None")
            self.ridge = None
        else:
            self.ridge = 1.0 if ridge is None else check_nonnegative_float(ridge, "ridge")
        super().__init__(model, loss=loss, optimizer=optimizer, weight_decay=weight_decay,
                         clip_norm=clip_norm)
        self._hyper = K.make_hyper(self.mu, self.code_lr, self.code_momentum, self.code_steps,
                                   memory or 0.0, self.ridge or 0.0)
        m = self.model
        if memory is None:
            self._args_class = K.AltMinArgs
            empty = np.zeros(0, dtype=m.dtype)
            self._memory_arrays = (empty,) * 5
        else:
            self._args_class = K.AltMinMemArgs
            a, b = K.memory_sizes(m.sizes)
            flat = self.add_parameter_set("memory", a + b, optimizer=False).params
            _, _, A_new, B_new, cand = K.memory_buffers(m.layout, m.dtype, m.n_params)
            self._memory_arrays = (flat[:a], flat[a:], A_new, B_new, cand)
        self._capacity = 0
        self._code_buffers = None
        self._args = None

    @classmethod
    def search_space(cls, task=None, model=None):
        """The common space (see :meth:`fastbp.Trainer.search_space`), ``mu``
        log-uniform in [0.01, 100] and the code step ``code_lr``
        log-uniform in [0.1, 10]."""
        from fastbp import LogUniform
        space = super().search_space(task, model)
        space["mu"] = LogUniform(0.01, 100.0)
        space["code_lr"] = LogUniform(0.1, 10.0)
        return space

    # -- kernel arguments ----------------------------------------------------------------
    def _kernel_args(self, rows):
        """The kernels' arrays for a batch of ``rows``: built once per
        capacity (code buffers grown only for a larger batch) and rebuilt
        only when the workspace or the BLAS switch changes."""
        m = self.model
        ws = self.workspace(rows)
        blas = m.blas(rows)
        args = self._args
        if rows > self._capacity:
            self._code_buffers = K.code_buffers(m.layout, rows, m.dtype, ws)[1:]
            self._capacity = rows
            args = None
        if args is None or args.ws is not ws or args.blas != blas:
            args = self._args_class(*self.step_arrays, ws, m.layout, blas, self._hyper,
                                    *self._code_buffers, *self._memory_arrays)
            self._args = args
        return args

    # -- the hooks -------------------------------------------------------------------------
    def train_batch(self, X, labels, targets):
        rows = X.shape[0]
        step = K.altmin_step if self.memory is None else K.altmin_mem_step
        return step(self._kernel_args(rows), X.reshape(-1), labels, targets, rows)

    def fit_epochs(self, data, plan, stats):
        return _kernels.train_epochs(self._kernel_args(plan.batch_size), data, plan, stats)

    def update_directions(self, X, y):
        """The direction a step on (X, y) would apply (before clipping),
        without changing anything; arguments as for
        :meth:`fastbp.Trainer.update_directions`.

        Returns
        -------
        list of ndarray
            Fresh arrays aligned with ``model.params``. Without memory: every
            layer's gradient (the output layer's loss gradient at the top
            code, each hidden layer's regression gradient at the final
            codes) plus ``weight_decay * W_l``. With memory: the output
            layer's as above, and for each hidden layer W_l minus its swept
            value (the sweep's displacement, negated so that it points the
            way a gradient does).
        """
        X, labels, targets = self.prepare(X, y)
        rows = X.shape[0]
        args = self._kernel_args(rows)
        if self.memory is None:
            K.step_directions(args, X.reshape(-1), labels, targets, rows)
            return self.directions_from_grads()
        K.mem_directions(args, X.reshape(-1), labels, targets, rows)
        return [g.copy() for g in self.model.views(self.grads)]

    # -- the memory -------------------------------------------------------------------------
    def memory_matrices(self):
        """AM-mem's memory as matrices, one pair per hidden layer.

        Returns
        -------
        list of (A, B)
            float64 copies: A (n_{l-1} + 1, n_{l-1} + 1) = sum a a^T and B
            (n_l, n_{l-1} + 1) = sum c*_l a^T, a = [f(c*_{l-1}), 1] (the bias
            last, as in [W_l b_l]), over the batches remembered (weighted
            by ``memory``'s decay). Empty without memory.
        """
        if self.memory is None:
            return []
        flat_a, flat_b = self._memory_arrays[:2]
        out, ia, ib = [], 0, 0
        for n, m in zip(self.model.sizes[:-2], self.model.sizes[1:-1]):
            A = np.empty((n + 1, n + 1))
            A[:n, :n] = flat_a[ia:ia + n * n].reshape(n, n)
            A[n, :n] = A[:n, n] = flat_a[ia + n * n:ia + n * n + n]
            A[n, n] = flat_a[ia + n * n + n]
            B = np.empty((m, n + 1))
            B[:, :n] = flat_b[ib:ib + m * n].reshape(m, n)
            B[:, n] = flat_b[ib + m * n:ib + m * n + m]
            ia += n * n + n + 1
            ib += m * (n + 1)
            out.append((A, B))
        return out

"""Optimizers: small objects holding hyper-parameters and state for one flat
parameter buffer; the update itself is the kernel
:func:`fastbp.kernels.optim.apply_update`.

An optimizer is bound to one trainer (``trainer.optimizer``); its state
(``optimizer.state``, shape (n_slots, n_params)) and update count
(``optimizer.t``) can be inspected, and ``lr`` may be changed between steps,
for example for a learning-rate schedule.
"""
import numpy as np

from .validation import check_nonnegative_float, check_positive_float
from .kernels import codes
from .kernels.optim import EPS, KIND, LR, T, A, B


class Optimizer:
    """Base class: a float64 hyper-parameter vector and a state buffer."""

    kind = None
    n_slots = 0

    def __init__(self, lr):
        self._hyper = np.zeros(6, dtype=np.float64)
        self._hyper[KIND] = self.kind
        self.lr = lr
        self.state = None

    @property
    def lr(self):
        """Learning rate (float > 0)."""
        return float(self._hyper[LR])

    @lr.setter
    def lr(self, value):
        self._hyper[LR] = check_positive_float(value, "lr")

    @property
    def t(self):
        """Number of updates applied so far."""
        return int(self._hyper[T])

    @property
    def hyper(self):
        """The float64 vector (6,) that :mod:`fastbp.kernels.optim` reads: kind
        code, lr, two method coefficients, eps and the update count, which the
        kernels advance in place. For trainers that call the kernels directly
        (``alternatives``, plug-ins); set hyper-parameters through the named
        properties, not here."""
        return self._hyper

    def bind(self, n_params, dtype):
        """Allocate zeroed state for ``n_params`` parameters of ``dtype``.

        Called by trainers; binding an optimizer that already holds state for a
        different buffer raises, so one optimizer never mixes two models.
        """
        if self.state is not None:
            if self.state.shape[1] == n_params and self.state.dtype == dtype:
                return
            raise ValueError(f"this {type(self).__name__} already holds state for "
                             f"{self.state.shape[1]} {self.state.dtype} parameters; create "
                             "a new optimizer for each trainer")
        self.state = np.zeros((self.n_slots, n_params), dtype=dtype)

    def reset(self):
        """Zero the state and the update count."""
        if self.state is not None:
            self.state[...] = 0
        self._hyper[T] = 0.0

    def __repr__(self):
        return f"{type(self).__name__}({self._describe()})"


class SGD(Optimizer):
    """Stochastic gradient descent with optional (Nesterov) momentum.

    v <- momentum * v + g;  p <- p - lr * v  (or p - lr * (g + momentum * v)
    with ``nesterov=True``), the torch.optim.SGD convention.

    Parameters
    ----------
    lr : float > 0
    momentum : float in [0, 1)
    nesterov : bool, requires momentum > 0
    """

    kind = codes.SGD

    def __init__(self, lr=0.01, momentum=0.0, nesterov=False):
        super().__init__(lr)
        momentum = check_nonnegative_float(momentum, "momentum")
        if momentum >= 1:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        if nesterov and momentum == 0:
            raise ValueError("nesterov=True needs momentum > 0, got momentum=0")
        self._hyper[A] = momentum
        self._hyper[B] = 1.0 if nesterov else 0.0
        self.n_slots = 1 if momentum > 0 else 0

    @property
    def momentum(self):
        return float(self._hyper[A])

    @property
    def nesterov(self):
        return bool(self._hyper[B])

    def _describe(self):
        return f"lr={self.lr}, momentum={self.momentum}, nesterov={self.nesterov}"


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015) with bias correction.

    Parameters
    ----------
    lr : float > 0
    betas : (float, float), each in [0, 1)
    eps : float > 0
    """

    kind = codes.ADAM
    n_slots = 2

    def __init__(self, lr=1e-3, betas=(0.9, 0.999), eps=1e-8):
        super().__init__(lr)
        try:
            b1, b2 = betas
        except (TypeError, ValueError):
            raise TypeError(f"betas must be a pair (beta1, beta2), got {betas!r}") from None
        for name, b in (("betas[0]", b1), ("betas[1]", b2)):
            b = check_nonnegative_float(b, name)
            if b >= 1:
                raise ValueError(f"{name} must be in [0, 1), got {b}")
        self._hyper[A] = float(b1)
        self._hyper[B] = float(b2)
        self._hyper[EPS] = check_positive_float(eps, "eps")

    @property
    def betas(self):
        return float(self._hyper[A]), float(self._hyper[B])

    @property
    def eps(self):
        return float(self._hyper[EPS])

    def _describe(self):
        return f"lr={self.lr}, betas={self.betas}, eps={self.eps}"


#: name -> optimizer class, for ``optimizer="adam"`` and the command line
OPTIMIZERS = {"sgd": SGD, "adam": Adam}


def get_optimizer(optimizer):
    """Return an Optimizer from an instance, a registry name, or None (Adam)."""
    if optimizer is None:
        return Adam()
    if isinstance(optimizer, Optimizer):
        return optimizer
    if isinstance(optimizer, str) and optimizer in OPTIMIZERS:
        return OPTIMIZERS[optimizer]()
    raise TypeError(f"optimizer must be an fb.SGD/fb.Adam instance or one of "
                    f"{sorted(OPTIMIZERS)}, got {optimizer!r}")

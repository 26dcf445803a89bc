"""Optimizers: small objects holding hyper-parameters and state for one flat
parameter buffer; the update itself is the kernel
:func:`fastbp.kernels.optim.apply_update`.

An optimizer serves exactly one trainer (``trainer.optimizer``): the trainer
binds it to its model's parameter buffer, and a second binding raises (two
trainers sharing one set of moments would silently corrupt both runs). Use
:meth:`Optimizer.copy` for another trainer with the same settings. Its state
(``optimizer.state``, shape (n_slots, n_params)) and update count
(``optimizer.t``) can be inspected, and ``lr`` may be changed between steps,
for example for a learning-rate schedule.
"""
import numpy as np

from .validation import check_nonnegative_float, check_positive_float
from .kernels import codes
from .kernels.optim import EPS, KIND, LR, T, A, B

#: optimizer kind code (``hyper[0]``) -> class name, for messages
KIND_NAMES = {codes.SGD: "SGD", codes.ADAM: "Adam"}


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

        Called once, by the trainer that owns this optimizer.

        Parameters
        ----------
        n_params : int
            Length of the parameter buffer the optimizer will update.
        dtype : numpy dtype
            The buffer's dtype (float32 or float64); the state has it too.

        Raises
        ------
        ValueError
            When the optimizer is already bound (to another trainer, or to
            another buffer): one optimizer never serves two trainers, whose
            updates would otherwise share one set of moments. Create a new
            optimizer per trainer, or pass ``optimizer.copy()``.
        """
        if self.state is not None:
            raise ValueError(
                f"this {type(self).__name__} is already bound to a trainer (state for "
                f"{self.state.shape[1]} {self.state.dtype} parameters; asked again for "
                f"{n_params} {np.dtype(dtype)} parameters); an optimizer serves one "
                f"trainer: create a new optimizer for each trainer, or pass "
                f"optimizer.copy()")
        self.state = np.zeros((self.n_slots, n_params), dtype=dtype)

    def copy(self):
        """A new, unbound optimizer with the same hyper-parameters.

        The state and the update count are not copied: the copy starts fresh,
        ready to be given to another trainer.

        Returns
        -------
        Optimizer
            Of the same class.
        """
        new = object.__new__(type(self))
        new.__dict__.update(self.__dict__)
        new._hyper = self._hyper.copy()
        new._hyper[T] = 0.0
        new.state = None
        return new

    def check_loaded(self, hyper, state, source="the loaded state", hyper_name="optimizer_hyper",
                     state_name="optimizer_state"):
        """Validate a hyper-parameter vector and a state buffer read from a file
        before they replace this optimizer's, as strictly as the constructor
        validates its arguments.

        On resume (``Trainer.load_state``) the file wins: its learning rate,
        method coefficients (momentum and nesterov, or betas and eps), update
        count and state are restored exactly, so that training continues as
        if it had never stopped, whatever this optimizer was constructed with.
        Only the kind of optimizer and the shape of its state must match.

        Parameters
        ----------
        hyper : ndarray (6,) of float64
            ``[kind, lr, a, b, eps, t]`` as :attr:`hyper` holds them.
        state : ndarray (n_slots, n_params)
            As :attr:`state` holds it; the dtype of the bound state.
        source : str
            Where the arrays come from (the file's path), for messages.
        hyper_name, state_name : str
            Names of the two arrays in ``source``, for messages.

        Raises
        ------
        ValueError
            Naming ``source``, the array, the entry and the value, when the
            vector is not a valid hyper-parameter vector of this optimizer's
            kind (another or unknown kind code, lr <= 0, a coefficient out of
            its range, a non-integral or negative update count, NaN or inf) or
            the state does not fit (shape, dtype, NaN or inf, a negative Adam
            second moment). Nothing is changed.
        """
        where = f"{source}: {hyper_name}"
        if not isinstance(hyper, np.ndarray) or hyper.shape != self._hyper.shape \
                or hyper.dtype != np.float64:
            raise ValueError(f"{where} must be a float64 array of shape {self._hyper.shape}, "
                             f"got {_describe_array(hyper)}")
        kind = hyper[KIND]
        if kind != self.kind:
            what = (f"the code of {KIND_NAMES[int(kind)]}" if kind in KIND_NAMES
                    else "not a known optimizer code")
            raise ValueError(f"{where}[{KIND}] (optimizer kind) is {kind!r}, {what}; this "
                             f"trainer's optimizer is {type(self).__name__} (code {self.kind}); "
                             f"known codes: {KIND_NAMES}")

        def name(label, index):
            return f"{where}[{index}] ({label})"

        check_positive_float(float(hyper[LR]), name("lr", LR))
        self._check_coefficients(hyper[A], hyper[B], hyper[EPS], name)
        t = hyper[T]
        if not np.isfinite(t) or t < 0 or t != np.floor(t):
            raise ValueError(f"{name('update count t', T)} must be an integer >= 0, got {t!r}")
        slots = self._slots_for(hyper)
        where = f"{source}: {state_name}"
        if self.state is not None and slots != self.state.shape[0]:
            raise ValueError(f"{where}: the loaded {type(self).__name__}"
                             f"({self._describe_hyper(hyper)}) keeps {slots} state slot(s), "
                             f"this {self!r} keeps {self.state.shape[0]}; build the trainer's "
                             "optimizer with the same method (momentum or none) to resume")
        expected = (slots, self.state.shape[1] if self.state is not None else "n_params")
        if not isinstance(state, np.ndarray) or state.ndim != 2 or state.shape[0] != slots \
                or (self.state is not None and state.shape != self.state.shape):
            raise ValueError(f"{where} must have shape {expected} for {type(self).__name__}"
                             f"({self._describe_hyper(hyper)}), got {_describe_array(state)}")
        if self.state is not None and state.dtype != self.state.dtype:
            raise ValueError(f"{where} has dtype {state.dtype}; expected {self.state.dtype}")
        if state.size and not np.isfinite(state).all():
            bad = tuple(int(i) for i in np.argwhere(~np.isfinite(state))[0])
            raise ValueError(f"{where} contains {state[bad]} at index {bad}; expected finite "
                             "values")
        self._check_state(state, where)

    # -- per-method rules, shared by the constructors and check_loaded ----------------
    @classmethod
    def _check_coefficients(cls, a, b, eps, name):
        """Validate the method coefficients; ``name(label, index)`` names one
        in messages. Returns them as floats."""
        return a, b, eps

    def _slots_for(self, hyper):
        """State slots an optimizer with hyper-parameters ``hyper`` keeps."""
        return self.n_slots

    def _check_state(self, state, where):
        """Method-specific checks of a finite loaded state."""

    def _describe_hyper(self, hyper):
        return f"lr={hyper[LR]}"

    def reset(self):
        """Zero the state and the update count."""
        if self.state is not None:
            self.state[...] = 0
        self._hyper[T] = 0.0

    def __repr__(self):
        return f"{type(self).__name__}({self._describe_hyper(self._hyper)})"


def _describe_array(a):
    if isinstance(a, np.ndarray):
        return f"shape {a.shape} and dtype {a.dtype}"
    return f"{type(a).__name__}"


def _constructor_name(label, index):
    return label


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
        momentum, flag, _ = self._check_coefficients(momentum, 1.0 if nesterov else 0.0, 0.0,
                                                     _constructor_name)
        self._hyper[A] = momentum
        self._hyper[B] = flag
        self.n_slots = self._slots_for(self._hyper)

    @classmethod
    def _check_coefficients(cls, momentum, nesterov, eps, name):
        momentum = check_nonnegative_float(momentum, name("momentum", A))
        if momentum >= 1:
            raise ValueError(f"{name('momentum', A)} must be in [0, 1), got {momentum}")
        if nesterov not in (0.0, 1.0):
            raise ValueError(f"{name('nesterov', B)} must be 0 or 1, got {nesterov!r}")
        if nesterov and momentum == 0:
            raise ValueError(f"{name('nesterov', B)}=True needs momentum > 0, got "
                             f"{name('momentum', A)}=0")
        if eps != 0:
            raise ValueError(f"{name('unused', EPS)} must be 0 for SGD, got {eps!r}")
        return momentum, float(nesterov), 0.0

    def _slots_for(self, hyper):
        return 1 if hyper[A] > 0 else 0

    @property
    def momentum(self):
        return float(self._hyper[A])

    @property
    def nesterov(self):
        return bool(self._hyper[B])

    def _describe_hyper(self, hyper):
        return f"lr={float(hyper[LR])}, momentum={float(hyper[A])}, nesterov={bool(hyper[B])}"


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
        self._hyper[A], self._hyper[B], self._hyper[EPS] = self._check_coefficients(
            b1, b2, eps, _constructor_name)

    @classmethod
    def _check_coefficients(cls, b1, b2, eps, name):
        betas = []
        for label, index, b in (("betas[0]", A, b1), ("betas[1]", B, b2)):
            b = check_nonnegative_float(b, name(label, index))
            if b >= 1:
                raise ValueError(f"{name(label, index)} must be in [0, 1), got {b}")
            betas.append(b)
        return betas[0], betas[1], check_positive_float(eps, name("eps", EPS))

    def _check_state(self, state, where):
        if state.size and state[1].min() < 0:
            i = int(np.argmin(state[1]))
            raise ValueError(f"{where}[1] (second moments) holds {state[1, i]} at index {i}; "
                             "expected values >= 0")

    @property
    def betas(self):
        return float(self._hyper[A]), float(self._hyper[B])

    @property
    def eps(self):
        return float(self._hyper[EPS])

    def _describe_hyper(self, hyper):
        return f"lr={float(hyper[LR])}, betas={(float(hyper[A]), float(hyper[B]))}, " \
               f"eps={float(hyper[EPS])}"


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

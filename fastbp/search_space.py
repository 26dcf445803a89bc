"""The vocabulary of tuning search spaces: `LogUniform`, `Uniform`, `IntRange`, `Choice`.

A trainer declares what ``fastbp tune`` may vary through the classmethod
`fastbp.Trainer.search_space`, a dict of hyper-parameter name -> one of
these distributions::

    @classmethod
    def search_space(cls, task=None, model=None):
        space = super().search_space(task, model)      # lr and weight_decay
        space["feedback_scale"] = fb.LogUniform(0.1, 10.0)
        return space

The names are constructor arguments of the trainer, ``lr`` (the rate of the
run's optimizer) or names the trainer turns into constructor arguments in
`fastbp.Trainer.search_arguments` (``sg_lr`` -> ``sg_optimizer=fb.Adam(sg_lr)``).
Sampled values are plain numbers, bools, strings or None, so a tuning file
stores them as they are.

The distributions know nothing about Optuna until a study asks
(`Distribution.to_optuna`), so declaring a space needs no optional package.
"""
import math
import numbers

__all__ = ["Distribution", "LogUniform", "Uniform", "IntRange", "Choice", "check_space",
           "space_to_dict"]


def _finite_number(value, argument, owner):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) \
            or not math.isfinite(value):
        raise TypeError(f"{owner}: {argument} must be a finite number, got {value!r}")
    return value


def _int(value, argument, owner):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{owner}: {argument} must be an int, got {value!r}")
    return int(value)


class Distribution:
    """Base class of the search-space distributions (not used directly)."""

    kind = None

    def to_optuna(self):
        """The equivalent ``optuna.distributions`` object (imports Optuna)."""
        raise NotImplementedError

    def to_dict(self):
        """A JSON-ready description, e.g. ``{"type": "log_uniform", "low": 1e-4,
        "high": 1e-1}``."""
        raise NotImplementedError

    def contains(self, value):
        """True when ``value`` could have been drawn from this distribution."""
        raise NotImplementedError

    def example(self):
        """A value inside the distribution (its low end or first choice), used
        to check that a space builds a trainer before any trial runs."""
        raise NotImplementedError

    def __eq__(self, other):
        return type(self) is type(other) and self.to_dict() == other.to_dict()

    def __hash__(self):
        return hash(repr(self))


class _Range(Distribution):
    """Numbers between ``low`` and ``high`` inclusive."""

    #: the abstract number type a value must have
    number = numbers.Real

    def __init__(self, low, high):
        owner = type(self).__name__
        low = float(_finite_number(low, "low", owner))
        high = float(_finite_number(high, "high", owner))
        if not low < high:
            raise ValueError(f"{owner}: low must be < high, got low={low!r}, high={high!r}")
        self.low, self.high = low, high

    def to_dict(self):
        return {"type": self.kind, "low": self.low, "high": self.high}

    def contains(self, value):
        return (not isinstance(value, bool) and isinstance(value, self.number)
                and self.low <= value <= self.high)

    def example(self):
        return self.low

    def __repr__(self):
        return f"{type(self).__name__}({self.low!r}, {self.high!r})"


class LogUniform(_Range):
    """A float drawn uniformly in log scale between ``low`` and ``high``.

    For rates and scales that matter by their order of magnitude.

    Parameters
    ----------
    low, high : float, 0 < low < high

    Examples
    --------
    >>> import fastbp as fb
    >>> fb.LogUniform(1e-4, 1e-1)
    LogUniform(0.0001, 0.1)
    """

    kind = "log_uniform"

    def __init__(self, low, high):
        super().__init__(low, high)
        if self.low <= 0:
            raise ValueError(f"LogUniform: low must be > 0 (a log scale), got {self.low!r}; "
                             "use Uniform or Choice to include 0")

    def to_optuna(self):
        from optuna.distributions import FloatDistribution
        return FloatDistribution(self.low, self.high, log=True)


class Uniform(_Range):
    """A float drawn uniformly between ``low`` and ``high``.

    Parameters
    ----------
    low, high : float, low < high

    Examples
    --------
    >>> import fastbp as fb
    >>> fb.Uniform(0.0, 0.5)
    Uniform(0.0, 0.5)
    """

    kind = "uniform"

    def to_optuna(self):
        from optuna.distributions import FloatDistribution
        return FloatDistribution(self.low, self.high)


class IntRange(_Range):
    """An int between ``low`` and ``high`` inclusive, uniformly or in log scale.

    Parameters
    ----------
    low, high : int, low < high
    log : bool
        Draw uniformly in log scale (then low >= 1).

    Examples
    --------
    >>> import fastbp as fb
    >>> fb.IntRange(1, 64, log=True)
    IntRange(1, 64, log=True)
    """

    kind = "int"
    number = numbers.Integral

    def __init__(self, low, high, log=False):
        low, high = _int(low, "low", "IntRange"), _int(high, "high", "IntRange")
        if not low < high:
            raise ValueError(f"IntRange: low must be < high, got low={low}, high={high}")
        if not isinstance(log, bool):
            raise TypeError(f"IntRange: log must be a bool, got {log!r}")
        if log and low < 1:
            raise ValueError(f"IntRange: low must be >= 1 with log=True, got {low}")
        self.low, self.high, self.log = low, high, log

    def to_optuna(self):
        from optuna.distributions import IntDistribution
        return IntDistribution(self.low, self.high, log=self.log)

    def to_dict(self):
        return {"type": self.kind, "low": self.low, "high": self.high, "log": self.log}

    def __repr__(self):
        return f"IntRange({self.low}, {self.high}{', log=True' if self.log else ''})"


class Choice(Distribution):
    """One of a list of values (categorical: no order is assumed).

    Parameters
    ----------
    values : sequence of None, bool, int, float or str
        At least one value, no repeats; plain values only, so that a tuning
        file stores them as they are (an optimizer is chosen by its rate,
        see `fastbp.Trainer.search_arguments`).

    Examples
    --------
    >>> import fastbp as fb
    >>> fb.Choice([True, False])
    Choice([True, False])
    """

    kind = "choice"

    def __init__(self, values):
        if isinstance(values, (str, bytes)):
            raise TypeError(f"Choice: values must be a list of values, got the str {values!r}")
        try:
            values = list(values)
        except TypeError:
            raise TypeError(f"Choice: values must be a list of values, got {values!r}") from None
        if not values:
            raise ValueError("Choice: values is empty; give at least one value")
        for v in values:
            if v is not None and not isinstance(v, (bool, int, float, str)):
                raise TypeError(f"Choice: values must be None, bool, int, float or str (plain "
                                f"values a tuning file can store), got {v!r} of type "
                                f"{type(v).__name__}")
            if isinstance(v, float) and not math.isfinite(v):
                raise ValueError(f"Choice: values must be finite, got {v!r}")
        keys = [(type(v), v) for v in values]
        if len(set(keys)) != len(keys):
            raise ValueError(f"Choice: values repeat: {values}")
        self.values = values

    def to_optuna(self):
        from optuna.distributions import CategoricalDistribution
        return CategoricalDistribution(self.values)

    def to_dict(self):
        return {"type": self.kind, "values": list(self.values)}

    def contains(self, value):
        return any(type(v) is type(value) and v == value for v in self.values)

    def example(self):
        return self.values[0]

    def __repr__(self):
        return f"Choice({self.values!r})"


def check_space(space, owner):
    """Check a search space: a dict of str -> `Distribution`.

    Parameters
    ----------
    space : dict
    owner : str
        Who declared it, for the error message (e.g. ``"FATrainer.search_space()"``).

    Returns
    -------
    dict
        A copy of ``space``.

    Raises
    ------
    TypeError
        Naming the first key or value that is not a str / a Distribution.
    """
    if not isinstance(space, dict):
        raise TypeError(f"{owner} must be a dict of name -> fastbp distribution "
                        f"(LogUniform, Uniform, IntRange, Choice), got {type(space).__name__}")
    for name, dist in space.items():
        if not isinstance(name, str) or not name:
            raise TypeError(f"{owner} has the key {name!r}; keys must be non-empty str names")
        if not isinstance(dist, Distribution):
            raise TypeError(f"{owner}[{name!r}] is {dist!r}; expected a fastbp distribution "
                            "(fb.LogUniform, fb.Uniform, fb.IntRange or fb.Choice)")
    return dict(space)


def space_to_dict(space):
    """A search space as JSON-ready dicts (name -> `Distribution.to_dict`)."""
    return {name: dist.to_dict() for name, dist in space.items()}

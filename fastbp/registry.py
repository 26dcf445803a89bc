"""The trainer registry: name -> trainer class, plug-ins found through the
``fastbp.trainers`` entry point group."""
import warnings

from .backprop import BackpropTrainer
from .trainer import Trainer

__all__ = ["TRAINERS", "ENTRY_POINT_GROUP", "register_trainer", "available_trainers",
           "get_trainer"]


#: registry name -> trainer class; plug-ins found through the ``fastbp.trainers``
#: entry point group are added by :func:`available_trainers` and :func:`get_trainer`
TRAINERS = {"backprop": BackpropTrainer}

#: the entry point group third-party packages use to add trainers
ENTRY_POINT_GROUP = "fastbp.trainers"
_plugins_loaded = False


def register_trainer(name, cls):
    """Make ``cls`` available under ``name`` (for ``fastbp compare --trainers``).

    Packages register trainers without being imported first by declaring an
    entry point in the ``fastbp.trainers`` group, e.g. in ``pyproject.toml``::

        [project.entry-points."fastbp.trainers"]
        mytrainer = "mypackage:MyTrainer"
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"name must be a non-empty str, got {name!r}")
    if not (isinstance(cls, type) and issubclass(cls, Trainer)):
        raise TypeError(f"cls must be a Trainer subclass, got {cls!r}")
    TRAINERS[name] = cls
    return cls


def _load_plugins():
    """Register every trainer declared in the ``fastbp.trainers`` entry point
    group (once per process). A plug-in that fails to import is reported with
    a warning and skipped, so one broken package does not hide the others."""
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    from importlib.metadata import entry_points
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in TRAINERS:
            continue
        try:
            register_trainer(ep.name, ep.load())
        except Exception as exc:  # a plug-in's own error: warn and go on
            warnings.warn(f"trainer plug-in {ep.name!r} ({ep.value}) could not be loaded: "
                          f"{type(exc).__name__}: {exc}", RuntimeWarning, stacklevel=3)


def available_trainers():
    """Sorted names of every registered trainer, plug-ins included."""
    _load_plugins()
    return sorted(TRAINERS)


def get_trainer(name, model=None):
    """The trainer class registered under ``name`` (plug-ins included).

    Parameters
    ----------
    name : str
    model : fb.MLP, fb.ElmanRNN or None
        When given, the class for this model: the registered class, or the
        first of its ``variants`` that supports the model (the registered
        class when none does, so that building it gives the usual error).

    Returns
    -------
    type
        A :class:`fastbp.Trainer` subclass.
    """
    if name not in TRAINERS:
        _load_plugins()
    try:
        cls = TRAINERS[name]
    except KeyError:
        raise ValueError(f"trainer {name!r} is not registered; known: "
                         f"{available_trainers()}") from None
    if model is not None and not cls.supports(model):
        for variant in cls.variants:
            if variant.supports(model):
                return variant
    return cls

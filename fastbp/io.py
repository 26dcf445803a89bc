"""Loading models saved as one ``.npz`` file, and the model-kind map."""
import json
import numbers
import os

import numpy as np

from .files import FORMAT_VERSION, write_model_file
from .models import MLP, ElmanRNN
from .validation import check_dtype

#: model kind (the ``kind`` a file names, ``model.kind``) -> model class; the
#: one name -> class map (tasks build their models from it too)
MODEL_KINDS = {"MLP": MLP, "ElmanRNN": ElmanRNN}


def model_class(kind):
    """The model class registered under ``kind`` (``"MLP"``, ``"ElmanRNN"``).

    Parameters
    ----------
    kind : str

    Returns
    -------
    type

    Raises
    ------
    ValueError
        Naming the known kinds when ``kind`` is not one of them.
    """
    try:
        return MODEL_KINDS[kind]
    except (KeyError, TypeError):
        raise ValueError(f"model kind {kind!r} is not known; known kinds: "
                         f"{sorted(MODEL_KINDS)}") from None


def save_model(model, path, extra=None):
    """Write ``model`` (and, beside it, the arrays of ``extra``) to one
    ``.npz`` file: see :func:`fastbp.files.write_model_file`.

    Parameters
    ----------
    model : MLP or ElmanRNN
    path : str or os.PathLike
    extra : dict of str -> ndarray, optional
        Names must not clash with the model's (``flat_params``, ``kind``,
        ``config``, ``format_version``).
    """
    write_model_file(path, model.kind, model.get_config(),
                     {"flat_params": model.flat_params, **(extra or {})})


def _is_size(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= 1


def config_n_params(kind, config):
    """The parameter count of the architecture a saved ``config`` describes,
    computed from its sizes without building the model (so that a small file
    claiming a huge architecture is refused before anything is allocated).

    Parameters
    ----------
    kind : str
        ``"MLP"`` or ``"ElmanRNN"``.
    config : dict
        Constructor arguments as ``model.get_config()`` returns them.

    Returns
    -------
    int or None
        None when the sizes in ``config`` are not valid (the constructor then
        says what is wrong).
    """
    if kind == "MLP":
        sizes = config.get("sizes")
        if not isinstance(sizes, list) or len(sizes) < 2 or not all(map(_is_size, sizes)):
            return None
        return sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))
    if kind == "ElmanRNN":
        i, h, o = (config.get(k) for k in ("input_size", "hidden_size", "output_size"))
        if not all(map(_is_size, (i, h, o))):
            return None
        return h * i + h * h + o * h + h + o
    return None


class _DoesNotFit(Exception):
    """Stored parameters that do not fit the stored config (raised as ValueError)."""


def load(path):
    """Load a model written by ``model.save``.

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    MLP or ElmanRNN (the kind the file names)

    Raises
    ------
    FileNotFoundError
        No file at ``path``.
    ValueError
        The file is not a complete fastbp model (corrupt, truncated, another
        format version, or parameters that do not fit the architecture); no
        model is returned.
    """
    path = os.fspath(path)
    try:
        loaded = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise
    except Exception as exc:  # numpy/zipfile raise many kinds on a damaged file
        raise ValueError(f"{path!r} is not a readable fastbp model file: "
                         f"{type(exc).__name__}: {exc}") from None
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise ValueError(f"{path!r} holds a single array ({type(loaded).__name__}), not a "
                         "fastbp model file (.npz written by model.save)")
    try:
        with loaded as data:
            fields = {k: data[k] for k in data.files}
    except Exception as exc:
        raise ValueError(f"{path!r} is not a readable fastbp model file: "
                         f"{type(exc).__name__}: {exc}") from None
    missing = {"format_version", "kind", "config", "flat_params"} - set(fields)
    if missing:
        raise ValueError(f"{path!r} is not a fastbp model file: missing {sorted(missing)}")
    version = fields["format_version"]
    if version.shape != () or version.dtype.kind not in "iu":
        raise ValueError(f"{path!r} has an invalid format_version {version!r}; expected an "
                         f"integer (this fastbp reads version {FORMAT_VERSION})")
    version = int(version)
    if version != FORMAT_VERSION:
        raise ValueError(f"{path!r} has format version {version}; this fastbp reads "
                         f"version {FORMAT_VERSION}")
    kind = str(fields["kind"])
    if kind not in MODEL_KINDS:
        raise ValueError(f"{path!r} holds a model of kind {kind!r}; known kinds: "
                         f"{sorted(MODEL_KINDS)}")
    flat = fields["flat_params"]
    try:
        config = json.loads(str(fields["config"]))
        if not isinstance(config, dict):
            raise TypeError(f"expected a JSON object of constructor arguments, got "
                            f"{type(config).__name__}")
        # sizes and dtype against the stored array BEFORE building anything:
        # a config claiming [30000, 30000, 10] must not allocate 900M floats
        n_params = config_n_params(kind, config)
        dtype = check_dtype(config["dtype"]) if "dtype" in config else None
        if n_params is not None and (flat.shape != (n_params,) or
                                     (dtype is not None and flat.dtype != dtype)):
            raise _DoesNotFit(f"{path!r}: parameters of shape {flat.shape} and dtype "
                              f"{flat.dtype} do not fit the {kind} its config describes "
                              f"(expected ({n_params},)"
                              f"{'' if dtype is None else ', ' + dtype.name})")
        model = MODEL_KINDS[kind](**config)
    except _DoesNotFit as exc:
        raise ValueError(str(exc)) from None
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{path!r} has an invalid {kind} configuration: {exc}") from None
    if flat.shape != model.flat_params.shape or flat.dtype != model.dtype:
        raise ValueError(f"{path!r}: parameters of shape {flat.shape} and dtype {flat.dtype} "
                         f"do not fit {model!r} (expected {model.flat_params.shape}, "
                         f"{model.dtype})")
    if not np.isfinite(flat).all():
        raise ValueError(f"{path!r}: the stored parameters contain NaN or inf")
    model.flat_params[...] = flat
    return model

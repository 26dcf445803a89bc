"""Saving and loading models as one ``.npz`` file."""
import json
import os
import tempfile

import numpy as np

FORMAT_VERSION = 1


def _model_kinds():
    from .models import MLP, ElmanRNN
    return {"MLP": MLP, "ElmanRNN": ElmanRNN}


def save_model(model, path, extra=None):
    """Write ``model`` to ``path`` atomically (temporary file, then rename).

    The file holds ``format_version``, ``kind``, ``config`` (JSON of the
    constructor arguments) and ``flat_params``, plus the arrays of ``extra``
    (name -> array; names must not clash with those), which :func:`load`
    ignores (trainers store their state there, see ``Trainer.save_state``).
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".fastbp-", suffix=".npz", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, format_version=np.int64(FORMAT_VERSION), kind=np.str_(model.kind),
                     config=np.str_(json.dumps(model.get_config())),
                     flat_params=model.flat_params, **(extra or {}))
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def read_arrays(path, names):
    """The arrays ``names`` of a fastbp ``.npz`` file, or ValueError naming the
    path and what is missing or unreadable."""
    path = os.fspath(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [n for n in names if n not in data.files]
            if missing:
                raise ValueError(f"{path!r} has no {missing}")
            return {n: data[n] for n in names}
    except FileNotFoundError:
        raise
    except ValueError:
        raise
    except Exception as exc:
        raise ValueError(f"{path!r} is not a readable fastbp file: "
                         f"{type(exc).__name__}: {exc}") from None


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
    kinds = _model_kinds()
    if kind not in kinds:
        raise ValueError(f"{path!r} holds a model of kind {kind!r}; known kinds: {sorted(kinds)}")
    try:
        config = json.loads(str(fields["config"]))
        model = kinds[kind](**config)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{path!r} has an invalid {kind} configuration: {exc}") from None
    flat = fields["flat_params"]
    if flat.shape != model.flat_params.shape or flat.dtype != model.dtype:
        raise ValueError(f"{path!r}: parameters of shape {flat.shape} and dtype {flat.dtype} "
                         f"do not fit {model!r} (expected {model.flat_params.shape}, "
                         f"{model.dtype})")
    if not np.isfinite(flat).all():
        raise ValueError(f"{path!r}: the stored parameters contain NaN or inf")
    model.flat_params[...] = flat
    return model

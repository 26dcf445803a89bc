"""Files every fastbp output shares: atomic writes that follow the user's
umask, and the ``.npz`` layout of a saved model (with room for a trainer's
state). Knows nothing of model classes, so models, trainers and results all
write through it without importing each other."""
import json
import os
import tempfile

import numpy as np

from .validation import all_finite

FORMAT_VERSION = 1


def _file_mode():
    """The mode a newly created file gets under the process umask (0o666 &
    ~umask), read without changing the umask where the platform allows."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # no other way to read it; set straight back
    os.umask(mask)
    return 0o666 & ~mask


def atomic_write(path, write, binary=True):
    """Write a file atomically: ``write(f)`` fills a temporary file in the same
    folder, which then replaces ``path`` (an interrupted write never leaves a
    damaged file behind).

    The file gets the permissions any new file gets under the user's umask
    (``tempfile.mkstemp`` alone would make it 0600).

    Parameters
    ----------
    path : str or os.PathLike
        The file; its folder must exist.
    write : callable
        ``write(f)`` with ``f`` the open temporary file.
    binary : bool
        Open the temporary file in binary (True) or text mode.

    Returns
    -------
    str
        ``path`` as a str.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".fastbp-", suffix=".tmp", dir=directory)
    try:
        os.chmod(tmp, _file_mode())
        with os.fdopen(fd, "wb" if binary else "w") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path


def _first_nonfinite(a):
    """Index and value of the first NaN/inf entry of a float array, or None."""
    if a.dtype.kind not in "fc" or all_finite(a):
        return None
    index = tuple(int(i) for i in np.argwhere(~np.isfinite(a))[0])
    return (index[0] if len(index) == 1 else index), a[index]


def write_model_file(path, kind, config, arrays):
    """Write a model file atomically (temporary file, then rename).

    The file holds ``format_version``, ``kind``, ``config`` (JSON of the
    constructor arguments) and ``arrays``: ``flat_params`` and any others
    (trainers store their state beside the model, see ``Trainer.save_state``),
    which ``fastbp.load`` ignores.

    Parameters
    ----------
    path : str or os.PathLike
        The ``.npz`` file; its folder must exist.
    kind : str
        ``model.kind``.
    config : dict
        ``model.get_config()``.
    arrays : dict of str -> ndarray
        ``{"flat_params": ..., ...}``.

    Raises
    ------
    ValueError
        When the parameters, or another float array, contain NaN or inf:
        ``fastbp.load`` refuses such a file, so it is not written (the existing
        file at ``path``, if any, is left as it was).
    """
    path = os.fspath(path)
    for name, a in arrays.items():
        bad = _first_nonfinite(np.asarray(a))
        if bad is not None:
            what = "the model's parameters (flat_params)" if name == "flat_params" else name
            raise ValueError(f"cannot save to {path!r}: {what} contain {bad[1]} at index "
                             f"{bad[0]}; a file with NaN or inf parameters would not load "
                             "(the training diverged: restore an earlier state or retrain)")
    atomic_write(path, lambda f: np.savez(
        f, format_version=np.int64(FORMAT_VERSION), kind=np.str_(kind),
        config=np.str_(json.dumps(config)), **arrays))


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

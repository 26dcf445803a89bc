"""Numba kernels: pure array functions that write into preallocated outputs.

Nothing in this package validates input or touches Python objects; the public
API in :mod:`fastbp` validates, prepares arrays and then calls these kernels.
Integer codes (activations, losses, optimizers) are defined in
:mod:`fastbp.kernels.codes` and mapped from names by the registries in
:mod:`fastbp.activations`, :mod:`fastbp.losses` and :mod:`fastbp.optim`.
"""
import os as _os


def _drop_stale_caches():
    """Delete this package's Numba cache when any kernel source changed.

    Numba keys a cached function on its own file's timestamp only, so a kernel
    whose callee (in another module here) changed would load stale machine
    code. The fingerprint of every module's (name, mtime, size) is kept beside
    the cache; when it differs, the cached files are removed and recompiled.
    Installs with NUMBA_CACHE_DIR set or a read-only __pycache__ are left alone.
    """
    here = _os.path.dirname(_os.path.abspath(__file__))
    cache = _os.path.join(here, "__pycache__")
    if _os.environ.get("NUMBA_CACHE_DIR") or not _os.path.isdir(cache):
        return
    try:
        parts = []
        for name in sorted(_os.listdir(here)):
            if name.endswith(".py"):
                st = _os.stat(_os.path.join(here, name))
                parts.append(f"{name}:{st.st_mtime_ns}:{st.st_size}")
        stamp = "\n".join(parts)
        stamp_file = _os.path.join(cache, "fastbp-kernels.stamp")
        try:
            with open(stamp_file) as f:
                if f.read() == stamp:
                    return
        except OSError:
            pass
        for name in _os.listdir(cache):
            if name.endswith((".nbi", ".nbc")):
                try:
                    _os.remove(_os.path.join(cache, name))
                except OSError:
                    pass
        with open(stamp_file, "w") as f:
            f.write(stamp)
    except OSError:
        pass


_drop_stale_caches()

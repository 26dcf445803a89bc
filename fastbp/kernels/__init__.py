"""Numba kernels: pure array functions that write into preallocated outputs.

Nothing in this package validates input or touches Python objects; the public
API in :mod:`fastbp` validates, prepares arrays and then calls these kernels.
Integer codes (activations, losses, optimizers) are defined in
:mod:`fastbp.kernels.codes` and mapped from names by the registries in
:mod:`fastbp.activations`, :mod:`fastbp.losses` and :mod:`fastbp.optim`.
"""
import os as _os


def drop_stale_caches(package_dir, watched_dirs=()):
    """Delete ``package_dir``'s Numba cache when any watched source changed.

    Numba keys a cached function on its own file's timestamp only, so a kernel
    whose callee (in another module, or another package) changed would load
    stale machine code. A fingerprint of every ``.py`` file's (name, mtime,
    size) in ``package_dir`` and ``watched_dirs`` is kept beside the cache;
    when it differs, the cached files are removed and recompile on first use.
    Installs with NUMBA_CACHE_DIR set or an unwritable __pycache__ are left
    alone. Packages with kernels that call fastbp's (such as ``alternatives``)
    call this with ``watched_dirs=[fastbp.kernels directory]``.

    Parameters
    ----------
    package_dir : str
        Directory whose ``__pycache__`` holds the Numba cache to manage.
    watched_dirs : sequence of str
        Further directories whose sources the cached kernels depend on.
    """
    cache = _os.path.join(package_dir, "__pycache__")
    if _os.environ.get("NUMBA_CACHE_DIR") or not _os.path.isdir(cache):
        return
    try:
        parts = []
        for directory in (package_dir, *watched_dirs):
            for name in sorted(_os.listdir(directory)):
                if name.endswith(".py"):
                    st = _os.stat(_os.path.join(directory, name))
                    parts.append(f"{directory}/{name}:{st.st_mtime_ns}:{st.st_size}")
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


#: this directory, for packages whose kernels call fastbp's
KERNELS_DIR = _os.path.dirname(_os.path.abspath(__file__))

drop_stale_caches(KERNELS_DIR)

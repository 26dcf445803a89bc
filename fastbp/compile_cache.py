"""Where Numba keeps fastbp's compiled kernels, and dropping stale ones.

Numba's default writes a kernel's machine code next to its source file. In an
installed package that is ``site-packages/fastbp/**/__pycache__``: unwritable
for a read-only install, and left behind by ``pip uninstall`` as folders that
later shadow an editable install of the same package. So fastbp points Numba
at a per-user cache folder before any kernel module is imported:

1. ``NUMBA_CACHE_DIR`` when the user set it (their choice wins);
2. else ``FASTBP_CACHE_DIR``/numba when set;
3. else the platform's cache directory: ``$XDG_CACHE_HOME/fastbp/numba``
   (default ``~/.cache/fastbp/numba``) on Linux, ``~/Library/Caches/fastbp/numba``
   on macOS, ``%LOCALAPPDATA%/fastbp/numba`` on Windows.

Numba has one cache setting per process: other libraries' cached Numba
functions in the same process are cached in that folder too (each source
folder in a subfolder of its own, so nothing collides). This module imports
nothing from Numba at import time.
"""
import hashlib
import os
import sys


def default_cache_dir():
    """The folder fastbp asks Numba to cache compiled kernels in, when the
    user has not set ``NUMBA_CACHE_DIR``.

    Returns
    -------
    str
        An absolute path; it need not exist yet.
    """
    own = os.environ.get("FASTBP_CACHE_DIR")
    if own:
        return os.path.join(os.path.abspath(os.path.expanduser(own)), "numba")
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or os.path.expanduser("~\\AppData\\Local")
    elif sys.platform == "darwin":
        base = os.path.expanduser("~/Library/Caches")
    else:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return os.path.join(os.path.abspath(base), "fastbp", "numba")


def generated_source_dir():
    """The folder for Python source that fastbp writes at run time (the
    small-network kernels of :mod:`fastbp.small_nets`): ``generated`` beside
    :func:`default_cache_dir`'s ``numba`` folder, i.e. ``FASTBP_CACHE_DIR``/generated
    when that is set, else ``~/.cache/fastbp/generated`` on Linux (and the
    platform's cache directory elsewhere). Never inside the installed package;
    Numba caches the kernels compiled from it like any other source folder's.

    Returns
    -------
    str
        An absolute path; it need not exist yet.
    """
    return os.path.join(os.path.dirname(default_cache_dir()), "generated")


def configure():
    """Point Numba's on-disk cache at :func:`default_cache_dir` unless the
    user set ``NUMBA_CACHE_DIR``; return the folder in use.

    Sets the environment variable (Numba re-reads its configuration from the
    environment before each compilation, and worker processes inherit it) and,
    when Numba is already imported, its live configuration too.

    Returns
    -------
    str
        The cache root Numba uses from now on.
    """
    root = os.environ.get("NUMBA_CACHE_DIR")
    if not root:
        root = default_cache_dir()
        os.environ["NUMBA_CACHE_DIR"] = root
    numba_config = sys.modules.get("numba.core.config")
    if numba_config is not None:
        numba_config.CACHE_DIR = root
    return root


def source_cache_dir(package_dir):
    """The folder in which Numba caches the kernels defined in
    ``package_dir``'s source files.

    Under ``NUMBA_CACHE_DIR`` Numba names it after the source folder and the
    SHA-1 of its absolute path (``numba.core.caching``'s
    ``get_suitable_cache_subpath``, unchanged since Numba 0.4x; a test checks
    the two agree); without it, the source folder's ``__pycache__``.

    Parameters
    ----------
    package_dir : str
        A folder holding Python source files with ``cache=True`` kernels.

    Returns
    -------
    str
    """
    package_dir = os.path.abspath(package_dir)
    root = os.environ.get("NUMBA_CACHE_DIR")
    if not root:
        return os.path.join(package_dir, "__pycache__")
    hashed = hashlib.sha1(package_dir.encode()).hexdigest()
    return os.path.join(root, f"{os.path.basename(package_dir)}_{hashed}")


def drop_stale_caches(package_dir, watched_dirs=()):
    """Delete ``package_dir``'s cached kernels when any watched source changed.

    Numba keys a cached function on its own file's timestamp only, so a kernel
    whose callee (in another module, or another package) changed would load
    stale machine code. A fingerprint of every ``.py`` file's (name, mtime,
    size) in ``package_dir`` and ``watched_dirs`` is kept beside the cache;
    when it differs, the cached files are removed and recompile on first use.
    A cache folder that does not exist yet is created and stamped; one that
    cannot be written is left alone.
    Packages with kernels that call fastbp's (such as ``alternatives``) call
    this with ``watched_dirs=[fastbp.kernels.KERNELS_DIR]``.

    Parameters
    ----------
    package_dir : str
        Folder of the source files whose cached kernels to manage.
    watched_dirs : sequence of str
        Further folders whose sources the cached kernels depend on.
    """
    cache = source_cache_dir(package_dir)
    try:
        # a first import stamps a new folder too: otherwise the kernels this
        # process compiles would be dropped, unstamped, by the next one
        os.makedirs(cache, exist_ok=True)
        parts = []
        for directory in (package_dir, *watched_dirs):
            for name in sorted(os.listdir(directory)):
                if name.endswith(".py"):
                    st = os.stat(os.path.join(directory, name))
                    parts.append(f"{directory}/{name}:{st.st_mtime_ns}:{st.st_size}")
        stamp = "\n".join(parts)
        stamp_file = os.path.join(cache, "fastbp-kernels.stamp")
        try:
            with open(stamp_file) as f:
                if f.read() == stamp:
                    return
        except OSError:
            pass
        for name in os.listdir(cache):
            if name.endswith((".nbi", ".nbc")):
                try:
                    os.remove(os.path.join(cache, name))
                except OSError:
                    pass
        with open(stamp_file, "w") as f:
            f.write(stamp)
    except OSError:
        pass

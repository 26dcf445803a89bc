"""Compiled kernels live in a per-user cache folder, never in the installed package."""
import os
import subprocess
import sys
import sysconfig

import pytest

import fastbp
from fastbp import compile_cache

REPO = os.path.dirname(os.path.dirname(os.path.abspath(fastbp.__file__)))


def _numba_files(folder):
    return [os.path.join(d, f) for d, _, files in os.walk(folder)
            for f in files if f.endswith((".nbi", ".nbc"))]


def test_cache_folder_matches_numbas_own_naming(tmp_path, monkeypatch):
    caching = pytest.importorskip("numba.core.caching")
    locator = getattr(caching, "_CacheLocator", None)
    if locator is None or not hasattr(locator, "get_suitable_cache_subpath"):
        pytest.skip("this Numba names its cache folders differently")
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path))
    package = os.path.dirname(os.path.abspath(fastbp.kernels.mlp.__file__))
    expected = os.path.join(str(tmp_path),
                            locator.get_suitable_cache_subpath(os.path.join(package, "mlp.py")))
    assert compile_cache.source_cache_dir(package) == expected


def test_default_cache_dir_follows_the_platform_and_fastbp_cache_dir(tmp_path, monkeypatch):
    monkeypatch.delenv("FASTBP_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    if sys.platform.startswith("linux"):
        assert compile_cache.default_cache_dir() == str(tmp_path / "xdg" / "fastbp" / "numba")
    monkeypatch.setenv("FASTBP_CACHE_DIR", str(tmp_path / "own"))
    assert compile_cache.default_cache_dir() == str(tmp_path / "own" / "numba")


def test_user_numba_cache_dir_wins(tmp_path, monkeypatch):
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "mine"))
    assert compile_cache.configure() == str(tmp_path / "mine")
    import numba
    assert numba.config.CACHE_DIR == str(tmp_path / "mine")


def test_stale_guard_drops_the_cache_under_numba_cache_dir(tmp_path, monkeypatch):
    package, watched = tmp_path / "pkg", tmp_path / "dep"
    package.mkdir()
    watched.mkdir()
    (package / "kernels.py").write_text("x = 1\n")
    (watched / "callee.py").write_text("y = 1\n")
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "cache"))
    cache = compile_cache.source_cache_dir(str(package))
    assert cache.startswith(str(tmp_path / "cache"))
    os.makedirs(cache)
    compile_cache.drop_stale_caches(str(package), [str(watched)])   # first sight: stamp
    cached = os.path.join(cache, "kernels.f-1.py311.nbi")
    open(cached, "w").close()
    compile_cache.drop_stale_caches(str(package), [str(watched)])
    assert os.path.exists(cached), "an unchanged source must keep its cache"
    (watched / "callee.py").write_text("y = 22\n")
    compile_cache.drop_stale_caches(str(package), [str(watched)])
    assert not os.path.exists(cached), "a changed callee must drop the cache"


def test_stale_guard_keeps_what_the_first_process_compiled(tmp_path, monkeypatch):
    """On an empty cache the first import stamps the new folder, so a second
    process keeps (loads) the kernels the first one compiled."""
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "kernels.py").write_text("x = 1\n")
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "cache"))
    cache = compile_cache.source_cache_dir(str(package))
    assert not os.path.exists(cache)
    compile_cache.drop_stale_caches(str(package))          # first process imports
    cached = os.path.join(cache, "kernels.f-1.py311.nbi")  # ... and compiles
    open(cached, "w").close()
    compile_cache.drop_stale_caches(str(package))          # second process imports
    assert os.path.exists(cached), "the first process's kernels must survive"


def test_installed_package_stays_clean(tmp_path):
    """Install non-editably, compile a kernel, and find its cache in the user
    cache folder and nothing compiled inside the installed package."""
    site = tmp_path / "site"
    build = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
         "--no-compile", "--target", str(site), REPO],
        capture_output=True, text=True, cwd=str(tmp_path))
    if build.returncode != 0:
        pytest.skip(f"could not build the package here: {build.stderr[-500:]}")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NUMBA_", "FASTBP_"))}
    env["XDG_CACHE_HOME"] = str(tmp_path / "user-cache")
    env["HOME"] = str(tmp_path)
    # -S: no .pth files, so the repository's editable install cannot shadow the copy
    env["PYTHONPATH"] = os.pathsep.join([str(site), sysconfig.get_paths()["purelib"],
                                         sysconfig.get_paths()["platlib"]])
    code = ("import numpy as np, fastbp as fb, alternatives\n"
            "assert fb.__file__.startswith(%r), fb.__file__\n"
            "fb.MLP([2, 2, 2], dtype=np.float64, seed=0).predict(np.zeros((1, 2)))\n"
            % str(site))
    run = subprocess.run([sys.executable, "-S", "-c", code], env=env, cwd=str(tmp_path),
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert _numba_files(site / "fastbp") == []
    assert _numba_files(site / "alternatives") == []
    assert _numba_files(tmp_path / "user-cache" / "fastbp" / "numba") != []

"""Compiling the kernels of a comparison's next trainers while it trains.

A run of `fastbp.compare` in this process trains on one core (one BLAS
thread by default), and with an empty Numba cache each trainer's first run
first compiles its kernels, which can take longer than the training. With a
second core free, `CompileAhead` starts one background process that calls
`fastbp.runs.warm_up` for the settings of each later (task, trainer) pair,
in the order the grid will reach them, so their machine code is in the
on-disk cache by the time the grid gets there; the grid's own warm-up then
loads it instead of compiling. The runs, their numbers and their order are
the same either way.

The background process is only started when it can help: Numba's on-disk
cache is on (the process hands its kernels over through it), at least two
CPUs are available to this process, and the grid holds more than one
(task, trainer) setting (the first is compiled by the grid itself, which
would otherwise wait for the helper to start). It runs at a lower priority
(``nice`` 10) and never trains on the clock, so the grid's timings are taken
as before, on their own core. Nothing it does is required: a setting it
cannot prepare (a task or trainer registered only in the calling process, a
failure) is reported back, and the grid compiles it itself.
"""
import json
import os
import subprocess
import sys
import threading

__all__ = ["CompileAhead", "settings_key", "can_compile_ahead"]

#: the background process's entry point (not ``-m``: the package imports this
#: module, and running it as ``__main__`` too would import it twice). Its
#: argument is the folder this fastbp was imported from, put first on the path
#: unless it is there already (a source tree the caller put on ``sys.path``).
_CHILD = ("import sys; sys.path[:0] = [] if sys.argv[1] in sys.path else [sys.argv[1]]; "
          "from fastbp.compile_ahead import _serve; _serve()")


def settings_key(spec):
    """What decides which kernels a run compiles: its spec without the seed.

    Runs of the same (task, trainer, options, dtype, batch size) that differ
    only in their seed compile the same kernels.

    Parameters
    ----------
    spec : dict
        A run spec (see `fastbp.runs.make_spec`).

    Returns
    -------
    str
    """
    return json.dumps({k: v for k, v in spec.items() if k != "seed"}, sort_keys=True,
                      default=repr)


def _usable_cpus():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def can_compile_ahead():
    """True when a background compile would help here: Numba's JIT and
    on-disk cache are on and this process may use at least two CPUs.

    Returns
    -------
    bool
    """
    from numba.core import config
    if config.DISABLE_JIT or _usable_cpus() < 2:
        return False
    folder = config.CACHE_DIR
    while folder and not os.path.isdir(folder):
        parent = os.path.dirname(folder)
        if parent == folder:
            return False
        folder = parent
    return bool(folder) and os.access(folder, os.W_OK)


class CompileAhead:
    """A background process compiling the kernels of a grid's later runs.

    Use it as a context manager around the grid and call `wait` before each
    run: it returns once the helper has compiled that run's settings (or
    given up on them, or was never asked to), so that the run loads its
    kernels from the cache instead of compiling them alongside the helper.

    Parameters
    ----------
    specs : list of dict
        The run specs, in the order they will run (see
        `fastbp.runs.make_spec`). The first setting is left to the caller.
    enabled : bool
        False starts nothing; `wait` then returns at once.

    Attributes
    ----------
    outcome : dict
        Settings key (`settings_key`) -> 'compiled', 'not applicable' or
        'failed: <reason>', filled as the helper reports.
    active : bool
        Whether a helper process was started.
    """

    def __init__(self, specs, enabled=True):
        first = {}   # settings key -> its first spec, in the order they appear
        for spec in specs:
            first.setdefault(settings_key(spec), spec)
        keys = list(first)
        self.outcome = {}
        self._events = {key: threading.Event() for key in keys[1:]}
        self._proc = None
        self._reader = None
        self.active = bool(enabled and len(keys) > 1 and can_compile_ahead())
        if not self.active:
            for event in self._events.values():
                event.set()
            return
        jobs = [[i, first[key]] for i, key in enumerate(keys) if i > 0]
        self._keys = keys
        # the helper imports the fastbp (and alternatives) this process runs, and
        # inherits NUMBA_CACHE_DIR, the cache folder fastbp configured
        here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        self._proc = subprocess.Popen([sys.executable, "-c", _CHILD, here],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      stderr=subprocess.DEVNULL, text=True)
        self._reader = threading.Thread(target=self._read, args=(self._proc.stdout,),
                                        daemon=True)
        self._reader.start()
        try:
            self._proc.stdin.write(json.dumps(jobs, default=repr))
            self._proc.stdin.close()
        except OSError:  # the helper died at start: the grid compiles everything
            self.close()

    def _read(self, stream):
        try:
            for line in stream:
                index, _, status = line.rstrip("\n").partition(" ")
                try:
                    key = self._keys[int(index)]
                except (ValueError, IndexError):
                    continue
                self.outcome[key] = status
                self._events[key].set()
        finally:
            for event in self._events.values():
                event.set()

    def wait(self, spec):
        """Block until the helper is done with ``spec``'s settings.

        Parameters
        ----------
        spec : dict
            A run spec of the grid.
        """
        event = self._events.get(settings_key(spec))
        if event is not None:
            event.wait()

    def close(self):
        """Stop the helper (if it is still compiling) and release it."""
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        # the reader ends at the output's end (the helper has exited): only then
        # is its pipe closed
        if self._reader is not None:
            self._reader.join()
            self._reader = None
        if proc is not None and proc.stdout is not None:
            proc.stdout.close()
        for event in self._events.values():
            event.set()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def _serve():
    """The helper process: read ``[[index, spec], ...]`` as JSON from stdin,
    warm each spec up in turn and print ``index status`` for each."""
    try:
        os.nice(10)
    except (AttributeError, OSError):
        pass
    jobs = json.load(sys.stdin)
    import warnings

    from . import runs
    for index, spec in jobs:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                seconds = runs.warm_up(spec)
            status = "not applicable" if seconds is None else "compiled"
        except Exception as exc:  # reported; the grid then compiles it itself
            status = f"failed: {type(exc).__name__}: {exc}".replace("\n", " ")
        print(index, status, flush=True)

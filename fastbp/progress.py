"""Optional progress display: tqdm bars on a terminal, plain lines elsewhere.

A bar redraws itself with carriage returns: on a terminal that is one line
that changes, but in a redirected log (``fastbp compare > log 2>&1``, CI, a
batch job) every frame stays, tens of kilobytes of them. So bars are drawn
only when the output stream is interactive (a terminal, or a Jupyter
kernel's stream, where tqdm draws a widget). Otherwise ``fit`` writes plain
lines, at most one per tenth of its epochs (and the last), and ``compare``
one line per finished run.
"""
import sys

_HINT_SHOWN = False


def is_interactive(stream=None):
    """True when ``stream`` (default: sys.stderr) shows a progress bar as one
    changing line: a terminal, or a Jupyter kernel's output stream.

    Parameters
    ----------
    stream : file-like or None

    Returns
    -------
    bool
    """
    stream = sys.stderr if stream is None else stream
    try:
        if stream.isatty():
            return True
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False
    return type(stream).__module__.split(".")[0] == "ipykernel"


def _tqdm():
    """tqdm.auto.tqdm, or None (and, once per process, how to install it)."""
    global _HINT_SHOWN
    try:
        from tqdm.auto import tqdm
    except ImportError:
        if not _HINT_SHOWN:
            print("fastbp: for a progress bar install tqdm: pip install 'fastbp[progress]'",
                  file=sys.stderr)
            _HINT_SHOWN = True
        return None
    return tqdm


def _format(metrics):
    return "  ".join(f"{k} {v:.4g}" for k, v in metrics.items())


class _Lines:
    """Plain lines on stderr: one per update (a terminal without tqdm), or one
    each time another ``every`` epochs are done, and at the end (a log)."""

    def __init__(self, total, desc, every=1):
        self.total = total
        self.desc = desc
        self.every = max(1, int(every))
        self.n = 0

    def update(self, n, metrics):
        before = self.n // self.every
        self.n += n
        if self.n // self.every > before or self.n >= self.total:
            print(f"{self.desc} {self.n}/{self.total}  {_format(metrics)}", file=sys.stderr,
                  flush=True)

    def close(self):
        pass


class _Tqdm:
    def __init__(self, tqdm, total, desc):
        self.bar = tqdm(total=total, desc=desc, unit="epoch", file=sys.stderr, leave=True)

    def update(self, n, metrics):
        self.bar.set_postfix({k: f"{v:.4g}" for k, v in metrics.items()}, refresh=False)
        self.bar.update(n)

    def close(self):
        self.bar.close()


def progress_bar(total, desc="epoch"):
    """A progress display over ``total`` epochs with ``update(n, metrics)``
    and ``close()``.

    On an interactive stderr (see `is_interactive`) a tqdm bar when tqdm is
    installed, else one line per update. On anything else (a file, a pipe)
    plain lines, at most one per tenth of the epochs and one for the last:
    never a bar's carriage-return frames. Without tqdm, how to install it is
    printed once per process.

    Parameters
    ----------
    total : int
        Epochs expected.
    desc : str
        Label in front of the counts.

    Returns
    -------
    object
        With ``update(n, metrics)`` (n more epochs done; metrics a dict of
        name -> float) and ``close()``.
    """
    tqdm = _tqdm()
    if not is_interactive():
        return _Lines(total, desc, every=max(1, total // 10))
    return _Lines(total, desc) if tqdm is None else _Tqdm(tqdm, total, desc)


def count_done(bar, count, text):
    """One more unit (run, trial) done: ``text`` beside the bar when there is
    one (a tqdm bar or None), else a line ``count  text`` on stderr."""
    if bar is not None:
        bar.set_postfix_str(text, refresh=False)
        bar.update(1)
    else:
        print(f"{count}  {text}", file=sys.stderr, flush=True)


class RunProgress:
    """Progress of a comparison grid: runs done (outer bar) and the current
    run's epochs (inner bar) on an interactive stderr with tqdm; otherwise one
    line per finished run.

    Parameters
    ----------
    total : int
        Runs in the grid.
    enabled : bool
        False shows nothing.
    """

    def __init__(self, total, enabled):
        self.enabled = enabled
        self.tqdm = None
        self.outer = self.inner = None
        self.total = total
        self.done = 0
        if enabled and is_interactive():
            self.tqdm = _tqdm()
        if self.tqdm is not None:
            self.outer = self.tqdm(total=total, desc="runs", unit="run", file=sys.stderr,
                                   position=0)

    def start(self, spec, epochs):
        """A run of ``spec`` (a run spec dict) with ``epochs`` epochs begins."""
        if self.tqdm is not None:
            self.inner = self.tqdm(total=epochs, unit="epoch", file=sys.stderr, position=1,
                                   leave=False,
                                   desc=f"{spec['task']} {spec['trainer']} seed {spec['seed']}")

    def epoch(self, epoch, epochs, accuracy):
        """The current run finished ``epoch`` of ``epochs`` at ``accuracy``."""
        if self.inner is not None:
            self.inner.set_postfix(test_acc=f"{accuracy:.3f}", refresh=False)
            self.inner.update(1)

    def finished(self, record):
        """A run ended; ``record`` is its run record."""
        self.done += 1
        if self.inner is not None:
            self.inner.close()
            self.inner = None
        if not self.enabled:
            return
        final = record.get("final") or {}
        what = record["status"] if record["status"] != "ok" else \
            f"test acc {final.get('test_accuracy', float('nan')):.3f}"
        text = f"{record['task']} {record['trainer']} seed {record['seed']}: {what}"
        count_done(self.outer, f"run {self.done}/{self.total}", text)

    def close(self):
        """Remove the bars."""
        for bar in (self.inner, self.outer):
            if bar is not None:
                bar.close()
        self.inner = self.outer = None

"""Optional progress display: tqdm when installed, plain lines otherwise."""
import sys

_HINT_SHOWN = False


class _Lines:
    """Fallback: one line per update on stderr."""

    def __init__(self, total, desc):
        self.total = total
        self.desc = desc
        self.n = 0

    def update(self, n, metrics):
        self.n += n
        text = "  ".join(f"{k} {v:.4g}" for k, v in metrics.items())
        print(f"{self.desc} {self.n}/{self.total}  {text}", file=sys.stderr, flush=True)

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
    """A progress display over ``total`` epochs with ``update(n, metrics)``.

    Uses tqdm when it is installed; otherwise prints one line per update and,
    once per process, how to install tqdm.
    """
    global _HINT_SHOWN
    try:
        from tqdm.auto import tqdm
    except ImportError:
        if not _HINT_SHOWN:
            print("fastbp: for a progress bar install tqdm: pip install 'fastbp[progress]'",
                  file=sys.stderr)
            _HINT_SHOWN = True
        return _Lines(total, desc)
    return _Tqdm(tqdm, total, desc)

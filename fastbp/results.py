"""What `fastbp.compare` returns: every run, summaries, table, JSON, plots."""
import json
import math
import os

import numpy as np

#: version of the results.json layout
FORMAT_VERSION = 1

_RUN_KEYS = ("task", "trainer", "seed", "status", "reason", "settings", "train_loss",
             "test_loss", "test_accuracy", "epoch_time", "train_seconds", "alignment",
             "final", "time_per_epoch", "time_to_target", "epochs_to_target",
             "warmup_seconds")


def _mean_pm(mean_std, n):
    """"0.912 ± 0.004" over n > 1 seeds; "0.912" for one seed, which has no
    spread to show."""
    mean, std = mean_std
    return f"{mean:.3f}" if n < 2 else f"{mean:.3f} ± {std:.3f}"


def _mean_std(values):
    """Mean and sample standard deviation (ddof=1; 0 for one value)."""
    a = np.asarray(values, dtype=np.float64)
    return float(a.mean()), float(a.std(ddof=1)) if len(a) > 1 else 0.0


class Results:
    """Runs of a comparison grid and what can be made of them.

    Parameters
    ----------
    runs : list of dict
        Run records as `fastbp.runs.run` returns them.
    meta : dict
        Grid configuration, machine and versions; ``complete`` is False while
        (or when, after Ctrl-C) runs are missing.

    Attributes
    ----------
    runs : list of dict
    meta : dict
    """

    def __init__(self, runs=(), meta=None):
        self.runs = list(runs)
        self.meta = dict(meta or {})

    # -- aggregation -----------------------------------------------------------------
    def pairs(self):
        """(task, trainer) pairs in the order they first appear."""
        return list(dict.fromkeys((r["task"], r["trainer"]) for r in self.runs))

    def summary(self):
        """One dict per (task, trainer).

        Returns
        -------
        list of dict
            Keys: task, trainer, status ('ok', 'not_applicable', 'failed' or
            'diverged' when any seed diverged), reason, seeds (list of int),
            train_accuracy / test_accuracy (mean, std over seeds; sample std),
            test_loss (mean), time_per_epoch (mean of each run's median
            seconds), time_to_target (mean seconds over the seeds that
            reached the target and held it to the end, or None; see
            `fastbp.runs.epochs_to_target`), reached (how many seeds did),
            target_accuracy, tuned (True when the runs used settings from
            ``fastbp tune``, see ``compare(params=...)``).
        """
        rows = []
        for task, trainer in self.pairs():
            runs = [r for r in self.runs if r["task"] == task and r["trainer"] == trainer]
            done = [r for r in runs if r["status"] in ("ok", "diverged") and r["final"]]
            row = {"task": task, "trainer": trainer, "seeds": [r["seed"] for r in runs],
                   "status": "ok", "reason": "", "train_accuracy": None,
                   "test_accuracy": None, "test_loss": None, "time_per_epoch": None,
                   "time_to_target": None, "reached": 0, "n_runs": len(done),
                   "target_accuracy": None,
                   "tuned": any((r.get("settings") or {}).get("tuned", False) for r in runs)}
            if not done:
                r = runs[0]
                row.update(status=r["status"], reason=r["reason"])
                rows.append(row)
                continue
            row["target_accuracy"] = done[0]["settings"].get("target_accuracy")
            if any(r["status"] == "diverged" for r in done):
                bad = [r for r in done if r["status"] == "diverged"]
                row.update(status="diverged", reason=f"{len(bad)} of {len(done)} seeds "
                                                     f"diverged: {bad[0]['reason']}")
            failed = [r for r in runs if r["status"] == "failed"]
            if failed:
                row.update(status="failed", reason=failed[0]["reason"])
            row["train_accuracy"] = _mean_std([r["final"]["train_accuracy"] for r in done])
            row["test_accuracy"] = _mean_std([r["final"]["test_accuracy"] for r in done])
            row["test_loss"] = _mean_std([r["final"]["test_loss"] for r in done])[0]
            times = [r["time_per_epoch"] for r in done if r["time_per_epoch"] is not None]
            row["time_per_epoch"] = float(np.mean(times)) if times else None
            hit = [r["time_to_target"] for r in done if r["time_to_target"] is not None]
            row["reached"] = len(hit)
            row["time_to_target"] = float(np.mean(hit)) if hit else None
            rows.append(row)
        return rows

    # -- the table -------------------------------------------------------------------
    def table(self, fmt="text"):
        """The summary as a table.

        Parameters
        ----------
        fmt : {'text', 'markdown'}

        Returns
        -------
        str
            One row per (task, trainer): seeds, settings ("tuned": the best
            of a ``fastbp tune`` study, see ``compare(params=...)``;
            "default": the task's and the trainer's defaults with any
            overrides given), final train and test accuracy
            (mean ± sample std over the seeds; the mean alone for one seed),
            final test loss, seconds per epoch, time to the task's target
            accuracy (training seconds until the epoch from which the test
            accuracy stays at or above the target to the end: a transient peak
            does not count; mean over the seeds that held it, and how many
            did). Pairs that cannot run say so, with the reason.
        """
        if fmt not in ("text", "markdown"):
            raise ValueError(f"fmt={fmt!r}; expected 'text' or 'markdown'")
        head = ["task", "trainer", "seeds", "settings", "train acc", "test acc", "test loss",
                "s/epoch", "time to target"]
        body = []
        for row in self.summary():
            if row["n_runs"] == 0:
                label = "not applicable" if row["status"] == "not_applicable" else row["status"]
                body.append([row["task"], row["trainer"], str(len(row["seeds"])),
                             f"{label}: {row['reason']}"])
                continue
            n = row["n_runs"]
            target = row["target_accuracy"]
            ttt = "not reached"
            if row["time_to_target"] is not None:
                ttt = f"{row['time_to_target']:.3g} s"
            ttt += f" ({row['reached']}/{n} held >= {target:g})"
            cells = [row["task"], row["trainer"], str(n),
                     "tuned" if row["tuned"] else "default",
                     _mean_pm(row["train_accuracy"], n), _mean_pm(row["test_accuracy"], n),
                     f"{row['test_loss']:.4g}",
                     "" if row["time_per_epoch"] is None else f"{row['time_per_epoch']:.3g}",
                     ttt]
            if row["status"] != "ok":
                cells[-1] += f"; {row['status']}: {row['reason']}"
            body.append(cells)
        if fmt == "markdown":
            lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
            for cells in body:
                if len(cells) == 4:  # a row that did not run spans the metric columns
                    cells = cells[:3] + [cells[3]] + [""] * (len(head) - 4)
                lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
            return "\n".join(lines)
        widths = [len(h) for h in head]
        for cells in body:
            if len(cells) == len(head):
                widths = [max(w, len(c)) for w, c in zip(widths, cells)]
            else:
                widths[:3] = [max(w, len(c)) for w, c in zip(widths[:3], cells[:3])]
        lines = ["  ".join(h.ljust(w) for h, w in zip(head, widths)).rstrip()]
        for cells in body:
            if len(cells) == len(head):
                lines.append("  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip())
            else:
                lines.append("  ".join(c.ljust(w) for c, w in zip(cells[:3], widths))
                             + "  " + cells[3])
        return "\n".join(lines)

    def __str__(self):
        return self.table()

    def __repr__(self):
        state = "complete" if self.meta.get("complete", True) else "incomplete"
        return f"Results({len(self.runs)} runs, {len(self.pairs())} (task, trainer) pairs, " \
               f"{state})"

    def __len__(self):
        return len(self.runs)

    # -- files -----------------------------------------------------------------------
    def as_dict(self):
        """JSON-ready dict: format_version, meta, summary and runs."""
        return {"format_version": FORMAT_VERSION, "meta": self.meta,
                "summary": self.summary(), "runs": self.runs}

    def to_json(self, path):
        """Write everything to ``path`` atomically (temporary file, then rename),
        so an interrupted write never leaves a damaged file.

        Parameters
        ----------
        path : str or os.PathLike
            The file; its directory is created when missing.
        """
        from .files import atomic_write
        path = os.fspath(path)
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        data = _jsonable(self.as_dict())
        return atomic_write(path, lambda f: json.dump(data, f, indent=1, allow_nan=False),
                            binary=False)

    @classmethod
    def from_json(cls, path):
        """Read a file written by `to_json`.

        Raises
        ------
        ValueError
            When the file is not a fastbp results file.
        """
        with open(path) as f:
            try:
                data = json.load(f)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path} is not valid JSON: {exc}") from None
        if not isinstance(data, dict) or data.get("format_version") != FORMAT_VERSION \
                or not isinstance(data.get("runs"), list):
            raise ValueError(f"{path} is not a fastbp results file (format_version "
                             f"{FORMAT_VERSION} with a list of runs)")
        for i, r in enumerate(data["runs"]):
            missing = [k for k in _RUN_KEYS if k not in r]
            if missing:
                raise ValueError(f"{path}: run {i} lacks {missing}")
        return cls(data["runs"], data.get("meta"))

    def plot(self, path):
        """Write PNG figures into the folder ``path`` (created when missing).

        Per task: ``<task>-accuracy.png`` (test accuracy against epochs and
        against training seconds, mean over seeds per trainer) and, when any
        trainer recorded them, ``<task>-alignment.png`` (per-layer angle to
        the backprop gradient against epochs). Needs matplotlib.

        Returns
        -------
        list of str
            The files written.
        """
        from .plotting import plot_results
        return plot_results(self, path)


def _jsonable(obj):
    """NaN/inf become None (JSON has neither); numpy scalars become Python ones."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, (np.floating, float)):
        v = float(obj)
        return v if math.isfinite(v) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj

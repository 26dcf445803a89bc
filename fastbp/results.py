"""What `fastbp.compare` returns: every run, summaries, table, JSON, plots."""
import json
import math
import os

import numpy as np

from .tasks import task_key

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


class _JsonRecords:
    """A list of records (``runs`` or ``studies``) with ``meta``, saved as one
    JSON file: the shared part of `Results` and `Tuning`."""

    #: attribute and JSON key of the record list
    records = None
    #: keys every record must have
    record_keys = ()
    #: the ``format`` field, or None when the file has none
    file_format = None
    #: what the error says the file should have been
    file_kind = None

    def __init__(self, records=(), meta=None):
        setattr(self, self.records, list(records))
        self.meta = dict(meta or {})

    def __str__(self):
        return self.table()

    def _state(self):
        return "complete" if self.meta.get("complete", True) else "incomplete"

    def to_json(self, path):
        """Write everything to ``path`` atomically (temporary file, then rename),
        so an interrupted write never leaves a damaged file.

        Parameters
        ----------
        path : str or os.PathLike
            The file; its directory is created when missing.
        """
        return _write_json(path, _jsonable(self.as_dict()))

    @classmethod
    def from_json(cls, path):
        """Read the file at ``path`` (str or os.PathLike) written by `to_json`.

        Raises
        ------
        ValueError
            When the file is missing, is not JSON, or is not this kind of
            fastbp file (the message says what was expected).
        """
        path = os.fspath(path)
        try:
            data = _read_json(path)
        except FileNotFoundError:
            raise ValueError(f"{path!r} does not exist; expected {cls.file_kind}") from None
        key = cls.records
        if not isinstance(data, dict) or data.get("format") != cls.file_format \
                or data.get("format_version") != FORMAT_VERSION \
                or not isinstance(data.get(key), list):
            expected = f"format {cls.file_format!r}, " if cls.file_format else ""
            raise ValueError(f"{path!r} is not {cls.file_kind} ({expected}format_version "
                             f"{FORMAT_VERSION} with a list of {key})")
        for i, item in enumerate(data[key]):
            missing = [k for k in cls.record_keys
                       if not isinstance(item, dict) or k not in item]
            if missing:
                raise ValueError(f"{path!r}: {key[:-1]} {i} lacks {missing}")
        return cls(data[key], data.get("meta"))


class Results(_JsonRecords):
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

    records = "runs"
    record_keys = _RUN_KEYS
    file_kind = "a fastbp results file"

    def __init__(self, runs=(), meta=None):
        super().__init__(runs, meta)

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

    def __repr__(self):
        return f"Results({len(self.runs)} runs, {len(self.pairs())} (task, trainer) pairs, " \
               f"{self._state()})"

    def __len__(self):
        return len(self.runs)

    # -- files -----------------------------------------------------------------------
    def as_dict(self):
        """JSON-ready dict: format_version, meta, summary and runs."""
        return {"format_version": FORMAT_VERSION, "meta": self.meta,
                "summary": self.summary(), "runs": self.runs}

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


def _write_json(path, data):
    """Write JSON-safe ``data`` to ``path`` atomically (temporary file, then
    rename), creating the folder when missing."""
    from .files import atomic_write
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    return atomic_write(path, lambda f: json.dump(data, f, indent=1, allow_nan=False),
                        binary=False)


def _read_json(path):
    """The JSON value in ``path``; ValueError naming the file when it is not JSON."""
    with open(path) as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path!r} is not valid JSON: {exc}") from None


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
    if isinstance(obj, np.bool_):
        return bool(obj)
    return obj


def _is_jsonable(value):
    """True for JSON-like values: None, bool, int, float, str, and lists and
    dicts of them."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    if isinstance(value, (list, tuple)):
        return all(_is_jsonable(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_jsonable(v) for k, v in value.items())
    return False


# -- tuning results -------------------------------------------------------------------------------

class Tuning(_JsonRecords):
    """What `tune` returns: per (task, trainer), its study.

    Parameters
    ----------
    studies : list of dict
        One per (task, trainer), as tuning.json lists them: ``task``,
        ``trainer``, ``status`` ('ok' or 'not_applicable'), ``reason``,
        ``space`` (name -> distribution as a dict), ``fixed``,
        ``trainer_options``, ``epochs``, ``batch_size``, ``validation`` (the
        split: ``held_out``, ``rows``, ``train_rows``, ``fraction``,
        ``seed``), ``counts`` (trials per state), ``best`` (``trial``,
        ``params``, ``val_accuracy``, or None), ``importance`` (name ->
        share, or None, and ``importance_note`` saying why) and ``trials``
        (per trial: ``number``, ``state`` ('COMPLETE', 'PRUNED', 'FAIL' or
        'RUNNING'), ``params``, ``value``, ``val_accuracy`` per epoch,
        ``epochs_run``, ``status``, ``reason``, ``train_seconds``,
        ``warmup_seconds``).
    meta : dict
        The budget, the sampler and pruner, the machine; ``complete`` is
        False while (or when, after Ctrl-C) trials are missing.

    Attributes
    ----------
    studies : list of dict
    meta : dict
    """

    records = "studies"
    record_keys = ("task", "trainer", "status", "best", "trials")
    file_format = "fastbp-tuning"
    file_kind = "a fastbp tuning file, the tuning.json fastbp tune writes"

    def __init__(self, studies=(), meta=None):
        super().__init__(studies, meta)

    def best(self, task, trainer):
        """The best trial's values for a pair, or None (not tuned, not
        applicable, or no completed trial).

        Parameters
        ----------
        task : str
            Task spec as tuned (options in any order).
        trainer : str

        Returns
        -------
        dict or None
            Plain values, keys of the trainer's search space.
        """
        for s in self.studies:
            if task_key(s["task"]) == task_key(task) and s["trainer"] == trainer:
                return None if s["best"] is None else dict(s["best"]["params"])
        return None

    def table(self, fmt="text"):
        """One row per (task, trainer): trials per state, the best
        validation accuracy and the settings that reached it.

        Parameters
        ----------
        fmt : {'text', 'markdown'}, default 'text'
            Plain columns, or a Markdown table for docs pages.

        Returns
        -------
        str
        """
        if fmt not in ("text", "markdown"):
            raise ValueError(f"fmt={fmt!r}; expected 'text' or 'markdown'")
        head = ["task", "trainer", "trials", "complete/pruned/failed", "best val acc",
                "best settings"]
        body = []
        for s in self.studies:
            if s["status"] != "ok":
                body.append([s["task"], s["trainer"], "", "", "",
                             f"not applicable: {s['reason']}"])
                continue
            c = s["counts"] or {}
            done = c.get("complete", 0) + c.get("pruned", 0) + c.get("fail", 0)
            best = s["best"]
            body.append([s["task"], s["trainer"], str(done),
                         f"{c.get('complete', 0)}/{c.get('pruned', 0)}/{c.get('fail', 0)}",
                         "" if best is None else f"{best['val_accuracy']:.3f}",
                         "no completed trial" if best is None else
                         " ".join(f"{k}={_short(v)}" for k, v in best["params"].items())])
        if fmt == "markdown":
            lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
            lines += ["| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"
                      for cells in body]
            return "\n".join(lines)
        widths = [max(len(h), *(len(c[i]) for c in body)) if body else len(h)
                  for i, h in enumerate(head)]
        widths[-1] = 0
        return "\n".join("  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()
                         for cells in [head] + body)

    def __repr__(self):
        return f"Tuning({len(self.studies)} (task, trainer) studies, {self._state()})"

    def as_dict(self):
        """JSON-ready dict: format, format_version, meta and studies."""
        return {"format": "fastbp-tuning", "format_version": FORMAT_VERSION,
                "meta": self.meta, "studies": self.studies}

    def plot(self, folder):
        """Write PNG figures into ``folder``: per task ``<task>-tuning.png``
        (each trainer's validation accuracy against trial: completed trials
        as dots, pruned ones as crosses at their best epoch, and the best so
        far as a line) and, where Optuna ranked the hyper-parameters,
        ``<task>-importance.png`` (one panel per trainer). Needs matplotlib.

        Returns
        -------
        list of str
            The files written.
        """
        from .data import require
        require("matplotlib", "fastbp tune's figures")
        import matplotlib
        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
        from .plotting import save_figure

        folder = os.fspath(folder)
        os.makedirs(folder, exist_ok=True)
        written = []
        for task in dict.fromkeys(s["task"] for s in self.studies):
            mine = [s for s in self.studies if s["task"] == task and s["trials"]]
            if not mine:
                continue
            fig, ax = plt.subplots(figsize=(7.5, 4.2))
            for s in mine:
                done = [t for t in s["trials"] if t["state"] == "COMPLETE"]
                pruned = [t for t in s["trials"] if t["state"] == "PRUNED"
                          and any(v is not None for v in t["val_accuracy"])]
                line, = ax.plot([t["number"] for t in done], [t["value"] for t in done], "o",
                                label=f"{s['trainer']} ({len(done)} complete, "
                                      f"{len(pruned)} pruned)")
                ax.plot([t["number"] for t in pruned],
                        [max(v for v in t["val_accuracy"] if v is not None) for t in pruned],
                        "x", color=line.get_color())
                best, xs, ys = -np.inf, [], []
                for t in sorted(done, key=lambda t: t["number"]):
                    best = max(best, t["value"])
                    xs.append(t["number"])
                    ys.append(best)
                ax.step(xs, ys, where="post", color=line.get_color(), alpha=0.6)
            ax.set_xlabel("trial")
            ax.set_ylabel("validation accuracy")
            ax.set_title(f"{task}: tuning ({self.meta.get('trials', '?')} trials per trainer)")
            ax.legend(fontsize=8)
            ax.grid(alpha=0.3)
            written.append(save_figure(fig, folder, task, "tuning", dpi=110))
            ranked = [s for s in mine if s.get("importance")]
            if ranked:
                fig, axes = plt.subplots(1, len(ranked), figsize=(3.6 * len(ranked), 3.2),
                                         squeeze=False)
                for ax, s in zip(axes[0], ranked):
                    names = list(s["importance"])[::-1]
                    ax.barh(names, [s["importance"][n] for n in names])
                    ax.set_title(s["trainer"])
                    ax.set_xlabel("importance")
                fig.suptitle(f"{task}: hyper-parameter importance (Optuna)")
                written.append(save_figure(fig, folder, task, "importance", dpi=110))
        return written


def _short(value):
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)

"""PNG figures of a comparison (matplotlib, from the ``compare`` extra)."""
import os
import re

import numpy as np

from .data import require


def _slug(text):
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "task"


def save_figure(fig, folder, task, kind, dpi=100):
    """Lay out ``fig``, write it to ``folder/<task>-<kind>.png``, close it,
    and return the path."""
    import matplotlib.pyplot as plt
    fig.tight_layout()
    path = os.path.join(folder, f"{_slug(task)}-{kind}.png")
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def _mean_curves(runs, key):
    """Mean over runs of a per-epoch list, truncated to the shortest run."""
    curves = [r[key] for r in runs if r[key]]
    if not curves:
        return None
    n = min(len(c) for c in curves)
    return np.mean([np.asarray(c[:n], dtype=np.float64) for c in curves], axis=0)


def plot_results(results, folder):
    """Write the accuracy and alignment figures of ``results`` into ``folder``.

    Parameters
    ----------
    results : fastbp.Results
    folder : str or os.PathLike

    Returns
    -------
    list of str
        Paths of the PNG files written.
    """
    require("matplotlib", "plotting compare results")
    import matplotlib
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    folder = os.fspath(folder)
    os.makedirs(folder, exist_ok=True)
    written = []
    tasks = list(dict.fromkeys(r["task"] for r in results.runs))
    for task in tasks:
        runs = [r for r in results.runs if r["task"] == task and r["test_accuracy"]]
        if not runs:
            continue
        trainers = list(dict.fromkeys(r["trainer"] for r in runs))
        fig, (ax_e, ax_t) = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
        target = runs[0]["settings"].get("target_accuracy")
        for name in trainers:
            mine = [r for r in runs if r["trainer"] == name]
            acc = _mean_curves(mine, "test_accuracy")
            secs = _mean_curves(mine, "train_seconds")
            n = min(len(acc), len(secs))
            label = f"{name} ({len(mine)} seed{'s' if len(mine) > 1 else ''})"
            line, = ax_e.plot(np.arange(1, len(acc) + 1), acc, label=label)
            ax_t.plot(secs[:n], acc[:n], color=line.get_color(), label=label)
            if len(mine) > 1:
                lo = np.min([r["test_accuracy"][:len(acc)] for r in mine], axis=0)
                hi = np.max([r["test_accuracy"][:len(acc)] for r in mine], axis=0)
                ax_e.fill_between(np.arange(1, len(acc) + 1), lo, hi,
                                  color=line.get_color(), alpha=0.15, linewidth=0)
        for ax in (ax_e, ax_t):
            if target is not None:
                ax.axhline(target, color="grey", linestyle=":", linewidth=1,
                           label=f"target accuracy {target:g}")
            ax.grid(alpha=0.3)
        ax_e.set_xlabel("epoch")
        ax_e.set_ylabel("test accuracy (mean over seeds; band: min-max)")
        ax_t.set_xlabel("training seconds (kernel time, compilation excluded)")
        ax_t.legend(loc="lower right", fontsize="small")
        fig.suptitle(f"{task}: test accuracy")
        written.append(save_figure(fig, folder, task, "accuracy"))

        aligned = [name for name in trainers
                   if any(r["alignment"] for r in runs if r["trainer"] == name)]
        if aligned:
            ncols = min(3, len(aligned))
            nrows = -(-len(aligned) // ncols)
            fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.4 * nrows),
                                     sharey=True, squeeze=False)
            for ax in axes.ravel()[len(aligned):]:
                ax.set_visible(False)
            for ax, name in zip(axes.ravel(), aligned):
                have = [r for r in runs if r["trainer"] == name and r["alignment"]]
                mine = [np.asarray(r["alignment"], dtype=np.float64) for r in have]
                n = min(len(a) for a in mine)
                x = np.asarray((have[0].get("alignment_epochs") or range(1, n + 1))[:n])
                mean = np.nanmean([a[:n] for a in mine], axis=0)  # (points, L)
                for layer in range(mean.shape[1]):
                    ax.plot(x, mean[:, layer], marker=".", label=f"layer {layer + 1}")
                ax.set_title(name)
                ax.set_xlabel("epoch")
                ax.set_ylim(0, 180)
                ax.axhline(90, color="grey", linestyle=":", linewidth=1,
                           label="90° (orthogonal to the gradient)")
                ax.grid(alpha=0.3)
                ax.legend(fontsize="small")
            for row in axes:
                row[0].set_ylabel("angle to gradient (degrees)")
            fig.suptitle(f"{task}: update direction vs gradient, per layer")
            written.append(save_figure(fig, folder, task, "alignment"))
    return written

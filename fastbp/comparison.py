"""Every trainer on the same tasks and the same clock: `compare`.

The grid is every (task, seed, trainer) combination. Each run (see
`fastbp.runs`) starts from the model initialisation of its seed — the
same for every trainer — and records per-epoch test accuracy and loss,
kernel seconds, and alignment angles where the trainer has them. Runs execute
in this process, or on a Dask distributed cluster (``scheduler=`` an address,
or ``workers=N`` for a local cluster of N processes); the numbers are the same
either way for the same seeds (timings excepted).

With ``out=``, ``results.json`` is rewritten after every finished run, so
interrupting (Ctrl-C) keeps every finished run.

With ``params=`` (a ``tuning.json`` written by `fastbp.tune`), each
(task, trainer) pair that was tuned runs at its best settings; results.json
and the table say which pairs were tuned.

`compare` is `prepare` (every argument, task option and trainer option
checked, data loaded, each trainer built once on its task's model: nothing
trained) followed by `execute`; the command line calls the two apart, so that
a bad option is a usage error before any run.

This module imports from fastbp's submodules only, never from the package
root, which imports it lazily (``fb.compare``): no import loop.
"""
import contextlib
import datetime
import os
import platform
import sys
from dataclasses import dataclass

import numpy as np

from . import runs
from .compile_ahead import CompileAhead, settings_key
from .data import require
from .progress import RunProgress
from .results import Results, Tuning
from .tasks import as_task_specs, describe, get_task, parse_task_spec, task_key
from .validation import check_dtype, check_positive_int

__all__ = ["compare", "prepare", "execute", "Plan", "Results", "DEFAULT_TASK"]

#: the task ``fastbp compare`` runs when none is named
DEFAULT_TASK = "mnist1d"


def _check_list(value, argument, default):
    if value is None:
        return list(default)
    if isinstance(value, str):
        value = [value]
    try:
        value = list(value)
    except TypeError:
        raise TypeError(f"{argument} must be a list of names, got {value!r}") from None
    if not value:
        raise ValueError(f"{argument} is empty; give at least one name")
    for v in value:
        if not isinstance(v, str):
            raise TypeError(f"{argument} must hold str names, got {v!r}")
    return list(dict.fromkeys(value))


def _check_seeds(seeds):
    if isinstance(seeds, bool):
        raise TypeError(f"seeds must be a count >= 1 or a list of ints >= 0, got {seeds!r}")
    if isinstance(seeds, (int, np.integer)):
        return list(range(check_positive_int(seeds, "seeds")))
    try:
        seeds = list(seeds)
    except TypeError:
        raise TypeError(f"seeds must be a count >= 1 or a list of ints >= 0, "
                        f"got {seeds!r}") from None
    if not seeds:
        raise ValueError("seeds is an empty list; give at least one seed")
    for s in seeds:
        if isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 0:
            raise ValueError(f"seeds must hold ints >= 0, got {s!r} in {seeds}")
    return [int(s) for s in dict.fromkeys(seeds)]


def _optional_positive(value, argument, kind=int):
    if value is None:
        return None
    if kind is int:
        return check_positive_int(value, argument)
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)) \
            or not np.isfinite(value) or value < 0 or (argument == "lr" and value == 0):
        raise ValueError(f"{argument} must be a finite number "
                         f"{'> 0' if argument == 'lr' else '>= 0'}, got {value!r}")
    return float(value)


def _machine():
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    import numba
    return {"cpu": cpu, "cores": os.cpu_count(), "platform": platform.platform(),
            "python": sys.version.split()[0], "numpy": np.__version__,
            "numba": numba.__version__, "fastbp": _fastbp_version()}


def _fastbp_version():
    """The installed fastbp's version (from its metadata, not the package
    root, which imports this module)."""
    from importlib import metadata
    try:
        return metadata.version("fastbp")
    except metadata.PackageNotFoundError:
        return "unknown (not installed)"


def _check_out(out, create):
    """The results folder as a str; ValueError naming it when it cannot be a
    writable folder (a file there or above it, no write permission). With
    ``create``, the folder is made (with its parents)."""
    if out is None:
        return None
    out = os.fspath(out)
    if os.path.exists(out) and not os.path.isdir(out):
        raise ValueError(f"out={out!r} is a file; expected a folder for results.json "
                         "and the figures")
    existing = os.path.abspath(out)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise ValueError(f"out={out!r} cannot be a folder: {existing!r} is a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"out={out!r} is not writable ({existing!r} does not let this user "
                         "write); expected a folder for results.json and the figures")
    if create:
        try:
            os.makedirs(out, exist_ok=True)
        except OSError as exc:
            raise ValueError(f"out={out!r} cannot be created as a folder: "
                             f"{exc.strerror or exc}") from None
    return out


@dataclass(kw_only=True)
class ExecutionPlan:
    """Where and how a checked grid of runs or trials executes (the part
    `Plan` and `fastbp.tuning.TuningPlan` share; keyword-only fields).

    Attributes
    ----------
    meta : dict
        What the JSON file's ``meta`` starts from.
    out : str or None
        The folder for the JSON file and figures (None: write nothing).
    plots, progress : bool
    scheduler : str or None
        A Dask scheduler address.
    workers : int or None
        Worker processes of a local Dask cluster.
    """

    meta: dict
    out: object
    plots: bool
    progress: bool
    scheduler: object
    workers: object


@dataclass(kw_only=True)
class Plan(ExecutionPlan):
    """A checked comparison grid, ready to `execute`: nothing trained yet.

    Attributes
    ----------
    specs : list of dict
        One run spec per (task, seed, trainer) (see `fastbp.runs.make_spec`);
        the runs' indices. In this process the runs of one (task, trainer)
        pair run one after the other, pairs in the order they first appear.
    compile_ahead : bool
        See `compare`.

    The others are those of `ExecutionPlan`; ``meta`` starts results.json's.
    """

    specs: list
    compile_ahead: bool = True

    def __repr__(self):
        return (f"Plan({len(self.specs)} runs, tasks={list(self.meta['tasks'])}, "
                f"trainers={self.meta['trainers']}, seeds={self.meta['seeds']})")


def compare(tasks=None, trainers=None, seeds=3, epochs=None, batch_size=None, lr=None,
            weight_decay=None, dtype=np.float32, out=None, plots=True, progress=True,
            scheduler=None, workers=None, trainer_options=None, data_seed=0,
            alignment=True, blas_threads=1, params=None, compile_ahead=True):
    """Train every trainer on every task for every seed and compare them.

    Every argument, task option and trainer option is checked, and each
    trainer is built once on its task's model, before the first run trains
    (see `prepare`).

    Parameters
    ----------
    tasks : list of str or fastbp.Task, or None
        Task specs (``"mnist1d"``, ``"adding:length=50"``, see
        `fastbp.tasks.available_tasks`; ``"file:PATH.npz[:options]"`` for
        your own data), or tasks (``fastbp.Task.from_arrays(...)``); None runs
        `DEFAULT_TASK`.
    trainers : list of str or None
        Registry names (see `fastbp.available_trainers`); None runs
        every registered trainer, plug-ins included.
    seeds : int >= 1 or list of int >= 0
        A count n means seeds 0..n-1. The seed fixes the model
        initialisation (the same for every trainer), the shuffling and the
        trainers' own random draws.
    epochs, batch_size : int >= 1 or None
        None uses each task's default budget.
    lr : float > 0 or None
        Learning rate of the task's optimizer (None: the task's default).
    weight_decay : float >= 0 or None
        L2 penalty for every trainer (None: the task's default).
    dtype : np.float32 or np.float64
    out : str, os.PathLike or None
        Folder for ``results.json`` (rewritten after every finished run) and
        the PNG figures; None writes nothing.
    plots : bool
        Write the figures into ``out`` at the end (needs matplotlib).
    progress : bool
        Show runs done and the current run's epoch (tqdm when installed).
    scheduler : str or None
        Address of a Dask distributed scheduler ("tcp://host:8786") to run on.
    workers : int >= 1 or None
        Start a local Dask cluster of this many worker processes (one thread
        each) for the grid. Not together with ``scheduler``.
    trainer_options : dict or None
        Registry name -> extra constructor arguments for that trainer, for
        example ``{"dtp": {"target_step": 0.2}}``.
    data_seed : int >= 0
        Seed of generated data and random train/test splits (the same for
        every run).
    alignment : bool
        Record, after every epoch, the per-layer angle between the update
        direction and the backprop gradient for trainers that have
        ``update_directions`` (MLP tasks).
    blas_threads : int >= 1 or None
        BLAS threads per run (default 1, as on Dask workers: steady timings
        whatever else runs on the machine, and the same arithmetic in-process
        and on a cluster); None keeps the BLAS library's default.
    params : str, os.PathLike, fastbp.Tuning or None
        Tuned settings: a ``tuning.json`` written by `fastbp.tune` (or the
        `fastbp.Tuning` it returned). Every (task, trainer) pair it has a
        best trial for runs with that trial's values (learning rate, weight
        decay, the trainer's own knobs) and the tuning's fixed trainer
        options; ``trainer_options`` given here still apply, last. Pairs it
        does not cover run at the defaults. Each run's
        ``settings["tuned"]`` and the table's settings column say which.
        Not together with ``lr`` or ``weight_decay``.
    compile_ahead : bool
        In this process (no Dask), compile the kernels of the next (task,
        trainer) pair in a background process while the current one trains,
        when a second CPU is free and Numba's on-disk cache is on (see
        `fastbp.compile_ahead`). Cuts what a first comparison spends
        compiling; the runs and their numbers are the same either way.

    Returns
    -------
    Results
        ``.table()``, ``.to_json(path)``, ``.plot(folder)``, ``.runs``.

    Raises
    ------
    TypeError, ValueError
        Before any run, for a bad argument, task option or trainer option
        (the message names it), or an ``out`` that cannot be a folder.
    ImportError
        Before any run, when a task, the figures or Dask need an optional
        package that is missing; the message gives the install command.
    KeyboardInterrupt
        After writing every finished run to ``out/results.json``.

    Examples
    --------
    >>> import fastbp as fb
    >>> res = fb.compare(tasks=["digits"], trainers=["backprop", "fa"], seeds=2,
    ...                  epochs=5)                                   # doctest: +SKIP
    >>> print(res.table())                                            # doctest: +SKIP
    """
    return execute(prepare(
        tasks=tasks, trainers=trainers, seeds=seeds, epochs=epochs, batch_size=batch_size,
        lr=lr, weight_decay=weight_decay, dtype=dtype, out=out, plots=plots,
        progress=progress, scheduler=scheduler, workers=workers,
        trainer_options=trainer_options, data_seed=data_seed, alignment=alignment,
        blas_threads=blas_threads, params=params, compile_ahead=compile_ahead))


def prepare(tasks=None, trainers=None, seeds=3, epochs=None, batch_size=None, lr=None,
            weight_decay=None, dtype=np.float32, out=None, plots=True, progress=True,
            scheduler=None, workers=None, trainer_options=None, data_seed=0,
            alignment=True, blas_threads=1, params=None, compile_ahead=True):
    """Check a comparison grid without training anything.

    Checks every argument, loads each task's data (so bad task options fail
    here), builds each (task, trainer) pair's model and trainer once with the
    given options (so bad trainer options fail here), checks that the
    optional packages needed are installed and creates ``out``.

    Parameters
    ----------
    tasks, trainers, seeds, epochs, batch_size, lr, weight_decay, dtype, out, plots, \
progress, scheduler, workers, trainer_options, data_seed, alignment, blas_threads, params, \
compile_ahead
        As for `compare`.

    Returns
    -------
    Plan
        For `execute`.

    Raises
    ------
    TypeError, ValueError
        A bad argument, task option or trainer option (the message names it),
        a ``params`` file that is not a tuning file, or an ``out`` that cannot
        be a folder.
    ImportError
        A task, the figures or Dask need a missing optional package.
    """
    return _prepare(tasks, trainers, seeds, epochs, batch_size, lr, weight_decay, dtype, out,
                    plots, progress, scheduler, workers, trainer_options, data_seed, alignment,
                    blas_threads, params=params, compile_ahead=compile_ahead)


def _prepare(tasks, trainers, seeds, epochs, batch_size, lr, weight_decay, dtype, out, plots,
             progress, scheduler, workers, trainer_options, data_seed, alignment, blas_threads,
             params=None, validation=None, compile_ahead=True):
    """`prepare`, and for `fastbp.tune` with ``validation`` (a fraction of
    the training set, see `fastbp.runs.validation_split`) in every spec."""
    from .registry import available_trainers, get_trainer

    # Task objects registered by name, 'file:' specs with an absolute path
    tasks = as_task_specs(tasks, portable=scheduler is not None or workers is not None)
    task_specs = _check_list(tasks, "tasks", [DEFAULT_TASK])
    for spec in task_specs:
        name, options = parse_task_spec(spec)
        get_task(name).options(**options)  # raises for unknown names/options
    known = available_trainers()
    default_trainers = ["backprop"] + [t for t in known if t != "backprop"]
    trainer_names = _check_list(trainers, "trainers", default_trainers)
    for name in trainer_names:
        get_trainer(name)  # raises naming the known trainers
    seed_list = _check_seeds(seeds)
    epochs = _optional_positive(epochs, "epochs")
    batch_size = _optional_positive(batch_size, "batch_size")
    lr = _optional_positive(lr, "lr", float)
    weight_decay = _optional_positive(weight_decay, "weight_decay", float)
    dtype = check_dtype(dtype)
    if trainer_options is None:
        trainer_options = {}
    if not isinstance(trainer_options, dict):
        raise TypeError(f"trainer_options must be a dict of trainer name -> dict, "
                        f"got {type(trainer_options).__name__}")
    for name, opts in trainer_options.items():
        if name not in trainer_names and trainers is not None:
            raise ValueError(f"trainer_options names {name!r}, which is not among the "
                             f"trainers compared: {trainer_names}")
        if not isinstance(opts, dict):
            raise TypeError(f"trainer_options[{name!r}] must be a dict, got {opts!r}")
    if isinstance(data_seed, bool) or not isinstance(data_seed, (int, np.integer)) \
            or data_seed < 0:
        raise ValueError(f"data_seed must be an int >= 0, got {data_seed!r}")
    if scheduler is not None and not isinstance(scheduler, str):
        raise TypeError(f"scheduler must be an address str such as 'tcp://127.0.0.1:8786', "
                        f"got {scheduler!r}")
    if workers is not None:
        workers = check_positive_int(workers, "workers")
        if scheduler is not None:
            raise ValueError(f"workers={workers} starts a local cluster and scheduler="
                             f"{scheduler!r} names an existing one; give one of them")
    if blas_threads is not None:
        blas_threads = check_positive_int(blas_threads, "blas_threads")
    out = _check_out(out, create=False)

    unknown = [n for n in trainer_options if n not in trainer_names]
    if unknown:
        raise ValueError(f"trainer_options names {unknown[0]!r}, which is not among the "
                         f"trainers compared: {trainer_names}")
    specs = [runs.make_spec(task, trainer, seed, epochs, batch_size, lr, weight_decay,
                            dtype.name, trainer_options.get(trainer), data_seed, alignment,
                            blas_threads, validation=validation)
             for task in task_specs for seed in seed_list for trainer in trainer_names]
    tuned_meta = None
    if params is not None:
        tuned_meta = _apply_params(specs, params, lr, weight_decay)
    # missing optional packages stop the grid before any run, with the install
    # command, instead of failing every run
    if plots and out is not None:
        require("matplotlib", "compare's figures")
    if scheduler is not None or workers is not None:
        require("distributed", "running compare on Dask (--scheduler/--workers)")
    # data of every task and one trainer of every (task, trainer) pair, built
    # and thrown away: a bad task or trainer option fails now, not after
    # earlier runs have trained
    for spec in {s["task"]: s for s in specs}.values():
        try:
            runs.load_data(spec)
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"task {spec['task']!r}: {exc}") from None
    for spec in {(s["task"], s["trainer"]): s for s in specs}.values():
        try:
            runs.check_spec(spec)
        except (TypeError, ValueError) as exc:
            given = spec["trainer_options"]
            raise type(exc)(f"trainer {spec['trainer']!r}"
                            f"{' with options ' + repr(given) if given else ''} on task "
                            f"{spec['task']!r}: {exc}") from None
    _check_out(out, create=True)
    meta = {"created": datetime.datetime.now(datetime.timezone.utc).isoformat(
                timespec="seconds"),
            "tasks": {t: describe(parse_task_spec(t)[0]) for t in task_specs},
            "trainers": trainer_names, "seeds": seed_list,
            "overrides": {"epochs": epochs, "batch_size": batch_size, "lr": lr,
                          "weight_decay": weight_decay, "dtype": dtype.name,
                          "trainer_options": trainer_options, "data_seed": int(data_seed),
                          "blas_threads": blas_threads},
            "params": tuned_meta,
            "execution": ("dask " + scheduler if scheduler else
                          f"dask LocalCluster({workers} processes)" if workers else
                          "in-process"),
            "machine": _machine(), "n_runs": len(specs), "complete": False,
            "wall_seconds": None}
    return Plan(specs=specs, meta=meta, out=out, plots=bool(plots), progress=bool(progress),
                scheduler=scheduler, workers=workers, compile_ahead=bool(compile_ahead))


def _apply_params(specs, params, lr, weight_decay):
    """Put the best settings of a tuning file into the specs of the pairs it
    tuned; returns what results.json's ``meta["params"]`` records."""
    if lr is not None or weight_decay is not None:
        given = "lr" if lr is not None else "weight_decay"
        raise ValueError(f"{given} and params both set the settings of the runs; give params "
                         f"(the tuned values) or {given}, not both")
    if isinstance(params, Tuning):
        tuning, source = params, "a fastbp.Tuning object"
    elif isinstance(params, (str, os.PathLike)):
        source = os.fspath(params)
        try:
            tuning = Tuning.from_json(source)
        except ValueError as exc:
            raise ValueError(f"params={source!r}: {exc}") from None
    else:
        raise TypeError(f"params must be the path of a tuning.json written by fastbp tune, or "
                        f"a fastbp.Tuning, got {type(params).__name__}")
    best = {}
    for study in tuning.studies:
        if study.get("best") is not None:
            best[(task_key(study["task"]), study["trainer"])] = study
    tuned, untuned = [], []
    for spec in specs:
        pair = (spec["task"], spec["trainer"])
        study = best.get((task_key(spec["task"]), spec["trainer"]))
        if study is None:
            if pair not in untuned:
                untuned.append(pair)
            continue
        spec["params"] = dict(study["best"]["params"])
        spec["trainer_options"] = {**study.get("trainer_options", {}), **spec["trainer_options"]}
        if pair not in tuned:
            tuned.append(pair)
    return {"source": source, "tuned": [list(p) for p in tuned],
            "untuned": [list(p) for p in untuned],
            "tuning": {k: tuning.meta.get(k) for k in ("trials", "epochs", "validation", "seed",
                                                       "created")}}


def execute(plan):
    """Run a checked grid (from `prepare`) and return its results.

    Parameters
    ----------
    plan : Plan

    Returns
    -------
    Results
        As `compare` returns them.

    Raises
    ------
    KeyboardInterrupt
        After writing every finished run to ``out/results.json``.
    """
    specs, out, plots = plan.specs, plan.out, plan.plots
    scheduler, workers = plan.scheduler, plan.workers
    results = Results([], dict(plan.meta))
    json_path = os.path.join(out, "results.json") if out is not None else None
    bar = RunProgress(len(specs), plan.progress)
    start = datetime.datetime.now().timestamp()

    def finished(index, record):
        record["index"] = index
        results.runs.append(record)
        results.runs.sort(key=lambda r: r["index"])
        results.meta["wall_seconds"] = datetime.datetime.now().timestamp() - start
        bar.finished(record)
        if json_path is not None:
            results.to_json(json_path)

    try:
        if scheduler is None and workers is None:
            order = run_order(specs)
            with CompileAhead([specs[i] for i in order], enabled=plan.compile_ahead) as ahead:
                results.meta["compile_ahead"] = ahead.active
                for i in order:
                    spec = specs[i]
                    bar.start(spec, spec["epochs"] or get_task(
                        parse_task_spec(spec["task"])[0]).epochs)
                    ahead.wait(spec)
                    finished(i, runs.run_safely(spec, on_epoch=bar.epoch))
        else:
            _run_on_dask(specs, scheduler, workers, finished)
        results.meta["complete"] = True
    except KeyboardInterrupt:
        results.meta["interrupted"] = True
        if json_path is not None:
            results.to_json(json_path)
        raise
    finally:
        bar.close()
    if json_path is not None:
        results.to_json(json_path)
        if plots:
            results.meta["figures"] = [os.path.basename(p) for p in results.plot(out)]
            results.to_json(json_path)
    return results


def run_order(specs):
    """The order in which this process runs a grid: the runs of one setting
    (`fastbp.compile_ahead.settings_key`: every seed of a (task, trainer)
    pair) one after the other, settings in the order they first appear, so
    that each setting's kernels compile once, and the next one's can compile
    in the background while this one trains.

    Parameters
    ----------
    specs : list of dict

    Returns
    -------
    list of int
        Indices into ``specs``.
    """
    groups = {}
    for i, spec in enumerate(specs):
        groups.setdefault(settings_key(spec), []).append(i)
    return [i for group in groups.values() for i in group]


@contextlib.contextmanager
def dask_client(scheduler, workers, purpose="running compare on Dask (--scheduler/--workers)"):
    """A Dask distributed client: of the scheduler at ``scheduler``, or of a
    local cluster of ``workers`` processes (one thread each) started here and
    closed on exit.

    Parameters
    ----------
    scheduler : str or None
        Address such as ``"tcp://host:8786"``.
    workers : int or None
        Used when ``scheduler`` is None.
    purpose : str
        For the install hint when ``distributed`` is missing.

    Yields
    ------
    (module, Client)
        The ``distributed`` module and the client.
    """
    distributed = require("distributed", purpose)
    cluster = None
    if scheduler is None:
        cluster = distributed.LocalCluster(n_workers=workers, threads_per_worker=1,
                                           processes=True, dashboard_address=None)
        client = distributed.Client(cluster)
    else:
        client = distributed.Client(scheduler)
    try:
        yield distributed, client
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _run_on_dask(specs, scheduler, workers, finished):
    """Submit every spec to Dask and call ``finished(index, record)`` as runs end."""
    with dask_client(scheduler, workers) as (distributed, client):
        futures = {}
        try:
            for i, spec in enumerate(specs):
                futures[client.submit(runs.run_safely, spec, pure=False,
                                      key=f"fastbp-run-{i}")] = i
            for future in distributed.as_completed(futures):
                finished(futures[future], future.result())
        except BaseException:
            client.cancel(list(futures))
            raise

"""Every trainer at its own best settings under one budget: `tune`.

For every (task, trainer) pair, an Optuna study searches the trainer's
search space (`fastbp.Trainer.search_space`: the learning rate and weight
decay for all, each rule's own knobs beside them) with the same number of
trials and the same epochs for every trainer, backprop included.

* **Selection never sees the test set.** Each trial is a run of
  `fastbp.runs.run` on the training set less a validation part carved from
  it (`fastbp.runs.validation_split`, drawn with ``data_seed``), evaluated
  on that part after every epoch; the test arrays are dropped as soon as the
  task's loader returns them. A trial's value is its validation accuracy
  after the last epoch (the task's accuracy, as ``compare`` reports it).
* **TPE with a fixed seed, pruning on the per-epoch validation curve.**
  Trials go in rounds of ``round_size``: a round's trials are asked from a
  TPE sampler that has seen every trial of the earlier rounds (the sampler
  is seeded from ``seed`` and the trial's number), and each of them is
  stopped early (pruned) when its best validation accuracy so far falls
  below the median of the completed trials of the earlier rounds at the
  same epoch. Nothing a trial sees depends on when the other trials of its
  round finish, so a run on a Dask cluster gives the trials a local run
  gives, and an interrupted run resumed gives those of an uninterrupted one.
* **A study is kept in ``out``** (Optuna's journal file
  ``optuna-journal.log``): Ctrl-C keeps every finished trial and the same
  call resumes; a larger ``trials`` extends a finished study.

The best settings go back into a comparison with
``fb.compare(..., params="DIR/tuning.json")`` (``fastbp compare --params``).

This module imports from fastbp's submodules only (the package root imports
it lazily, as ``fb.tune``); Optuna is imported when a tuning starts.
"""
import contextlib
import datetime
import importlib
import json
import math
import os
import sys
import warnings
from dataclasses import dataclass

import numpy as np

from . import runs
from .comparison import ExecutionPlan, _check_out, _machine, _prepare, dask_client
from .compile_ahead import CompileAhead
from .progress import _tqdm, count_done, is_interactive
from .results import Tuning, _is_jsonable, _jsonable
from .search_space import check_space, space_to_dict
from .tasks import get_task, parse_task_spec, task_key
from .validation import check_positive_int

__all__ = ["tune", "prepare", "execute", "Tuning", "TuningPlan", "run_trial",
           "DEFAULT_TRIALS", "DEFAULT_ROUND_SIZE", "DEFAULT_VALIDATION"]

#: trials per (task, trainer) when none is given
DEFAULT_TRIALS = 20
#: trials asked together; the sampler sees the trials of earlier rounds only
DEFAULT_ROUND_SIZE = 4
#: fraction of the training set held out for selection
DEFAULT_VALIDATION = 0.2
#: completed trials the pruner waits for before it stops any trial
PRUNER_STARTUP = 5
#: random trials before TPE models the history (Optuna's default)
SAMPLER_STARTUP = 10
#: version of the tuning.json layout
FORMAT_VERSION = 1
#: the study storage in the output folder
JOURNAL = "optuna-journal.log"
INSTALL_HINT = 'pip install "fastbp[tune]"'


def _optuna():
    try:
        optuna = importlib.import_module("optuna")
    except ImportError:
        raise ImportError(f"fastbp tune needs the optional package 'optuna': "
                          f"{INSTALL_HINT}") from None
    return optuna


@contextlib.contextmanager
def _quiet():
    """Optuna's info lines ("A new study created", "Trial 3 finished") off for
    a block: fastbp prints its own progress."""
    optuna = _optuna()
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        yield optuna
    finally:
        optuna.logging.set_verbosity(verbosity)


def _trial_seed(seed, number):
    """The sampler's seed for trial ``number`` of a study seeded with ``seed``."""
    return int(np.random.SeedSequence([int(seed), int(number)]).generate_state(1)[0])


def _warmup_steps(epochs):
    """Epochs before the pruner may stop a trial: a quarter of the budget."""
    return max(1, epochs // 4)


# -- the plan --------------------------------------------------------------------------

@dataclass(kw_only=True)
class TuningPlan(ExecutionPlan):
    """A checked tuning, ready to `execute`: nothing trained yet.

    Attributes
    ----------
    pairs : list of dict
        Per (task, trainer): ``task``, ``trainer``, ``spec`` (the run spec
        every trial starts from, see `fastbp.runs.make_spec`), ``space``
        (name -> distribution), ``fixed`` (the names left out of the space
        because a trainer option fixes their argument), ``reason`` (None, or
        why the trainer cannot train the task's model), ``epochs``,
        ``batch_size``, ``trainer_class``.
    trials, round_size : int
    prune : bool
    seed : int
    compile_ahead : bool
        See `tune`.

    The others are those of `fastbp.comparison.ExecutionPlan`; ``meta``
    starts tuning.json's.
    """

    pairs: list
    trials: int
    round_size: int
    prune: bool
    seed: int
    compile_ahead: bool = True

    def __repr__(self):
        return (f"TuningPlan({len(self.pairs)} studies of {self.trials} trials, "
                f"tasks={list(self.meta['tasks'])}, trainers={self.meta['trainers']})")


def tune(tasks=None, trainers=None, trials=DEFAULT_TRIALS, epochs=None, batch_size=None,
         dtype=np.float32, out=None, seed=0, validation=DEFAULT_VALIDATION,
         round_size=DEFAULT_ROUND_SIZE, prune=True, scheduler=None, workers=None,
         trainer_options=None, spaces=None, data_seed=0, plots=True, progress=True,
         blas_threads=1, compile_ahead=True):
    """Tune every trainer on every task under the same budget.

    Per (task, trainer) an Optuna study of ``trials`` trials, each a run of
    ``epochs`` epochs from the model initialisation of ``seed``, selected on
    a validation part of the training set (see the module docstring for the
    sampler, the pruner and the rounds). Every argument and each pair's
    search space are checked, and each trainer is built once, before the
    first trial trains (see `prepare`).

    Parameters
    ----------
    tasks : list of str or None
        Task specs, as for `fastbp.compare`; None tunes
        `fastbp.comparison.DEFAULT_TASK`.
    trainers : list of str or None
        Registry names; None tunes every registered trainer.
    trials : int >= 1
        Trials per (task, trainer): the same for every trainer. A rerun with
        the same ``out`` and a larger count extends the studies.
    epochs, batch_size : int >= 1 or None
        Budget of every trial; None takes each task's (the budget of
        ``compare``'s runs, so the settings are tuned for the runs they will
        be used in).
    dtype : np.float32 or np.float64
    out : str, os.PathLike or None
        Folder for ``tuning.json`` (rewritten after every trial), the
        study storage ``optuna-journal.log`` (a rerun resumes from it) and
        the figures; None keeps the studies in memory and writes nothing.
    seed : int >= 0
        Seed of the sampler and of every trial's model initialisation,
        shuffling and trainer draws (the same for every trial, so trials
        differ in their settings only).
    validation : float in (0, 1)
        Fraction of the training set held out for selection (see
        `fastbp.runs.validation_split`; a task too small to spare it
        selects on its training set, and tuning.json says so).
    round_size : int >= 1
        Trials asked together: the sampler sees the trials of earlier rounds
        only. The trials depend on it, never on ``workers``.
    prune : bool
        Stop trials whose validation curve falls below the median of the
        completed ones (from a quarter of the epochs, after
        `PRUNER_STARTUP` completed trials).
    scheduler : str or None
        Address of a Dask distributed scheduler to run the trials on.
    workers : int >= 1 or None
        Run the trials on a local Dask cluster of this many processes. Not
        together with ``scheduler``.
    trainer_options : dict or None
        Registry name -> fixed constructor arguments; the search space
        leaves out what they fix.
    spaces : dict or None
        Registry name -> a search space replacing the trainer's own
        (name -> ``fb.LogUniform`` / ``fb.Uniform`` / ``fb.IntRange`` /
        ``fb.Choice``).
    data_seed : int >= 0
        Seed of generated data, of the task's splits and of the validation
        split.
    plots : bool
        Write the figures into ``out`` at the end (needs matplotlib).
    progress : bool
        One line per finished trial (a bar on a terminal with tqdm).
    blas_threads : int >= 1 or None
        BLAS threads per trial (default 1, as on Dask workers).
    compile_ahead : bool
        In this process (no Dask), compile the kernels of the next (task,
        trainer) pair in a background process while the trials of the
        current one train, when a second CPU is free and Numba's on-disk
        cache is on (see `fastbp.compile_ahead`). Only the first round
        compiles; the trials and their values are the same either way.

    Returns
    -------
    Tuning
        ``.table()``, ``.best(task, trainer)``, ``.to_json(path)``,
        ``.plot(folder)``, ``.studies``.

    Raises
    ------
    TypeError, ValueError
        Before any trial, for a bad argument, task option, trainer option or
        search space (the message names it), an ``out`` that cannot be a
        folder, or an ``out`` holding studies of other settings.
    ImportError
        Before any trial, when Optuna or another optional package needed is
        missing (the message gives the install command).
    KeyboardInterrupt
        After writing every finished trial to ``out/tuning.json`` (and the
        study storage): the same call resumes.

    Examples
    --------
    >>> import fastbp as fb
    >>> tuning = fb.tune(tasks=["digits"], trainers=["backprop", "fa"], trials=8,
    ...                  epochs=5, out="tuning")                     # doctest: +SKIP
    >>> print(tuning.table())                                        # doctest: +SKIP
    >>> fb.compare(tasks=["digits"], trainers=["backprop", "fa"], epochs=5,
    ...            params="tuning/tuning.json")                      # doctest: +SKIP
    """
    return execute(prepare(
        tasks=tasks, trainers=trainers, trials=trials, epochs=epochs, batch_size=batch_size,
        dtype=dtype, out=out, seed=seed, validation=validation, round_size=round_size,
        prune=prune, scheduler=scheduler, workers=workers, trainer_options=trainer_options,
        spaces=spaces, data_seed=data_seed, plots=plots, progress=progress,
        blas_threads=blas_threads, compile_ahead=compile_ahead))


def _check_seed_value(value, argument):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"{argument} must be an int >= 0, got {value!r}")
    return int(value)


def _argument_names(cls, name, dist):
    """The constructor arguments search-space key ``name`` sets."""
    if name == "lr":
        return {"optimizer"}
    return set(cls.search_arguments({name: dist.example()}))


def prepare(tasks=None, trainers=None, trials=DEFAULT_TRIALS, epochs=None, batch_size=None,
            dtype=np.float32, out=None, seed=0, validation=DEFAULT_VALIDATION,
            round_size=DEFAULT_ROUND_SIZE, prune=True, scheduler=None, workers=None,
            trainer_options=None, spaces=None, data_seed=0, plots=True, progress=True,
            blas_threads=1, compile_ahead=True):
    """Check a tuning without training anything.

    Checks every argument, loads each task's data (only its training set
    is kept), builds each pair's model and trainer, checks each search space
    (its keys must build the trainer: a trainer is built from a value of
    every distribution), checks that Optuna and the other optional packages
    needed are installed, and, when ``out`` holds studies of earlier runs,
    that they were made with the same settings.

    Parameters
    ----------
    tasks, trainers, trials, epochs, batch_size, dtype, out, seed, validation, \
round_size, prune, scheduler, workers, trainer_options, spaces, data_seed, plots, progress, \
blas_threads, compile_ahead
        As for `tune`.

    Returns
    -------
    TuningPlan
        For `execute`.

    Raises
    ------
    TypeError, ValueError, ImportError
        As `tune` raises them before any trial.
    """
    from .registry import get_trainer
    _optuna()
    trials = check_positive_int(trials, "trials")
    round_size = check_positive_int(round_size, "round_size")
    seed = _check_seed_value(seed, "seed")
    if isinstance(validation, bool) or not isinstance(validation, (int, float, np.floating)) \
            or not 0 < validation < 1:
        raise ValueError(f"validation must be the fraction of the training set held out for "
                         f"selection, in (0, 1), got {validation!r}")
    if not isinstance(prune, (bool, np.bool_)):
        raise TypeError(f"prune must be a bool, got {prune!r}")
    if spaces is None:
        spaces = {}
    if not isinstance(spaces, dict):
        raise TypeError(f"spaces must be a dict of trainer name -> search space, got "
                        f"{type(spaces).__name__}")
    plan = _prepare(tasks, trainers, [seed], epochs, batch_size, None, None, dtype, None,
                    False, False, scheduler, workers, trainer_options, data_seed, False,
                    blas_threads, validation=float(validation))
    names = plan.meta["trainers"]
    for name in spaces:
        if name not in names:
            raise ValueError(f"spaces names {name!r}, which is not among the trainers tuned: "
                             f"{names}")
    fixed_options = plan.meta["overrides"]["trainer_options"] or {}
    for name, opts in fixed_options.items():
        for key, value in opts.items():
            if not _is_jsonable(value):
                raise TypeError(f"trainer_options[{name!r}][{key!r}] is {value!r}; fastbp tune "
                                "stores fixed options in tuning.json, so give plain values "
                                "(numbers, bools, str such as 'adam', lists), or tune an "
                                "optimizer through its rate in the search space")
    pairs = []
    for spec in plan.specs:
        task_name, options = parse_task_spec(spec["task"])
        task = get_task(task_name)
        options = task.options(**options)
        model = task.build_model(spec["seed"], spec["dtype"], **options)
        cls = get_trainer(spec["trainer"], model)
        where = f"trainer {spec['trainer']!r} on task {spec['task']!r}"
        pair = {"task": spec["task"], "trainer": spec["trainer"], "spec": spec,
                "trainer_class": cls.__name__, "space": {}, "fixed": [],
                "reason": runs.check_spec(spec),
                "epochs": spec["epochs"] or task.epochs,
                "batch_size": spec["batch_size"] or task.batch_size}
        if pair["reason"] is None:
            if spec["trainer"] in spaces:
                space = check_space(spaces[spec["trainer"]], f"spaces[{spec['trainer']!r}]")
            else:
                space = check_space(cls.search_space(task=task, model=model),
                                    f"{cls.__name__}.search_space()")
            fixed = set(fixed_options.get(spec["trainer"], {}))
            for key in list(space):
                if _argument_names(cls, key, space[key]) & fixed:
                    pair["fixed"].append(key)
                    del space[key]
            if not space:
                raise ValueError(f"{where}: nothing left to tune (every key of the search "
                                 f"space is fixed by trainer_options)")
            example = {k: d.example() for k, d in space.items()}
            try:
                runs.check_spec({**spec, "params": example})
            except (TypeError, ValueError) as exc:
                raise type(exc)(f"{where}: the search space {space} does not build the "
                                f"trainer: {exc}") from None
            pair["space"] = space
        pairs.append(pair)
    out = _check_out(out, create=True)
    meta = {"created": datetime.datetime.now(datetime.timezone.utc).isoformat(
                timespec="seconds"),
            "tasks": list(dict.fromkeys(p["task"] for p in pairs)),
            "trainers": names, "trials": trials, "round_size": round_size,
            "epochs": {p["task"]: p["epochs"] for p in pairs},
            "batch_size": {p["task"]: p["batch_size"] for p in pairs},
            "dtype": plan.meta["overrides"]["dtype"], "seed": seed,
            "data_seed": plan.meta["overrides"]["data_seed"],
            "validation": float(validation),
            "sampler": {"name": "TPESampler", "seed": seed,
                        "n_startup_trials": SAMPLER_STARTUP,
                        "seeded_per_trial": "numpy SeedSequence([seed, trial number])"},
            "pruner": ({"name": "MedianPruner", "n_startup_trials": PRUNER_STARTUP,
                        "n_warmup_steps": {p["task"]: _warmup_steps(p["epochs"])
                                           for p in pairs},
                        "against": "completed trials of earlier rounds"}
                       if prune else None),
            "objective": "validation accuracy after the last epoch (the task's accuracy)",
            "trainer_options": fixed_options,
            "blas_threads": plan.meta["overrides"]["blas_threads"],
            "execution": plan.meta["execution"], "machine": _machine(),
            "storage": JOURNAL if out is not None else "in memory",
            "complete": False, "wall_seconds": None}
    if plots and out is not None:
        from .data import require
        require("matplotlib", "fastbp tune's figures")
    tplan = TuningPlan(pairs=pairs, trials=trials, round_size=round_size, prune=bool(prune),
                       seed=seed, meta=meta, out=out, plots=bool(plots),
                       progress=bool(progress), scheduler=plan.scheduler, workers=plan.workers,
                       compile_ahead=bool(compile_ahead))
    if out is not None:
        storage = _storage(out)
        with _quiet():
            for pair in pairs:
                if pair["reason"] is None:
                    _open_study(storage, tplan, pair, create=False)
    return tplan


# -- studies -----------------------------------------------------------------------------

def _storage(out):
    optuna = _optuna()
    if out is None:
        return optuna.storages.InMemoryStorage()
    from optuna.storages.journal import JournalFileBackend
    return optuna.storages.JournalStorage(JournalFileBackend(os.path.join(out, JOURNAL)))


def _study_name(pair):
    return f"{task_key(pair['task'])}|{pair['trainer']}"


def _config(plan, pair):
    """What a study's trials depend on (its trial count aside): stored with the
    study, and compared when a rerun resumes it."""
    spec = pair["spec"]
    return _jsonable({"task": task_key(pair["task"]), "trainer": pair["trainer"],
                   "epochs": pair["epochs"], "batch_size": pair["batch_size"],
                   "dtype": spec["dtype"], "seed": plan.seed, "data_seed": spec["data_seed"],
                   "validation": spec["validation"], "round_size": plan.round_size,
                   "prune": plan.prune, "space": space_to_dict(pair["space"]),
                   "trainer_options": spec["trainer_options"],
                   "blas_threads": spec["blas_threads"], "format_version": FORMAT_VERSION})


def _open_study(storage, plan, pair, create=True):
    """The pair's study in ``storage`` (None when absent and not ``create``);
    ValueError when it was made with other settings."""
    optuna = _optuna()
    name = _study_name(pair)
    config = _config(plan, pair)
    exists = name in optuna.study.get_all_study_names(storage)
    if not exists and not create:
        return None
    study = optuna.create_study(storage=storage, study_name=name, direction="maximize",
                                load_if_exists=True)
    stored = study.user_attrs.get("fastbp_config")
    if stored is None:
        study.set_user_attr("fastbp_config", config)
    elif stored != config:
        diff = [k for k in config if stored.get(k) != config[k]]
        shown = ", ".join(f"{k}: {stored.get(k)!r} there, {config[k]!r} now" for k in diff)
        raise ValueError(f"out={plan.out!r} holds a study of {pair['trainer']!r} on "
                         f"{pair['task']!r} made with other settings ({shown}); rerun with the "
                         "same settings to resume it, or give another out folder")
    return study


def _trial_record(trial):
    """A finished or running trial as tuning.json lists it."""
    attrs = trial.user_attrs
    return _jsonable({"number": trial.number, "state": trial.state.name,
                   "params": dict(trial.params), "value": trial.value,
                   "val_accuracy": attrs.get("val_accuracy",
                                             [trial.intermediate_values[k] for k in
                                              sorted(trial.intermediate_values)]),
                   "epochs_run": attrs.get("epochs_run"), "status": attrs.get("status"),
                   "reason": attrs.get("reason", ""),
                   "train_seconds": attrs.get("train_seconds"),
                   "warmup_seconds": attrs.get("warmup_seconds")})


def _study_record(pair, study, importance=None):
    """A pair's entry in tuning.json."""
    record = {"task": pair["task"], "trainer": pair["trainer"],
              "trainer_class": pair["trainer_class"],
              "status": "not_applicable" if pair["reason"] else "ok",
              "reason": pair["reason"] or "",
              "space": space_to_dict(pair["space"]), "fixed": list(pair["fixed"]),
              "trainer_options": dict(pair["spec"]["trainer_options"]),
              "epochs": pair["epochs"], "batch_size": pair["batch_size"],
              "validation": None, "counts": None, "best": None, "importance": None,
              "importance_note": "", "trials": []}
    if study is None:
        return _jsonable(record)
    record["validation"] = runs.load_data(pair["spec"]).info.get("validation")
    trials = study.get_trials(deepcopy=False)
    record["trials"] = [_trial_record(t) for t in trials]
    counts = {}
    for t in trials:
        counts[t.state.name.lower()] = counts.get(t.state.name.lower(), 0) + 1
    record["counts"] = counts
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    if complete:
        # the first of the best (Optuna's best_trial): a tie keeps the earlier trial
        best = max(complete, key=lambda t: (t.value, -t.number))
        record["best"] = {"trial": best.number, "params": dict(best.params),
                          "val_accuracy": best.value}
    if importance is not None:
        record["importance"], record["importance_note"] = importance
    return _jsonable(record)


def _importance(study, pair):
    """(name -> importance, note) from Optuna's importance API, or (None, why not)."""
    optuna = _optuna()
    complete = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    if len(pair["space"]) < 2:
        return None, "one hyper-parameter: nothing to rank"
    if len(complete) < 2:
        return None, f"{len(complete)} completed trial(s): too few to rank hyper-parameters"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            values = optuna.importance.get_param_importances(study)
        except Exception as exc:   # Optuna's own limits (constant values, ...)
            return None, f"not available: {type(exc).__name__}: {exc}"
    if caught:   # e.g. every trial reached the same value: the ranking says nothing
        return None, f"not available: {caught[0].message}"
    return {k: float(v) for k, v in values.items()}, ""


# -- one trial -------------------------------------------------------------------------------

class _Pruning:
    """The pruner's decision after each epoch of a trial, against a fixed
    history: the completed trials of the earlier rounds."""

    def __init__(self, completed, epochs):
        optuna = _optuna()
        from optuna.trial import TrialState, create_trial
        self._create, self._running = create_trial, TrialState.RUNNING
        with _quiet():
            self.study = optuna.create_study(direction="maximize",
                                             storage=optuna.storages.InMemoryStorage())
        self.study.add_trials([create_trial(state=TrialState.COMPLETE, value=value,
                                            intermediate_values={int(k): v
                                                                 for k, v in curve.items()})
                               for curve, value in completed])
        self.pruner = optuna.pruners.MedianPruner(n_startup_trials=PRUNER_STARTUP,
                                                  n_warmup_steps=_warmup_steps(epochs))
        self.curve = {}

    def __call__(self, epoch, epochs, accuracy):
        self.curve[epoch] = float(accuracy) if math.isfinite(accuracy) else float("nan")
        if epoch >= epochs:
            return   # the budget is spent: the trial is complete
        trial = self._create(state=self._running, intermediate_values=dict(self.curve))
        if self.pruner.prune(self.study, trial):
            raise runs.StopRun(f"pruned after epoch {epoch} of {epochs}: its best validation "
                               f"accuracy {np.nanmax(list(self.curve.values())):.4g} is below "
                               "the median of the completed trials at that epoch")


def run_trial(spec, completed=None, prune=True):
    """Run one trial: `fastbp.runs.run_safely` with the pruner after each epoch.

    A plain top-level function of plain data, so that it runs the same in
    this process and on a Dask worker.

    Parameters
    ----------
    spec : dict
        A run spec with ``validation`` and ``params`` (see
        `fastbp.runs.make_spec`).
    completed : list of (dict, float) or None
        The history the pruner compares with: per completed trial of the
        earlier rounds, its per-epoch validation accuracy (epoch -> value)
        and its value.
    prune : bool

    Returns
    -------
    dict
        The run record; status 'stopped' for a pruned trial.
    """
    on_epoch = None
    if prune:
        epochs = spec["epochs"] or get_task(parse_task_spec(spec["task"])[0]).epochs
        on_epoch = _Pruning(completed or [], epochs)
    return runs.run_safely(spec, on_epoch=on_epoch)


# -- execution ------------------------------------------------------------------------------

class _Progress:
    def __init__(self, total, enabled):
        self.total, self.done, self.enabled = total, 0, enabled
        self.bar = None
        if enabled and is_interactive():
            tqdm = _tqdm()
            if tqdm is not None:
                self.bar = tqdm(total=total, desc="trials", unit="trial", file=sys.stderr)

    def finished(self, pair, number, record, state):
        self.done += 1
        if not self.enabled:
            return
        acc = record["test_accuracy"][-1] if record["test_accuracy"] else float("nan")
        text = (f"{pair['task']} {pair['trainer']} trial {number}: {state.lower()}, "
                f"val acc {acc:.3f}" + (f" ({record['status']})"
                                        if record["status"] not in ("ok", "stopped") else ""))
        count_done(self.bar, f"trial {self.done}/{self.total}", text)

    def close(self):
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class _Study:
    """A pair's study during `execute`: asks a round, tells its trials."""

    def __init__(self, plan, pair, storage):
        self.plan, self.pair = plan, pair
        self.study = _open_study(storage, plan, pair)
        self.distributions = {k: d.to_optuna() for k, d in pair["space"].items()}
        self.asked = {}

    def next_round(self):
        """[(number, spec, completed)] of the round to run next (asking its
        new trials); [] when the study has all its trials."""
        optuna = _optuna()
        plan, study = self.plan, self.study
        trials = study.get_trials(deepcopy=False)
        open_numbers = [t.number for t in trials
                        if not t.state.is_finished() and t.number < plan.trials]
        first = open_numbers[0] if open_numbers else len(trials)
        start = first // plan.round_size * plan.round_size
        end = min(start + plan.round_size, plan.trials)
        if start >= plan.trials:
            return []
        while len(trials) < end:
            study.sampler = optuna.samplers.TPESampler(
                seed=_trial_seed(plan.seed, len(trials)), n_startup_trials=SAMPLER_STARTUP)
            trial = study.ask(self.distributions)
            self.asked[trial.number] = trial
            trials = study.get_trials(deepcopy=False)
        completed = [(dict(t.intermediate_values), t.value) for t in trials[:start]
                     if t.state.name == "COMPLETE"]
        return [(t.number, {**self.pair["spec"], "params": dict(t.params)}, completed)
                for t in trials[start:end] if not t.state.is_finished()]

    def tell(self, number, record):
        """Record a finished trial; returns its Optuna state name."""
        optuna = _optuna()
        from optuna.trial import TrialState
        trial = self.asked.pop(number, None)
        if trial is None:   # asked by an interrupted run: resumed by its id
            frozen = self.study.get_trials(deepcopy=False)[number]
            trial = optuna.trial.Trial(self.study, frozen._trial_id)
        curve = [float(a) for a in record["test_accuracy"]]
        reported = self.study.get_trials(deepcopy=False)[number].intermediate_values
        for epoch, acc in enumerate(curve, 1):
            if math.isfinite(acc) and epoch not in reported:
                trial.report(acc, epoch)
        status = record["status"]
        value = (record.get("final") or {}).get("test_accuracy")
        attrs = {"status": status, "reason": record["reason"], "val_accuracy": _jsonable(curve),
                 "epochs_run": len(record["train_loss"]),
                 "train_seconds": _jsonable(sum(record["epoch_time"])),
                 "warmup_seconds": _jsonable(record["warmup_seconds"])}
        if status == "ok" and (value is None or not math.isfinite(value)):
            status = attrs["status"] = "failed"
            attrs["reason"] = f"the final validation accuracy is {value}"
        for k, v in attrs.items():
            trial.set_user_attr(k, v)
        if status == "ok":
            self.study.tell(trial, float(value))
            return "COMPLETE"
        state = TrialState.PRUNED if status in ("stopped", "diverged") else TrialState.FAIL
        self.study.tell(trial, state=state)
        return state.name


def execute(plan):
    """Run a checked tuning (from `prepare`) and return its results.

    Parameters
    ----------
    plan : TuningPlan

    Returns
    -------
    Tuning

    Raises
    ------
    KeyboardInterrupt
        After writing every finished trial to ``out/tuning.json``.
    """
    with _quiet():
        return _execute(plan)


def _execute(plan):
    storage = _storage(plan.out)
    json_path = os.path.join(plan.out, "tuning.json") if plan.out is not None else None
    start = datetime.datetime.now().timestamp()
    studies = [_Study(plan, pair, storage) if pair["reason"] is None else None
               for pair in plan.pairs]
    result = Tuning([], plan.meta)
    meta = result.meta

    def snapshot(importance=None):
        result.studies = [_study_record(pair, None if st is None else st.study,
                                        None if importance is None else importance[i])
                          for i, (pair, st) in enumerate(zip(plan.pairs, studies))]
        meta["wall_seconds"] = datetime.datetime.now().timestamp() - start
        if json_path is not None:
            result.to_json(json_path)

    meta["compile_ahead"] = False
    todo = sum(max(0, plan.trials - sum(t.state.is_finished() and t.number < plan.trials
                                        for t in st.study.get_trials(deepcopy=False)))
               for st in studies if st is not None)
    bar = _Progress(todo, plan.progress)
    try:
        if plan.scheduler is None and plan.workers is None:
            with _FirstRoundAhead(plan.compile_ahead, meta) as ahead:
                _rounds(plan, studies, bar, snapshot, None, ahead)
        else:
            with dask_client(plan.scheduler, plan.workers,
                             "running fastbp tune on Dask (--scheduler/--workers)") as client:
                _rounds(plan, studies, bar, snapshot, client)
        meta["complete"] = True
    except KeyboardInterrupt:
        meta["interrupted"] = True
        snapshot()
        raise
    finally:
        bar.close()
    importance = [None if st is None else _importance(st.study, pair)
                  for pair, st in zip(plan.pairs, studies)]
    snapshot(importance)
    if plan.out is not None and plan.plots:
        meta["figures"] = [os.path.basename(p) for p in result.plot(plan.out)]
        result.to_json(json_path)
    return result


class _FirstRoundAhead:
    """`fastbp.compile_ahead.CompileAhead` over the first trial of each study
    in the first round run in this process: the later rounds find every
    kernel compiled. ``start(jobs)`` is called with each round's jobs and acts
    on the first only (``meta["compile_ahead"]`` says whether a helper
    started); ``wait(spec)`` before each job (a no-op for every spec but a
    later study's first)."""

    def __init__(self, enabled, meta):
        self.enabled = enabled
        self.meta = meta
        self._ahead = None

    def start(self, jobs):
        """Start the helper on the first job of each study (the first round
        only)."""
        if self._ahead is not None or not self.enabled:
            return
        first = {}
        for i, _, spec, _ in jobs:
            first.setdefault(i, spec)
        self._ahead = CompileAhead(list(first.values()))
        self.meta["compile_ahead"] = self._ahead.active

    def wait(self, spec):
        if self._ahead is not None:
            self._ahead.wait(spec)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self._ahead is not None:
            self._ahead.close()
        return False


def _rounds(plan, studies, bar, snapshot, dask, ahead=None):
    """Round after round until every study has its trials: ask each study's
    round, run its trials (here or on Dask), tell each as it finishes.
    ``ahead`` (a `_FirstRoundAhead`, in this process only) compiles the
    studies' kernels ahead of the first round's trials."""
    snapshot()
    while True:
        jobs = [(i, number, spec, completed)
                for i, st in enumerate(studies) if st is not None
                for number, spec, completed in st.next_round()]
        if not jobs:
            return

        def finished(job, record):
            i, number = job[0], job[1]
            state = studies[i].tell(number, record)
            bar.finished(plan.pairs[i], number, record, state)
            snapshot()

        if dask is None:
            if ahead is not None:
                ahead.start(jobs)
            for job in jobs:
                if ahead is not None:
                    ahead.wait(job[2])
                finished(job, run_trial(job[2], job[3], plan.prune))
            continue
        distributed, client = dask
        futures = {}
        try:
            for job in jobs:
                futures[client.submit(run_trial, job[2], job[3], plan.prune, pure=False)] = job
            for future in distributed.as_completed(futures):
                finished(futures[future], future.result())
        except BaseException:
            client.cancel(list(futures))
            raise

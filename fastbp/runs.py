"""One (task, trainer, seed) run of `fastbp.compare`.

`run` is a plain top-level function of a JSON-like spec returning a
JSON-like record, so the same code runs in-process and on Dask workers and
gives the same numbers for the same spec (timings excepted).

What a run does:

1. load the task's data (``data_seed``) and build its model from ``seed`` —
   the same initialisation for every trainer;
2. build the trainer from the registry with the task's loss, a fresh
   optimizer, and ``seed`` for every ``seed`` / ``*_seed`` argument the
   trainer's constructor has (feedback matrices, noise) — or record the pair
   as not applicable when the trainer does not support the model;
3. compile every kernel in a warm-up (a throwaway copy of the model trains one
   epoch on a few batches), so that compilation never lands in the timings;
4. ``fit`` for ``epochs`` epochs; after each epoch a callback evaluates the
   test set (loss, the task's accuracy) and, for trainers with
   ``update_directions`` on MLPs, the per-layer angle to the backprop gradient
   on a fixed probe batch of training data.

A spec with ``validation`` (as `fastbp.tune` makes them) trains on the
training set without a held-out part and evaluates on that part instead of
the test set (see `validation_split`): such a run never sees the test set. A
spec with ``params`` (tuned values, as `fastbp.tune` samples them and
``compare(params=...)`` reads them back) sets the learning rate, the weight
decay and the trainer's own knobs from them (see
`fastbp.Trainer.search_arguments`).

Times are kernel seconds per epoch as ``fit`` measures them (History.epoch_time):
evaluation, alignment and progress display are not on the clock.
"""
import hashlib
import inspect
import time
import warnings

import numpy as np

from .angles import gradient_alignment, has_update_directions
from .threads import blas_limit
from .optim import Optimizer
from .tasks import accuracy, get_task, parse_task_spec

#: rows of training data on which alignment angles are measured
PROBE_ROWS = 256


#: a validation split smaller than this many rows is no measure: `validation_split`
#: then selects on the training set itself (xor: its four patterns are all there is)
MIN_VALIDATION_ROWS = 10


class StopRun(Exception):
    """Raised by a run's ``on_epoch`` callback to end the run after that
    epoch (a tuning pruner does); the run is recorded with status
    ``'stopped'`` and the message as its reason."""


def make_spec(task, trainer, seed, epochs=None, batch_size=None, lr=None,
              weight_decay=None, dtype="float32", trainer_options=None, data_seed=0,
              alignment=True, blas_threads=1, validation=None, params=None):
    """A run spec: a plain dict naming everything a run depends on.

    Parameters
    ----------
    task : str
        Task spec, ``"name"`` or ``"name:key=value,..."``.
    trainer : str
        Registry name (see `fastbp.available_trainers`).
    seed : int >= 0
        Model initialisation, shuffling and trainer seeds.
    epochs, batch_size : int or None
        None takes the task's default.
    lr, weight_decay : float or None
        None takes the task's default.
    dtype : {'float32', 'float64'}
    trainer_options : dict or None
        Extra constructor arguments for this trainer.
    data_seed : int >= 0
        Seed of generated data and random splits (fixed across runs).
    alignment : bool
        Record per-layer angles to the gradient when the trainer has
        ``update_directions``.
    blas_threads : int >= 1 or None
        BLAS threads during the run (via threadpoolctl); None leaves the
        library default.
    validation : float in (0, 1) or None
        Train on the training set less this fraction of it, drawn with
        ``data_seed`` (see `validation_split`), and evaluate on that fraction
        instead of the test set, which the run then never holds. None: the
        test set, as in `fastbp.compare`.
    params : dict or None
        Tuned values (see `fastbp.Trainer.search_space`): ``lr`` sets the
        rate of the run's optimizer, the rest go through the trainer's
        `fastbp.Trainer.search_arguments` into its constructor (after the
        task's defaults, before ``trainer_options``). Plain values only.

    Returns
    -------
    dict
    """
    return {"task": task, "trainer": trainer, "seed": int(seed), "epochs": epochs,
            "batch_size": batch_size, "lr": lr, "weight_decay": weight_decay,
            "dtype": str(np.dtype(dtype).name), "trainer_options": dict(trainer_options or {}),
            "data_seed": int(data_seed), "alignment": bool(alignment),
            "blas_threads": None if blas_threads is None else int(blas_threads),
            "validation": None if validation is None else float(validation),
            "params": dict(params or {})}


def validation_split(data, fraction, seed):
    """Carve a validation set out of a data set's training set.

    The validation rows are ``round(fraction * n)`` of the n training rows,
    drawn by a permutation seeded with ``seed``; both parts keep the
    original order. The test arrays are not in the result: a run given it
    cannot read them. When the validation part would have fewer than
    `MIN_VALIDATION_ROWS` rows, or leave no row to train on, the
    training set is both the training and the validation set (the task has
    no data to spare, like xor's four patterns), and ``info`` says so.

    Parameters
    ----------
    data : fastbp.data.Dataset
    fraction : float in (0, 1)
    seed : int >= 0

    Returns
    -------
    Dataset
        ``X_train``/``y_train`` the rows trained on, ``X_test``/``y_test``
        the validation rows; ``info["validation"]`` describes the split
        (``held_out``: bool, ``rows``, ``train_rows``, ``fraction``,
        ``seed``).
    """
    from .data import Dataset
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float, np.floating)) \
            or not 0 < fraction < 1:
        raise ValueError(f"validation must be a fraction of the training set in (0, 1), "
                         f"got {fraction!r}")
    n = len(data.X_train)
    rows = int(round(fraction * n))
    split = {"fraction": float(fraction), "seed": int(seed)}
    if rows < MIN_VALIDATION_ROWS or rows >= n:
        split.update(held_out=False, rows=n, train_rows=n,
                     note=f"{round(fraction * n)} of {n} training rows would be too few to "
                          "hold out; selection uses the training set itself")
        return Dataset(data.X_train, data.y_train, data.X_train, data.y_train,
                       {**data.info, "validation": split})
    order = np.random.default_rng(seed).permutation(n)
    val, train = np.sort(order[:rows]), np.sort(order[rows:])
    split.update(held_out=True, rows=rows, train_rows=n - rows)
    return Dataset(data.X_train[train], data.y_train[train], data.X_train[val],
                   data.y_train[val], {**data.info, "validation": split})


def applicability(cls, model):
    """None when trainer class ``cls`` can train ``model``, else the reason.

    Uses the cheap class-level check ``cls.supports(model)`` of
    `fastbp.Trainer` (from ``cls.supported_models``) when the class has
    it; otherwise the answer comes from constructing the trainer (see
    `build_trainer`, which turns a TypeError into the same reason).
    """
    check = getattr(cls, "supports", None)
    if callable(check) and not check(model):
        kinds = getattr(cls, "supported_models", ())
        names = " or ".join(f"fb.{c.__name__}" for c in kinds) or "other"
        return f"{cls.__name__} trains {names} models, not {type(model).__name__}"
    return None


def trainer_kwargs(cls, task, spec):
    """Constructor arguments of ``cls`` for this run (loss, optimizer, task
    trainer arguments, seeds, user options)."""
    params = inspect.signature(cls.__init__).parameters
    accepts_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
    tuned = dict(spec.get("params") or {})
    kwargs = {"loss": task.loss, "optimizer": task.make_optimizer(tuned.pop("lr", spec["lr"]))}
    kwargs.update(task.trainer_args)
    if spec["weight_decay"] is not None:
        kwargs["weight_decay"] = spec["weight_decay"]
    for name in params:
        if name == "seed" or name.endswith("_seed"):
            kwargs[name] = spec["seed"]
    options = dict(task.trainer_options.get(spec["trainer"], {}))
    from_params = cls.search_arguments(tuned) if tuned else {}
    for key in from_params:
        if key not in params and not accepts_any:
            raise ValueError(f"the tuned values {tuned} give {cls.__name__} the argument "
                             f"{key!r}, which it does not take; it takes "
                             f"{[p for p in params if p not in ('self', 'model')]}")
    options.update(from_params)
    options.update(spec["trainer_options"])
    for key, value in options.items():
        if key not in params and not accepts_any:
            raise ValueError(f"trainer_options for {spec['trainer']!r} has {key!r}, which "
                             f"{cls.__name__} does not take; it takes "
                             f"{[p for p in params if p not in ('self', 'model')]}")
        # an optimizer given as an option serves every run of the grid: each
        # trainer gets its own copy (an optimizer is bound to one trainer)
        kwargs[key] = value.copy() if isinstance(value, Optimizer) else value
    return kwargs


def build_trainer(cls, model, task, spec):
    """(trainer, None), or (None, reason) when ``cls`` rejects the model
    (TypeError) or needs an option the task does not give (ValueError, for
    example a truncation window for synthetic-gradient BPTT). With explicit
    ``trainer_options`` such errors are the user's and propagate."""
    why = applicability(cls, model)
    if why:
        return None, why
    try:
        return cls(model, **trainer_kwargs(cls, task, spec)), None
    except TypeError as exc:
        if spec["trainer_options"] or spec.get("params"):
            raise
        return None, str(exc)
    except ValueError as exc:
        if spec["trainer_options"] or spec.get("params"):
            raise
        name = spec["trainer"]
        return None, (f"{exc} (as configured by the task; give options with "
                      f"--trainer-option {name}.KEY=VALUE or "
                      f"trainer_options={{'{name}': {{...}}}})")


_DATA = {}


def load_data(spec):
    """The data of a spec's task (cached per process: a grid loads each task
    once per process). Raises ImportError with the install command when the
    task needs a missing optional package."""
    task, options = _task(spec)
    return _data(task, spec, options)


def _task(spec):
    """The spec's task and its options, checked and completed with the
    task's defaults."""
    name, options = parse_task_spec(spec["task"])
    task = get_task(name)
    return task, task.options(**options)


def check_spec(spec):
    """Everything a run of ``spec`` needs, without training: the task's data
    (loaded and cached, so bad task options fail here), the model of the
    spec's seed and the trainer built from it with the spec's options.

    `fastbp.compare` calls it once per (task, trainer) before the first run,
    so that a bad option fails at once instead of after earlier runs have
    trained.

    Parameters
    ----------
    spec : dict
        From `make_spec`.

    Returns
    -------
    str or None
        None when the trainer can train the task's model, else why not (the
        run will be recorded as not applicable).

    Raises
    ------
    ValueError, TypeError
        A task option, trainer option or setting the task or trainer refuses.
    ImportError
        The task needs a missing optional package.
    """
    task, options = _task(spec)
    return _setup(task, options, spec)[3]


def _data(task, spec, options):
    """The run's data: the task's, or with ``spec["validation"]`` the
    `validation_split` of its training set (the test arrays dropped as
    soon as they are loaded, never cached)."""
    validation = spec.get("validation")
    key = (task.name, tuple(sorted(options.items())), spec["data_seed"], spec["dtype"],
           validation)
    if key not in _DATA:
        if len(_DATA) > 4:
            _DATA.clear()
        data = task.load(seed=spec["data_seed"], dtype=spec["dtype"], **options)
        if validation is not None:
            data = validation_split(data, validation, spec["data_seed"])
        _DATA[key] = data
    return _DATA[key]


def _setup(task, options, spec):
    """(data, model, trainer class, why not applicable or None, alignment
    on?) of a run: its data, the model of its seed, and a trainer built
    and dropped to learn whether it applies and has update directions (it is
    built again after the warm-up: some trainers seed global generators)."""
    from .registry import get_trainer
    data = _data(task, spec, options)
    model = task.build_model(spec["seed"], spec["dtype"], **options)
    cls = get_trainer(spec["trainer"], model)
    trainer, why = build_trainer(cls, model, task, spec)
    alignment = (trainer is not None and spec["alignment"] and task.model == "MLP"
                 and spec["trainer"] != "backprop" and has_update_directions(trainer))
    return data, model, cls, why, alignment


def warm_up(spec):
    """Compile every kernel a run of ``spec`` uses, as `run` does before its
    clock starts (a throwaway model trains one epoch on two batches, then
    evaluates, predicts and, with alignment, measures angles), without
    running it. With Numba's on-disk cache on, the machine code is saved
    there, so a later run of a spec with the same settings, in any process,
    loads it instead of compiling (see `fastbp.compile_ahead`).

    Parameters
    ----------
    spec : dict
        From `make_spec`.

    Returns
    -------
    float or None
        Seconds taken, or None when the trainer does not apply to the task's
        model (nothing to compile).
    """
    task, options = _task(spec)
    data, model, cls, why, alignment = _setup(task, options, spec)
    if why is not None:
        return None
    bs = spec["batch_size"] or task.batch_size
    with blas_limit(spec.get("blas_threads")):
        return _warm_up(cls, task, model, data, spec, bs, alignment)


def _warm_up(cls, task, model, data, spec, bs, alignment):
    """Compile every kernel the run uses on a throwaway copy of the model."""
    t0 = time.perf_counter()
    rows = min(len(data.X_train), 2 * bs)
    trainer, _ = build_trainer(cls, model.copy(), task, spec)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(data.X_train[:rows], data.y_train[:rows], epochs=1, batch_size=bs,
                    seed=spec["seed"], on_divergence="stop", callbacks=[lambda *a: None])
        trainer.evaluate(data.X_test, data.y_test)
        trainer.model.predict(data.X_test)
        if alignment:
            gradient_alignment(trainer, data.X_train[:PROBE_ROWS], data.y_train[:PROBE_ROWS])
    return time.perf_counter() - t0


def _metrics(trainer, task, options, X, y):
    """(loss, the task's accuracy): one evaluation pass, plus a prediction
    pass for tasks whose accuracy is not evaluate's arg-max accuracy. A
    diverged model's NaN metrics are recorded (the run reports the divergence)
    without a warning per epoch."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        metrics = trainer.evaluate(X, y)
        if task.custom_accuracy or "accuracy" not in metrics:
            acc = accuracy(task, trainer.model.predict(X), y, **options)
        else:
            acc = metrics["accuracy"]
    return float(metrics["loss"]), float(acc)


#: alignment angles are measured on at most about this many epochs of a run
ALIGNMENT_POINTS = 25


def run(spec, on_epoch=None):
    """Execute one run.

    Parameters
    ----------
    spec : dict
        From `make_spec`.
    on_epoch : callable or None
        ``on_epoch(epoch, epochs, test_accuracy)`` after every epoch
        (progress); it may raise `StopRun` to end the run there.

    Returns
    -------
    dict
        The run record: ``status`` ('ok', 'diverged', 'stopped' (by
        ``on_epoch``; no ``final`` metrics), 'not_applicable' or
        'failed'), ``reason``, ``settings``, per-epoch lists ``train_loss``,
        ``test_loss``, ``test_accuracy``, ``epoch_time``, ``train_seconds``
        (cumulative epoch time), ``alignment`` ((k, L) degrees or None)
        measured after the epochs listed in ``alignment_epochs`` (every epoch
        for runs of up to 25 epochs, else about 25 evenly spaced ones and the
        last),
        ``final`` metrics, ``time_per_epoch`` (median seconds),
        ``epochs_to_target`` (see `epochs_to_target`: the epoch from which
        the test accuracy stays at or above the task's target to the end;
        None when it does not) and ``time_to_target`` (training seconds up to
        that epoch), and ``warmup_seconds`` (compilation and warm-up, not on
        the clock).
    """
    task, options = _task(spec)
    epochs = spec["epochs"] or task.epochs
    bs = spec["batch_size"] or task.batch_size
    tuned = dict(spec.get("params") or {})
    lr = tuned.pop("lr", None) or spec["lr"] or task.optimizer[1]["lr"]
    record = {"task": spec["task"], "trainer": spec["trainer"], "seed": spec["seed"],
              "status": "ok", "reason": "",
              "settings": {"model": task.model, "model_args": task.model_args(**options),
                           "dtype": spec["dtype"], "loss": task.loss,
                           "optimizer": task.optimizer[0],
                           "lr": lr,
                           "epochs": epochs, "batch_size": bs,
                           "trainer_args": {**task.trainer_args,
                                            **({"weight_decay": spec["weight_decay"]}
                                               if spec["weight_decay"] is not None else {}),
                                            **tuned,
                                            **spec["trainer_options"]},
                           "tuned": bool(spec.get("params")),
                           "params": dict(spec.get("params") or {}),
                           "evaluated_on": ("validation" if spec.get("validation") is not None
                                            else "test"),
                           "task_options": options, "data_seed": spec["data_seed"],
                           "blas_threads": spec.get("blas_threads"),
                           "target_accuracy": task.target_accuracy},
              "train_loss": [], "test_loss": [], "test_accuracy": [], "epoch_time": [],
              "train_seconds": [], "alignment": None, "alignment_epochs": None,
              "final": None, "time_per_epoch": None, "time_to_target": None,
              "epochs_to_target": None, "warmup_seconds": None}
    data, model, cls, why, alignment = _setup(task, options, spec)
    # fingerprint of the initial parameters: equal for every trainer of a seed
    record["settings"]["init_sha256"] = hashlib.sha256(model.flat_params.tobytes()).hexdigest()
    probe = None
    if why is not None:
        record.update(status="not_applicable", reason=why)
        return record
    record["warmup_seconds"] = _warm_up(cls, task, model, data, spec, bs, alignment)
    trainer, _ = build_trainer(cls, model, task, spec)
    every = max(1, epochs // ALIGNMENT_POINTS)
    if alignment:
        probe = (data.X_train[:PROBE_ROWS], data.y_train[:PROBE_ROWS])
        record["alignment"] = []
        record["alignment_epochs"] = []

    seen = {}

    def after_epoch(tr, epoch, hist):
        seen["hist"] = hist
        loss, acc = _metrics(tr, task, options, data.X_test, data.y_test)
        record["test_loss"].append(loss)
        record["test_accuracy"].append(acc)
        if probe is not None and (epoch % every == 0 or epoch == epochs):
            record["alignment"].append([float(a) for a in gradient_alignment(tr, *probe)])
            record["alignment_epochs"].append(epoch)
        if on_epoch is not None:
            on_epoch(epoch, epochs, acc)

    stopped = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        try:
            hist = trainer.fit(data.X_train, data.y_train, epochs=epochs, batch_size=bs,
                               seed=spec["seed"], on_divergence="stop",
                               callbacks=[after_epoch])
        except StopRun as exc:
            stopped, hist = exc, seen["hist"]
    record["train_loss"] = [float(v) for v in hist.loss]
    record["epoch_time"] = [float(v) for v in hist.epoch_time]
    record["train_seconds"] = [float(v) for v in np.cumsum(hist.epoch_time)]
    if hist.epoch_time:
        record["time_per_epoch"] = float(np.median(hist.epoch_time))
    if stopped is not None:
        record.update(status="stopped", reason=str(stopped))
        return record
    if hist.diverged:
        record.update(status="diverged", reason=hist.message)
    tr_loss, tr_acc = _metrics(trainer, task, options, data.X_train, data.y_train)
    te_loss, te_acc = _metrics(trainer, task, options, data.X_test, data.y_test)
    record["final"] = {"train_loss": tr_loss, "train_accuracy": tr_acc,
                       "test_loss": te_loss, "test_accuracy": te_acc}
    reached = epochs_to_target(record["test_accuracy"], task.target_accuracy)
    if reached is not None:
        record["epochs_to_target"] = reached
        record["time_to_target"] = record["train_seconds"][reached - 1]
    return record


def epochs_to_target(accuracies, target):
    """The epoch (1-based) after which the accuracy stays at or above
    ``target`` to the end of the run, or None when the last epoch is below it.

    A run whose accuracy peaks above the target and falls back (plain
    truncated BPTT on the echo task: 0.99 after epoch 1, then chance) has
    not reached the target: time to target measures learning that lasts.

    Parameters
    ----------
    accuracies : sequence of float
        Test accuracy after each epoch.
    target : float

    Returns
    -------
    int or None

    Examples
    --------
    >>> epochs_to_target([0.99, 0.6, 0.5], 0.9) is None
    True
    >>> epochs_to_target([0.5, 0.95, 0.8, 0.92, 0.93], 0.9)
    4
    """
    held = None
    for e in range(len(accuracies), 0, -1):
        if not accuracies[e - 1] >= target:   # NaN counts as below
            break
        held = e
    return held


def run_safely(spec, on_epoch=None):
    """`run` with BLAS limited to ``spec["blas_threads"]``, and with an
    unexpected exception recorded as status 'failed' (its type and message
    in ``reason``) instead of stopping the grid."""
    try:
        with blas_limit(spec.get("blas_threads")):
            return run(spec, on_epoch)
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as exc:  # recorded and shown in the table; the CLI exits non-zero
        return {"task": spec["task"], "trainer": spec["trainer"], "seed": spec["seed"],
                "status": "failed", "reason": f"{type(exc).__name__}: {exc}",
                "settings": {}, "train_loss": [], "test_loss": [], "test_accuracy": [],
                "epoch_time": [], "train_seconds": [], "alignment": None,
                "alignment_epochs": None, "final": None,
                "time_per_epoch": None, "time_to_target": None, "epochs_to_target": None,
                "warmup_seconds": None}

"""The ``fastbp`` command line: ``compare``, ``tune``, ``explain``, ``tasks``, ``demo``."""
import argparse
import os
import sys


def _csv(text):
    return [part.strip() for part in text.split(",") if part.strip()]


def _task_list(text):
    """Task specs separated by commas; a piece with '=' but no ':' is one
    more option of the spec before it ("adding:length=10,n_train=256,digits"
    is two tasks)."""
    specs = []
    for part in _csv(text):
        if "=" in part and ":" not in part and specs:
            specs[-1] += "," + part
        else:
            specs.append(part)
    return specs


def _trainer_option(text):
    """'sg.truncate=10' -> ('sg', 'truncate', 10); values parsed as int,
    float, true/false/none, else kept as str."""
    name, dot, rest = text.partition(".")
    key, eq, value = rest.partition("=")
    if not (dot and eq and name and key):
        raise argparse.ArgumentTypeError(f"expected NAME.KEY=VALUE such as sg.truncate=10, "
                                         f"got {text!r}")
    low = value.strip().lower()
    if low in ("true", "false"):
        parsed = low == "true"
    elif low == "none":
        parsed = None
    else:
        from .tasks import parse_task_spec
        parsed = parse_task_spec(f"x:v={value.strip()}")[1]["v"] if value.strip() else ""
    return name.strip(), key.strip(), parsed


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _float_type(positive):
    """An argparse type: a finite float > 0 (``positive``) or >= 0."""
    bound = "> 0" if positive else ">= 0"

    def parse(text):
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not (value > 0 if positive else value >= 0) or value == float("inf"):
            raise argparse.ArgumentTypeError(f"expected a finite number {bound}, got {text}")
        return value

    return parse


_positive_float = _float_type(positive=True)
_nonnegative_float = _float_type(positive=False)


def _seeds(text):
    """'3' means seeds 0, 1, 2; '0,4,7' lists them."""
    if "," in text:
        try:
            seeds = [int(s) for s in _csv(text)]
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected a count or a comma-separated list of ints, got {text!r}") from None
        if not seeds or min(seeds) < 0:
            raise argparse.ArgumentTypeError(f"seeds must be ints >= 0, got {text!r}")
        return seeds
    return _positive_int(text)


def _demo(args):
    from .demo import run
    run(epochs=args.epochs, seed=args.seed)
    return 0


def _explain(args):
    from .explain import DEFAULT_BIASES, DEFAULT_INPUTS, DEFAULT_TARGETS, DEFAULT_WEIGHTS, run
    try:
        run(weights=args.weights or DEFAULT_WEIGHTS, biases=args.biases or DEFAULT_BIASES,
            inputs=args.inputs or DEFAULT_INPUTS, targets=args.targets or DEFAULT_TARGETS,
            rate=args.rate, digits=args.digits)
    except (TypeError, ValueError) as exc:
        print(f"fastbp explain: error: {exc}", file=sys.stderr)
        return 2
    return 0


def _tasks(args):
    from .tasks import TASKS, available_tasks
    for name in available_tasks():
        t = TASKS[name]
        opts = ", ".join(f"{k}={v}" for k, v in t.defaults.items())
        print(f"{name:12s} {t.description}")
        print(f"{'':12s} loss {t.loss}, {t.optimizer[0]}(lr={t.optimizer[1]['lr']:g}), "
              f"{t.epochs} epochs, batch {t.batch_size}, target accuracy "
              f"{t.target_accuracy:g}" + (f"; options: {opts}" if opts else ""))
    return 0


def _fraction(text):
    """A number in (0, 1)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1), got {text!r}") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1), got {text}")
    return value


def _check_grid_args(args, parser):
    """The checks `compare` and `tune` share: task specs, trainer names,
    trainer options, --workers/--scheduler. Returns (tasks, trainers,
    trainer_options)."""
    from .comparison import DEFAULT_TASK
    from .registry import available_trainers, get_trainer
    from .tasks import get_task, parse_task_spec

    tasks = args.task or [DEFAULT_TASK]
    for spec in tasks:
        try:
            name, options = parse_task_spec(spec)
            get_task(name).options(**options)
        except (TypeError, ValueError) as exc:
            parser.error(f"--task {spec}: {exc}")
    trainers = args.trainers
    if trainers is not None:
        if not trainers:
            parser.error("--trainers is empty; give registry names, e.g. backprop,fa")
        for name in trainers:
            try:
                get_trainer(name)
            except ValueError:
                parser.error(f"--trainers: {name!r} is not a registered trainer; known: "
                             f"{','.join(available_trainers())}")
    trainer_options = {}
    for name, key, value in args.trainer_option:
        if trainers is not None and name not in trainers:
            parser.error(f"--trainer-option {name}.{key}: {name!r} is not among --trainers "
                         f"{','.join(trainers)}")
        try:
            get_trainer(name)
        except ValueError:
            parser.error(f"--trainer-option {name}.{key}: {name!r} is not a registered "
                         f"trainer; known: {','.join(available_trainers())}")
        trainer_options.setdefault(name, {})[key] = value
    if args.scheduler and args.workers:
        parser.error("--workers starts a local cluster and --scheduler names an existing "
                     "one; give one of them")
    return tasks, trainers, trainer_options


def _prepare_and_execute(command, args, parser, interrupted, **options):
    """Check ``args`` (usage error, exit 2, on a bad one), prepare the plan
    with the options ``compare`` and ``tune`` share plus ``options``, and
    execute it. Returns (plan, result), or (None, exit code) when an optional
    package is missing (1) or the user pressed Ctrl-C (130, printing
    ``interrupted``)."""
    if command == "compare":
        from .comparison import execute, prepare
    else:
        from .tuning import execute, prepare
    tasks, trainers, trainer_options = _check_grid_args(args, parser)
    try:
        plan = prepare(tasks=tasks, trainers=trainers, epochs=args.epochs,
                       batch_size=args.batch_size, dtype=args.dtype, out=args.out,
                       scheduler=args.scheduler, workers=args.workers,
                       trainer_options=trainer_options or None, plots=not args.no_plots,
                       progress=not args.no_progress, blas_threads=args.blas_threads,
                       **options)
    except ImportError as exc:
        print(f"fastbp {command}: {exc}", file=sys.stderr)
        return None, 1
    except (TypeError, ValueError) as exc:
        parser.error(_option_error(exc))
    try:
        return plan, execute(plan)
    except KeyboardInterrupt:
        print(f"\nfastbp {command}: interrupted; {interrupted}", file=sys.stderr)
        return None, 130


def _print_outcome(table, meta, what, json_path):
    """The table, the wall time and where the files are."""
    out = os.path.dirname(json_path)
    print(table)
    print(f"\n{what} in {meta.get('wall_seconds') or 0.0:.1f} s ({meta['execution']}); "
          f"{os.path.basename(json_path)} and figures in {os.path.join(out, '')}")
    for f in meta.get("figures", []):
        print(f"  {os.path.join(out, f)}")


def _compare(args, parser):
    """``fastbp compare``: every option checked (and each trainer built once)
    before the first run trains; a bad one is a usage error (exit 2)."""
    if args.params is not None and (args.lr is not None or args.weight_decay is not None):
        parser.error(f"--params sets the tuned settings; leave out "
                     f"{'--lr' if args.lr is not None else '--weight-decay'}")
    json_path = os.path.join(args.out, "results.json")
    plan, results = _prepare_and_execute(
        "compare", args, parser, f"every finished run is in {json_path}",
        seeds=args.seeds, lr=args.lr, weight_decay=args.weight_decay,
        alignment=not args.no_alignment, params=args.params,
        compile_ahead=not args.no_compile_ahead)
    if plan is None:
        return results
    _print_outcome(results.table(), results.meta, f"{len(results.runs)} runs", json_path)
    return 1 if any(r["status"] == "failed" for r in results.runs) else 0


def _tune(args, parser):
    """``fastbp tune``: every option and search space checked before the first
    trial; a bad one is a usage error (exit 2)."""
    json_path = os.path.join(args.out, "tuning.json")
    plan, tuning = _prepare_and_execute(
        "tune", args, parser, f"every finished trial is in {json_path} and the study "
                              "storage beside it; run the same command again to resume",
        trials=args.trials, seed=args.seed, validation=args.validation,
        round_size=args.round_size, prune=not args.no_prune,
        compile_ahead=not args.no_compile_ahead)
    if plan is None:
        return tuning
    _print_outcome(tuning.table(), tuning.meta,
                   f"{plan.trials} trials per (task, trainer)", json_path)
    print(f"run the tuned settings: fastbp compare --params {json_path} ...")
    failed = any(t["state"] == "FAIL" for s in tuning.studies for t in s["trials"])
    return 1 if failed else 0


#: how a message of `prepare` starts -> the option it is about
_OPTION_NAMES = {"out=": "--out", "lr ": "--lr", "epochs ": "--epochs",
                 "batch_size ": "--batch-size", "weight_decay ": "--weight-decay",
                 "task ": "--task",
                 "blas_threads ": "--blas-threads", "seeds ": "--seeds",
                 "workers ": "--workers", "trials ": "--trials",
                 "round_size ": "--round-size", "validation ": "--validation",
                 "seed ": "--seed", "params=": "--params"}


def _option_error(exc):
    """A usage message for an error `prepare` raised, naming the option."""
    text = str(exc)
    if text.startswith("trainer "):
        head = text.split(" on task ", 1)[0]
        return f"{'--trainer-option' if ' with options ' in head else '--trainers'}: {text}"
    for start, option in _OPTION_NAMES.items():
        if text.startswith(start):
            return f"{option}: {text}"
    return text


def _add_grid_options(parser, unit, out, written):
    """The options ``compare`` and ``tune`` share that choose what runs and
    where it goes: the tasks, the trainers, the epochs, batch size and dtype
    of each run or trial (``unit``), and the folder (default ``./<out>``) for
    what the command writes (``written``)."""
    parser.add_argument("--task", type=_task_list, default=None, metavar="TASK[,TASK]",
                        help="task specs, e.g. mnist1d or adding:length=50 (see `fastbp "
                             "tasks`; default mnist1d)")
    parser.add_argument("--trainers", type=_csv, default=None, metavar="NAME[,NAME]",
                        help="registry names (default: every registered trainer)")
    parser.add_argument("--epochs", type=_positive_int, default=None,
                        help=f"epochs per {unit} (default: the task's budget)")
    parser.add_argument("--batch-size", type=_positive_int, default=None,
                        help="batch size (default: the task's)")
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--out", default=out, metavar="DIR",
                        help=f"folder for {written} (default ./{out})")


def _add_execution_options(parser, unit, option_help):
    """The options ``compare`` and ``tune`` share on how the runs or trials
    (``unit``) execute: Dask, per-trainer constructor options, BLAS threads,
    figures and progress."""
    parser.add_argument("--scheduler", default=None, metavar="ADDRESS",
                        help="run on this Dask distributed scheduler (tcp://host:8786)")
    parser.add_argument("--workers", type=_positive_int, default=None, metavar="N",
                        help="run on a local Dask cluster of N worker processes")
    parser.add_argument("--trainer-option", type=_trainer_option, action="append", default=[],
                        metavar="NAME.KEY=VALUE", dest="trainer_option", help=option_help)
    parser.add_argument("--blas-threads", type=_positive_int, default=1, metavar="N",
                        help=f"BLAS threads per {unit} (default 1: steady timings on a shared "
                             "machine, as on Dask workers)")
    parser.add_argument("--no-plots", action="store_true", help="write no figures")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def build_parser():
    """The argparse parser of the ``fastbp`` command."""
    from . import __version__
    parser = argparse.ArgumentParser(
        prog="fastbp",
        description="Backpropagation on the CPU with Numba-compiled kernels, and the "
                    "alternatives to it, on the same tasks and the same clock.")
    parser.add_argument("--version", action="version", version=f"fastbp {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    cmp_ = sub.add_parser(
        "compare", help="train every trainer on the same tasks and compare them",
        description="Train every (task, trainer, seed) from the same initialisation per "
                    "seed; print a table, write results.json (after every run) and PNG "
                    "figures. Without arguments: every registered trainer on the default "
                    "task (mnist1d), 3 seeds.")
    _add_grid_options(cmp_, "run", "results", "results.json and figures")
    cmp_.add_argument("--seeds", type=_seeds, default=3,
                      help="number of seeds (0..N-1) or a list such as 0,4,7 (default 3)")
    cmp_.add_argument("--lr", type=_positive_float, default=None,
                      help="learning rate of the task's optimizer (default: the task's)")
    cmp_.add_argument("--weight-decay", type=_nonnegative_float, default=None,
                      help="L2 weight decay for every trainer (default: the task's)")
    cmp_.add_argument("--no-alignment", action="store_true",
                      help="do not measure angles to the backprop gradient")
    cmp_.add_argument("--no-compile-ahead", action="store_true",
                      help="do not compile the next trainer's kernels in a background "
                           "process while one trains (it only starts with a second CPU "
                           "free and Numba's cache on)")
    cmp_.add_argument("--params", default=None, metavar="TUNING.JSON",
                      help="run each (task, trainer) that fastbp tune tuned at its best "
                           "settings (a tuning.json); the others at the defaults")
    _add_execution_options(cmp_, "run", "extra constructor argument for one trainer, e.g. "
                                        "sg.truncate=10 (repeatable)")
    cmp_.set_defaults(func=lambda a: _compare(a, cmp_))

    tun = sub.add_parser(
        "tune", help="tune every trainer's hyper-parameters under the same budget",
        description="Per (task, trainer) an Optuna study (TPE with a fixed seed, pruning on "
                    "the per-epoch validation accuracy): the same trials and epochs for every "
                    "trainer, selected on a validation part of the training set (the test set "
                    "is never read). Writes tuning.json (after every trial), the study "
                    "storage (rerun to resume) and figures; then run the tuned settings with "
                    "fastbp compare --params DIR/tuning.json.")
    _add_grid_options(tun, "trial", "tuning", "tuning.json, the study storage and figures")
    tun.add_argument("--trials", type=_positive_int, default=20,
                     help="trials per (task, trainer), the same for every trainer (default 20)")
    tun.add_argument("--seed", type=int, default=0,
                     help="seed of the sampler and of every trial's model (default 0)")
    tun.add_argument("--validation", type=_fraction, default=0.2, metavar="FRACTION",
                     help="fraction of the training set held out for selection (default 0.2)")
    tun.add_argument("--round-size", type=_positive_int, default=4, metavar="N",
                     help="trials asked together; the sampler sees earlier rounds only "
                          "(default 4; the trials depend on it, not on --workers)")
    tun.add_argument("--no-prune", action="store_true",
                     help="run every trial to the end (no median pruning)")
    tun.add_argument("--no-compile-ahead", action="store_true",
                     help="do not compile the next trainer's kernels in a background "
                          "process during the first round (it only starts with a second "
                          "CPU free and Numba's cache on)")
    _add_execution_options(tun, "trial", "fixed constructor argument for one trainer, left "
                                         "out of its search space (repeatable)")
    tun.set_defaults(func=lambda a: _tune(a, tun))

    exp = sub.add_parser(
        "explain", help="one backprop step of the 2-2-2 example, every chain-rule factor",
        description="Print the forward values, the loss, every weight's chain-rule factors "
                    "and gradient, and the updated weights of a 2-2-2 sigmoid network, "
                    "computed by fastbp. Defaults reproduce the classic worked example.")
    exp.add_argument("--weights", type=float, nargs=8, metavar="W",
                     help="w1..w8 (default 0.1 0.2 ... 0.8); W1 = [[w1, w3], [w2, w4]], "
                          "W2 = [[w5, w6], [w7, w8]]")
    exp.add_argument("--biases", type=float, nargs=2, metavar="B", help="b1 b2 (0.25 0.35)")
    exp.add_argument("--inputs", type=float, nargs=2, metavar="I", help="i1 i2 (0.1 0.5)")
    exp.add_argument("--targets", type=float, nargs=2, metavar="T", help="t1 t2 (0.05 0.95)")
    exp.add_argument("--rate", type=float, default=0.6, help="learning rate (0.6)")
    exp.add_argument("--digits", type=_positive_int, default=6, help="decimals printed (6)")
    exp.set_defaults(func=_explain)

    tasks = sub.add_parser("tasks", help="list the registered tasks and their budgets")
    tasks.set_defaults(func=_tasks)

    demo = sub.add_parser("demo", help="train the 2-2-2 worked example and a digits classifier")
    demo.add_argument("--epochs", type=_positive_int, default=20,
                      help="digits epochs (default 20)")
    demo.add_argument("--seed", type=int, default=0, help="initialisation and shuffling seed")
    demo.set_defaults(func=_demo)
    return parser


def main(argv=None):
    """Entry point of the ``fastbp`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())

"""Where a trainer's first step, fit and evaluate spend their compile time.

Runs one trainer's first ``step``, ``fit`` (one epoch) and ``evaluate`` with an
empty Numba cache in this process, and prints the CPU seconds of each, the
functions that took longest to compile (exclusive and inclusive of the
functions compiled inside them), the functions compiled more than once with
their argument types, and every compilation of a fastbp or alternatives
function for a literal argument (``Literal[int](0)``) with its callers.

A literal argument is a needless specialisation: passing ``0`` to a jitted
function compiles it once more than passing an ``int64`` offset does. The
script exits with status 1 when it finds one, so it can gate a change.

Usage (from the repository root)::

    python benchmarks/compile_profile.py                 # backprop, MLP, float32
    python benchmarks/compile_profile.py --trainer dtp --dtype float64
    python benchmarks/compile_profile.py --model rnn     # Elman RNN, BPTT
    python benchmarks/compile_profile.py --trainer sg --model rnn --option truncate=2

The timings are compile events' wall clock: on a shared machine they swell
with the load, the CPU seconds per phase much less.
"""
import argparse
import ast
import os
import sys
import tempfile
import time
from collections import defaultdict


def _name(event):
    """module.qualname of the function an event compiles, or None."""
    data = event.data
    if not data or "dispatcher" not in data:
        return None
    func = data["dispatcher"].py_func
    return f"{func.__module__}.{func.__qualname__}"


def _workload(args):
    """(trainer, X, y) for the profile: a 10-16-16-3 tanh MLP on 64 samples,
    or an Elman RNN (2 inputs, 16 hidden, 3 classes) on 64 sequences of 5."""
    import numpy as np

    import fastbp as fb

    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 64)
    if args.model == "rnn":
        X = rng.normal(size=(64, 5, 2)).astype(args.dtype)
        model = fb.ElmanRNN(2, 16, 3, output="softmax", dtype=args.dtype, seed=0)
    else:
        X = rng.normal(size=(64, 10)).astype(args.dtype)
        model = fb.MLP([10, 16, 16, 3], activation="tanh", output="softmax",
                       dtype=args.dtype, seed=0)
    if args.trainer != "backprop":
        import alternatives  # noqa: F401  (registers the trainers)
    trainer = fb.get_trainer(args.trainer, model)
    return trainer(model, optimizer=fb.Adam(1e-3), **dict(args.option)), X, y


def _option(text):
    """KEY=VALUE -> (key, value), the value a Python literal when it is one."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE")
    try:
        return key, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return key, value


def profile(args):
    """Run the workload under Numba's compile-event recorder; returns
    (phase -> CPU seconds, recorded events)."""
    from numba.core import event

    phases = {}
    with event.install_recorder("numba:compile") as recorder:
        start = time.process_time()
        trainer, X, y = _workload(args)
        phases["import and build"] = time.process_time() - start
        for phase, call in (("step", lambda: trainer.step(X[:8], y[:8])),
                            ("fit", lambda: trainer.fit(X, y, epochs=1, batch_size=8,
                                                        progress=False)),
                            ("evaluate", lambda: trainer.evaluate(X, y))):
            start = time.process_time()
            call()
            phases[phase] = time.process_time() - start
    return phases, recorder.buffer


def report(phases, events, top):
    """Print the profile; returns the number of literal-argument compilations
    of fastbp or alternatives functions."""
    print("CPU seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in phases.items()))
    exclusive, inclusive = defaultdict(float), defaultdict(float)
    signatures = defaultdict(list)
    literal = []
    stack = []
    for stamp, ev in events:
        name = _name(ev)
        if name is None:
            continue
        if ev.is_start:
            args = ev.data.get("args")
            signatures[name].append(args)
            if "Literal[" in str(args) and name.startswith(("fastbp.", "alternatives.")):
                literal.append((name, args, [s[0] for s in reversed(stack[-3:])]))
            stack.append([name, stamp, 0.0])
        else:
            name, begun, children = stack.pop()
            took = stamp - begun
            inclusive[name] += took
            exclusive[name] += took - children
            if stack:
                stack[-1][2] += took
    total = sum(len(s) for s in signatures.values())
    print(f"{total} compilations of {len(signatures)} functions, "
          f"{sum(exclusive.values()):.1f} s of compile events (wall)")
    print(f"\nlongest to compile (seconds, exclusive / inclusive):")
    for name, took in sorted(exclusive.items(), key=lambda kv: -kv[1])[:top]:
        print(f"  {took:7.2f} {inclusive[name]:7.2f}  x{len(signatures[name])}  {name}")
    again = {n: s for n, s in signatures.items()
             if len(s) > 1 and n.startswith(("fastbp.", "alternatives."))}
    print(f"\nfastbp/alternatives functions compiled more than once: {len(again)}")
    for name, sigs in again.items():
        print(f"  {name}")
        for sig in sigs:
            print(f"      {sig}")
    print(f"\ncompilations for a literal argument: {len(literal)}")
    for name, args, callers in literal:
        print(f"  {name} <- {' <- '.join(callers)}\n      {args}")
    return len(literal)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trainer", default="backprop", help="registry name (backprop)")
    parser.add_argument("--model", choices=["mlp", "rnn"], default="mlp")
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--option", type=_option, action="append", default=[],
                        metavar="KEY=VALUE", help="trainer constructor argument (repeatable)")
    parser.add_argument("--top", type=int, default=15, help="rows of the longest list")
    args = parser.parse_args(argv)
    if "NUMBA_CACHE_DIR" in os.environ or "FASTBP_CACHE_DIR" in os.environ:
        parser.error("leave NUMBA_CACHE_DIR and FASTBP_CACHE_DIR unset: the profile "
                     "needs an empty cache, which it makes itself")
    with tempfile.TemporaryDirectory(prefix="fastbp-compile-") as cache:
        os.environ["FASTBP_CACHE_DIR"] = cache
        phases, events = profile(args)
        return 1 if report(phases, events, args.top) else 0


if __name__ == "__main__":
    sys.exit(main())

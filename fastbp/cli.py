"""The ``fastbp`` command line."""
import argparse
import sys


def _demo(args):
    from .demo import run
    run(epochs=args.epochs, seed=args.seed)
    return 0


def build_parser():
    """The argparse parser of the ``fastbp`` command."""
    from . import __version__
    parser = argparse.ArgumentParser(
        prog="fastbp",
        description="Backpropagation on the CPU with Numba-compiled kernels.")
    parser.add_argument("--version", action="version", version=f"fastbp {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = sub.add_parser("demo", help="train the 2-2-2 worked example and a digits classifier")
    demo.add_argument("--epochs", type=int, default=20, help="digits epochs (default 20)")
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
    if getattr(args, "epochs", 1) < 1:
        parser.error(f"--epochs must be >= 1, got {args.epochs}")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())

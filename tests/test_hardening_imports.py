"""No import loop through the package root: fastbp/__init__.py imports the
comparison machinery lazily (fb.compare), so the modules below it must take
what they need from fastbp's submodules, never a name defined in the root
(__version__, fb.MLP, ...)."""
import ast
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(ROOT, "fastbp")

#: modules below the package root (the command line, fastbp/cli.py, sits above it)
BELOW_ROOT = ["comparison", "runs", "results", "tasks", "data", "datasets", "plotting",
              "progress", "io", "history", "optim", "losses", "validation", "explain"]


def _root_imports(module):
    """(line, what) for every import of a name from the package root."""
    with open(os.path.join(PACKAGE, f"{module}.py")) as f:
        tree = ast.parse(f.read())
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1 and node.module is None:   # from . import x
                for alias in node.names:
                    if not os.path.exists(os.path.join(PACKAGE, f"{alias.name}.py")) and \
                            not os.path.isdir(os.path.join(PACKAGE, alias.name)):
                        found.append((node.lineno, f"from . import {alias.name}"))
            elif node.level == 0 and node.module == "fastbp":
                found.append((node.lineno, "from fastbp import ..."))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "fastbp":
                    found.append((node.lineno, "import fastbp"))
    return found


@pytest.mark.parametrize("module", BELOW_ROOT)
def test_module_takes_nothing_from_the_package_root(module):
    assert _root_imports(module) == []


def test_the_fastbp_version_is_recorded_without_the_root():
    from fastbp.comparison import _fastbp_version
    import fastbp
    assert _fastbp_version() == fastbp.__version__

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


def _module_imports():
    """module -> the fastbp/alternatives modules it imports (anywhere in it,
    lazy imports included), from the source."""
    real = {}
    for package in ("fastbp", "alternatives"):
        for folder, _, files in os.walk(os.path.join(ROOT, package)):
            for name in files:
                if name.endswith(".py"):
                    path = os.path.join(folder, name)
                    mod = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
                    real[mod[:-len(".__init__")] if mod.endswith(".__init__") else mod] = path
    graph = {}
    for mod, path in real.items():
        is_package = path.endswith("__init__.py")
        with open(path) as f:
            tree = ast.parse(f.read())
        targets = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = mod.split(".")[:len(mod.split(".")) - node.level + is_package]
                    base = ".".join(parts + ([node.module] if node.module else []))
                for alias in node.names:
                    targets.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in real else base)
            elif isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
        # a package's own parent is imported implicitly, never a dependency of its content
        graph[mod] = {t for t in targets if t in real and t != mod and not mod.startswith(t + ".")}
    return graph


def test_no_module_import_loop_and_fastbp_never_imports_alternatives():
    graph = _module_imports()
    assert not [m for m in graph if m.startswith("fastbp") and
                any(t.startswith("alternatives") for t in graph[m])]
    state = {}

    def visit(m, path):
        state[m] = "open"
        for t in sorted(graph[m]):
            if state.get(t) == "open":
                loop = path[path.index(t):] + [t]
                if not any(x in ("fastbp", "alternatives") for x in loop):
                    pytest.fail("import loop: " + " -> ".join(loop))
            elif t not in state:
                visit(t, path + [t])
        state[m] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])

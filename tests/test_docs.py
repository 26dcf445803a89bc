"""The documentation site builds with `mkdocs build --strict` (broken links,
missing pages and docstring errors fail)."""
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_docs_build_strict(tmp_path):
    pytest.importorskip("mkdocs")
    out = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir",
                          str(tmp_path / "site"), "--config-file",
                          os.path.join(ROOT, "mkdocs.yml")],
                         capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-4000:]
    html = (tmp_path / "site" / "api-compare" / "index.html").read_text()
    # the API reference is generated from the docstrings
    assert "Train every trainer on every task for every seed" in html
    assert (tmp_path / "site" / "walkthrough" / "index.html").exists()


def test_every_page_is_in_the_navigation():
    import yaml
    with open(os.path.join(ROOT, "mkdocs.yml")) as f:
        config = yaml.safe_load(f)

    def pages(nav):
        for item in nav:
            for value in item.values():
                if isinstance(value, list):
                    yield from pages(value)
                else:
                    yield value

    listed = set(pages(config["nav"]))
    # the pages in the repository (a page still being written, not yet
    # committed, is not required); outside a git checkout, the folder
    try:
        tracked = subprocess.run(["git", "ls-files", "docs"], cwd=ROOT, capture_output=True,
                                 text=True, timeout=30, check=True).stdout.split()
        on_disk = {os.path.basename(f) for f in tracked
                   if f.endswith(".md") and os.path.dirname(f) == "docs"}
    except (OSError, subprocess.CalledProcessError):
        on_disk = {f for f in os.listdir(os.path.join(ROOT, "docs")) if f.endswith(".md")}
    assert on_disk <= listed, f"pages missing from mkdocs.yml nav: {sorted(on_disk - listed)}"

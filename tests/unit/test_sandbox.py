"""Running untrusted code: results, limits, and each way out of the sandbox tried and refused.

The escape tests run in both modes: with bubblewrap (skipped where ``bwrap`` cannot create
namespaces) and with the Python guard that replaces it elsewhere (macOS, Colab)."""

import os
import socket
import tempfile
import time
import uuid

import pytest

from lmlib import sandbox
from lmlib.sandbox import extract_code, run_with_tests

ADD = "def add(a, b):\n    return a + b\n"


@pytest.fixture(params=[True, False], ids=["bubblewrap", "guard"])
def isolate(request):
    if request.param and not sandbox.bubblewrap_works():
        pytest.skip("bubblewrap is not installed or cannot create namespaces here")
    return request.param


def test_passing_failing_and_erroring_programs(isolate):
    assert run_with_tests(ADD, "assert add(2, 3) == 5", isolate=isolate).passed
    failed = run_with_tests(ADD, "assert add(2, 2) == 5, 'two plus two'", isolate=isolate)
    assert failed.status == "failed" and "two plus two" in failed.message
    error = run_with_tests(ADD, "add(1)", isolate=isolate)
    assert error.status == "error" and "TypeError" in error.message
    syntax = run_with_tests("def f(:\n    pass", "")
    assert syntax.status == "error" and "SyntaxError" in syntax.message
    # code that redirects its own output still passes when its tests pass
    quiet = "import io, sys\nsys.stdout = io.StringIO()\n" + ADD
    assert run_with_tests(quiet, "assert add(1, 1) == 2", isolate=isolate).passed


def test_time_and_memory_limits():
    assert run_with_tests("while True:\n    pass", "", timeout=0.5).status == "timeout"
    hog = run_with_tests("x = bytearray(4 * 2**30)", "", memory_mb=256)
    assert hog.status == "error" and "MemoryError" in hog.message


@pytest.mark.parametrize(
    "kwargs, match",
    [({"timeout": 0}, "timeout"), ({"timeout": float("inf")}, "timeout"),
     ({"timeout": float("nan")}, "timeout"), ({"timeout": "5"}, "timeout"),
     ({"memory_mb": 0}, "memory_mb"), ({"memory_mb": 1.5e3}, "memory_mb"),
     ({"isolate": "yes"}, "isolate")],
)  # fmt: skip
def test_bad_arguments_are_refused(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        run_with_tests(ADD, "", **kwargs)
    with pytest.raises(TypeError, match="code must be a str"):
        run_with_tests(None, "")


def test_isolate_true_without_bubblewrap_is_an_error(monkeypatch):
    monkeypatch.setattr(sandbox, "bubblewrap_works", lambda: False)
    with pytest.raises(RuntimeError, match="apt-get install bubblewrap"):
        run_with_tests(ADD, "", isolate=True)
    assert run_with_tests(ADD, "assert add(1, 2) == 3").passed  # the default falls back


def test_clean_environment_and_own_folders(isolate, monkeypatch):
    monkeypatch.setenv("LMLIB_TEST_SECRET", "s3cret")
    before = set(os.listdir())
    checks = """
import os, tempfile
assert "LMLIB_TEST_SECRET" not in os.environ and "s3cret" not in str(os.environ)
assert os.environ["HOME"] == os.getcwd() == tempfile.gettempdir()
assert os.listdir() == []
open("junk.txt", "w").write("x")
assert os.path.exists("junk.txt")
"""
    assert run_with_tests("", checks, isolate=isolate).passed
    assert set(os.listdir()) == before  # the file went to the sandbox's own folder


def test_cannot_write_outside_its_folder(isolate, tmp_path):
    # /var/tmp is neither the caller's /tmp nor its home, so bubblewrap leaves it visible
    places = [tmp_path, tempfile.mkdtemp(dir="/var/tmp") if os.path.isdir("/var/tmp") else None]
    for place in filter(None, places):
        kept = os.path.join(place, "kept.txt")
        with open(kept, "w") as f:
            f.write("original")
        new = os.path.join(place, "new.txt")
        for attack in (f"open({new!r}, 'w').write('x')", f"open({kept!r}, 'a').write('x')",
                       f"import os\nos.remove({kept!r})", f"import os\nos.mkdir({new!r})",
                       f"import shutil\nshutil.rmtree({str(place)!r})"):  # fmt: skip
            result = run_with_tests(attack, "", isolate=isolate)
            assert result.status == "error", (attack, result)
            assert sorted(os.listdir(place)) == ["kept.txt"]
            assert open(kept).read() == "original"
        if place != tmp_path:
            os.remove(kept)
            os.rmdir(place)


def _alive(marker: str) -> list[int]:
    """The processes whose command line holds ``marker`` (zombies have none)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if marker.encode() in f.read():
                    found.append(int(pid))
        except OSError:  # it ended while we looked
            pass
    return found


@pytest.mark.parametrize("ending", ["return", "timeout"])
def test_no_process_outlives_the_call(isolate, ending):
    if not os.path.isdir("/proc"):
        pytest.skip("needs /proc to look for survivors")
    marker = f"lmlib-sandbox-test-{uuid.uuid4().hex}"
    sleeper = f"[sys.executable, '-c', 'import time; time.sleep(30)', {marker!r}]"
    escapes = [  # a child in the group, one in a new session, one forked by hand
        f"subprocess.Popen({sleeper})",
        f"subprocess.Popen({sleeper}, start_new_session=True)",
        f"if os.fork() == 0:\n        os.setsid()\n        os.execv(sys.executable, {sleeper})",
    ]  # fmt: skip
    code = "import os, subprocess, sys, time\nstarted = 0\n" + "".join(
        f"try:\n    {escape}\n    started += 1\nexcept PermissionError:\n    pass\n"
        for escape in escapes
    )
    if ending == "timeout":
        code += "time.sleep(0.2)\nwhile True:\n    pass\n"
    # bubblewrap lets the code start them (and kills them with the call); the guard refuses
    result = run_with_tests(code, f"assert started == {3 if isolate else 0}", 1, isolate=isolate)
    assert result.status == ("timeout" if ending == "timeout" else "passed"), result
    deadline = time.monotonic() + 1.0  # SIGKILL is sent; give the kernel a moment
    while _alive(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _alive(marker) == []


def test_guard_refuses_processes_signals_and_sockets():
    for attack in ("import os\nos.fork()", "import os\nos.kill(os.getppid(), 9)",
                   "import os\nos.system('true')", "import socket\nsocket.socket()"):  # fmt: skip
        result = run_with_tests(attack, "", isolate=False)
        assert result.status == "error" and "the sandbox does not allow" in result.message


EARLY_EXITS = [  # each stops before the tests run, after printing what it can find
    "print('__lmlib_tests_passed__')\nimport os\nos._exit(0)",  # the old marker
    "import sys\nsys.exit(0)",
    "raise SystemExit(0)",
    "import os, sys\nprint(sys.stdin.read())\nos._exit(0)",  # the job came through stdin
    "import os\nprint(open('/proc/self/cmdline').read(), dict(os.environ))\nos._exit(0)",
]
LATE_TRICKS = [  # each tries to turn failing tests into a pass after they ran
    "import atexit, os\natexit.register(lambda: os._exit(0))",
    "import os\nos.close(2)",  # hide the error
    "import sys\nsys.excepthook = lambda *args: print('__lmlib_tests_passed__')",
]


@pytest.mark.parametrize("forgery", EARLY_EXITS + LATE_TRICKS)
def test_verdict_cannot_be_forged(isolate, forgery):
    assert run_with_tests(forgery, "assert False", isolate=isolate).status != "passed"
    if forgery in EARLY_EXITS:  # the tests must be seen to have run, even tests that pass
        assert run_with_tests(forgery, "assert True", isolate=isolate).status != "passed"


def test_no_network(isolate):
    with socket.socket() as server:  # a server on the caller's loopback
        server.bind(("127.0.0.1", 0))
        server.listen()
        server.settimeout(0.2)
        port = server.getsockname()[1]
        code = f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=1)"
        result = run_with_tests(code, "", isolate=isolate)
        assert result.status == "error", result
        with pytest.raises(socket.timeout):
            server.accept()  # nothing reached it


def test_extract_code():
    prompt = 'def square(x):\n    """Square x."""\n'
    assert extract_code("    return x * x\n\nprint(square(3))\n", prompt) == (
        prompt + "    return x * x"
    )
    fenced = "Here it is:\n```python\ndef square(x):\n    return x * x\n```\nHope it helps."
    assert extract_code(fenced) == "def square(x):\n    return x * x"
    unclosed = "```py\ndef f():\n    return 1\n"
    assert extract_code(unclosed) == "def f():\n    return 1"
    # a helper function after the first one is kept
    two = "    return helper(x)\n\ndef helper(x):\n    return x\n"
    assert "def helper" in extract_code(two, "def f(x):\n")
    with pytest.raises(TypeError, match="completion"):
        extract_code(None)

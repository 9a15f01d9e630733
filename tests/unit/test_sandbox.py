"""Running untrusted code: results, time limits, memory limits, and no harm to the caller."""

import os

import pytest

from lmlib.sandbox import extract_code, run_with_tests

ADD = "def add(a, b):\n    return a + b\n"


def test_passing_failing_and_erroring_programs():
    assert run_with_tests(ADD, "assert add(2, 3) == 5").passed
    failed = run_with_tests(ADD, "assert add(2, 2) == 5, 'two plus two'")
    assert failed.status == "failed" and "two plus two" in failed.message
    error = run_with_tests(ADD, "add(1)")
    assert error.status == "error" and "TypeError" in error.message
    syntax = run_with_tests("def f(:\n    pass", "")
    assert syntax.status == "error" and "SyntaxError" in syntax.message
    # a program that exits early must not count as passing
    assert run_with_tests(ADD + "import sys\nsys.exit(0)", "assert False").status == "error"


def test_time_and_memory_limits():
    assert run_with_tests("while True:\n    pass", "", timeout=0.5).status == "timeout"
    hog = run_with_tests("x = bytearray(4 * 2**30)", "", memory_mb=256)
    assert hog.status == "error" and "MemoryError" in hog.message
    with pytest.raises(ValueError, match="timeout"):
        run_with_tests(ADD, "", timeout=0)


def test_runs_in_a_scratch_folder(tmp_path):
    before = set(os.listdir())
    assert run_with_tests("open('junk.txt', 'w').write('x')", "import os\nassert "
                          "os.path.exists('junk.txt')").passed  # fmt: skip
    assert set(os.listdir()) == before  # the file went to a temporary folder


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

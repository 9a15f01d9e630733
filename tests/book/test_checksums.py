"""booktools.checksums: lmlib/_sha256.py is written from a folder's SHA256SUMS, checked."""

import hashlib
from pathlib import Path

import pytest

from booktools import checksums

ROOT = Path(__file__).resolve().parents[2]
BESIDE = ROOT.parent / "shared" / "data"  # this checkout's copy of the data sets, if any


def folder_with(tmp_path, files: dict[str, bytes]) -> Path:
    lines = []
    for relpath, raw in files.items():
        (tmp_path / relpath).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relpath).write_bytes(raw)
        lines.append(f"{hashlib.sha256(raw).hexdigest()}  {relpath}")
    (tmp_path / "SHA256SUMS").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return tmp_path


def test_the_table_round_trips_in_the_order_of_sha256sums(tmp_path):
    files = {
        "b/long-name-of-a-file-with-a-long-path.txt": b"x",
        "全唐诗/唐诗.json": b"[]",
        "a": b"",
    }
    sums = checksums.read_sums(folder_with(tmp_path, files))
    assert list(sums) == list(files)
    path = tmp_path / "_sha256.py"
    path.write_text(checksums.module_text(sums), encoding="utf-8")
    assert checksums.table(path) == sums and list(checksums.table(path)) == list(files)
    text = path.read_text(encoding="utf-8")
    assert all(checksums.width(line) <= checksums.WIDTH for line in text.splitlines())
    assert '    "a": "e3b0c442' in text  # short enough for one line


def test_a_file_that_does_not_match_its_line_is_an_error(tmp_path):
    folder = folder_with(tmp_path, {"x.txt": b"abc"})
    (folder / "x.txt").write_bytes(b"abd")
    with pytest.raises(ValueError, match="x.txt does not match"):
        checksums.read_sums(folder)
    (folder / "x.txt").unlink()
    with pytest.raises(ValueError, match="x.txt is listed in SHA256SUMS but missing"):
        checksums.read_sums(folder)


@pytest.mark.skipif(not (BESIDE / "SHA256SUMS").is_file(), reason="no copy of the data sets")
def test_lmlibs_table_is_what_the_command_writes():
    sums = checksums.read_sums(BESIDE)
    assert checksums.table(checksums.TABLE) == sums
    assert checksums.main([str(BESIDE), "--check"]) == 0
    want, have = checksums.module_text(sums), checksums.TABLE.read_text(encoding="utf-8")
    assert have[have.index("SHA256: dict") :] == want[want.index("SHA256: dict") :]

"""Tests for lmlib.data: the registry, the three-step resolution order, and the loaders.

Nothing here touches the internet or the user's own cache: every test points
``LMLIB_CACHE_DIR`` at a temporary folder, and downloads go to a local HTTP server.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import http.server
import io
import json
import os
import shutil
import socket
import tempfile
import threading
import urllib.request
import zipfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lmlib import data
from lmlib.data import ChecksumError, DataError, DataUnavailableError


def _shared_data() -> Path:
    """A copy of every data file: $LMLIB_DATA_DIR if set (the Makefile sets it when this
    checkout has a copy beside it, ../shared/data), else the user's cache, which `make data`
    fills (read here, before the `isolated` fixture points the cache elsewhere)."""
    if value := os.environ.get("LMLIB_DATA_DIR"):
        return Path(value).expanduser().resolve()
    beside = Path(__file__).resolve().parents[3] / "shared" / "data"
    return beside if beside.is_dir() else data.cache_dir()


SHARED = _shared_data()
HAVE_ALL = all((SHARED / f.relpath).is_file() for ds in data.DATASETS.values() for f in ds.files)
needs_shared = pytest.mark.skipif(
    not HAVE_ALL, reason=f"no copy of the data sets at {SHARED} (run `make data`)"
)


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch) -> Path:
    """No data dir, an empty private cache, no offline flags or mirror, no proxy for
    127.0.0.1."""
    for var in ("LMLIB_DATA_DIR", "LMLIB_OFFLINE", "HF_HUB_OFFLINE", "LMLIB_DATA_URL"):
        monkeypatch.delenv(var, raising=False)
    cache = tmp_path / "cache"
    monkeypatch.setenv("LMLIB_CACHE_DIR", str(cache))
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    return cache / "data"  # what data.cache_dir() gives


@pytest.fixture
def shared(monkeypatch) -> Path:
    if not HAVE_ALL:
        pytest.skip(f"no copy of the data sets at {SHARED} (run `make data`)")
    monkeypatch.setenv("LMLIB_DATA_DIR", str(SHARED))
    monkeypatch.setenv("LMLIB_OFFLINE", "1")  # a missing file must fail, not download
    return SHARED


@pytest.fixture(scope="module")
def all_tang() -> list[data.Poem]:
    # Loaded once per module: 57,607 poems take about a second.
    if not HAVE_ALL:
        pytest.skip(f"no copy of the data sets at {SHARED} (run `make data`)")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LMLIB_DATA_DIR", str(SHARED))
        mp.setenv("LMLIB_OFFLINE", "1")
        return data.load_tang_poems()


def files_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def patch_file(monkeypatch, relpath: str, **changes) -> data.DataFile:
    """Replace the registry entry for `relpath` (e.g. its url) for the duration of a test."""
    for name, ds in data.DATASETS.items():
        if any(f.relpath == relpath for f in ds.files):
            new = [
                dataclasses.replace(f, **changes) if f.relpath == relpath else f for f in ds.files
            ]
            monkeypatch.setitem(data.DATASETS, name, dataclasses.replace(ds, files=tuple(new)))
            return next(f for f in new if f.relpath == relpath)
    raise AssertionError(f"{relpath} not registered")


@pytest.fixture
def server(tmp_path):
    """A static HTTP server on 127.0.0.1 serving tmp_path/www; yields (folder, base URL)."""
    root = tmp_path / "www"
    root.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):  # keep test output clean
            pass

    httpd = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Quiet, directory=str(root))
    )
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def no_network(*args, **kwargs):
    raise AssertionError("the network must not be used here")


# --- loaders on the offline copy ------------------------------------------------------------


def test_tiny_shakespeare(shared):
    text = data.load_tiny_shakespeare()
    assert len(text) == 1_115_394
    assert text.splitlines()[0] == "First Citizen:"


def test_sst2_counts_and_labels(shared):
    train, dev = data.load_sst2("train"), data.load_sst2("dev")
    assert (len(train), len(dev)) == (67_349, 872)
    assert {r.label for r in train} == {r.label for r in dev} == {0, 1}
    assert "sentence" not in {r.sentence for r in dev}  # the header was skipped
    # Count the positives independently of the loader, straight from the file's last column.
    rows = (SHARED / "sst2/dev.tsv").read_text(encoding="utf-8").split("\n")[1:]
    expected = sum(line.endswith("\t1") for line in rows)
    assert sum(r.label for r in dev) == expected == 444
    assert dev[0] == data.LabeledSentence("it 's a charming and often affecting journey .", 1)


def test_sst2_bad_split(shared):
    with pytest.raises(ValueError, match="train.*dev"):
        data.load_sst2("test")


def test_tang_all(all_tang):
    assert len(all_tang) == 57_607
    first = all_tang[0]
    assert (first.author, first.title) == ("太宗皇帝", "帝京篇十首 一")
    assert first.paragraphs[0] == "秦川雄帝宅，函谷壯皇居。"
    assert first.text == "\n".join(first.paragraphs) and not first.text.endswith("\n")
    assert all(isinstance(p.paragraphs, tuple) and p.author and p.id for p in all_tang[:2000])
    last = SHARED / "chinese-poetry/全唐诗/poet.tang.57000.json"
    assert all_tang[-1].id == json.loads(last.read_text(encoding="utf-8"))[-1]["id"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        first.title = "x"


def test_tang_numeric_file_order(all_tang):
    # Read the files independently, in numeric order, and compare poem by poem.
    folder = SHARED / "chinese-poetry/全唐诗"
    per_file = {
        path.name: [r["id"] for r in json.loads(path.read_text(encoding="utf-8"))]
        for path in folder.glob("poet.tang.*.json")
    }
    numeric = sorted(per_file, key=lambda name: int(name.split(".")[2]))
    assert numeric[:3] == ["poet.tang.0.json", "poet.tang.1000.json", "poet.tang.2000.json"]
    assert [p.id for p in all_tang] == [i for name in numeric for i in per_file[name]]
    # The order matters: sorting names as strings (0, 1000, 10000, ...) gives other poems.
    assert [i for name in sorted(per_file) for i in per_file[name]] != [p.id for p in all_tang]


def test_tang_300(shared):
    poems = data.load_tang_poems("300")
    assert len(poems) == 366
    assert (poems[0].author, poems[0].title) == ("駱賓王", "在嶽詠蟬")
    assert len(poems[0].paragraphs) == 4  # the file's extra `tags` key is dropped
    with pytest.raises(ValueError, match="all.*300"):
        data.load_tang_poems("tang")


# --- the registry -----------------------------------------------------------------------------


def test_registry_matches_sha256sums():
    if not (SHARED / "SHA256SUMS").is_file():
        pytest.skip(f"no SHA256SUMS in {SHARED}")
    sums = {}
    for line in (SHARED / "SHA256SUMS").read_text(encoding="utf-8").splitlines():
        digest, relpath = line.split(maxsplit=1)
        sums[relpath] = digest
    files = [f for ds in data.DATASETS.values() for f in ds.files]
    registered = {f.relpath: f.sha256 for f in files}
    assert registered == sums
    assert len(registered) == len(files)  # no file registered twice
    # Every data file of the folder is registered, and nothing else (the folder is what
    # `make data` assembles, so a file the registry forgot would go unchecked).
    notes = {"SHA256SUMS", "README.md"}
    on_disk = {p.relative_to(SHARED).as_posix() for p in SHARED.rglob("*")
               if p.is_file() and p.name not in notes}  # fmt: skip
    assert set(registered) == on_disk


def test_registry_shape():
    assert data.list_datasets() == ["tiny_shakespeare", "tang_poems", "sst2"]
    tang = [f.relpath for f in data.DATASETS["tang_poems"].files]
    assert tang[:3] == [f"chinese-poetry/全唐诗/poet.tang.{n}.json" for n in (0, 1000, 2000)]
    assert all(f.member and f.url.endswith("SST-2.zip") for f in data.DATASETS["sst2"].files)
    with pytest.raises(ValueError, match="tiny_shakespeare, tang_poems, sst2"):
        data.fetch_dataset("imdb")
    with pytest.raises(ValueError, match="not a registered data file"):
        data.fetch("sst2/test.tsv")


def test_cache_dir_order(monkeypatch, tmp_path):
    monkeypatch.setenv("LMLIB_CACHE_DIR", str(tmp_path / "a"))
    assert data.cache_dir() == tmp_path / "a" / "data"
    monkeypatch.delenv("LMLIB_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert data.cache_dir() == tmp_path / "xdg" / "lmlib" / "data"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert data.cache_dir() == Path.home() / ".cache" / "lmlib" / "data"


# --- corrupt copies ---------------------------------------------------------------------------

DEV = "sst2/dev.tsv"  # 95 kB: the smallest file a test can corrupt cheaply


def corrupt_copy(root: Path, position: int, mask: int) -> tuple[Path, bytes]:
    """Copy the shared dev.tsv under `root` with byte `position` XOR `mask`."""
    dest = root / DEV
    dest.parent.mkdir(parents=True, exist_ok=True)
    raw = bytearray((SHARED / DEV).read_bytes())
    raw[position % len(raw)] ^= mask
    dest.write_bytes(bytes(raw))
    return dest, bytes(raw)


@needs_shared
def test_corrupt_data_dir_copy_is_reported_and_left_alone(tmp_path, monkeypatch):
    bad, raw = corrupt_copy(tmp_path / "mine", position=1234, mask=0x01)
    mtime = bad.stat().st_mtime_ns
    monkeypatch.setenv("LMLIB_DATA_DIR", str(tmp_path / "mine"))
    with pytest.raises(ChecksumError) as info:
        data.load_sst2("dev")
    message = str(info.value)
    assert str(bad) in message
    assert data.DATASETS["sst2"].files[1].sha256 in message
    assert hashlib.sha256(raw).hexdigest() in message
    assert isinstance(info.value, DataError) and isinstance(info.value, RuntimeError)
    assert bad.read_bytes() == raw and bad.stat().st_mtime_ns == mtime


@needs_shared
def test_corrupt_cached_copy_says_delete(isolated):
    bad, raw = corrupt_copy(isolated, position=0, mask=0x20)
    with pytest.raises(ChecksumError, match="Delete .*dev.tsv"):
        data.fetch(DEV)
    assert bad.read_bytes() == raw


@needs_shared
@settings(max_examples=15, deadline=None)
@given(position=st.integers(min_value=0, max_value=94_930), mask=st.integers(1, 255))
def test_any_single_byte_change_is_caught(position, mask):
    # A fresh folder per example: the in-process hash cache is keyed by path, size and mtime.
    with tempfile.TemporaryDirectory() as root, pytest.MonkeyPatch.context() as mp:
        bad, raw = corrupt_copy(Path(root), position, mask)
        mp.setenv("LMLIB_DATA_DIR", root)
        mp.setenv("LMLIB_OFFLINE", "1")
        with pytest.raises(ChecksumError, match="dev.tsv"):
            data.fetch(DEV)
        assert bad.read_bytes() == raw


# --- no copy, no network ----------------------------------------------------------------------


def test_offline_without_copy(tmp_path, monkeypatch, isolated):
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("LMLIB_DATA_DIR", str(tmp_path / "empty"))
    monkeypatch.setenv("LMLIB_OFFLINE", "1")
    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    with pytest.raises(DataUnavailableError) as info:
        data.load_tiny_shakespeare()
    message = str(info.value)
    assert "tiny_shakespeare" in message and "LMLIB_DATA_DIR" in message
    assert "LMLIB_OFFLINE" in message and "LMLIB_DATA_URL" in message
    assert data.DATASETS["tiny_shakespeare"].files[0].url in message
    assert "shared" not in message  # a reader has no ../shared/data
    assert files_in(isolated) == []


def test_the_hubs_offline_flag_does_not_stop_the_data(server, monkeypatch, isolated):
    """HF_HUB_OFFLINE=1 keeps transformers off the Hub; the data sets have their own switch."""
    root, base = server
    (root / "tinyshakespeare").mkdir()
    (root / "tinyshakespeare/input.txt").write_text("First Citizen:\n")
    patch_file(monkeypatch, "tinyshakespeare/input.txt",
               sha256=hashlib.sha256(b"First Citizen:\n").hexdigest())  # fmt: skip
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("LMLIB_DATA_URL", base)
    assert not data.offline()
    assert data.load_tiny_shakespeare() == "First Citizen:\n"
    monkeypatch.setenv("LMLIB_OFFLINE", "yes")
    assert data.offline()


def test_data_url_replaces_every_host(monkeypatch):
    assert data.data_url() is None
    assert data.source_url("sst2/dev.tsv") == data.DATASETS["sst2"].files[1].url  # the zip
    monkeypatch.setenv("LMLIB_DATA_URL", "http://127.0.0.1:8000/mirror/")
    assert data.data_url() == "http://127.0.0.1:8000/mirror"
    assert data.source_url("sst2/dev.tsv") == "http://127.0.0.1:8000/mirror/sst2/dev.tsv"
    for bad in ("127.0.0.1:8000", "file:///data", "ftp://host/data"):
        monkeypatch.setenv("LMLIB_DATA_URL", bad)
        with pytest.raises(ValueError, match="LMLIB_DATA_URL must be an http"):
            data.data_url()


def test_no_message_names_the_checkouts_own_data_folder():
    """../shared/data is this checkout's layout, not a reader's."""
    assert "shared/data" not in Path(data.__file__).read_text(encoding="utf-8")


def test_network_failure(monkeypatch, isolated):
    with socket.socket() as s:  # bind then close: nothing listens on this port afterwards
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/input.txt"
    patch_file(monkeypatch, "tinyshakespeare/input.txt", url=url)
    with pytest.raises(DataUnavailableError) as info:
        data.fetch("tinyshakespeare/input.txt")
    message = str(info.value)
    assert "tiny_shakespeare" in message and url in message and "LMLIB_DATA_DIR" in message
    assert files_in(isolated) == []


# --- downloads from a local server ------------------------------------------------------------


@needs_shared
def test_download_lands_in_cache(server, monkeypatch, isolated):
    root, base = server
    shutil.copy(SHARED / "tinyshakespeare/input.txt", root / "input.txt")
    patch_file(monkeypatch, "tinyshakespeare/input.txt", url=f"{base}/input.txt")
    path = data.fetch("tinyshakespeare/input.txt")
    assert path == isolated / "tinyshakespeare/input.txt"
    assert files_in(isolated) == [path]  # no .part file left behind
    assert path.read_bytes() == (SHARED / "tinyshakespeare/input.txt").read_bytes()
    # The second time comes from the cache, without the network.
    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    assert data.load_tiny_shakespeare().startswith("First Citizen:")


@needs_shared
def test_download_non_ascii_url(server, monkeypatch, isolated):
    root, base = server
    relpath = "chinese-poetry/全唐诗/唐诗三百首.json"
    (root / "全唐诗").mkdir()
    shutil.copy(SHARED / relpath, root / "全唐诗" / "唐诗三百首.json")
    patch_file(monkeypatch, relpath, url=f"{base}/全唐诗/唐诗三百首.json")
    assert len(data.load_tang_poems("300")) == 366
    assert files_in(isolated) == [isolated / relpath]


def test_download_bad_content(server, monkeypatch, isolated):
    root, base = server
    (root / "input.txt").write_text("First Citizen: not the real file\n")
    url = f"{base}/input.txt"
    patch_file(monkeypatch, "tinyshakespeare/input.txt", url=url)
    with pytest.raises(ChecksumError, match=url):
        data.fetch("tinyshakespeare/input.txt")
    assert files_in(isolated) == []


def make_zip(path: Path, members: dict[str, bytes]) -> None:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, payload in members.items():
            zf.writestr(name, payload)


def test_zip_member(server, monkeypatch, isolated):
    root, base = server
    good, bad = b"sentence\tlabel\nfine .\t1\n", b"sentence\tlabel\ntampered .\t0\n"
    make_zip(root / "SST-2.zip", {"SST-2/dev.tsv": good, "SST-2/train.tsv": bad})
    url = f"{base}/SST-2.zip"
    patch_file(monkeypatch, DEV, url=url, sha256=hashlib.sha256(good).hexdigest())
    patch_file(monkeypatch, "sst2/train.tsv", url=url)  # its real hash: `bad` won't match
    assert data.load_sst2("dev") == [data.LabeledSentence("fine .", 1)]
    assert files_in(isolated) == [isolated / DEV]  # no archive left, bad sibling not cached
    # Asked for directly, the bad train member is refused and named, and nothing is cached.
    with pytest.raises(ChecksumError, match="member SST-2/train.tsv of .*SST-2.zip"):
        data.fetch("sst2/train.tsv")
    assert files_in(isolated) == [isolated / DEV]


@needs_shared
def test_zip_with_real_sst2(server, monkeypatch, isolated):
    # The GLUE layout with the real files: one download extracts both splits.
    root, base = server
    members = {f"SST-2/{s}.tsv": (SHARED / f"sst2/{s}.tsv").read_bytes() for s in ("train", "dev")}
    make_zip(root / "SST-2.zip", members)
    for split in ("train", "dev"):
        patch_file(monkeypatch, f"sst2/{split}.tsv", url=f"{base}/SST-2.zip")
    assert len(data.load_sst2("dev")) == 872
    assert files_in(isolated) == [isolated / "sst2/dev.tsv", isolated / "sst2/train.tsv"]
    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    assert len(data.load_sst2("train")) == 67_349


def test_a_mirror_serves_a_zip_member_as_a_plain_file(server, monkeypatch, isolated):
    root, base = server
    good = b"sentence\tlabel\nfine .\t1\n"
    (root / "sst2").mkdir()
    (root / "sst2/dev.tsv").write_bytes(good)
    patch_file(monkeypatch, DEV, sha256=hashlib.sha256(good).hexdigest())
    monkeypatch.setenv("LMLIB_DATA_URL", base)
    assert data.load_sst2("dev") == [data.LabeledSentence("fine .", 1)]
    assert files_in(isolated) == [isolated / DEV]


def test_a_bad_download_from_a_mirror_is_not_kept(server, monkeypatch, isolated):
    root, base = server
    (root / "sst2").mkdir()
    (root / "sst2/dev.tsv").write_bytes(b"sentence\tlabel\ntampered .\t0\n")
    monkeypatch.setenv("LMLIB_DATA_URL", base)
    with pytest.raises(ChecksumError) as info:
        data.fetch(DEV)
    message = str(info.value)
    assert f"{base}/sst2/dev.tsv" in message and "nothing was kept" in message
    assert data.DATASETS["sst2"].files[1].sha256 in message and "shared" not in message
    assert files_in(isolated) == []


def test_zip_without_member(server, monkeypatch, isolated):
    root, base = server
    make_zip(root / "SST-2.zip", {"SST-2/other.tsv": b"x"})
    patch_file(monkeypatch, DEV, url=f"{base}/SST-2.zip")
    with pytest.raises(DataUnavailableError, match="sst2"):
        data.fetch(DEV)
    assert files_in(isolated) == []


def test_hash_cache_skips_rehashing(tmp_path, monkeypatch):
    path = tmp_path / "f.bin"
    path.write_bytes(b"abc")
    assert data.sha256_of(path).startswith("ba7816bf")
    # A second call must not read the file: from now on reading it gives other bytes.
    monkeypatch.setattr(data, "open", lambda *a, **k: io.BytesIO(b"not abc"), raising=False)
    assert data.sha256_of(path).startswith("ba7816bf")

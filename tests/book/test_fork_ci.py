"""CI from a fork: no data folder beside the checkout and an empty cache, so `make data`
must fetch every data set (online) before `make test` runs with downloads off.

The hosts are played by an HTTP server on 127.0.0.1 serving a copy of the data files,
reached through ``LMLIB_DATA_URL`` (the real URLs stay what readers use). The fetch
(`booktools.fetch_data`, what `make data` runs) fills the cache and verifies every checksum;
a corrupted file is rejected with a clear error and not kept; then the offline run works.
"""

import functools
import hashlib
import http.server
import os
import threading
import urllib.request
from pathlib import Path

import pytest

from booktools import fetch_data
from lmlib import data

FILES = [f for ds in data.DATASETS.values() for f in ds.files]


def _copy_of_the_data() -> Path | None:
    """A folder holding every data file: $LMLIB_DATA_DIR, the folder beside the checkout,
    or the user's cache (`make data`); None when there is none."""
    beside = Path(__file__).resolve().parents[3] / "shared" / "data"
    for folder in (os.environ.get("LMLIB_DATA_DIR"), beside, data.cache_dir()):
        if folder and all((Path(folder) / f.relpath).is_file() for f in FILES):
            return Path(folder)
    return None


COPY = _copy_of_the_data()
needs_copy = pytest.mark.skipif(COPY is None, reason="no copy of the data sets (`make data`)")
CORRUPT = "sst2/dev.tsv"


@pytest.fixture
def serve():
    """serve(folder) -> the base URL of an HTTP server on 127.0.0.1 for that folder."""
    servers = []

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    def start(folder: Path) -> str:
        handler = functools.partial(Quiet, directory=str(folder))
        httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()
        servers.append(httpd)
        return f"http://127.0.0.1:{httpd.server_address[1]}"

    yield start
    for httpd in servers:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def fork(tmp_path, monkeypatch) -> Path:
    """A fork's runner: no LMLIB_DATA_DIR, an empty cache; returns the cache's data folder."""
    monkeypatch.delenv("LMLIB_DATA_DIR", raising=False)
    monkeypatch.delenv("LMLIB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # as in `make test`: must not stop the data
    monkeypatch.setenv("LMLIB_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    return tmp_path / "cache" / "data"


def corrupted_mirror(root: Path) -> Path:
    """The data folder's layout with one byte of CORRUPT changed, the rest linked."""
    for f in FILES:
        target = root / f.relpath
        target.parent.mkdir(parents=True, exist_ok=True)
        if f.relpath == CORRUPT:
            raw = bytearray((COPY / f.relpath).read_bytes())
            raw[100] ^= 0x01
            target.write_bytes(bytes(raw))
        else:
            target.symlink_to(COPY / f.relpath)
    return root


def cached(cache: Path) -> list[str]:
    return sorted(p.relative_to(cache).as_posix() for p in cache.rglob("*") if p.is_file())


@needs_copy
def test_make_data_from_a_fork_then_the_offline_run(fork, serve, tmp_path, monkeypatch, capsys):
    # 1. A corrupted file on the server: rejected, named, not kept; the others are cached.
    monkeypatch.setenv("LMLIB_DATA_URL", serve(corrupted_mirror(tmp_path / "bad")))
    assert fetch_data.main([]) == 1
    err = capsys.readouterr().err
    assert f"{CORRUPT}: ChecksumError" in err and "nothing was kept" in err
    assert data.DATASETS["sst2"].files[1].sha256 in err and "LMLIB_DATA_URL" in err
    assert cached(fork) == sorted(f.relpath for f in FILES if f.relpath != CORRUPT)

    # 2. The good server: the fetch fills the cache, and every file has its registered hash.
    monkeypatch.setenv("LMLIB_DATA_URL", serve(COPY))
    assert fetch_data.main([]) == 0
    assert "sst2: 2/2 files verified" in capsys.readouterr().out
    assert cached(fork) == sorted(f.relpath for f in FILES)
    for f in FILES:  # hashed here independently of lmlib
        assert hashlib.sha256((fork / f.relpath).read_bytes()).hexdigest() == f.sha256

    # 3. The offline run (`make test`): no server, no network, everything from the cache.
    monkeypatch.setenv("LMLIB_OFFLINE", "1")
    monkeypatch.setenv("LMLIB_DATA_URL", "http://127.0.0.1:9")  # nothing listens there

    def no_network(*args, **kwargs):
        raise AssertionError("the offline run must not download")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    assert fetch_data.main([]) == 0  # `make data` again, offline: only verifies
    assert data.load_tiny_shakespeare().startswith("First Citizen:")
    assert len(data.load_sst2("dev")) == 872
    assert len(data.load_tang_poems("300")) == 366


def test_offline_with_an_empty_cache_fails_fast_and_says_what_to_do(fork, monkeypatch, capsys):
    monkeypatch.setenv("LMLIB_OFFLINE", "1")
    assert fetch_data.main(["tiny_shakespeare"]) == 1
    err = capsys.readouterr().err
    assert "LMLIB_OFFLINE" in err and "LMLIB_DATA_DIR" in err and "shared" not in err
    assert cached(fork) == []

"""Fetch and verify every data set the book reads (`make data`): the one step that may
download, run online before the tests, which then run offline (``LMLIB_OFFLINE=1``).

For every file registered in `lmlib.data.DATASETS`, `lmlib.data.fetch` finds a copy in
``$LMLIB_DATA_DIR`` or in the cache, or downloads it into the cache, from its public URL or
from ``$LMLIB_DATA_URL/<path>`` when that is set (a fork's CI, a mirror, or a test's local
server). Every copy is checked against its SHA-256; a download that does not match is not
kept. Each failure is reported (file, hashes, what to do) and the exit status is 1 when any
file failed, so that CI stops here rather than in the middle of a chapter.

    python -m booktools.fetch_data            # every data set
    python -m booktools.fetch_data sst2       # some of them
"""

from __future__ import annotations

import argparse
import sys

from lmlib.data import DATASETS, DataError, cache_dir, data_dir, data_url, fetch, offline


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"any of {', '.join(DATASETS)}")
    args = parser.parse_args(argv)
    if unknown := [name for name in args.names if name not in DATASETS]:
        parser.error(f"unknown data sets {unknown}; known: {', '.join(DATASETS)}")
    try:
        source = data_url() or "their public URLs"
    except ValueError as err:  # an LMLIB_DATA_URL that is no http(s) URL
        print(f"fetch_data: {err}", file=sys.stderr)
        return 2
    print(f"looking in LMLIB_DATA_DIR={data_dir()}, then the cache {cache_dir()}, then "
          + ("nowhere else (LMLIB_OFFLINE is set)" if offline() else f"downloading from {source}"),
          flush=True)  # fmt: skip
    failed = []
    for name in args.names or list(DATASETS):
        files = DATASETS[name].files
        ok = 0
        for entry in files:
            try:
                fetch(entry.relpath)
                ok += 1
            except DataError as err:
                failed.append(entry.relpath)
                print(f"\n{entry.relpath}: {type(err).__name__}: {err}\n", file=sys.stderr)
        print(f"{name}: {ok}/{len(files)} files verified", flush=True)
    if failed:
        print(f"fetch_data: {len(failed)} files failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

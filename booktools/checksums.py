"""Write `lmlib/_sha256.py`, the SHA-256 of every data file, from a folder holding the files.

The folder has the layout `lmlib.data` reads (``LMLIB_DATA_DIR``) and a ``SHA256SUMS`` file
in `sha256sum`'s format, which lists the files and fixes their order. Every listed file is
hashed again and must match its line; then the table is written. To add or update a data
file: put it in the folder, list it in ``SHA256SUMS`` (``sha256sum PATH >> SHA256SUMS``),
register it in `lmlib.data.DATASETS`, and run

    python -m booktools.checksums FOLDER          # rewrite lmlib/_sha256.py
    python -m booktools.checksums FOLDER --check  # exit 1 when the table differs

(`tests/unit/test_data.py` compares the table with the folder's ``SHA256SUMS`` too.)
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import sys
import unicodedata
from pathlib import Path

from booktools.book import ROOT

TABLE = ROOT / "lmlib" / "_sha256.py"
WIDTH = 99  # ruff's line length: the file is written as `ruff format` would leave it

HEADER = '''\
"""SHA-256 of every data file the book uses, keyed by path relative to the data folder; the
sums of the files as published upstream, so one table checks a download, a cached copy and a
folder of copies alike. Written by ``python -m booktools.checksums FOLDER``.
"""

SHA256: dict[str, str] = {
'''


def read_sums(folder: Path) -> dict[str, str]:
    """{relpath: digest} from FOLDER/SHA256SUMS, in its order, each digest checked against
    the file itself (raises ValueError naming the file that differs or is missing)."""
    sums = {}
    for line in (folder / "SHA256SUMS").read_text(encoding="utf-8").splitlines():
        digest, relpath = line.split(maxsplit=1)
        sums[relpath.lstrip("*")] = digest  # "*path": sha256sum's binary mode
    for relpath, digest in sums.items():
        path = folder / relpath
        if not path.is_file():
            raise ValueError(f"{path} is listed in SHA256SUMS but missing")
        if hashlib.sha256(path.read_bytes()).hexdigest() != digest:
            raise ValueError(f"{path} does not match its line in SHA256SUMS")
    return sums


def width(text: str) -> int:
    """Columns on screen, as ruff counts them: a CJK character takes two.

    >>> width("全唐诗/x"), len("全唐诗/x")
    (8, 5)
    """
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def table(path: Path) -> dict[str, str]:
    """The SHA256 dict of a file written by `module_text`, read without importing lmlib."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    node = next(n for n in tree.body if isinstance(n, ast.AnnAssign) and n.target.id == "SHA256")
    return ast.literal_eval(node.value)


def module_text(sums: dict[str, str]) -> str:
    lines = []
    for relpath, digest in sums.items():
        line = f'    "{relpath}": "{digest}",'
        if width(line) > WIDTH:  # too long for one line: the digest on a line of its own
            line = f'    "{relpath}": (\n        "{digest}"\n    ),'
        lines.append(line)
    return HEADER + "\n".join(lines) + "\n}\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="a folder holding the files and SHA256SUMS")
    parser.add_argument("--check", action="store_true", help="only compare the table")
    args = parser.parse_args(argv)
    sums = read_sums(args.folder)
    if table(TABLE) == sums:
        print(f"{TABLE.relative_to(ROOT)}: current ({len(sums)} files)")
        return 0
    if args.check:
        print(f"{TABLE.relative_to(ROOT)} differs from {args.folder}/SHA256SUMS: run "
              f"`python -m booktools.checksums {args.folder}`", file=sys.stderr)  # fmt: skip
        return 1
    TABLE.write_text(module_text(sums), encoding="utf-8")
    print(f"{TABLE.relative_to(ROOT)}: written ({len(sums)} files)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

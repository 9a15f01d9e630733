"""Chapter 6's retrieval corpus, frozen: the prose of Chapters 1-5 as passages in one file.

Chapter 6 retrieves passages of the book to answer questions about it. Were they split from
the chapters each time it runs, any edit of the prose anywhere would change Chapter 6's
outputs; instead it reads `chapters/data/book_passages.jsonl` (`lmlib.rag.load_passages`),
which changes only when this tool rewrites it, in a commit of its own, with Chapter 6
re-executed. The file is built from the markdown cells of the pages of Chapters 1-5
(chapter pages and their section notebooks, in _toc.yml order; assignments are not part of
it), split by `lmlib.rag.book_passages` into passages of at most about 120 words. A passage's
source is its page's path under chapters/ ("03_transformer", "05_practice/03_finetuning").
The passages hold the prose as a reader sees it (`lmlib.rag.notebook_markdown`): glued
numbers filled in from the stored outputs, diagrams' sources left out. So the file also goes
stale when a chapter is re-executed and a number its prose quotes changes.

    python -m booktools.corpus          # rewrite the file when stale (part of `make sync`)
    python -m booktools.corpus --check  # exit 1 when it is stale, naming the pages

After a rewrite, re-execute Section 6.2 (`READER`): its outputs come from the file.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from booktools.book import ROOT
from lmlib.rag import Passage, book_passages, load_passages, save_passages

CORPUS = "chapters/data/book_passages.jsonl"
MAX_WORDS = 120  # words per passage, about: a few sentences, one idea
PAGES = re.compile(r"chapters/0[1-5]_")  # the chapters before Chapter 6, which reads them
READER = "chapters/06_applications/02_questions_summaries_chat.ipynb"  # Section 6.2: RAG
REBUILD_HINT = (
    f"run `make sync` (python -m booktools.corpus), then re-execute {READER}, whose outputs "
    "come from this file"
)


def toc_pages(toc: dict) -> list[str]:
    """Every page name of a _toc.yml, in reading order.

    >>> toc_pages({"root": "intro", "parts": [{"chapters": [
    ...     {"file": "chapters/05_practice", "sections": [{"file": "chapters/05_practice/01"}]},
    ...     {"file": "chapters/06_applications"}]}]})
    ['intro', 'chapters/05_practice', 'chapters/05_practice/01', 'chapters/06_applications']
    """
    names = [toc["root"]] if "root" in toc else []

    def walk(entries):
        for entry in entries:
            if "file" in entry:
                names.append(entry["file"])
            for key in ("parts", "chapters", "sections"):
                walk(entry.get(key, []))

    walk([{key: toc[key]} for key in ("parts", "chapters") if key in toc])
    return names


def source_pages(root: Path = ROOT) -> list[Path]:
    """The files of Chapters 1-5's pages (.ipynb, or .md for a chapter page), toc order."""
    import yaml

    toc = yaml.safe_load((Path(root) / "_toc.yml").read_text(encoding="utf-8"))
    files = []
    for name in toc_pages(toc):
        if PAGES.match(name):
            found = [Path(root) / f"{name}{suffix}" for suffix in (".ipynb", ".md")]
            files += [path for path in found if path.is_file()][:1]
    if not files:
        raise ValueError(f"_toc.yml under {root} lists no page of Chapters 1-5")
    return files


def build(root: Path = ROOT) -> list[Passage]:
    """The corpus as the chapters under `root` give it now."""
    return book_passages(source_pages(root), MAX_WORDS, root=Path(root) / "chapters")


def stale_sources(frozen: list[Passage], current: list[Passage]) -> list[str]:
    """The sources whose passages differ between two corpora (added and removed ones too),
    in the order they first appear.

    >>> a, b = Passage("x#0", "x", "T", "one"), Passage("y#0", "y", "T", "two")
    >>> stale_sources([a, b], [a, Passage("y#0", "y", "T", "2")])
    ['y']
    """
    order = list(dict.fromkeys(p.source for p in [*frozen, *current]))
    return [s for s in order if [p for p in frozen if p.source == s]
            != [p for p in current if p.source == s]]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report a stale file")
    parser.add_argument("--root", type=Path, default=ROOT, help="the book (default: this one)")
    args = parser.parse_args(argv)
    path = args.root / CORPUS
    current = build(args.root)
    frozen = load_passages(path) if path.exists() else []
    stale = stale_sources(frozen, current)
    if frozen == current:
        print(f"{CORPUS}: current ({len(current)} passages)")
        return 0
    if args.check:
        print(f"{CORPUS} is stale (pages changed: {', '.join(stale)}): {REBUILD_HINT}",
              file=sys.stderr)  # fmt: skip
        return 1
    path.parent.mkdir(parents=True, exist_ok=True)
    save_passages(current, path)
    print(f"{CORPUS}: rewritten, {len(current)} passages (pages changed: {', '.join(stale)}); "
          f"re-execute {READER}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())

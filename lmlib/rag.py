"""Retrieval-augmented generation: find the passages that answer a question, then let the
model read them (Chapter 6; Lewis et al., 2020).

A small model cannot know what is in this book; it can read it. The pipeline:

1. split the documents into passages of a few sentences (`split_markdown`, `book_passages`),
   and store them (`save_passages`, `load_passages`: the book's own corpus is one such file,
   so that Chapter 6 reads a fixed collection whatever later edits do to the prose);
2. index them: lexically with BM25 (`BM25`: shared rare words) or densely with sentence
   embeddings (`DenseIndex`: all-MiniLM-L6-v2, meaning rather than spelling);
3. retrieve the top k passages for a question (measured by recall@k, `lmlib.metrics`);
4. put them in the prompt (`rag_messages`) and generate.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch

from lmlib.runtime import check_int, check_number

# Words too common to tell passages apart; BM25's idf would give them little weight anyway.
STOPWORDS = frozenset(
    "a an and are as at be by can do does for from has have how i in is it its of on or "
    "that the this to was what when where which who why will with you your".split()
)


@dataclass(frozen=True)
class Passage:
    id: str  # "<source>#<number>", unique in a collection
    source: str  # the document it comes from, e.g. "03_transformer"
    title: str  # the heading it sits under
    text: str

    def __str__(self) -> str:
        return f"{self.title}\n{self.text}"


def split_markdown(markdown: str, source: str, max_words: int = 120) -> list[Passage]:
    """Passages of whole paragraphs, at most about ``max_words`` words, each under its heading.

    A paragraph never straddles two passages (cutting mid-sentence loses the sense), and
    a heading starts a new passage. A single paragraph longer than ``max_words`` stays whole.

    >>> md = "# Intro\\nOne two.\\n\\nThree four five.\\n## Next\\nSix."
    >>> for p in split_markdown(md, "doc", max_words=3):
    ...     print(p.id, p.title, p.text)
    doc#0 Intro One two.
    doc#1 Intro Three four five.
    doc#2 Next Six.
    """
    for name, value in (("markdown", markdown), ("source", source)):
        if not isinstance(value, str):
            raise TypeError(f"{name} must be a str, got {type(value).__name__}")
    check_int(max_words, "max_words", low=1)
    passages: list[Passage] = []
    title, chunk = source, []

    def flush():
        if chunk:
            passages.append(
                Passage(f"{source}#{len(passages)}", source, title, "\n\n".join(chunk))
            )
            chunk.clear()

    for block in re.split(r"\n\s*\n|\n(?=#)", markdown):
        block = block.strip()
        heading = re.match(r"(#+)\s+(.*?)\s*(?:\n|$)", block)
        if heading:
            flush()
            title = heading.group(2)
            block = block[heading.end() :].strip()
        if not block:
            continue
        if chunk and sum(len(c.split()) for c in chunk) + len(block.split()) > max_words:
            flush()
        chunk.append(block)
    flush()
    return passages


# ```{mermaid} ... ``` (or with more backticks): a diagram's source, not prose
_DIAGRAM = re.compile(r"^(`{3,})\{mermaid\}.*?^\1[ \t]*$\n?", re.MULTILINE | re.DOTALL)
_GLUE_TEXT = re.compile(r"\{glue:text\}`([^`:]+)`")  # myst-nb's role, e.g. {glue:text}`loss`


def glued_values(cells: list[dict]) -> dict[str, str]:
    """name -> the text myst-nb's ``{glue:text}`name``` shows, from a notebook's stored outputs.

    `lmlib.runtime.glue` (myst-nb's glue) stores the value's text/plain form in an output
    whose metadata names it; a string's quotes are not part of what the reader sees.

    >>> out = {"metadata": {"scrapbook": {"name": "loss", "mime_prefix": "p/"}},
    ...        "data": {"p/text/plain": "'1.87'"}}
    >>> glued_values([{"cell_type": "code", "outputs": [out]}])
    {'loss': '1.87'}
    """
    values = {}
    for cell in cells:
        for output in cell.get("outputs", []):
            scrap = output.get("metadata", {}).get("scrapbook")
            text = output.get("data", {}).get(f"{(scrap or {}).get('mime_prefix', '')}text/plain")
            if scrap and text is not None:
                text = "".join(text)
                quoted = len(text) >= 2 and text[0] == text[-1] and text[0] in "'\""
                values[scrap["name"]] = text[1:-1] if quoted else text
    return values


def notebook_markdown(path: str | Path) -> str:
    """The prose of a notebook's markdown cells, or of a .md file, as a reader sees it.

    Code, outputs and diagrams' sources (``{mermaid}`` blocks) are left out; a number the
    prose quotes with ``{glue:text}`name``` is replaced by the value the stored outputs glue
    (a name they do not glue stays as written).
    """
    path = Path(path)
    if path.suffix == ".md":
        return _DIAGRAM.sub("", path.read_text(encoding="utf-8"))
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    values = glued_values(cells)
    prose = "\n\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
    prose = _DIAGRAM.sub("", prose)
    return _GLUE_TEXT.sub(lambda m: values.get(m.group(1), m.group(0)), prose)


def book_passages(paths, max_words: int = 120, root: str | Path | None = None) -> list[Passage]:
    """Every passage of the given chapter files, in order.

    A passage's source is its file's stem ("03_transformer"), or with ``root`` its path under
    root without the suffix ("05_practice/01_training_from_scratch"), which stays unique
    when a chapter is a folder of section notebooks.
    """
    if isinstance(paths, (str, Path)):  # one file, not the letters of its name
        raise TypeError(f"paths must be a list of files, got the single path {paths!r}: "
                        f"pass [{paths!r}]")  # fmt: skip
    out = []
    for path in paths:
        path = Path(path)
        source = path.stem if root is None else path.relative_to(root).with_suffix("").as_posix()
        out += split_markdown(notebook_markdown(path), source, max_words)
    if not out:
        raise ValueError(f"no passages found in {list(map(str, paths))}")
    return out


def save_passages(passages: list[Passage], path: str | Path) -> None:
    """Write passages as JSON lines, one passage a line, in order (a diff shows what changed).

    Each line holds the four fields of a `Passage`, e.g.
    ``{"id": "doc#0", "source": "doc", "title": "Intro", "text": "One two."}``.
    """
    _check_passages(passages)
    lines = [json.dumps(asdict(p), ensure_ascii=False) for p in passages]
    Path(path).write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def load_passages(path: str | Path) -> list[Passage]:
    """The passages of a file written by `save_passages`, in order.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     save_passages(split_markdown("# Intro\\nOne two.", "doc"), f"{folder}/p.jsonl")
    ...     load_passages(f"{folder}/p.jsonl")
    [Passage(id='doc#0', source='doc', title='Intro', text='One two.')]

    Raises ValueError naming the file and line when a line is not a passage, and when the
    file holds none or repeats an id.
    """
    path = Path(path)
    names = {f.name for f in fields(Passage)}
    passages = []
    # split("\n"), not splitlines(): a passage may hold U+2028 or U+0085, which JSON keeps raw
    for number, line in enumerate(path.read_text(encoding="utf-8").split("\n"), 1):
        if not line.strip():
            continue  # the final newline
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}, line {number}: not JSON ({err})") from err
        if not isinstance(record, dict) or set(record) != names:
            raise ValueError(f"{path}, line {number}: a passage needs exactly the fields "
                             f"{sorted(names)}, got {line[:80]!r}")  # fmt: skip
        passages.append(Passage(**record))
    if not passages:
        raise ValueError(f"{path} holds no passages")
    ids = [p.id for p in passages]
    if len(set(ids)) != len(ids):
        twice = sorted({i for i in ids if ids.count(i) > 1})
        raise ValueError(f"{path}: passage ids must be unique, these repeat: {twice[:5]}")
    return passages


def search_tokens(text: str) -> list[str]:
    """Lower-case words and numbers without stopwords: what BM25 matches on.

    >>> search_tokens("What is the KV cache for?")
    ['kv', 'cache']
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    return [w for w in re.findall(r"[a-z0-9]+", text.lower()) if w not in STOPWORDS]


def _check_passages(passages) -> None:
    if (
        isinstance(passages, (str, Passage))
        or not passages
        or not all(isinstance(p, Passage) for p in passages)
    ):
        raise TypeError(f"passages must be a non-empty list of Passage, got {passages!r:.60}")


class BM25:
    """Okapi BM25 (Robertson and Zaragoza, 2009), the classic lexical ranking function.

    score(q, d) = sum over query words w of::

        idf(w) * f(w, d) * (k1 + 1) / (f(w, d) + k1 * (1 - b + b * |d| / avgdl))

    with idf(w) = ln(1 + (N - n_w + 0.5) / (n_w + 0.5)): a word found in few of the N
    passages counts a lot; repeats saturate (k1); long passages are discounted (b).
    """

    def __init__(self, passages: list[Passage], k1: float = 1.5, b: float = 0.75):
        _check_passages(passages)  # none at all would divide by zero below
        self.passages = passages
        self.k1, self.b = check_number(k1, "k1", low=0), check_number(b, "b", 0, 1)
        self.docs = [Counter(search_tokens(str(p))) for p in passages]
        self.lengths = [sum(d.values()) for d in self.docs]
        self.avgdl = sum(self.lengths) / len(self.docs)
        df = Counter(w for d in self.docs for w in d)
        n = len(self.docs)
        self.idf = {w: math.log(1 + (n - c + 0.5) / (c + 0.5)) for w, c in df.items()}

    def scores(self, query: str) -> torch.Tensor:
        """(N,) score of every passage for ``query``."""
        out = torch.zeros(len(self.docs), dtype=torch.float64)
        for w in search_tokens(query):
            if w not in self.idf:
                continue  # a word no passage has cannot tell them apart
            for i, (d, length) in enumerate(zip(self.docs, self.lengths)):
                f = d[w]
                if f:
                    norm = self.k1 * (1 - self.b + self.b * length / self.avgdl)
                    out[i] += self.idf[w] * f * (self.k1 + 1) / (f + norm)
        return out

    def search(self, query: str, k: int = 3) -> list[tuple[Passage, float]]:
        return _top(self.passages, self.scores(query), k)


class DenseIndex:
    """Passages embedded once with all-MiniLM-L6-v2; a query is ranked by cosine similarity
    (a dot product: the embeddings have norm 1). Brute force, which is exact and fast up to
    about a million passages; libraries such as FAISS approximate it beyond that."""

    def __init__(self, passages: list[Passage], device="cpu"):
        from lmlib.pretrained import embed_sentences

        _check_passages(passages)
        self.passages, self.device = passages, device
        self.vectors = embed_sentences([str(p) for p in passages], device)  # (N, 384)

    def scores(self, query: str) -> torch.Tensor:
        from lmlib.pretrained import embed_sentences

        if not isinstance(query, str):
            raise TypeError(f"query must be a str, got {type(query).__name__}")
        return self.vectors @ embed_sentences([query], self.device)[0]  # (N, 384) @ (384,)

    def search(self, query: str, k: int = 3) -> list[tuple[Passage, float]]:
        return _top(self.passages, self.scores(query), k)


def _top(passages: list[Passage], scores: torch.Tensor, k: int) -> list[tuple[Passage, float]]:
    check_int(k, "k", low=1)
    if not 1 <= k <= len(passages):
        raise ValueError(f"k must be between 1 and the {len(passages)} passages, got {k}")
    values, index = scores.topk(k)
    return [(passages[i], v) for i, v in zip(index.tolist(), values.tolist())]


SYSTEM = ("You answer questions about a book on language models. Use only the context. "
          "Answer in one short sentence.")  # fmt: skip


def rag_messages(question: str, passages: list[Passage] | None = None,
                 system: str = SYSTEM) -> list[dict]:  # fmt: skip
    """Chat messages for ``question``, with the retrieved passages as numbered context.

    Without passages this is the closed-book baseline: the same question, nothing to read.
    """
    if not isinstance(question, str) or not isinstance(system, str):
        raise TypeError(f"question and system must be str, got {type(question).__name__} and "
                        f"{type(system).__name__}")  # fmt: skip
    if not passages:
        return [{"role": "user", "content": question}]
    _check_passages(passages)
    context = "\n\n".join(f"[{i + 1}] {p}" for i, p in enumerate(passages))
    user = f"Context:\n{context}\n\nQuestion: {question}"
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]

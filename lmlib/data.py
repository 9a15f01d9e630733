"""The book's data sets: where each file comes from, how it is checked, and how it is read.

Every file the book reads is in one registry, ``DATASETS``, with its path relative to a data
folder, its public URL and its SHA-256 (from ``lmlib._sha256``). ``fetch(relpath)`` returns a
local copy that matches that hash, looking in three places in turn:

1. ``$LMLIB_DATA_DIR/<relpath>``, a folder of copies you already have, with the same layout;
2. the cache, ``$LMLIB_CACHE_DIR/data``, else ``$XDG_CACHE_HOME/lmlib/data``, else
   ``~/.cache/lmlib/data``, again as ``<cache>/<relpath>``;
3. a download into the cache, unless ``LMLIB_OFFLINE=1`` (the data sets' own switch: the
   Hugging Face Hub's ``HF_HUB_OFFLINE`` does not stop it). It comes from the file's public
   URL; a file that ships inside a zip archive names the archive's URL and its ``member``,
   and the archive is fetched and the member extracted and checked. With
   ``LMLIB_DATA_URL`` set, every file comes instead from ``$LMLIB_DATA_URL/<relpath>``: a
   server (a mirror, or a test's local one) holding a data folder's layout.

A copy whose hash differs is never returned and never changed, and a download whose hash
differs is never kept: ``ChecksumError`` says which file, both hashes, and what to do. The
loaders at the bottom turn files into Python objects, e.g.
``load_sst2("dev")[0]`` -> ``LabeledSentence(sentence="it 's a charming ...", label=1)``.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import tempfile
import urllib.parse
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from tqdm import tqdm

from lmlib._sha256 import SHA256
from lmlib.runtime import cache_root

_TIMEOUT_S = 60  # seconds without a byte before a download counts as failed
_CHUNK = 1 << 20  # 1 MiB: big enough to be fast, small enough for a smooth progress bar


class DataError(RuntimeError):
    """Base class for every problem getting a data file."""


class ChecksumError(DataError):
    """A file's SHA-256 is not the registered one (corrupt, truncated or another version)."""


class DataUnavailableError(DataError):
    """No verified local copy, and the file cannot be downloaded (offline or network error)."""


@dataclass(frozen=True)
class DataFile:
    relpath: str  # path under a data folder, e.g. "sst2/dev.tsv"
    url: str  # public home of the file, or of the zip archive that holds it
    sha256: str  # hash of the file itself, never of an archive
    member: str | None = None  # path inside the zip at `url`; None: `url` is the file


@dataclass(frozen=True)
class Dataset:
    description: str  # one line for `list_datasets` readers, e.g. "GLUE SST-2 sentiment, ..."
    files: tuple[DataFile, ...]


def _file(relpath: str, url: str, member: str | None = None) -> DataFile:
    return DataFile(relpath, url, SHA256[relpath], member)


_SHAKESPEARE = (
    "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
)
_POETRY = "https://raw.githubusercontent.com/chinese-poetry/chinese-poetry/master/全唐诗/"
_TANG_FILES = [f"poet.tang.{n}.json" for n in range(0, 58_000, 1000)]  # numeric order
_SST2_ZIP = "https://dl.fbaipublicfiles.com/glue/data/SST-2.zip"

DATASETS: dict[str, Dataset] = {
    "tiny_shakespeare": Dataset(
        "Tiny Shakespeare, 1,115,394 characters (char-rnn, nanoGPT)",
        (_file("tinyshakespeare/input.txt", _SHAKESPEARE),),
    ),
    "tang_poems": Dataset(
        "Complete Tang poems (全唐诗), 57,607 poems in 58 files, plus 唐诗三百首",
        tuple(
            _file(f"chinese-poetry/全唐诗/{name}", _POETRY + name)
            for name in [*_TANG_FILES, "唐诗三百首.json"]
        ),
    ),
    "sst2": Dataset(
        "GLUE SST-2 sentiment, 67,349 train and 872 dev sentences",
        tuple(
            _file(f"sst2/{split}.tsv", _SST2_ZIP, member=f"SST-2/{split}.tsv")
            for split in ("train", "dev")
        ),
    ),
}


def list_datasets() -> list[str]:
    """Names of the registered data sets: ``['tiny_shakespeare', 'tang_poems', 'sst2']``."""
    return list(DATASETS)


def fetch_dataset(name: str) -> list[Path]:
    """Fetch every file of data set `name` (see `fetch`) and return their local paths, e.g.
    ``fetch_dataset("sst2")`` -> ``[.../sst2/train.tsv, .../sst2/dev.tsv]``. An unknown
    name raises ValueError listing the known ones."""
    if name not in DATASETS:
        raise ValueError(f"unknown data set {name!r}; known: {', '.join(DATASETS)}")
    return [fetch(f.relpath) for f in DATASETS[name].files]


# --- where copies live ------------------------------------------------------------------------


def data_dir() -> Path | None:
    """The user's own data folder, ``$LMLIB_DATA_DIR``, or None when it is not set."""
    value = os.environ.get("LMLIB_DATA_DIR")
    return Path(value).expanduser() if value else None


def cache_dir() -> Path:
    """Where downloads go: ``<cache root>/data``, the root being ``$LMLIB_CACHE_DIR``, else
    ``$XDG_CACHE_HOME/lmlib``, else ``~/.cache/lmlib``."""
    return cache_root() / "data"


def offline() -> bool:
    """True when ``LMLIB_OFFLINE`` is 1/true/yes/on: then nothing is downloaded.

    It is the data sets' own switch, apart from the Hub's ``HF_HUB_OFFLINE``: a test run can
    keep the Hub off and still fill the cache first (``make data``)."""
    return os.environ.get("LMLIB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def data_url() -> str | None:
    """``$LMLIB_DATA_URL`` without a trailing slash, or None when it is not set.

    A server that holds a data folder's layout, used instead of every file's public URL:
    with ``LMLIB_DATA_URL=http://127.0.0.1:8000``, ``sst2/dev.tsv`` is downloaded from
    ``http://127.0.0.1:8000/sst2/dev.tsv``. Raises ValueError for anything but an
    http(s) URL."""
    value = os.environ.get("LMLIB_DATA_URL", "").strip()
    if not value:
        return None
    if urllib.parse.urlsplit(value).scheme not in {"http", "https"}:
        raise ValueError(f"LMLIB_DATA_URL must be an http:// or https:// URL, got {value!r}")
    return value.rstrip("/")


def source_url(relpath: str) -> str:
    """Where registered file `relpath` is downloaded from: ``$LMLIB_DATA_URL/<relpath>`` when
    that is set, else its public URL (the zip archive's, for a file inside one)."""
    _, entry = _lookup(relpath)
    base = data_url()
    return entry.url if base is None else f"{base}/{relpath}"


def _lookup(relpath: str) -> tuple[str, DataFile]:
    # A scan, not a prebuilt index, so that a patched DATASETS entry takes effect at once.
    for name, dataset in DATASETS.items():
        for f in dataset.files:
            if f.relpath == relpath:
                return name, f
    raise ValueError(
        f"{relpath!r} is not a registered data file; the data sets are {', '.join(DATASETS)} "
        "and DATASETS[name].files lists each one's files"
    )


# --- checking ---------------------------------------------------------------------------------

# (path, size, mtime_ns) -> hex digest: a notebook that reloads 25 MB of poems hashes them once.
_VERIFIED: dict[tuple[str, int, int], str] = {}


def sha256_of(path: Path) -> str:
    """Hex SHA-256 of a file's bytes; for a file holding ``b"abc"``: ``"ba7816bf...15ad"``."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _VERIFIED:
        digest = hashlib.sha256()
        with open(path, "rb") as fh:
            while chunk := fh.read(_CHUNK):
                digest.update(chunk)
        _VERIFIED[key] = digest.hexdigest()
    return _VERIFIED[key]


def _check(path: Path, expected: str, advice: str) -> Path:
    actual = sha256_of(path)
    if actual != expected:
        raise ChecksumError(
            f"{path} does not match its registered SHA-256; lmlib did not use or change it.\n"
            f"  expected: {expected}\n  actual:   {actual}\n  {advice}"
        )
    return path


# --- the resolution order ---------------------------------------------------------------------


def fetch(relpath: str) -> Path:
    """Local path of registered data file `relpath`, with its SHA-256 checked.

    Looks in ``$LMLIB_DATA_DIR``, then the cache, then downloads into the cache; for example
    ``fetch("sst2/dev.tsv")`` -> ``Path("/home/me/.cache/lmlib/data/sst2/dev.tsv")``.
    Raises ChecksumError for a bad copy, DataUnavailableError when there is no copy and no
    network, ValueError for a path that is not in the registry.
    """
    name, entry = _lookup(relpath)
    user = data_dir()
    if user is not None and (user / relpath).is_file():
        return _check(
            user / relpath,
            entry.sha256,
            "Replace it with a good copy (`sha256sum -c SHA256SUMS` in that folder checks "
            "every file), or unset LMLIB_DATA_DIR to use the cache and download instead.",
        )
    cached = cache_dir() / relpath
    if cached.is_file():
        return _check(cached, entry.sha256, f"Delete {cached} and lmlib will download it again.")
    url = source_url(relpath)
    missing = (
        f"data set {name!r}: no copy of {relpath} "
        f"(looked in LMLIB_DATA_DIR={user} and in the cache {cache_dir()})"
    )
    fix = (
        "Set LMLIB_DATA_DIR to a folder holding a copy with the same layout "
        f"(<folder>/{relpath}), or LMLIB_DATA_URL to a server holding one, or connect to "
        "the internet"
    )
    if offline():
        raise DataUnavailableError(
            f"{missing} and downloads are off (LMLIB_OFFLINE is set).\n"
            f"  URL: {url}\n  {fix} and unset LMLIB_OFFLINE."
        )
    try:
        _download(DATASETS[name], entry)
    except (OSError, http.client.HTTPException, zipfile.BadZipFile, KeyError) as err:
        # URLError and timeouts are OSErrors; BadZipFile/KeyError: an archive without our file.
        raise DataUnavailableError(
            f"{missing} and the download failed: {err!r}\n  URL: {url}\n  {fix}."
        ) from err
    return cached


def _download(dataset: Dataset, entry: DataFile) -> None:
    """Download `entry` into the cache, extracting it from its zip archive if it has one."""
    if entry.member is None or data_url() is not None:  # a mirror serves the file itself
        url = source_url(entry.relpath)
        with _urlopen(url) as response, _progress(response, url) as bar:
            _save(entry, response, where=url, bar=bar)
        return
    cache = cache_dir()
    # One archive often holds several registered files (SST-2: train and dev), so also
    # extract the siblings not cached yet rather than download the same archive again later.
    siblings = [
        f
        for f in dataset.files
        if f.url == entry.url and f.member and f != entry and not (cache / f.relpath).is_file()
    ]
    cache.mkdir(parents=True, exist_ok=True)
    # An anonymous temporary file: the archive is gone when it closes, whatever happens.
    with tempfile.TemporaryFile(dir=cache) as archive:
        with _urlopen(entry.url) as response, _progress(response, entry.url) as bar:
            _copy(response, archive, bar)
        with zipfile.ZipFile(archive) as zf:
            for f in [entry, *siblings]:
                try:
                    with zf.open(f.member) as src:
                        _save(f, src, where=f"member {f.member} of {f.url}")
                except (ChecksumError, KeyError):
                    if f == entry:
                        raise
                    # A bad or missing sibling is left out now and reported when asked for.


def _save(entry: DataFile, src: BinaryIO, where: str, bar: tqdm | None = None) -> None:
    """Copy `src` to a temporary file beside ``cache_dir()/entry.relpath``, check its hash,
    then rename it into place; a rename is atomic, so no reader ever sees half a file."""
    final = cache_dir() / entry.relpath
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=final.parent, prefix=f".{final.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out:
            actual = _copy(src, out, bar)
        if actual != entry.sha256:
            raise ChecksumError(
                f"the download of {where} does not match the registered SHA-256 of "
                f"{entry.relpath}; nothing was kept.\n  expected: {entry.sha256}\n  "
                f"actual:   {actual}\n  The file there changed or was corrupted on the way: "
                "set LMLIB_DATA_DIR to a folder holding a verified copy, or LMLIB_DATA_URL "
                "to a server holding one."
            )
        os.replace(tmp, final)
    except BaseException:  # also Ctrl-C: never leave a half-written .part file behind
        Path(tmp).unlink(missing_ok=True)
        raise


def _copy(src: BinaryIO, out: BinaryIO, bar: tqdm | None = None) -> str:
    """Copy `src` to `out` in chunks, hashing on the way; return the hex SHA-256."""
    digest = hashlib.sha256()
    while chunk := src.read(_CHUNK):
        out.write(chunk)
        digest.update(chunk)
        if bar is not None:
            bar.update(len(chunk))
    return digest.hexdigest()


def _urlopen(url: str) -> http.client.HTTPResponse:
    # Percent-encode non-ASCII path parts (全唐诗) but leave an already-encoded URL alone.
    return urllib.request.urlopen(urllib.parse.quote(url, safe=":/?&=%#~"), timeout=_TIMEOUT_S)


def _progress(response: http.client.HTTPResponse, url: str) -> tqdm:
    # No size, no bar: a bar without a total tells the reader nothing.
    size = response.headers.get("Content-Length", "")
    total = int(size) if size.isdigit() else None
    name = url.rsplit("/", 1)[-1]
    return tqdm(total=total, unit="B", unit_scale=True, desc=name, disable=total is None)


# --- loaders ----------------------------------------------------------------------------------


def load_tiny_shakespeare() -> str:
    """The whole Tiny Shakespeare corpus as one string of 1,115,394 characters (all ASCII,
    lines end in "\\n"), exactly the bytes of ``input.txt``.

    >>> text = load_tiny_shakespeare()  # doctest: +SKIP
    >>> len(text), text.splitlines()[0]  # doctest: +SKIP
    (1115394, 'First Citizen:')
    """
    # Decoding bytes ourselves keeps the text byte-exact (no newline translation).
    return fetch("tinyshakespeare/input.txt").read_bytes().decode("utf-8")


@dataclass(frozen=True, slots=True)
class Poem:
    author: str  # e.g. "太宗皇帝"
    title: str  # e.g. "帝京篇十首 一"
    paragraphs: tuple[str, ...]  # the lines of verse, e.g. ("秦川雄帝宅，函谷壯皇居。", ...)
    id: str  # the chinese-poetry project's UUID for the poem

    @property
    def text(self) -> str:
        """The poem's lines joined with newlines (no trailing newline)."""
        return "\n".join(self.paragraphs)


_TANG_SUBSETS = {
    "all": [f"chinese-poetry/全唐诗/{name}" for name in _TANG_FILES],
    "300": ["chinese-poetry/全唐诗/唐诗三百首.json"],
}


def load_tang_poems(subset: str = "all") -> list[Poem]:
    """Tang poems in traditional characters, in file order.

    ``subset="all"``: the 57,607 poems of the Complete Tang Poems (全唐诗), read from
    ``poet.tang.0.json``, ``poet.tang.1000.json``, ... ``poet.tang.57000.json`` in numeric
    order (as strings, ``10000`` would sort before ``2000``); a file holds about 1,000.
    ``subset="300"``: the anthology 唐诗三百首 (366 records, as the file holds them). Its
    records also carry ``tags``, which are dropped so both subsets give the same `Poem`.

    >>> poems = load_tang_poems()  # doctest: +SKIP
    >>> len(poems), poems[0].author, poems[0].title  # doctest: +SKIP
    (57607, '太宗皇帝', '帝京篇十首 一')
    >>> print(poems[0].text.splitlines()[0])  # doctest: +SKIP
    秦川雄帝宅，函谷壯皇居。
    """
    if not isinstance(subset, str) or subset not in _TANG_SUBSETS:
        raise ValueError(f"unknown subset {subset!r}; valid: {', '.join(_TANG_SUBSETS)}")
    poems = []
    for relpath in _TANG_SUBSETS[subset]:
        with open(fetch(relpath), encoding="utf-8") as fh:
            records = json.load(fh)
        poems.extend(
            Poem(r["author"], r["title"], tuple(r["paragraphs"]), r["id"]) for r in records
        )
    return poems


@dataclass(frozen=True, slots=True)
class LabeledSentence:
    sentence: str  # lower-cased, tokenized movie-review text, e.g. "a charming journey ."
    label: int  # 1 = positive, 0 = negative


_SST2_SPLITS = {"train": "sst2/train.tsv", "dev": "sst2/dev.tsv"}


def load_sst2(split: str) -> list[LabeledSentence]:
    """SST-2 sentences with sentiment labels: 67,349 for ``"train"``, 872 for ``"dev"``.

    Each row of ``sentence<TAB>label`` (after the header line) becomes one LabeledSentence;
    the sentence keeps GLUE's tokenization (spaces around punctuation) but loses the trailing
    space GLUE leaves on every line. The GLUE test split has no labels, so it is not here.

    >>> dev = load_sst2("dev")  # doctest: +SKIP
    >>> dev[0]  # doctest: +SKIP
    LabeledSentence(sentence="it 's a charming and often affecting journey .", label=1)
    """
    if not isinstance(split, str) or split not in _SST2_SPLITS:
        raise ValueError(f"unknown SST-2 split {split!r}; valid: {', '.join(_SST2_SPLITS)}")
    # split("\n"), not splitlines(): the latter also breaks at rarer separators like \x1c.
    lines = fetch(_SST2_SPLITS[split]).read_text(encoding="utf-8").rstrip("\n").split("\n")
    rows = []
    for line in lines[1:]:  # lines[0] is the header "sentence\tlabel"
        sentence, label = line.rsplit("\t", 1)  # rsplit: the label is always the last field
        rows.append(LabeledSentence(sentence.strip(), int(label)))
    return rows

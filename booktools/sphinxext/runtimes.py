"""Sphinx extension: under the title of every chapter page that has a measured run time in
`chapters/runtimes.json`, one line, e.g. "This notebook runs top to bottom in about 3 min on
a 2-core Intel Xeon CPU (measured by the test suite, 2026-11-23)."

It is in the site only: the notebooks themselves (Colab, Binder, download) do not change. The
file and the sentence are `booktools.runtimes`'s; `make runtimes` fills the file.
"""

from __future__ import annotations

from pathlib import Path

from booktools.runtimes import CHAPTERS, NOTE_CLASS, RuntimesFileError, describe, load


def load_for_build(app) -> None:
    """Read the file once per build into ``app.runtimes``: (its path, its entries)."""
    from sphinx.errors import ExtensionError

    path = Path(app.srcdir) / CHAPTERS / "runtimes.json"
    try:
        app.runtimes = (path, load(path))
    except RuntimesFileError as err:
        raise ExtensionError(str(err)) from err


def add_note(app, doctree) -> None:
    """Put the note right under the page title of a chapter notebook (in chapters/ or one of
    its sub-folders) that has an entry."""
    from docutils import nodes
    from sphinx.util import logging

    docname = app.env.docname
    if not docname.startswith(f"{CHAPTERS}/"):
        return
    if not str(app.env.doc2path(docname)).endswith(".ipynb"):
        return
    path, entries = app.runtimes
    # re-read this page when the measurements change (an incremental build would not)
    app.env.note_dependency(str(path))
    entry = entries.get(docname)
    if entry is None:
        logging.getLogger(__name__).info(
            f"runtimes: no measured time for {docname} in {path.name}: no note on its page"
        )
        return
    title = doctree.next_node(nodes.title)  # the page title: its first heading
    if title is None:
        return
    text = nodes.emphasis(text=describe(entry))
    title.parent.insert(
        title.parent.index(title) + 1, nodes.paragraph("", "", text, classes=[NOTE_CLASS])
    )


def setup(app):
    app.connect("builder-inited", load_for_build)
    app.connect("doctree-read", add_note)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}

"""Sphinx extension: the book's own page styles (static/book.css) on every page.

Today that is one rule, for Mermaid diagrams: natural size, shrunk only to fit the column
(tests/book/test_browser.py measures the rendered text of every diagram).
"""

from __future__ import annotations

from pathlib import Path

STATIC = Path(__file__).parent / "static"


def _add_static(app):
    app.config.html_static_path.append(str(STATIC))


def setup(app):
    app.connect("builder-inited", _add_static)
    app.add_css_file("book.css")
    return {"parallel_read_safe": True, "parallel_write_safe": True}

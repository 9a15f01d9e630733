"""The website: a clean build with warnings as errors, and what a reader needs on a page.

The `site` fixture (one build shared with test_browser.py) is in tests/book/conftest.py."""

import html as html_lib
import re
from pathlib import Path

import nbformat
import pytest
import yaml

from booktools import runtimes

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def toc_files():
    """Every page named in _toc.yml, in order (without the root page)."""
    return re.findall(
        r"file: (\S+)", yaml.safe_dump(yaml.safe_load((ROOT / "_toc.yml").read_text()))
    )


# the pages built from notebooks: the chapters and the student assignments
NOTEBOOK_PAGES = [name for name in toc_files() if (ROOT / f"{name}.ipynb").exists()]
CHAPTER_NOTEBOOKS = [name for name in NOTEBOOK_PAGES if name.startswith("chapters/")]


def test_build_is_clean(book_build):
    """-W -n: a broken cross-reference, a missing page or a CDN script is a failure."""
    assert book_build.returncode == 0, book_build.problems()


def page(site, name):
    return (site[0] / name).read_text(encoding="utf-8")


def test_every_toc_entry_has_a_page(site):
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    for f in toc_files() + [toc["root"]]:
        assert (site[0] / f"{f}.html").exists(), f


def test_the_toc_has_chapter_and_assignment_notebooks():
    """The parametrized page tests below would pass vacuously on an empty list."""
    assert len(CHAPTER_NOTEBOOKS) >= 7
    assert any(name.startswith("assignments/") for name in NOTEBOOK_PAGES)


@pytest.mark.parametrize("name", NOTEBOOK_PAGES)
def test_notebook_page_has_colab_binder_and_download_links(site, name):
    """Built from `repository` in _config.yml, so a fork's pages launch the fork."""
    html = page(site, f"{name}.html")
    repo = site[1]["repository"]["url"].removeprefix("https://github.com/")
    branch = site[1]["repository"]["branch"]
    colab = f"https://colab.research.google.com/github/{repo}/blob/{branch}/{name}.ipynb"
    assert f'href="{colab}"' in html, f"no Open in Colab link {colab}"
    # sphinx-book-theme: <binderhub>/v2/gh/<org>/<repo>/<branch>?urlpath=<ui>/<path>.ipynb
    binder = re.findall(
        rf'href="(https://mybinder\.org/v2/gh/{repo}/{branch}\?urlpath=[^"]+)"', html
    )
    assert binder, "no Binder link"
    assert all(url.endswith(f"/{name}.ipynb") for url in binder), binder
    # the theme's download menu: the notebook file itself, copied into the site
    downloads = re.findall(r'<a href="([^"]+\.ipynb)"[^>]*\bbtn-download-[a-z]+-button\b', html)
    assert downloads, "no .ipynb download link"
    for href in downloads:
        target = ((site[0] / name).parent / html_lib.unescape(href)).resolve()
        assert target.is_file(), f"{href} -> {target} is not in the site"
        downloaded = nbformat.read(target, as_version=4)
        original = nbformat.read(ROOT / f"{name}.ipynb", as_version=4)
        assert len(downloaded.cells) == len(original.cells)
        # the Colab setup cell: in the downloaded notebook (Colab runs it), not on the page
        setup = [c for c in downloaded.cells if "colab-setup" in c.metadata.get("tags", [])]
        assert len(setup) == 1 and "remove-cell" in setup[0].metadata["tags"]
        assert "google.colab" in setup[0].source
        # the runtime note is in the site only, never in the notebook itself
        assert "runs top to bottom in" not in target.read_text(encoding="utf-8")
    if name not in CHAPTER_NOTEBOOKS:
        assert runtimes.NOTE_CLASS not in html
    assert "google.colab" not in html and "Colab setup" not in html, "setup cell on the page"


def test_every_chapter_notebook_in_the_toc_has_a_measured_runtime():
    """A new chapter has no time until its nbval test ran in full and passed (`make test`)."""
    entries = runtimes.load()
    missing = [name for name in CHAPTER_NOTEBOOKS if name not in entries]
    assert not missing, (
        f"no measured run time in chapters/runtimes.json for {missing}: run `make test` (or "
        "nbval on each of these notebooks), then `make runtimes` to copy the times"
    )


@pytest.mark.parametrize("name", CHAPTER_NOTEBOOKS)
def test_chapter_page_shows_its_measured_runtime_under_the_title(site, name):
    entry = runtimes.load().get(name)
    if entry is None:
        pytest.fail(f"{name} has no entry in chapters/runtimes.json: run its nbval test, "
                    "then `make runtimes`")  # fmt: skip
    html = page(site, f"{name}.html")
    notes = re.findall(rf'<p class="{runtimes.NOTE_CLASS}"><em>(.*?)</em></p>', html, re.S)
    assert [html_lib.unescape(note) for note in notes] == [runtimes.describe(entry)]
    minutes = round(entry["seconds"] / 60)
    assert ("under a minute" if entry["seconds"] < 45 else f"about {minutes} min") in notes[0]
    assert entry["date"] in notes[0]
    # right under the title: the page's <h1> (the print-only header has one too), then the note
    before = html[: html.index(f'<p class="{runtimes.NOTE_CLASS}">')]
    assert before.rstrip().endswith("</h1>") and 'class="headerlink"' in before[-400:]
    assert ">" + html_lib.escape(page_title(name)) in before[before.rindex("<h1") :]


def page_title(name):
    """The first markdown heading of a notebook."""
    for cell in nbformat.read(ROOT / f"{name}.ipynb", as_version=4).cells:
        if cell.cell_type == "markdown" and (found := re.search(r"^# (.+)$", cell.source, re.M)):
            return found.group(1).strip()
    raise AssertionError(f"{name} has no # title")


def test_math_mermaid_figures_and_search_are_rendered(site):
    html = page(site, "chapters/01_background.html")
    assert 'class="math' in html and "mathjax" in html.lower()
    assert 'class="mermaid' in html
    assert html.count("<img") >= 5  # the chapter's plots
    assert (site[0] / "search.html").exists() and (site[0] / "searchindex.js").exists()


def test_chapter_3_page_carries_the_bertviz_views(site):
    html = page(site, "chapters/03_transformer.html")
    # two head views and two model views: each a container and a script that fills it
    views = set(re.findall(r'id="(bertviz-[0-9a-f]{32})"', html))
    assert len(views) == 4
    for view in views:
        assert f'"root_div_id": "{view}"' in html, f"no attention data for {view}"
    assert html.count("<img") >= 10  # the chapter's plots

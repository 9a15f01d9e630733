"""The website: a clean build with warnings as errors, and what a reader needs on a page.

The `site` fixture (one build shared with tests/test_browser.py) is in tests/conftest.py."""

import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def test_build_is_clean(book_build):
    """-W -n: a broken cross-reference, a missing page or a CDN script is a failure."""
    assert book_build.returncode == 0, book_build.problems()


def page(site, name):
    return (site[0] / name).read_text(encoding="utf-8")


def test_every_toc_entry_has_a_page(site):
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = re.findall(r"file: (\S+)", yaml.safe_dump(toc))
    for f in files + [toc["root"]]:
        assert (site[0] / f"{f}.html").exists(), f


def test_chapter_page_has_launch_buttons_built_from_the_repository_setting(site):
    html = page(site, "chapters/01_background.html")
    repo = site[1]["repository"]["url"].removeprefix("https://github.com/")
    assert (
        f"colab.research.google.com/github/{repo}/blob/main/chapters/01_background.ipynb" in html
    )
    assert f"mybinder.org/v2/gh/{repo}/main" in html
    assert "01_background.ipynb" in html and "download" in html.lower()


def test_math_mermaid_figures_and_search_are_rendered(site):
    html = page(site, "chapters/01_background.html")
    assert 'class="math' in html and "mathjax" in html.lower()
    assert 'class="mermaid' in html
    assert html.count("<img") >= 5  # the chapter's plots
    assert (site[0] / "search.html").exists() and (site[0] / "searchindex.js").exists()


def test_assignment_page_links_to_colab(site):
    html = page(site, "assignments/ch01_background/student/ch01_background.html")
    assert "colab.research.google.com/github/" in html


def test_chapter_3_page_carries_the_bertviz_views(site):
    html = page(site, "chapters/03_transformer.html")
    # two head views and two model views: each a container and a script that fills it
    views = set(re.findall(r'id="(bertviz-[0-9a-f]{32})"', html))
    assert len(views) == 4
    for view in views:
        assert f'"root_div_id": "{view}"' in html, f"no attention data for {view}"
    assert html.count("<img") >= 10  # the chapter's plots

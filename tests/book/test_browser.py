"""The built website in a real browser: every page, offline, with nothing left broken.

The book is built once (the `site` fixture in conftest.py, shared with test_book.py), served
by a local HTTP server and every page is opened in headless Chromium (Debian's `chromium`,
driven by Playwright through `executable_path`). Every request to any other host is blocked
and recorded: the browser's proxy is a closed port on 127.0.0.1 and only 127.0.0.1 bypasses
it, so a request to any other host name or address (another loopback or link-local address
included) fails at that port, on this machine, and is recorded from its failure
(`net::ERR_PROXY_CONNECTION_FAILED`); a rule that resolves no host name is a second wall.
Playwright's request interception would block too, but it turns off the browser's cache, so
every page would fetch and compile MathJax, Mermaid and the theme's scripts again: the page
loads took twice as long. A page fails when it
- loads anything from another host (the site must carry its own MathJax, Mermaid, ...),
- logs a JavaScript error, or a request of its own fails (network error or HTTP >= 400),
- leaves a formula unrendered (no MathJax output, a TeX error, raw `$$` or `\\(` in the text),
- has a Mermaid block without its SVG, an empty bertviz view or an unrendered widget,
- shows an image that did not load (naturalWidth 0),
- links to a local page or #anchor that does not exist,
- and, as a reader sees it at a laptop's width (1280 px): has a code block wider than its
  column (scrollWidth > clientWidth) on a chapter, assignment or intro page, a Mermaid
  diagram whose smallest label is drawn under 12 px, a Colab setup cell, an nbval marker or
  a formatter pragma in its text, or a heading numbered twice ("5.1. 1. The data"),
- and, for a chapter at a phone's width (390 px): prose or anything outside a scrolling box
  that pushes the page wider than the screen.
A screenshot of each page goes to _build/screenshots/ (or $BOOK_SCREENSHOTS), each chapter
also at a phone's width (``*__phone.jpg``), with summary.txt, the per-page table that is
also printed. lmlib's source listings (``_modules/``, Sphinx's viewcode pages: one template
around highlighted code) are opened and checked like every page but not photographed: their
full-page pictures took half the browsers' time on those 45 pages and show nothing the
checks above do not.
"""

import json
import os
import re
import shutil
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from functools import partial
from html.parser import HTMLParser
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[2]
SHOTS = Path(os.environ.get("BOOK_SCREENSHOTS", ROOT / "_build" / "screenshots"))
pytestmark = pytest.mark.slow

# Flags checked on Debian's Chromium running as root in a container (see TOOLCHAIN.md); the
# resolver rule is a second wall behind the request blocking: no host name resolves at all.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
]
PROXY_FAILED = "net::ERR_PROXY_CONNECTION_FAILED"
BROWSERS = 2  # pages open at once, each in a browser of its own (Playwright: one per thread)
RENDER_TIMEOUT_MS = 20_000  # MathJax, Mermaid, bertviz and widgets on the longest page

# Resolves once the page's renderers are done (or have had their chance).
WAIT_FOR_RENDERERS = """async (timeout) => {
  const deadline = Date.now() + timeout;
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  const mathjax = () => window.MathJax && MathJax.startup && MathJax.startup.promise;
  if (document.querySelector('.math')) {
    // MathJax is a deferred script: after `load` it is there, or it failed to load
    for (let i = 0; i < 20 && !mathjax(); i++) await sleep(100);
    if (mathjax()) await Promise.race([MathJax.startup.promise, sleep(deadline - Date.now())]);
  }
  for (const img of document.images) img.loading = 'eager';
  const done = () =>
    [...document.querySelectorAll('.mermaid')].every((e) => {
      const svg = e.querySelector(':scope > svg');  // drawn: sized, with its labels
      return svg && svg.viewBox.baseVal && svg.viewBox.baseVal.width > 0 &&
        svg.querySelector('.nodeLabel, .edgeLabel, text');
    }) &&
    [...document.querySelectorAll('div[id^="bertviz-"]')]
      .every((e) => e.querySelectorAll('svg *').length > 0) &&
    [...document.querySelectorAll('script[type="application/vnd.jupyter.widget-view+json"]')]
      .every((s) => s.previousElementSibling &&
                    s.previousElementSibling.classList.contains('widget-subarea') &&
                    s.previousElementSibling.childElementCount > 0) &&
    [...document.images].every((i) => i.complete);
  while (!done() && Date.now() < deadline) await sleep(100);
  await sleep(200);  // let a last error surface on the console
}"""

# At a phone's width: what makes the whole page scroll sideways (code blocks, formulas and
# tables scroll inside their own box, which is fine; prose must wrap).
PHONE_OVERFLOW = r"""() => {
  const W = document.documentElement.clientWidth;
  const boxed = (e) => {
    for (let a = e.parentElement; a; a = a.parentElement) {
      if (['auto', 'scroll', 'hidden'].includes(getComputedStyle(a).overflowX)) return true;
    }
    return false;
  };
  return [...document.querySelectorAll('article *')]
    .filter((e) => e.getBoundingClientRect().right > W + 1 && !boxed(e) &&
      !(e.parentElement && e.parentElement.getBoundingClientRect().right > W + 1))
    .map((e) => `${Math.round(e.getBoundingClientRect().right - W)}px past the screen: ` +
                `<${e.tagName.toLowerCase()}> ${e.textContent.trim().slice(0, 50)}`);
}"""

# What the reader sees, as data the Python side judges.
INSPECT_PAGE = r"""() => {
  const skip = 'script, style, noscript, textarea, pre, code, mjx-container, svg, .mermaid';
  const raw = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    if (n.parentElement && n.parentElement.closest(skip)) continue;
    const m = n.textContent.match(/.{0,30}(\$\$|\\\(|\\\)|\\\[|\\\]|\\begin\{).{0,30}/s);
    if (m) raw.push(m[0].replace(/\s+/g, ' ').trim());
  }
  const maths = [...document.querySelectorAll('span.math, div.math')];
  const mermaids = [...document.querySelectorAll('.mermaid')];
  const views = [...document.querySelectorAll('div[id^="bertviz-"]')];
  const widgets = [...document.querySelectorAll(
    'script[type="application/vnd.jupyter.widget-view+json"]')];
  const ids = new Set([...document.querySelectorAll('[id]')].map((e) => e.id));
  for (const a of document.querySelectorAll('a[name]')) ids.add(a.name);
  return {
    formulas: maths.length,
    unrendered_math: maths.filter((e) => !e.querySelector('mjx-container'))
      .map((e) => e.textContent.trim().slice(0, 60)),
    tex_errors: [...document.querySelectorAll('mjx-merror')]
      .map((e) => (e.getAttribute('data-mjx-error') || e.textContent).slice(0, 80)),
    raw_tex: raw,
    mermaid: mermaids.length,
    mermaid_missing: mermaids.filter((e) => !e.querySelector('svg'))
      .map((e) => e.textContent.trim().slice(0, 60)),
    mermaid_errors: mermaids.filter((e) => e.querySelector('svg[aria-roledescription="error"]'))
      .map((e) => e.id),
    bertviz: views.length,
    bertviz_empty: views.filter((e) => e.querySelectorAll('svg *').length === 0)
      .map((e) => e.id),
    widgets: widgets.length,
    widgets_unrendered: widgets.filter((s) => !(s.previousElementSibling &&
        s.previousElementSibling.classList.contains('widget-subarea') &&
        s.previousElementSibling.childElementCount > 0))
      .map((s) => s.textContent.trim().slice(0, 80)),
    images: document.images.length,
    images_broken: [...document.images].filter((i) => !i.complete || i.naturalWidth === 0)
      .map((i) => i.getAttribute('src')),
    // code wider than its column: a horizontal scroll bar (outputs, and plain-text blocks
    // that quote a program's output or a folder listing, are not code)
    wide_code: [...document.querySelectorAll('article div.highlight pre')]
      .filter((e) => !e.closest('.cell_output, .highlight-text, .highlight-none') &&
                     e.scrollWidth > e.clientWidth + 1)
      .map((e) => `${e.scrollWidth - e.clientWidth}px too wide: ` +
                  e.textContent.split('\n').reduce((a, b) => (b.length > a.length ? b : a), '')
                   .slice(0, 70)),
    // each diagram's smallest label as drawn: its font size times the svg's scale
    mermaid_text_px: mermaids.map((e) => {
      // the diagram is the block's own svg (others inside are icons, e.g. fullscreen)
      const svg = e.querySelector(':scope > svg') || e.querySelector('svg');
      if (!svg || !svg.viewBox.baseVal || !svg.viewBox.baseVal.width) return null;
      const scale = svg.getBoundingClientRect().width / svg.viewBox.baseVal.width;
      const sizes = [...svg.querySelectorAll('.nodeLabel, .edgeLabel, text')]
        .filter((t) => t.textContent.trim())
        .map((t) => parseFloat(getComputedStyle(t).fontSize) * scale)
        .filter((px) => Number.isFinite(px));
      return sizes.length ? Math.round(Math.min(...sizes) * 10) / 10 : null;
    }),
    // test machinery a reader should never see
    machinery: [...(document.querySelector('article') || document.body).innerText
      .matchAll(/.{0,30}(# Colab setup|NBVAL_[A-Z_]+|# fmt: skip).{0,20}/g)].map((m) => m[0]),
    // "5.1. 1. The data": the theme's number, then one typed into the title
    double_numbers: [...document.querySelectorAll('h1, h2, h3, h4')]
      .filter((h) => h.querySelector('.section-number') &&
        /^\s*\d+(\.\d+)*\.?\s/.test(h.textContent.replace(
          h.querySelector('.section-number').textContent, '')))
      .map((h) => h.textContent.trim().slice(0, 60)),
    links: [...document.querySelectorAll('a[href]')]
      .map((a) => [a.getAttribute('href'), a.href]),
    ids: [...ids],
  };
}"""


# the lists INSPECT_PAGE returns (besides its counts)
INSPECT_KEYS = ("unrendered_math", "tex_errors", "raw_tex", "mermaid_missing",
                "mermaid_errors", "bertviz_empty", "widgets_unrendered", "images_broken",
                "wide_code", "mermaid_text_px", "machinery", "double_numbers", "phone_overflow",
                "links", "ids")  # fmt: skip
LAPTOP = {"width": 1280, "height": 900}  # the narrowest common laptop column (77 characters)
PHONE = {"width": 390, "height": 844}
LEGIBLE_PX = 12  # smallest diagram text, as drawn, that reads without zooming
# Pages whose code is the book's own teaching code, formatted for the page. The API pages
# show lmlib's source, formatted for an editor at 99 columns, and scroll; so do, for now, the
# assignments: their mutation tables (tests/assignments/mutants) quote the solutions' exact
# text, so reformatting them means rewriting those tables too.
READER_PAGES = re.compile(r"^(intro|chapters/.*)\.html$")
# lmlib's source listings: checked, not photographed.
SOURCE_PAGES = re.compile(r"^_modules/")
# The chapters, photographed at a phone's width too.
CHAPTER_PAGES = re.compile(r"^chapters/0\d_[^/]*(/\d\d_[^/]*)?\.html$")


def find_chromium():
    names = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
    for name in (os.environ.get("CHROMIUM"), *names):
        if name and (path := shutil.which(name)):
            return path
    return None


@contextmanager
def offline_chromium(sync_api, chromium: str):
    """A headless Chromium that can reach 127.0.0.1 and nothing else: its proxy is a port on
    127.0.0.1 that is bound but never listens (so every connection to it is refused), and
    ``<-loopback>`` drops Chromium's own rule that sends loopback and link-local addresses
    around the proxy, so that only 127.0.0.1 is let through."""
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    proxy = [
        f"--proxy-server=http://127.0.0.1:{closed.getsockname()[1]}",
        "--proxy-bypass-list=<-loopback>;127.0.0.1",
    ]
    try:
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS + proxy)
            try:
                yield browser
            finally:
                browser.close()
    finally:
        closed.close()


def _serve(root: Path):
    """A local HTTP server for `root` on a free port of 127.0.0.1, in a thread."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _quiet_handler(root))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"127.0.0.1:{server.server_address[1]}"


class _Ids(HTMLParser):
    """The anchors a page offers to links: every id, and the name of every <a name>."""

    def __init__(self):
        super().__init__()
        self.ids = set()

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if attrs.get("id"):
            self.ids.add(attrs["id"])
        if tag == "a" and attrs.get("name"):
            self.ids.add(attrs["name"])


class _Site:
    """The built html folder: local URLs -> files, and the anchors of each page."""

    def __init__(self, root: Path):
        self.root = root
        self._ids = {}

    def file(self, path: str):
        target = self.root / unquote(path).lstrip("/")
        if path.endswith("/") or target.is_dir():
            target = target / "index.html"
        return target if target.is_file() else None

    def ids(self, target: Path):
        if target not in self._ids:
            parser = _Ids()
            parser.feed(target.read_text(encoding="utf-8", errors="replace"))
            self._ids[target] = parser.ids
        return self._ids[target]


def _quiet_handler(root):
    class Handler(SimpleHTTPRequestHandler):
        def log_message(self, *args):  # keep the test output to the summary
            pass

    return partial(Handler, directory=str(root))


def _pages(html: Path):
    """Every page of the build; redirect stubs (index.html) are only checked as links."""
    pages, redirects = [], []
    for path in sorted(html.rglob("*.html")):
        rel = path.relative_to(html).as_posix()
        if rel.split("/")[0] in {"_static", "_sources", "_images"}:
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        (redirects if 'http-equiv="refresh"' in text.lower() else pages).append(rel)
    return pages, redirects


def _check_links(page_url, facts, server, site):
    """Broken local links and anchors on one page, and how many links went elsewhere."""
    broken, external = [], 0
    own_ids = set(facts["ids"])
    for raw, absolute in facts["links"]:
        parts = urlsplit(absolute)
        if parts.scheme not in ("http", "https"):
            continue  # mailto:, javascript:
        if parts.netloc != server:
            external += 1
            continue
        target = site.file(parts.path)
        if target is None:
            broken.append(f"{raw} (no such file)")
            continue
        anchor = unquote(parts.fragment)
        if not anchor or target.suffix != ".html":
            continue
        same_page = parts.path == urlsplit(page_url).path
        if anchor not in (own_ids if same_page else site.ids(target)):
            broken.append(f"{raw} (no #{anchor} there)")
    return sorted(set(broken)), external


def _crawl(sync_api, chromium: str, host: str, local: _Site, pages: list[str]) -> dict:
    """Open `pages` one after another in a browser of its own; {page: what was seen}."""
    results, current = {}, {}

    def on_console(msg):
        # a failed load is also reported as a failed request, with its URL: count it there
        if msg.type == "error" and not msg.text.startswith("Failed to load resource"):
            current["console"].append(msg.text[:300])

    def on_request_failed(req):  # a 404 is then also aborted: keep the first reason
        if urlsplit(req.url).netloc == host:
            current["failed"].setdefault(req.url, req.failure)
        elif req.url not in current["blocked"]:  # stopped at the closed proxy
            current["blocked"].append(req.url)

    def on_response(resp):
        current["requests"] += 1
        if urlsplit(resp.url).netloc != host:  # cannot happen through the closed proxy
            current["blocked"].append(resp.url)
        elif resp.status >= 400:
            current["failed"].setdefault(resp.url, f"HTTP {resp.status}")

    with offline_chromium(sync_api, chromium) as browser:
        context = browser.new_context(viewport=LAPTOP)
        pw_page = context.new_page()
        pw_page.on("console", on_console)
        pw_page.on("pageerror", lambda err: current["console"].append(f"uncaught {err}"))
        pw_page.on("requestfailed", on_request_failed)
        pw_page.on("response", on_response)
        for rel in pages:
            current.clear()
            current.update(blocked=[], console=[], failed={}, requests=0)
            t0 = time.perf_counter()
            url = f"http://{host}/{rel}"
            shot = None
            if not SOURCE_PAGES.match(rel):
                shot = SHOTS / (rel.removesuffix(".html").replace("/", "__") + ".jpg")
            try:
                pw_page.goto(url, wait_until="load", timeout=60_000)
                pw_page.evaluate(WAIT_FOR_RENDERERS, RENDER_TIMEOUT_MS)
                facts = pw_page.evaluate(INSPECT_PAGE)
                if shot is not None:
                    pw_page.screenshot(path=shot, full_page=True, type="jpeg", quality=60)
                if CHAPTER_PAGES.match(rel):  # and as a phone shows it
                    pw_page.set_viewport_size(PHONE)
                    pw_page.wait_for_timeout(300)
                    phone = shot.with_name(shot.stem + "__phone.jpg")
                    pw_page.screenshot(path=phone, full_page=True, type="jpeg", quality=50)
                    facts["phone_overflow"] = pw_page.evaluate(PHONE_OVERFLOW)
                    pw_page.set_viewport_size(LAPTOP)
            except sync_api.Error as err:  # a page that hangs or crashes: report, go on
                current["console"].append(f"page did not load: {err}"[:300])
                facts = {key: [] for key in INSPECT_KEYS}
                facts.update(formulas=0, mermaid=0, bertviz=0, widgets=0, images=0)
            facts.setdefault("phone_overflow", [])
            if not READER_PAGES.match(rel):  # lmlib's own source: an editor's layout
                facts["wide_code"] = []
                facts["machinery"] = [m for m in facts["machinery"] if "fmt:" not in m]
            broken, external = _check_links(url, facts, host, local)
            results[rel] = {
                **{k: v for k, v in facts.items() if k not in ("links", "ids")},
                **current,
                "failed": [f"{u} ({why})" for u, why in current["failed"].items()],
                "links": len(facts["links"]),
                "external_links": external,
                "broken_links": broken,
                "seconds": round(time.perf_counter() - t0, 2),
                "screenshot": shot.name if shot else None,
            }
    return results


@pytest.fixture(scope="module")
def crawl(request):
    """Open every page once; return {page: what was seen}. Prints the per-page summary.

    Two browsers share the pages, every other one each: one browser left the second core
    half idle (a sample of 33 pages took 58 s in one browser, 44 s in two). A page's time
    in the summary is measured while the other browser works."""
    chromium = find_chromium()  # before the build: skipping takes no time
    if chromium is None:
        pytest.skip(
            "no Chromium: install it with `apt-get install -y chromium` (.ci/run does), "
            "or point $CHROMIUM at a Chromium or Chrome binary"
        )
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright is installed with otter-grader"
    )
    html = request.getfixturevalue("site")[0]
    pages, redirects = _pages(html)
    assert pages, f"no pages in {html}"
    shutil.rmtree(SHOTS, ignore_errors=True)
    SHOTS.mkdir(parents=True)

    server, host = _serve(html)
    local, started = _Site(html), time.perf_counter()
    try:
        with ThreadPoolExecutor(BROWSERS) as pool:
            shares = [pages[i::BROWSERS] for i in range(BROWSERS)]
            seen = {}
            for part in pool.map(partial(_crawl, sync_api, chromium, host, local), shares):
                seen.update(part)
    finally:
        server.shutdown()
        server.server_close()
    results = {rel: seen[rel] for rel in pages}  # in the pages' order, for the summary

    for rel in redirects:  # index.html -> intro.html: the target must exist
        text = (html / rel).read_text(encoding="utf-8")
        target = re.search(r'http-equiv="refresh"[^>]*url=([^"]+)', text, re.I).group(1).strip()
        ok = (html / rel).parent.joinpath(target.split("#")[0]).is_file()
        results[rel] = {"redirect": target, "broken_links": [] if ok else [target]}
    _report(results, time.perf_counter() - started, request)
    return results


COLUMNS = ("page", "s", "req", "blocked", "js err", "failed", "math", "mermaid", "text px",
           "bertviz", "widgets", "img", "wide code", "shown", "2x num", "links",
           "broken")  # fmt: skip


def _row(rel, r):
    """One line of the summary: counts of problems, and rendered/total for each renderer."""
    if "redirect" in r:
        return (f"{rel} -> {r['redirect']}",) + ("",) * 15 + (str(len(r["broken_links"])),)

    def rendered(total, missing):
        return f"{r[total] - len(r[missing])}/{r[total]}"

    return (
        rel, f"{r['seconds']:.1f}", str(r["requests"]), str(len(r["blocked"])),
        str(len(r["console"])), str(len(r["failed"])),
        rendered("formulas", "unrendered_math"), rendered("mermaid", "mermaid_missing"),
        " ".join(str(px) for px in r["mermaid_text_px"]) or "-",
        rendered("bertviz", "bertviz_empty"), rendered("widgets", "widgets_unrendered"),
        rendered("images", "images_broken"), str(len(r["wide_code"])),
        str(len(r["machinery"])), str(len(r["double_numbers"])), str(r["links"]),
        str(len(r["broken_links"])),
    )  # fmt: skip


def _report(results, seconds, request):
    rows = [COLUMNS] + [_row(rel, r) for rel, r in results.items()]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.append(
        f"{len(results)} pages in {seconds:.1f} s (n/total: rendered/present); screenshots, "
        f"summary.txt and report.json in {SHOTS}"
    )
    (SHOTS / "summary.txt").write_text("\n".join(lines) + "\n")
    (SHOTS / "report.json").write_text(json.dumps(results, indent=1, ensure_ascii=False))
    reporter = request.config.pluginmanager.getplugin("terminalreporter")
    if reporter is not None:  # shown even when the output of passing tests is captured
        reporter.write_line("")
        for line in lines:
            reporter.write_line(line)
    else:
        print("\n".join(lines))


def _problems(crawl, *keys):
    found = [
        f"{rel}: {key}: {item}"
        for rel, r in crawl.items()
        for key in keys
        for item in r.get(key, [])
    ]
    return "\n".join(found[:60]) + (f"\n... and {len(found) - 60} more" if len(found) > 60 else "")


# a 1 x 1 PNG
PIXEL = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
)


def test_the_browser_reaches_127_0_0_1_and_nothing_else(tmp_path):
    """The crawl's wall on a page of its own: a script and images on other hosts, over http
    and https, by name and by address, each fail at the closed proxy, and the page's own
    image loads. (If the wall were gone, the address here would still be on this machine:
    127.0.0.2, another loopback address, which Chromium would otherwise reach directly.)"""
    chromium = find_chromium()
    if chromium is None:
        pytest.skip("no Chromium: install it with `apt-get install -y chromium`")
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright is installed with otter-grader"
    )
    outside = [
        "http://example.com/a.js",
        "https://cdn.example.org/b.png",
        "http://localhost/c.png",
        "http://127.0.0.2/d.png",
    ]
    tags = [f'<script src="{outside[0]}"></script>']
    tags += [f'<img src="{url}">' for url in outside[1:] + ["pixel.png"]]
    (tmp_path / "index.html").write_text("<html><body>" + "".join(tags) + "</body></html>")
    (tmp_path / "pixel.png").write_bytes(PIXEL)
    server, host = _serve(tmp_path)
    failed, answered = {}, []
    try:
        with offline_chromium(sync_api, chromium) as browser:
            page = browser.new_page()
            page.on("requestfailed", lambda req: failed.setdefault(req.url, req.failure))
            page.on("response", lambda resp: answered.append((resp.url, resp.status)))
            page.goto(f"http://{host}/index.html", wait_until="load", timeout=30_000)
            loaded = page.evaluate("() => document.images[3].naturalWidth")
    finally:
        server.shutdown()
        server.server_close()
    assert failed == dict.fromkeys(outside, PROXY_FAILED)
    assert sorted(answered) == [
        (f"http://{host}/index.html", 200),
        (f"http://{host}/pixel.png", 200),
    ]
    assert loaded == 1


def test_every_page_was_opened_and_photographed(crawl, request):
    pages, redirects = _pages(request.getfixturevalue("site")[0])
    assert sorted(crawl) == sorted(pages + redirects)
    photographed = [rel for rel in pages if not SOURCE_PAGES.match(rel)]
    assert any(CHAPTER_PAGES.match(rel) for rel in photographed), photographed
    for rel in photographed:
        shot = SHOTS / crawl[rel]["screenshot"]
        assert shot.exists() and shot.stat().st_size > 1000, f"no screenshot of {rel}"


def test_no_page_loads_anything_from_another_host(crawl):
    assert not _problems(crawl, "blocked"), _problems(crawl, "blocked")


def test_no_javascript_errors_or_failed_requests(crawl):
    assert not _problems(crawl, "console", "failed"), _problems(crawl, "console", "failed")


def test_formulas_are_typeset(crawl):
    keys = ("unrendered_math", "tex_errors", "raw_tex")
    assert not _problems(crawl, *keys), _problems(crawl, *keys)


def test_mermaid_bertviz_and_widgets_render(crawl):
    keys = ("mermaid_missing", "mermaid_errors", "bertviz_empty", "widgets_unrendered")
    assert not _problems(crawl, *keys), _problems(crawl, *keys)


def test_every_image_loads(crawl):
    assert not _problems(crawl, "images_broken"), _problems(crawl, "images_broken")


def test_local_links_and_anchors_resolve(crawl):
    assert not _problems(crawl, "broken_links"), _problems(crawl, "broken_links")


def test_code_fits_its_column_at_a_laptop_width(crawl):
    assert not _problems(crawl, "wide_code"), _problems(crawl, "wide_code")


def test_diagram_text_is_legible(crawl):
    small = [
        f"{rel}: diagram {i + 1}: smallest label {px} px as drawn (at least {LEGIBLE_PX})"
        for rel, r in crawl.items()
        for i, px in enumerate(r.get("mermaid_text_px", []))
        if px is None or px < LEGIBLE_PX
    ]
    assert not small, "\n".join(small)


def test_no_setup_cell_or_test_marker_is_shown(crawl):
    assert not _problems(crawl, "machinery"), _problems(crawl, "machinery")


def test_no_heading_is_numbered_twice(crawl):
    assert not _problems(crawl, "double_numbers"), _problems(crawl, "double_numbers")


def test_each_chapter_was_photographed_at_a_phone_width(crawl):
    chapters = [rel for rel in crawl if CHAPTER_PAGES.match(rel)]
    assert len(chapters) >= 7, chapters
    for rel in chapters:
        phone = SHOTS / crawl[rel]["screenshot"].replace(".jpg", "__phone.jpg")
        assert phone.exists() and phone.stat().st_size > 1000, f"no phone screenshot of {rel}"


def test_no_chapter_scrolls_sideways_at_a_phone_width(crawl):
    assert not _problems(crawl, "phone_overflow"), _problems(crawl, "phone_overflow")

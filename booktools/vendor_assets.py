"""Serve every script, style and font the book's pages load from the site itself.

The browser libraries are npm packages pinned in package.json and package-lock.json; nothing
third-party is committed. This module has the files and the checks; two things use them:

- the command line, run by `make vendor` and by the test suite before it builds the book:
  `python -m booktools.vendor_assets` runs `npm ci` when node_modules is missing or holds a
  version other than the pinned one, then checks that every file the site needs is there;
- the Sphinx extension `booktools.sphinxext.vendor_assets` (in `_config.yml`), which
  * copies those files from node_modules into `_static/npm/` of the built site (a folder
    of its own: Jupyter Book injects every .js and .css of a source `_static/` into every
    page, which with MathJax's ~80 component files is far too much);
  * points the URLs that stored notebook outputs load from cdnjs (bertviz's require.js, d3
    5.7.0 and jQuery 2.0.0) at those copies, page by page;
  * drops Thebe: the book has no live-code button, and sphinx-thebe declares
    `const THEBE_JS_URL` twice per page, which is a JavaScript error in every page;
  * warns (an error under `-W`) when a built page still loads anything from another host.

`mathjax_path`, `mermaid_use_local` and `nb_ipywidgets_js` in _config.yml name the copies
(paths relative to `_static/`), so the extensions that add those scripts use them directly.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

from booktools.book import ROOT

NODE_MODULES = ROOT / "node_modules"
VENDOR = "npm"  # the copies live in <site>/_static/npm/ (the theme has its own .../vendor/)

# folder under _static/npm/ -> (npm package, folder inside it, files to copy: globs)
ASSETS = {
    "mathjax": ("mathjax", "es5", ["**/*"]),  # loads its components and fonts lazily
    "mermaid": ("mermaid", "dist", ["mermaid.esm.min.mjs", "chunks/mermaid.esm.min/*.mjs"]),
    "requirejs": ("requirejs", "", ["require.js"]),
    "d3": ("d3", "dist", ["d3.min.js"]),
    "jquery": ("jquery", "dist", ["jquery.min.js"]),
    # the ipywidgets 8 manager that renders the stored progress bars (tqdm) of the chapters
    "html-manager": (
        "@jupyter-widgets/html-manager",
        "dist",
        ["*.js", "*.woff", "*.woff2", "*.ttf", "*.eot", "*.svg"],
    ),
}

# URLs in stored notebook outputs -> the copy under _static/npm/ that replaces them.
# bertviz 1.4.1 asks requirejs for d3 5.7.0 and jQuery 2.0.0 (module paths carry no ".js").
# jQuery 2.0.0 was never published on npm; 2.2.4 is the last release of the same 2.x API.
CDN_REPLACEMENTS = {
    "https://cdnjs.cloudflare.com/ajax/libs/require.js/2.3.6/require.min.js": (
        "requirejs/require.js"
    ),
    "https://cdnjs.cloudflare.com/ajax/libs/d3/5.7.0/d3.min": "d3/d3.min",
    "https://cdnjs.cloudflare.com/ajax/libs/jquery/2.0.0/jquery.min": "jquery/jquery.min",
}

# Loaded between require.js and the widget manager (nb_ipywidgets_js in _config.yml). The
# manager's AMD modules find their fonts next to their own URL, which require.js derives
# from the module name and the page's folder ("chapters/@jupyter-widgets/..."): map the
# names to the folder that holds the files, found from this script's own URL.
WIDGETS_REQUIRE_CONFIG = """\
// Written by booktools/vendor_assets.py: where the widget manager's modules (and fonts) are.
(function () {
  var here = document.currentScript.src.replace(/[^/]*$/, "");
  requirejs.config({paths: {
    "@jupyter-widgets/html-manager/dist": here + "html-manager",
    "@jupyter-widgets": here + "html-manager"
  }});
})();
"""

# What a page must not load from elsewhere: an element that fetches a resource by absolute
# URL, or any mention of a public CDN (inline `import ... from "https://cdn..."`, requirejs
# paths). Plain links (<a href>) to other sites are fine: they load nothing by themselves.
_EXTERNAL_LOAD = re.compile(
    r"<(?:script|img|iframe|source|audio|video|embed|input)\b[^>]*?\bsrc=[\"']((?:https?:)?//[^\"']+)"
    r"|<link\b(?=[^>]*\brel=[\"'][^\"']*(?:stylesheet|preload|icon|modulepreload))"
    r"[^>]*?\bhref=[\"']((?:https?:)?//[^\"']+)"
    r"|((?:https?:)?//(?:cdn\.jsdelivr\.net|unpkg\.com|cdnjs\.cloudflare\.com"
    r"|fonts\.googleapis\.com|fonts\.gstatic\.com|code\.jquery\.com)/[^\"'\s)<>]*)",
    re.IGNORECASE,
)


# --------------------------------------------------------------------------- npm packages


def pinned_versions() -> dict[str, str]:
    """The exact versions package.json asks for, e.g. {"mathjax": "3.2.2", ...}."""
    return json.loads((ROOT / "package.json").read_text())["dependencies"]


def problems() -> list[str]:
    """What is missing or stale in node_modules, as sentences; empty when all is in place."""
    found = []
    for name, version in pinned_versions().items():
        meta = NODE_MODULES / name / "package.json"
        if not meta.exists():
            found.append(f"{name} is not installed")
        elif (have := json.loads(meta.read_text())["version"]) != version:
            found.append(f"{name} is {have}, package.json pins {version}")
    for folder, (package, sub, globs) in ASSETS.items():
        base = NODE_MODULES / package / sub
        for pattern in globs:
            if not any(base.glob(pattern)):
                found.append(f"no {package}/{sub}/{pattern} for _static/{VENDOR}/{folder}")
    return found


def ensure_installed(quiet: bool = False) -> None:
    """Run `npm ci` (exact versions from package-lock.json) unless node_modules is current."""
    if not problems():
        return
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError(
            "npm is needed to install the site's pinned browser libraries (package.json): "
            "install Node.js (Debian: apt-get install -y nodejs npm), then run `make vendor`"
        )
    # --ignore-scripts: only files are needed, no package's install script has to run.
    cmd = [npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund"]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=quiet, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"`{' '.join(cmd)}` failed:\n{out.stdout}\n{out.stderr}")
    if left := problems():
        raise RuntimeError("after npm ci: " + "; ".join(left))


# --------------------------------------------------------------------------- the copies


def _stamp() -> str:
    """Changes whenever package-lock.json or this file changes: then the copies are redone."""
    digest = hashlib.sha256((ROOT / "package-lock.json").read_bytes())
    digest.update(Path(__file__).read_bytes())
    return digest.hexdigest()


def copy_assets(static_dir: Path) -> Path:
    """Copy the ASSETS files into static_dir/npm (skipped when already up to date)."""
    dest = static_dir / VENDOR
    stamp = dest / ".stamp"
    if stamp.exists() and stamp.read_text() == _stamp():
        return dest
    shutil.rmtree(dest, ignore_errors=True)
    for folder, (package, sub, globs) in ASSETS.items():
        base = NODE_MODULES / package / sub
        for pattern in globs:
            for src in base.glob(pattern):
                if src.is_file() and src.suffix != ".map":  # source maps: 40 MB nobody loads
                    target = dest / folder / src.relative_to(base)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(src, target)
    (dest / "widgets-require-config.js").write_text(WIDGETS_REQUIRE_CONFIG)
    stamp.write_text(_stamp())
    return dest


def find_external_loads(html: str) -> list[str]:
    """URLs on another host that a page would load.

    >>> find_external_loads('<script src="https://cdn.jsdelivr.net/npm/x.js"></script>'
    ...     '<a href="https://colab.research.google.com/x">Colab</a>')
    ['https://cdn.jsdelivr.net/npm/x.js']
    """
    return sorted({next(g for g in m.groups() if g) for m in _EXTERNAL_LOAD.finditer(html)})


def main() -> int:
    try:
        ensure_installed()
    except RuntimeError as err:
        print(f"vendor_assets: {err}", file=sys.stderr)
        return 1
    pins = ", ".join(f"{name} {version}" for name, version in pinned_versions().items())
    print(f"vendor_assets: node_modules holds {pins}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

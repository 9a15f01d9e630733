"""Sphinx extension: every script, style and font a page loads comes from the site itself.

The files and checks are `booktools.vendor_assets`'s (the npm packages pinned in package.json,
installed by `make vendor`). At build time this extension:

- stops the build when node_modules lacks a pinned package (`make vendor` installs them);
- drops Thebe: the book has no live-code button, and sphinx-thebe declares
  `const THEBE_JS_URL` twice per page, which is a JavaScript error in every page;
- points the URLs that stored notebook outputs load from cdnjs at the local copies;
- at the end copies the files into `_static/npm/` and warns (an error under `-W`) when a
  built page still loads anything from another host.
"""

from __future__ import annotations

from pathlib import Path

from booktools.vendor_assets import (
    CDN_REPLACEMENTS,
    VENDOR,
    copy_assets,
    find_external_loads,
    problems,
)


def _check_installed(app) -> None:
    if app.builder.format == "html" and (left := problems()):
        from sphinx.errors import ExtensionError

        raise ExtensionError(
            "the site's browser libraries are missing or stale in node_modules ("
            + "; ".join(left)
            + "): run `make vendor` (or `python -m booktools.vendor_assets`), which needs npm"
        )


def _drop_thebe(app) -> None:
    """Unhook sphinx-thebe: no Thebe scripts, config blocks or stylesheet on any page."""
    app.setup_extension("sphinx_thebe")  # so that it is loaded before it is unhooked
    for listeners in app.events.listeners.values():
        for listener in list(listeners):
            if getattr(listener.handler, "__module__", "").startswith("sphinx_thebe"):
                app.disconnect(listener.id)
    app.registry.css_files = [
        (name, attrs) for name, attrs in app.registry.css_files if "thebe" not in name
    ]


def _theme_default_mode(app, config) -> None:
    """Without a default colour mode the theme logs `Got invalid theme mode: . Resetting to
    auto.` as a console error on a reader's first visit; "auto" is what it falls back to."""
    if not config.html_context.get("default_mode"):
        config.html_context = {**config.html_context, "default_mode": "auto"}


def _rewrite_cdn_urls(app, pagename, templatename, context, doctree) -> None:
    """Point the CDN URLs in a page's body (notebook outputs) at the local copies."""
    body = context.get("body")
    if not body or "//cdnjs.cloudflare.com/" not in body:
        return
    for url, local in CDN_REPLACEMENTS.items():
        if url in body:
            body = body.replace(url, context["pathto"](f"_static/{VENDOR}/{local}", resource=True))
    context["body"] = body


def _finish(app, exception) -> None:
    if exception is not None or app.builder.format != "html":
        return
    from sphinx.util import logging

    copy_assets(Path(app.outdir) / "_static")
    logger = logging.getLogger(__name__)
    for page in sorted(Path(app.outdir).rglob("*.html")):
        if page.relative_to(app.outdir).parts[0] in {"_static", "_sources"}:
            continue
        for url in find_external_loads(page.read_text(encoding="utf-8")):
            logger.warning(
                f"{page.relative_to(app.outdir)} loads {url} from another host: add the "
                "library to package.json and serve it from _static/npm "
                "(booktools/vendor_assets.py)",
                type="vendor_assets",
                subtype="external",
            )


def setup(app):
    _drop_thebe(app)
    app.connect("config-inited", _theme_default_mode)
    app.connect("builder-inited", _check_installed)
    # late (priority 900): after myst-nb and the theme have filled in the page's body
    app.connect("html-page-context", _rewrite_cdn_urls, priority=900)
    app.connect("build-finished", _finish)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}

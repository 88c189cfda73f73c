"""Sphinx extension: what the built book loads in the browser comes from the book itself and runs without errors.

MathJax is served from the built site, so equations typeset with no network. It comes from the npm registry at set-up
time (``package.json`` pins it, ``npm ci`` in ``scripts/build.sh`` installs it into ``node_modules/``); it is neither
committed nor fetched when a page is viewed. In ``_config.yml``::

    sphinx:
      extra_extensions: [lpft.book.sphinx_assets]
      config:
        mathjax_path: mathjax/es5/tex-mml-chtml.js   # relative: served from _static/
        lpft_mathjax_dir: node_modules/mathjax      # copied to _static/mathjax/ (the first folder of mathjax_path)

A ``mathjax_path`` that is a URL, or a MathJax that is not installed, stops the build with the fix.

Each script is also written once per page: Sphinx 7.4 lists an inline script added by an extension after the builder
started (sphinx-thebe's ``const THEBE_JS_URL = ...``) twice, and the second copy is a JavaScript error on every page.
"""
from __future__ import annotations

import shutil
from pathlib import Path, PurePosixPath

from sphinx.errors import ConfigError


def _layout(app) -> tuple[Path, str, PurePosixPath]:
    """(installed MathJax folder, its folder name under _static, the script's path inside it)."""
    url = PurePosixPath(app.config.mathjax_path)
    if "://" in app.config.mathjax_path or url.is_absolute() or len(url.parts) < 2:
        raise ConfigError(f"mathjax_path must be a path under _static such as 'mathjax/es5/tex-mml-chtml.js' "
                          f"(the book serves MathJax itself); got {app.config.mathjax_path!r}")
    return Path(app.srcdir, app.config.lpft_mathjax_dir), url.parts[0], PurePosixPath(*url.parts[1:])


def check_installed(app) -> None:
    source, _, script = _layout(app)
    if not (source / script).is_file():
        raise ConfigError(f"MathJax is not installed: {source / script} is missing. Run `npm ci` in the repository "
                          f"root (scripts/build.sh does); package.json pins the version")


def copy_mathjax(app, exception) -> None:
    if exception is not None or app.builder.format != "html":
        return
    source, folder, _ = _layout(app)
    shutil.copytree(source, Path(app.outdir, "_static", folder), dirs_exist_ok=True)


def unique_scripts(scripts: list) -> list:
    """``scripts`` (Sphinx's ``_JavaScript`` entries) without repeats: the same file, or the same inline body, with
    the same attributes (an inline script is listed with filename None or '')."""
    seen, out = set(), []
    for js in scripts:
        key = (getattr(js, "filename", js) or "", tuple(sorted(getattr(js, "attributes", {}).items())))
        if key not in seen:
            seen.add(key)
            out.append(js)
    return out


def dedupe_scripts(app, pagename, templatename, context, doctree) -> None:
    if "script_files" in context:
        context["script_files"][:] = unique_scripts(context["script_files"])


def setup(app):
    app.add_config_value("lpft_mathjax_dir", "node_modules/mathjax", "html")
    app.connect("builder-inited", check_installed)
    app.connect("build-finished", copy_mathjax)
    app.connect("html-page-context", dedupe_scripts, priority=900)  # after every handler that adds scripts
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}

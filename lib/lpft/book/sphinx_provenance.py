"""Sphinx extension: every executed chapter's page says how it was computed (the book's provenance box).

``lpft-run`` stamps each notebook it executes (``metadata.lpft``, :func:`lpft.book.run.run_chapter`): profile, seed,
requested and resolved device, the date it finished, its wall time, the git revision and the library versions. At build
time this extension reads the stamp of every chapter page (``<lpft_executed_dir>/<chapter>``, any chapter of
:data:`lpft.book.profiles.CHAPTERS`) and puts a box under the page title with these values, the command that re-runs the
chapter, and download links to the executed notebook (.ipynb) and its jupytext source (.py, also added to the theme's
download menu). Nothing in the box is typed: re-running a chapter rewrites its notebook, and Sphinx re-reads the page.
A chapter notebook without a valid stamp (not executed by ``lpft-run``, or re-run by hand since, so that papermill's
record of its parameters differs) is a build warning, an error under ``-W``.

Enable with ``sphinx: extra_extensions: [lpft.book.sphinx_provenance]`` in ``_config.yml``.
"""
from __future__ import annotations

import json
from pathlib import Path

from docutils import nodes
from sphinx import addnodes
from sphinx.util import logging

from lpft.book.run import describe_environment, rerun_command
from lpft.book.profiles import CHAPTERS

logger = logging.getLogger(__name__)

REQUIRED = ("chapter", "profile", "seed", "requested_device", "device", "seconds", "date", "git_revision",
            "environment")


def chapter_of(docname: str, executed_dir: str = "executed") -> str | None:
    """The chapter a page renders (``executed/theory-bound`` -> ``theory-bound``), or None for other pages."""
    folder, _, name = docname.rpartition("/")
    return name if folder == executed_dir.strip("/") and name in CHAPTERS else None


def read_metadata(notebook: Path) -> dict:
    """The metadata of a notebook file (empty for any other source)."""
    if Path(notebook).suffix != ".ipynb":
        return {}
    return json.loads(Path(notebook).read_text(encoding="utf-8")).get("metadata", {})


def read_stamp(notebook: Path) -> dict | None:
    """The ``metadata.lpft`` stamp of an executed notebook, or None when it has none."""
    return read_metadata(notebook).get("lpft")


def stamp_problems(chapter: str, metadata: dict) -> list[str]:
    """Why a notebook's ``metadata`` does not describe how ``chapter`` was executed (empty when it does): no stamp,
    a field missing, a stamp of another chapter, or parameters that differ from those papermill recorded."""
    stamp = metadata.get("lpft")
    if not stamp:
        return ["no metadata.lpft"]
    problems = [f"no {k}" for k in REQUIRED if k not in stamp]
    if stamp.get("chapter", chapter) != chapter:
        problems.append(f"the stamp is for {stamp['chapter']!r}")
    executed_with = metadata.get("papermill", {}).get("parameters", {})
    for key, parameter in (("profile", "profile"), ("seed", "seed"), ("requested_device", "device")):
        if key in stamp and executed_with.get(parameter) != stamp[key]:
            problems.append(f"the stamp says {key} {stamp[key]!r}, papermill ran it with "
                            f"{executed_with.get(parameter)!r}")
    return problems


def summary(stamp: dict) -> str:
    """The box's one-line title."""
    return (f"Computed in the {stamp['profile']} profile on {stamp['device']}, {stamp['date']} "
            f"({stamp['seconds']:.1f} s), git {stamp['git_revision']}")


def run_snippet(chapter: str, stamp: dict, sources_dir: str = "notebooks") -> str:
    """Shell commands that re-run ``chapter`` with the recorded parameters: lpft-run, and papermill by hand."""
    params = f"-p profile {stamp['profile']} -p seed {stamp['seed']} -p device {stamp['requested_device']}"
    return (f"{rerun_command(chapter, stamp)}   # into executed/, then rebuild the book\n"
            f"# or by hand, with papermill:\n"
            f"jupytext --to ipynb -o - {sources_dir}/{chapter}.py \\\n"
            f"  | papermill - {chapter}.ipynb {params} --cwd {sources_dir}")


def _field(name: str, *inline: nodes.Node, block: nodes.Element | None = None) -> nodes.field:
    body = block if block is not None else nodes.paragraph("", "", *inline)
    return nodes.field("", nodes.field_name("", name), nodes.field_body("", body))


def _download(target: str, text: str) -> addnodes.download_reference:
    return addnodes.download_reference("", "", nodes.literal("", text), reftarget=target, refexplicit=True)


def provenance_box(chapter: str, stamp: dict, notebook: str, source: str, sources_dir: str = "notebooks"
                   ) -> nodes.admonition:
    """The box for one chapter page; ``notebook`` and ``source`` are the download targets (paths from the book root,
    starting with ``/``)."""
    snippet = run_snippet(chapter, stamp, sources_dir)
    device = stamp["device"] + (f" ({stamp['environment']['gpu']})" if stamp["environment"].get("gpu") else "")
    fields = nodes.field_list(
        "",
        _field("Profile", nodes.Text(f"{stamp['profile']}, seed {stamp['seed']}")),
        _field("Device", nodes.Text(f"{device} (requested: {stamp['requested_device']})")),
        _field("Executed", nodes.Text(f"{stamp['date']}, wall time {stamp['seconds']:.1f} s")),
        _field("Git revision", nodes.literal("", stamp["git_revision"])),
        _field("Environment", nodes.Text(describe_environment(stamp["environment"]).replace("`", ""))),
        _field("Run this chapter", block=nodes.literal_block(snippet, snippet, language="bash")),
        _field("Download", _download(notebook, Path(notebook).name), nodes.Text(" (executed notebook) · "),
               _download(source, Path(source).name), nodes.Text(" (jupytext source)")),
    )
    return nodes.admonition("", nodes.title("", summary(stamp)), fields, classes=["provenance", "dropdown"])


def on_doctree_read(app, doctree: nodes.document) -> None:
    env = app.env
    chapter = chapter_of(env.docname, app.config.lpft_executed_dir)
    if chapter is None:
        return
    path = Path(env.doc2path(env.docname))
    metadata = read_metadata(path)
    problems = stamp_problems(chapter, metadata)
    if problems:
        logger.warning(f"{path.name} has no valid provenance stamp ({'; '.join(problems)}): it was not executed by "
                       f"lpft-run with this version of the book; run `lpft-run {chapter}`",
                       location=env.docname, type="lpft", subtype="provenance")
        return
    stamp = metadata["lpft"]
    section = doctree.next_node(nodes.section)
    if section is None:
        logger.warning("chapter page has no title to put its provenance box under", location=env.docname,
                       type="lpft", subtype="provenance")
        return
    sources = app.config.lpft_sources_dir.strip("/")
    box = provenance_box(chapter, stamp, "/" + Path(path).relative_to(app.srcdir).as_posix(),
                         f"/{sources}/{chapter}.py", sources)
    for ref in box.findall(addnodes.download_reference):
        ref["refdoc"] = env.docname
    at = 1 if len(section) and isinstance(section[0], nodes.title) else 0
    section.insert(at, box)


def on_page_context(app, pagename, templatename, context, doctree) -> None:
    """Add the chapter's .py source to sphinx-book-theme's download menu (next to its .ipynb)."""
    chapter = chapter_of(pagename, app.config.lpft_executed_dir)
    entry = app.env.dlfiles.get(f"{app.config.lpft_sources_dir.strip('/')}/{chapter}.py") if chapter else None
    groups = [b for b in context.get("header_buttons", []) if b.get("label") == "download-buttons"]
    if entry is None or not groups:
        return
    groups[0]["buttons"].insert(1, {
        "type": "link", "url": context["pathto"](f"{app.builder.dlpath}/{entry[1]}", 1), "text": ".py",
        "icon": "fas fa-file-code", "tooltip": "Download the chapter's source (jupytext)",
        "label": "download-jupytext-source-button"})


def setup(app):
    app.add_config_value("lpft_executed_dir", "executed", "env")
    app.add_config_value("lpft_sources_dir", "notebooks", "env")
    # before Sphinx's download collector (priority 500), which then copies the linked files into _downloads/
    app.connect("doctree-read", on_doctree_read, priority=400)
    # after sphinx-book-theme builds its header buttons (priority 501)
    app.connect("html-page-context", on_page_context, priority=600)
    return {"version": "1", "env_version": 1, "parallel_read_safe": True, "parallel_write_safe": True}

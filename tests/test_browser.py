"""The built book in a real browser with no network: headless Chromium loads every page from a local HTTP server.

Checked on every page of the TOC (_build/html, written by scripts/build.sh): the title, every equation typeset by the
MathJax the book serves itself (no raw TeX left, no MathJax errors), every image loaded, no JavaScript errors, every
local link, script, style sheet and image answers 200 (and its #fragment exists), and no request left 127.0.0.1.
Chapter pages must also show the provenance box of the notebook they render. Screenshots of the chapter pages are
saved under _build/test-artifacts/.

The browser is the system's Chromium (LPFT_CHROMIUM, else `chromium` on the PATH), driven by Playwright
(`executable_path`: Playwright downloads no browser). Every request a page makes passes through Playwright's
interception: requests to the local server go on, any other is recorded and refused, and the test fails on it.
Skipped only when the book has not been built; a missing Chromium is a failure (CI installs it in .ci/run).
"""
from __future__ import annotations

import functools
import http.server
import json
import os
import re
import shutil
import threading
import urllib.parse
from pathlib import Path

import pytest
import yaml
from playwright.sync_api import sync_playwright

from lpft.book import sphinx_provenance

ROOT = Path(__file__).resolve().parents[1]
HTML = ROOT / "_build" / "html"
ARTIFACTS = ROOT / "_build" / "test-artifacts"
TIMEOUT_MS = 60_000
# Playwright's launch switches already turn the browser's background networking off; in case the browser still makes
# a request of its own (one Playwright's interception does not see), no name resolves but 127.0.0.1 and everything
# else goes to a proxy that does not exist.
OFFLINE = ["--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1", "--proxy-server=http://127.0.0.1:9"]

# What the page reports once MathJax has finished and every image has loaded or failed.
INSPECT = r"""async () => {
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) await MathJax.startup.promise;
  await Promise.all([...document.images].map(img => img.complete ? null
      : new Promise(done => { img.addEventListener('load', done); img.addEventListener('error', done); })));
  const text = root => {  // text outside code and typeset math
    const copy = root.cloneNode(true);
    copy.querySelectorAll('pre, code, script, style, mjx-container, .highlight').forEach(e => e.remove());
    return copy.textContent;
  };
  const h1 = document.querySelector('article h1, main h1, h1');
  let heading = '';
  if (h1) { const c = h1.cloneNode(true); c.querySelectorAll('.section-number, .headerlink').forEach(e => e.remove());
            heading = c.textContent.trim(); }
  const urls = [...document.querySelectorAll('a[href]')].map(a => a.href)
    .concat([...document.querySelectorAll('img[src], script[src]')].map(e => e.src))
    .concat([...document.querySelectorAll('link[href]')].map(e => e.href));
  const box = document.querySelector('.admonition.provenance .admonition-title');
  return {
    title: document.title, heading: heading,
    mathjax: !!(window.MathJax && MathJax.version), math: document.querySelectorAll('.math').length,
    untypeset: [...document.querySelectorAll('.math')].filter(e => !e.querySelector('mjx-container'))
                 .map(e => e.textContent.slice(0, 80)),
    mjx: document.querySelectorAll('mjx-container').length,
    merrors: [...document.querySelectorAll('mjx-merror')].map(e => e.textContent.slice(0, 80)),
    text: text(document.body),
    images: document.images.length,
    broken: [...document.images].filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src),
    urls: urls, provenance: box ? box.textContent.trim() : null,
  };
}"""


def toc_pages() -> list[str]:
    """Every page of the book, as paths under _build/html, in TOC order (the root page first)."""
    def files(node):
        if isinstance(node, dict):
            for key, value in node.items():
                yield from ([value] if key in ("file", "root") else files(value))
        elif isinstance(node, list):
            for item in node:
                yield from files(item)

    return [f"{f}.html" for f in files(yaml.safe_load((ROOT / "_toc.yml").read_text()))]


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


class Site:
    """One browser tab on the book served at ``base``; what went wrong since the last :meth:`open` is in ``errors``
    (JavaScript exceptions, console errors, resources that failed to load) and ``elsewhere`` (requests for other
    hosts, refused)."""

    def __init__(self, page, base: str):
        self.page, self.base = page, base
        self.errors: list[str] = []
        self.elsewhere: list[str] = []
        page.on("pageerror", lambda exc: self.errors.append(exc.stack or f"{exc.name}: {exc.message}"))
        page.on("console", self._console)  # console.error() and the browser's own errors (failed loads)
        # Only requests for other hosts are intercepted: Playwright's driver matches the pattern, so requests to the
        # local server do not wait on Python. (Interception turns the browser's HTTP cache off.)
        page.context.route(re.compile(f"^(?!{re.escape(base)})"), self._refuse)
        # (status, HTML) of a local URL, fetched by Playwright's HTTP client rather than the browser; once per URL
        self.fetch = functools.cache(self._fetch)

    def _console(self, msg) -> None:
        if msg.type in ("error", "assert"):
            self.errors.append(f"{msg.text} ({msg.location.get('url', '')})")

    def _refuse(self, route) -> None:
        self.elsewhere.append(route.request.url)
        route.abort("internetdisconnected")

    def _fetch(self, url: str) -> tuple[int, str]:
        response = self.page.context.request.get(url, fail_on_status_code=False)
        return response.status, response.text() if url.endswith(".html") else ""

    def open(self, url: str):
        """Navigate to ``url`` and wait for its load event; returns the response (Playwright raises if it fails)."""
        self.errors.clear()
        self.elsewhere.clear()
        return self.page.goto(url, wait_until="load")


@pytest.fixture(scope="module")
def site():
    """The built book served on 127.0.0.1, in a Chromium tab (:class:`Site`)."""
    if not (HTML / "index.html").exists():
        pytest.skip("the book is not built (no _build/html/index.html): run `bash scripts/build.sh` first")
    binary = os.environ.get("LPFT_CHROMIUM") or shutil.which("chromium")
    if binary is None:
        pytest.fail("Chromium is needed for the browser test and was not found: install it (Debian/Ubuntu: "
                    "`apt-get install -y chromium`; .ci/run does this) or set LPFT_CHROMIUM to its path")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=HTML))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=binary, args=OFFLINE)
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(TIMEOUT_MS)
            yield Site(page, f"http://127.0.0.1:{server.server_address[1]}/")
    finally:
        server.shutdown()
        server.server_close()


def test_the_browser_has_no_network(site):
    """The offline checks below mean something only if the browser cannot fetch from anywhere else: a page's request
    for another host is refused and recorded, and one let through fails all the same (the OFFLINE flags)."""
    cdn = "https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-mml-chtml.js"
    fetch = f"fetch({cdn!r}).then(() => 'fetched', () => 'failed')"
    site.open(urllib.parse.urljoin(site.base, "genindex.html"))
    assert site.page.evaluate(fetch) == "failed" and site.elsewhere == [cdn], "a request to another host went out"
    site.page.context.route(cdn, lambda route: route.continue_())  # the newest route is asked first
    try:
        with site.page.expect_event("requestfailed") as failed:
            assert site.page.evaluate(fetch) == "failed", "the test browser reached the network"
    finally:
        site.page.context.unroute(cdn)
    assert site.elsewhere == [cdn] and failed.value.failure.startswith("net::ERR_") and \
        failed.value.failure != "net::ERR_INTERNET_DISCONNECTED", failed.value.failure  # not refused by _refuse


def test_index_opens_the_book(site):
    """_build/html/index.html (what a reader opens) leads to the book's root page."""
    root = urllib.parse.urljoin(site.base, toc_pages()[0])
    site.open(urllib.parse.urljoin(site.base, "index.html"))
    site.page.wait_for_url(root, timeout=10_000)
    assert not site.errors, site.errors


@pytest.mark.parametrize("page", toc_pages())
def test_page_renders_offline(site, page):
    assert (HTML / page).exists(), f"{page} is in the TOC but was not built"
    response = site.open(urllib.parse.urljoin(site.base, page))
    assert response.status == 200, f"{page}: HTTP {response.status}"
    info = site.page.evaluate(INSPECT)

    book_title = yaml.safe_load((ROOT / "_config.yml").read_text())["title"]
    assert info["heading"] and info["heading"] in info["title"] and book_title in info["title"], \
        f"{page}: title {info['title']!r} should name the page ({info['heading']!r}) and the book"

    assert info["mathjax"] or not info["math"], f"{page}: MathJax did not load (it is served from _static/mathjax)"
    assert not info["untypeset"], f"{page}: equations left untypeset: {info['untypeset'][:5]}"
    assert info["mjx"] >= info["math"], f"{page}: {info['math']} equations but {info['mjx']} typeset"
    assert not info["merrors"], f"{page}: MathJax errors: {info['merrors'][:5]}"
    raw = re.findall(r"\$\$|\\\(|\\\[|\\begin\{|\$[^$\s][^$\n]{0,80}?\$", info["text"])
    assert not raw, f"{page}: raw TeX in the visible text: {raw[:5]}"

    assert not info["broken"], f"{page}: images that did not load: {info['broken']}"
    assert not site.elsewhere, f"{page}: requests for other hosts (refused): {site.elsewhere}"
    assert not site.errors, f"{page}: JavaScript errors: {site.errors}"

    bad = []
    for link in sorted(set(info["urls"])):
        if not link.startswith(site.base):
            continue
        target, _, fragment = link.partition("#")
        status, body = site.fetch(target)
        if status != 200:
            bad.append(f"{link} -> {status}")
        elif fragment and target.endswith(".html") and f'id="{urllib.parse.unquote(fragment)}"' not in body:
            bad.append(f"{link} -> no element with id {fragment!r}")
    assert not bad, f"{page}: broken local links: {bad}"

    chapter = sphinx_provenance.chapter_of(page.removesuffix(".html"))
    if chapter is not None:
        stamp = sphinx_provenance.read_stamp(ROOT / "executed" / f"{chapter}.ipynb")
        assert stamp, f"executed/{chapter}.ipynb has no provenance stamp"
        assert info["provenance"] == sphinx_provenance.summary(stamp), \
            f"{page}: provenance box {info['provenance']!r} does not match the notebook's stamp"
        for suffix in (".ipynb", ".py"):  # the downloads (their links answered 200 above)
            assert any(u.startswith(site.base) and u.endswith(f"/{chapter}{suffix}") for u in info["urls"]), \
                f"{page}: no download link for {chapter}{suffix}"
        notebook = json.loads((ROOT / "executed" / f"{chapter}.ipynb").read_text())
        if any("image/png" in o.get("data", {}) for c in notebook["cells"] for o in c.get("outputs", [])):
            assert info["images"] > 0, f"{page}: the notebook has figures but the page shows none"
        site.page.screenshot(path=ARTIFACTS / f"{chapter}.png")

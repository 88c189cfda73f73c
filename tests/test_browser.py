"""The built book in a real browser with no network: headless Chromium loads every page from a local HTTP server.

Checked on every page of the TOC (_build/html, written by scripts/build.sh): the title, every equation typeset by the
MathJax the book serves itself (no raw TeX left, no MathJax errors), every image loaded, no JavaScript errors, every
local link, script, style sheet and image answers 200 (and its #fragment exists), and no request left 127.0.0.1.
Chapter pages must also show the provenance box of the notebook they render. Chromium is driven over the DevTools
protocol on a pipe (--remote-debugging-pipe), so no debugging port is opened. Screenshots of the chapter pages are
saved under _build/test-artifacts/.

Skipped only when the book has not been built; a missing Chromium is a failure (CI installs it in .ci/run).
"""
from __future__ import annotations

import base64
import fcntl
import functools
import http.server
import json
import os
import re
import selectors
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import yaml

from lpft.book import sphinx_provenance

ROOT = Path(__file__).resolve().parents[1]
HTML = ROOT / "_build" / "html"
ARTIFACTS = ROOT / "_build" / "test-artifacts"
TIMEOUT = 60.0

# Everything that could reach the network is off; what is not loopback goes to a proxy that does not exist.
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--remote-debugging-pipe",
    "--no-first-run", "--no-default-browser-check", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--disable-default-apps", "--disable-extensions", "--disable-domain-reliability",
    "--disable-client-side-phishing-detection", "--safebrowsing-disable-auto-update", "--metrics-recording-only",
    "--disable-features=Translate,OptimizationHints,MediaRouter,AutofillServerCommunication,"
    "CertificateTransparencyComponentUpdater",
    "--proxy-server=http://127.0.0.1:9", "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
    "--window-size=1280,900", "--hide-scrollbars", "--mute-audio",
]

# What the page reports once MathJax has finished and every image has loaded or failed.
INSPECT = r"""(async () => {
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
})()"""


def chromium_binary() -> str | None:
    return os.environ.get("LPFT_CHROMIUM") or next(
        (p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)


def _above_9(fd: int) -> int:
    high = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return high


class Chromium:
    """Headless Chromium driven over the DevTools protocol on a pipe (NUL-separated JSON messages)."""

    def __init__(self, binary: str):
        self.profile = tempfile.mkdtemp(prefix="lpft-chromium-")
        to_chrome_r, self._out = os.pipe()
        self._in, from_chrome_w = os.pipe()
        # the DevTools pipe is fd 3 (commands in) and fd 4 (replies out) in the browser; bash moves the pipe's ends
        # there (from numbers above 9, so that the two moves cannot overwrite each other)
        to_chrome_r, from_chrome_w = (_above_9(fd) for fd in (to_chrome_r, from_chrome_w))
        shell = f'exec "$0" "$@" 3<&{to_chrome_r} 4>&{from_chrome_w} {to_chrome_r}<&- {from_chrome_w}>&-'
        self.proc = subprocess.Popen(["bash", "-c", shell, binary, *CHROMIUM_FLAGS, f"--user-data-dir={self.profile}",
                                      "about:blank"], pass_fds=(to_chrome_r, from_chrome_w),
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._in, selectors.EVENT_READ)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict] = []
        target = self.send("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.send(f"{domain}.enable", session=self.session)
        self.send("Page.setLifecycleEventsEnabled", session=self.session, enabled=True)

    def _read(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not self._selector.select(left):
                raise TimeoutError("Chromium did not answer in time")
            chunk = os.read(self._in, 1 << 16)
            if not chunk:
                raise RuntimeError(f"Chromium exited (code {self.proc.poll()})")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def send(self, method: str, session: str | None = None, timeout: float = TIMEOUT, **params) -> dict:
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        os.write(self._out, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]
            if "method" in reply:
                self.events.append(reply)

    def wait_for(self, method: str, timeout: float = TIMEOUT, **params) -> dict:
        """The first event ``method`` received whose parameters include ``params``."""
        deadline = time.monotonic() + timeout
        seen = 0
        while True:
            for e in self.events[seen:]:
                if e["method"] == method and params.items() <= e.get("params", {}).items():
                    return e
            seen = len(self.events)
            reply = self._read(deadline)
            if "method" in reply:
                self.events.append(reply)

    def open(self, url: str) -> dict:
        """Navigate to ``url`` and wait for the load event of that navigation; returns Page.navigate's result."""
        self.events.clear()
        result = self.send("Page.navigate", session=self.session, url=url)
        if not result.get("errorText"):
            self.wait_for("Page.lifecycleEvent", name="load", loaderId=result["loaderId"])
        return result

    def evaluate(self, expression: str):
        result = self.send("Runtime.evaluate", session=self.session, expression=expression, awaitPromise=True,
                           returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"page script failed: {result['exceptionDetails']}")
        return result["result"]["value"]

    def errors(self) -> list[str]:
        """JavaScript console errors, uncaught exceptions and browser-logged errors since the last :meth:`open`."""
        out = []
        for e in self.events:
            p = e.get("params", {})
            if e["method"] == "Runtime.exceptionThrown":
                details = p["exceptionDetails"]
                out.append(details.get("exception", {}).get("description") or details.get("text"))
            elif e["method"] == "Runtime.consoleAPICalled" and p["type"] in ("error", "assert"):
                out.append(" ".join(str(a.get("value", a.get("description"))) for a in p["args"]))
            elif e["method"] == "Log.entryAdded" and p["entry"]["level"] == "error" and \
                    not p["entry"].get("url", "").endswith("/favicon.ico"):  # the browser's own request
                out.append(f"{p['entry']['text']} ({p['entry'].get('url', '')})")
        return out

    def requested(self) -> list[str]:
        return [e["params"]["request"]["url"] for e in self.events if e["method"] == "Network.requestWillBeSent"]

    def screenshot(self, path: Path) -> None:
        data = self.send("Page.captureScreenshot", session=self.session, format="png")["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))

    def close(self) -> None:
        try:
            self.send("Browser.close", timeout=10)
        except (OSError, RuntimeError, TimeoutError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._selector.close()
        os.close(self._in)
        os.close(self._out)
        shutil.rmtree(self.profile, ignore_errors=True)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


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


@pytest.fixture(scope="module")
def site():
    """(browser, base URL, URL checker) for the built book served on 127.0.0.1."""
    if not (HTML / "index.html").exists():
        pytest.skip("the book is not built (no _build/html/index.html): run `bash scripts/build.sh` first")
    binary = chromium_binary()
    if binary is None:
        pytest.fail("Chromium is needed for the browser test and was not found: install it (Debian/Ubuntu: "
                    "`apt-get install -y chromium`; .ci/run does this) or set LPFT_CHROMIUM to its path")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=HTML))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}/"
    no_proxy = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    @functools.cache
    def fetch(url: str) -> tuple[int, str]:
        try:
            with no_proxy.open(url, timeout=10) as response:
                body = response.read()
                return response.status, body.decode("utf-8", "replace") if url.endswith(".html") else ""
        except urllib.error.HTTPError as err:
            return err.code, ""

    browser = Chromium(binary)
    try:
        yield browser, base, fetch
    finally:
        browser.close()
        server.shutdown()
        server.server_close()


def test_the_browser_has_no_network(site):
    """The offline checks below mean something only if the browser cannot fetch from anywhere else."""
    browser, _, _ = site
    result = browser.open("https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-mml-chtml.js")
    assert result.get("errorText"), "the test browser reached the network; the offline checks would prove nothing"


def test_index_opens_the_book(site):
    """_build/html/index.html (what a reader opens) leads to the book's root page."""
    browser, base, _ = site
    root = toc_pages()[0]
    browser.open(urllib.parse.urljoin(base, "index.html"))
    deadline, where = time.monotonic() + 10, None
    while time.monotonic() < deadline and where != urllib.parse.urljoin(base, root):
        try:
            where = browser.evaluate("document.readyState === 'complete' ? location.href : null")
        except RuntimeError:  # the page navigated away while we asked
            pass
        time.sleep(0.1)
    assert where == urllib.parse.urljoin(base, root), f"index.html should open {root}; the browser is at {where}"
    assert not browser.errors(), browser.errors()


@pytest.mark.parametrize("page", toc_pages())
def test_page_renders_offline(site, page):
    browser, base, fetch = site
    assert (HTML / page).exists(), f"{page} is in the TOC but was not built"
    url = urllib.parse.urljoin(base, page)
    result = browser.open(url)
    assert not result.get("errorText"), f"{page}: {result['errorText']}"
    info = browser.evaluate(INSPECT)

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
    assert not browser.errors(), f"{page}: JavaScript console errors: {browser.errors()}"
    elsewhere = [u for u in browser.requested() if not u.startswith((base, "data:", "blob:", "about:"))]
    assert not elsewhere, f"{page}: requests that left the local server: {elsewhere}"

    bad = []
    for link in sorted(set(info["urls"])):
        if not link.startswith(base):
            continue
        target, _, fragment = link.partition("#")
        status, body = fetch(target)
        if status != 200:
            bad.append(f"{link} -> {status}")
        elif fragment and target.endswith(".html") and \
                f'id="{urllib.parse.unquote(fragment)}"' not in body:
            bad.append(f"{link} -> no element with id {fragment!r}")
    assert not bad, f"{page}: broken local links: {bad}"

    chapter = sphinx_provenance.chapter_of(page.removesuffix(".html"))
    if chapter is not None:
        stamp = sphinx_provenance.read_stamp(ROOT / "executed" / f"{chapter}.ipynb")
        assert stamp, f"executed/{chapter}.ipynb has no provenance stamp"
        assert info["provenance"] == sphinx_provenance.summary(stamp), \
            f"{page}: provenance box {info['provenance']!r} does not match the notebook's stamp"
        for suffix in (".ipynb", ".py"):  # the downloads (their links answered 200 above)
            assert any(u.startswith(base) and u.endswith(f"/{chapter}{suffix}") for u in info["urls"]), \
                f"{page}: no download link for {chapter}{suffix}"
        notebook = json.loads((ROOT / "executed" / f"{chapter}.ipynb").read_text())
        if any("image/png" in o.get("data", {}) for c in notebook["cells"] for o in c.get("outputs", [])):
            assert info["images"] > 0, f"{page}: the notebook has figures but the page shows none"
        browser.screenshot(ARTIFACTS / f"{chapter}.png")

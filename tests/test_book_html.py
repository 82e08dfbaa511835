"""The built book opens in a real browser, offline, with its figures and its maths.

This test builds nothing. It reads the HTML left by ``jupyter-book build . -W --keep-going``
in ``_build/html`` and opens pages in headless Chromium with every remote host unresolvable,
so a page that needed a CDN would show it. Without a build the tests are skipped, unless
``SSL_LAB_REQUIRE_HTML=1`` (as in ``.ci/run``), where a missing build or browser is a failure.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

REPO = Path(__file__).resolve().parents[1]
HTML = Path(os.environ.get("SSL_LAB_HTML_DIR", REPO / "_build" / "html"))
REQUIRE = os.environ.get("SSL_LAB_REQUIRE_HTML") == "1"

INTRO = "book/intro.html"
SYNTHFACES = "book/foundations/synthfaces.html"
BOOK_TITLE = "ssl-lab"
MIN_FIGURES = 3  # the SynthFaces chapter shows at least this many rendered PNG figures

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# A URL (absolute or protocol-relative) whose host name is a CDN's. The host must look like a
# host (dotted, with a TLD), so icon names such as "fa-cloudflare" in the theme's CSS and
# random runs of base64 in embedded images do not match.
CDN_URL = re.compile(
    r"(?:https?:)?//(?:[a-z0-9-]+\.)*[a-z0-9-]*(?:cdn|jsdelivr|unpkg|cloudflare|googleapis)"
    r"[a-z0-9-]*(?:\.[a-z0-9-]+)*\.[a-z]{2,}\b[^\s\"'<>()]*",
    re.IGNORECASE,
)
# The vendored MathJax bundle (book/_static/mathjax, npm `mathjax` 3.2.2, unmodified) names
# three CDN URLs inside speech-rule-engine code. They are fetched only if a reader turns on
# speech output in MathJax's menu (not bundled here, so it fails offline); typesetting never
# uses them. These, and only these, are allowed, and only inside that file.
MATHJAX_BUNDLE = "_static/mathjax/es5/tex-chtml-full.js"
MATHJAX_ALLOWED_URLS = ("speech-rule-engine", "sre-mathmaps-ie", "wicked-good-xpath")

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    # Offline: any remote host fails to resolve, so nothing can come from a CDN.
    "--host-resolver-rules=MAP * ~NOTFOUND",
    # Let deferred scripts (MathJax typesetting) finish before the DOM is dumped.
    "--virtual-time-budget=15000",
]


def _missing(reason: str):
    if REQUIRE:
        pytest.fail(f"{reason} (SSL_LAB_REQUIRE_HTML=1)")
    pytest.skip(reason)


class _Page(HTMLParser):
    """Collects what the checks need from a DOM: tags with their attributes, title, h1 text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.title = ""
        self.h1 = ""
        self._in: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, {k: (v or "") for k, v in attrs}))
        if tag in ("title", "h1"):
            self._in.append(tag)

    def handle_endtag(self, tag):
        if self._in and self._in[-1] == tag:
            self._in.pop()

    def handle_data(self, data):
        if "title" in self._in:
            self.title += data
        if "h1" in self._in:
            self.h1 += data

    def attrs(self, tag: str, name: str) -> list[str]:
        return [a[name] for t, a in self.tags if t == tag and a.get(name)]


def _parse(text: str) -> _Page:
    page = _Page()
    page.feed(text)
    page.close()
    return page


def _local_file(page_path: Path, url: str) -> Path | None:
    """The file a relative or file:// URL of a page points at; None for remote/data URLs."""
    parts = urlsplit(url)
    if parts.scheme in ("http", "https") or url.startswith("//"):
        return None
    if parts.scheme == "data":
        return None
    if parts.scheme == "file":
        return Path(unquote(parts.path))
    return (page_path.parent / unquote(parts.path)).resolve()


@pytest.fixture(scope="module")
def html_dir() -> Path:
    if not (HTML / INTRO).is_file():
        _missing(
            f"no built book at {HTML} (run `jupyter-book build . -W --keep-going` first)"
        )
    return HTML


@pytest.fixture(scope="module")
def chromium() -> str:
    exe = os.environ.get("CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(exe).exists():
        _missing("headless Chromium not found (apt-get install chromium, or set CHROMIUM)")
    return exe


@pytest.fixture(scope="module")
def browser(chromium, tmp_path_factory):
    """browser(page, *flags) -> stdout of Chromium run on that page of the built book."""
    profile = tmp_path_factory.mktemp("chromium-profile")

    def run(page: Path, *flags: str) -> str:
        cmd = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *flags, page.as_uri()]
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL
        )
        assert proc.returncode == 0, f"chromium failed ({proc.returncode}):\n{proc.stderr[-3000:]}"
        return proc.stdout

    return run


@pytest.fixture(scope="module")
def dom(html_dir, browser):
    """The DOM of a page after its scripts ran, keyed by path relative to _build/html."""
    cache: dict[str, str] = {}

    def get(rel: str) -> str:
        if rel not in cache:
            path = html_dir / rel
            assert path.is_file(), f"{rel} was not built (is it in _toc.yml?)"
            text = browser(path, "--dump-dom")
            assert "<body" in text, f"Chromium returned no DOM for {rel}"
            cache[rel] = text
        return cache[rel]

    return get


def test_index_leads_to_the_introduction(html_dir):
    index = html_dir / "index.html"
    assert index.is_file(), "_build/html/index.html is missing"
    assert INTRO in index.read_text(encoding="utf-8"), "index.html does not lead to the intro"


def test_intro_page_renders_title_and_maths_offline(html_dir, dom):
    page = _parse(dom(INTRO))
    assert BOOK_TITLE in page.title, f"title is {page.title!r}"
    assert BOOK_TITLE in page.h1, f"h1 is {page.h1!r}"
    # MathJax ran (offline) and typeset the formulas of the introduction.
    assert "<mjx-container" in dom(INTRO), "MathJax did not typeset the intro page"


def test_synthfaces_page_has_title_and_figures(html_dir, dom):
    text = dom(SYNTHFACES)
    page = _parse(text)
    assert "SynthFaces" in page.h1, f"chapter h1 is {page.h1!r}"
    assert "SynthFaces" in page.title, f"chapter <title> is {page.title!r}"
    pngs = []
    for src in page.attrs("img", "src"):
        target = _local_file(html_dir / SYNTHFACES, src)
        assert target is not None, f"remote image in the SynthFaces page: {src}"
        assert target.is_file(), f"image {src} of the SynthFaces page does not exist"
        data = target.read_bytes()
        assert data, f"image {src} is empty"
        if target.suffix.lower() == ".png":
            assert data.startswith(PNG_MAGIC), f"{src} is not a PNG"
            pngs.append(target)
    assert len(set(pngs)) >= MIN_FIGURES, (
        f"the SynthFaces page shows {len(set(pngs))} PNG figure(s); expected >= {MIN_FIGURES}"
    )


def test_synthfaces_page_screenshot(html_dir, browser, tmp_path):
    shot = tmp_path / "synthfaces.png"
    browser(html_dir / SYNTHFACES, f"--screenshot={shot}", "--window-size=1280,2400")
    assert shot.is_file(), "Chromium wrote no screenshot"
    data = shot.read_bytes()
    assert data.startswith(PNG_MAGIC)
    # A blank page compresses to a few kB; a rendered chapter with figures is far larger.
    assert len(data) > 30_000, f"screenshot suspiciously small ({len(data)} bytes)"


@pytest.mark.parametrize("rel", [INTRO, SYNTHFACES])
def test_scripts_styles_and_mathjax_are_local(html_dir, dom, rel):
    page = _parse(dom(rel))
    urls = (
        page.attrs("script", "src")
        + page.attrs("link", "href")
        + page.attrs("img", "src")
        + page.attrs("iframe", "src")
    )
    cdn = [u for u in urls if CDN_URL.search(u)]
    assert not cdn, f"{rel} loads from a CDN: {cdn}"
    for src in page.attrs("script", "src"):
        target = _local_file(html_dir / rel, src)
        assert target is not None, f"{rel} loads a remote script: {src}"
        assert target.is_file() and target.stat().st_size > 0, f"script {src} missing"
    mathjax = [s for s in page.attrs("script", "src") if "mathjax" in s.lower()]
    if rel == INTRO:
        assert mathjax, "the intro page (which has maths) loads no MathJax script"
    for src in mathjax:
        target = _local_file(html_dir / rel, src)
        assert target == (html_dir / MATHJAX_BUNDLE).resolve(), f"unexpected MathJax {src}"


def test_mathjax_fonts_are_shipped(html_dir):
    fonts = html_dir / "_static" / "mathjax" / "es5" / "output" / "chtml" / "fonts" / "woff-v2"
    woff = list(fonts.glob("*.woff"))
    assert len(woff) >= 20 and all(f.stat().st_size > 0 for f in woff), (
        f"MathJax CHTML fonts missing under {fonts}"
    )


def test_no_cdn_url_anywhere_in_the_build(html_dir):
    offenders = []
    for path in sorted(html_dir.rglob("*")):
        if not path.is_file() or path.suffix not in (".html", ".js", ".css", ".json", ".txt"):
            continue
        rel = path.relative_to(html_dir).as_posix()
        for url in CDN_URL.findall(path.read_text(encoding="utf-8", errors="replace")):
            if rel == MATHJAX_BUNDLE and any(a in url for a in MATHJAX_ALLOWED_URLS):
                continue
            offenders.append(f"{rel}: {url}")
    assert not offenders, "CDN URLs in the built book:\n" + "\n".join(offenders[:20])


def _chapters() -> list[str]:
    """Every notebook chapter in _toc.yml, as its built page's path."""
    toc = (REPO / "_toc.yml").read_text(encoding="utf-8")
    files = re.findall(r"file:\s*(\S+)", toc)
    return [f"{f}.html" for f in files if (REPO / f"{f}.ipynb").is_file()]


# A tqdm transcript: "GAN:  25%|██▌  | 1/4 [00:00<00:01,  1.82it/s]"
PROGRESS_BAR = re.compile(r"\d+%\|[^|\n]*\|\s*\d+/\d+|\d+(?:\.\d+)?\s*(?:it|s)/(?:s|it)\]")


@pytest.mark.parametrize("rel", _chapters())
def test_every_chapter_page_shows_its_figures_and_no_progress_bar(html_dir, dom, rel):
    text = dom(rel)
    page = _parse(text)
    pngs = [src for src in page.attrs("img", "src") if src.lower().endswith(".png")]
    assert pngs, f"{rel} shows no figure"
    for src in pngs:
        target = _local_file(html_dir / rel, src)
        assert target is not None and target.is_file(), f"{rel}: image {src} missing"
        assert target.read_bytes().startswith(PNG_MAGIC), f"{rel}: {src} is not a PNG"
    bars = PROGRESS_BAR.findall(text)
    assert not bars, f"{rel} contains progress-bar text: {bars[:3]}"


def test_progress_bar_pattern_matches_tqdm_and_not_tables():
    assert PROGRESS_BAR.search("GAN:  25%|██▌       | 1/4 [00:00<00:01,  1.82it/s]")
    assert PROGRESS_BAR.search("stage 2 lead: 100%|██████████| 4/4 [00:02<00:00,  2.0s/it]")
    assert not PROGRESS_BAR.search("<td>52.51</td><td>0.48</td> 25% of pairs | 3 / 4")

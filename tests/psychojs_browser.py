"""Runs an online bundle in headless Chromium with PsychoJS, as a simulated participant: served as
Pavlovia would (its API answered by a mock) or as a local pilot (a plain HTTP server).

Used by tests/test_psychojs_browser.py. What it needs, and where it looks:

- Chromium: Debian's ``/usr/bin/chromium`` (never downloaded); driven by Playwright (PyPI).
- PsychoJS: ``../shared/psychojs/`` beside the clone (a build from source, 2024.2; its
  README says why it stands in for the version PsychoPy names), copied into the bundle's
  ``lib/`` under the name the compiled script imports.
- The libraries ``index.html`` loads from the jsDelivr CDN (jquery, jquery-ui, preloadjs): their
  npm packages in ``build/browser-deps/`` (``STIMGEN_BROWSER_DEPS`` overrides), fetched by
  ``make browser-deps`` (``python tests/psychojs_browser.py --fetch DIR``) with npm, each checked
  against its pinned sha512. The page's requests for them are answered from those packages.

The participant watches the experiment through one accessor appended to the served copy of the
compiled script (which components are running, and the current trial's conditions row); the
script itself is run as compiled. Everything else it does is what a person does: keys, clicks.
"""
from __future__ import annotations

import base64
import functools
import hashlib
import http.server
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
#: ``shared/psychojs`` beside the clone (the nearest one above it; ``STIMGEN_PSYCHOJS`` overrides)
PSYCHOJS_DIR = Path(os.environ.get("STIMGEN_PSYCHOJS") or next(
    (parent / "shared" / "psychojs" for parent in REPO.parents
     if (parent / "shared" / "psychojs").is_dir()), REPO.parent / "shared" / "psychojs"))
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync"]
#: npm packages of the libraries PsychoPy's index.html loads from jsDelivr, with the sha512 of
#: their tarballs (npm's ``dist.integrity``).
CDN_PACKAGES = {
    "jquery@3.6.0": "sha512-JVzAR/AjBvVt2BmYhxRCSYysDsPcssdmTFnzyLEts9qNwmjmu4JTAMYubEfwVOSwpQ1I1sKKFcxhZCI2buerfw==",
    "jquery-ui-dist@1.12.1": "sha512-UnQQWIvxaP7s13FLx37WufEwDYLSXKpp9JHrqEYTP6GqQNM+RMVEwsJMoc163QlzEaAV5YVfWlgQU5FPjKBtSw==",
    "preloadjs@1.0.1": "sha512-XwdxL9bfoq9abJU4lVBJDVgbxWvQOk/BbuwXKEEG5BaduY7S8N1VXX4My5PM/UwW6Xf4uWAvWzwWlzb20uECxQ==",
}
_CDN_URL = re.compile(r"https://cdn\.jsdelivr\.net/npm/(?P<package>[^@/]+)@(?P<version>[^/]+)/(?P<path>[^\"']+)")
#: Where the experiment lives on the mock Pavlovia: https://pavlovia.org/run/<user>/<project>/
PAVLOVIA = "https://pavlovia.org"
RUN_PATH = "/run/stimgen/test/"
_TYPES = {".js": "text/javascript", ".css": "text/css", ".html": "text/html", ".csv": "text/csv",
          ".png": "image/png", ".json": "application/json", ".mp4": "video/mp4",
          ".woff": "font/woff", ".txt": "text/plain"}


def browser_deps_dir() -> Path:
    return Path(os.environ.get("STIMGEN_BROWSER_DEPS", REPO / "build" / "browser-deps"))


def psychojs_library() -> Path | None:
    """The PsychoJS build (``psychojs-<version>.js``) in ../shared/psychojs, or None."""
    found = sorted(PSYCHOJS_DIR.glob("psychojs-*.js"))
    return found[0] if found else None


def missing(ours: bool = False) -> list[str]:
    """What the browser tests lack here, as sentences (empty: they can run); ``ours``: only what
    ``make test`` installs (Playwright, the CDN libraries), which CI must have."""
    problems = []
    if not CHROMIUM.is_file() and not ours:
        problems.append(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    if psychojs_library() is None and not ours:
        problems.append(f"no PsychoJS build in {PSYCHOJS_DIR} (see its README)")
    try:
        import playwright  # noqa: F401
    except ImportError:
        problems.append("Playwright is not installed (pip install -r requirements-test.txt)")
    absent = [spec for spec in CDN_PACKAGES if not _tarball(spec).is_file()]
    if absent:
        problems.append(f"the CDN libraries {', '.join(absent)} are not in {browser_deps_dir()} "
                        "(make browser-deps)")
    return problems


def _tarball(spec: str) -> Path:
    name, version = spec.rsplit("@", 1)
    return browser_deps_dir() / f"{name}-{version}.tgz"


def _integrity(data: bytes) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


def fetch_browser_deps(folder: Path) -> None:
    """``npm pack`` every CDN package into ``folder`` (those not there yet) and check each
    tarball against its pinned sha512."""
    folder.mkdir(parents=True, exist_ok=True)
    os.environ["STIMGEN_BROWSER_DEPS"] = str(folder)
    wanted = [spec for spec in CDN_PACKAGES if not _tarball(spec).is_file()]
    if wanted:
        if shutil.which("npm") is None:
            print("browser-deps: npm is not installed, so the browser tests of online bundles "
                  "will be skipped; install Node.js (with npm) and run make browser-deps",
                  file=sys.stderr)
            return
        subprocess.run(["npm", "pack", "--silent", *wanted], cwd=folder, check=True,
                       stdout=subprocess.DEVNULL)
    for spec, integrity in CDN_PACKAGES.items():
        data = _tarball(spec).read_bytes()
        if _integrity(data) != integrity:
            _tarball(spec).unlink()
            sys.exit(f"browser-deps: {_tarball(spec)} does not match its pinned sha512; removed")


def cdn_files(index_html: str) -> dict[str, bytes]:
    """The CDN URL -> file contents of every library ``index.html`` loads from jsDelivr."""
    files = {}
    for match in _CDN_URL.finditer(index_html):
        spec = f"{match['package']}@{match['version']}"
        if spec not in CDN_PACKAGES:
            raise AssertionError(f"index.html loads {spec}, which CDN_PACKAGES does not pin")
        with tarfile.open(_tarball(spec)) as tar:
            files[match[0]] = tar.extractfile(f"package/{match['path']}").read()
    return files


# -- the bundle as served ----------------------------------------------------------------------
_PROBE = """
window.__stimgen_probe = function () {
  // the routine whose code the scheduler runs (the innermost task of the nested schedulers),
  // and its running components
  const values = {%s};
  let scheduler = psychoJS._scheduler, task;
  while (scheduler && scheduler._currentTask) {
    task = scheduler._currentTask;
    if (task instanceof Function) break;
    scheduler = task;
  }
  const match = (task instanceof Function) ? /Routine '(\\w+)'/.exec(task.toString()) : null;
  const routine = match ? match[1] : null;
  const started = [];
  let components = [];
  try { components = values[routine + 'Components']() || []; } catch (error) {}
  for (const name in values) {
    let value;
    try { value = values[name](); } catch (error) { continue; }
    if (value && components.includes(value) && value.status === PsychoJS.Status.STARTED) {
      started.push(name);
    }
  }
  let trial = null;
  try {
    trial = (currentLoop && currentLoop.getCurrentTrial) ? currentLoop.getCurrentTrial() : null;
  } catch (error) {}
  return {routine: routine, started: started, trial: trial,
          frame: psychoJS.window ? psychoJS.window._frameCount : 0,
          status: String(psychoJS.status && psychoJS.status.toString())};
};
"""


def served_copy(bundle: Path, folder: Path) -> Path:
    """A copy of the experiment folder as the tests serve it: PsychoJS in ``lib/`` under the name
    the script imports, and the participant's accessor appended to the script."""
    shutil.copytree(bundle, folder)
    script = next(p for p in folder.glob("*.js") if not p.name.endswith("-legacy-browsers.js"))
    js = script.read_text(encoding="utf-8")
    imported = re.search(r"from '\./lib/(psychojs-[^']+)\.js'", js)[1]
    library = psychojs_library()
    (folder / "lib").mkdir(exist_ok=True)
    shutil.copy(library, folder / "lib" / f"{imported}.js")
    shutil.copy(library.with_suffix(".css"), folder / "lib" / f"{imported}.css")
    names = re.findall(r"^var (\w+);$", js, flags=re.MULTILINE)
    values = ", ".join(f"'{n}': () => {n}" for n in names)
    script.write_text(js + _PROBE % values, encoding="utf-8")
    return folder


# -- Pavlovia, mocked ----------------------------------------------------------------------------
@dataclass
class Shelf:
    """What the mock shelf answers the Counterbalance routine: ``group`` (any JSON value), or an
    HTTP ``status`` other than 200 (no counterbalance record, a server error)."""

    group: object = 0
    status: int = 200
    finished: bool = False


@dataclass
class PavloviaMock:
    """Answers the calls PsychoJS 2024.2 makes (src/core/ServerManager.js, src/data/Shelf.js):
    config.json, session open and close, shelf counterbalance select and confirm, results and
    log uploads; records every call."""

    folder: Path
    shelf: Shelf = field(default_factory=Shelf)
    calls: list[tuple[str, str, str]] = field(default_factory=list)
    results: list[dict] = field(default_factory=list)
    token: str = "session-token"
    project: int = 4242

    def answer(self, route, url) -> None:
        path, method = url.path, route.request.method
        if path.startswith(RUN_PATH):
            rel = path[len(RUN_PATH):] or "index.html"
            if rel == "config.json":
                return _json(route, {"experiment": {"name": "test", "fullpath": "stimgen/test"},
                                     "pavlovia": {"URL": PAVLOVIA},
                                     "gitlab": {"projectId": self.project}})
            return _file(route, self.folder / rel)
        if path == "/assets/default/default.png":     # PsychoPy's placeholder image
            return _file(route, next((self.folder / "stimuli").glob("*.png")))
        if not path.startswith("/api/v2/"):
            return route.fulfill(status=404, body="not found")
        api = path[len("/api/v2/"):]
        body = route.request.post_data or ""
        self.calls.append((method, api, body))
        sessions = f"experiments/{self.project}/sessions"
        if method == "POST" and api == sessions:
            return _json(route, {"token": self.token, "experiment": {
                "status2": "RUNNING", "saveFormat": "CSV", "saveIncompleteResults": True,
                "runMode": "CREDIT"}})
        if api == f"shelf/{self.token}/counterbalance/select" and method == "PUT":
            if self.shelf.status != 200:
                return _json(route, {"error": "no counterbalance record"}, self.shelf.status)
            return _json(route, {"group": self.shelf.group, "finished": self.shelf.finished,
                                 "participantToken": "participant-token"})
        if api == f"shelf/{self.token}/counterbalance/confirm" and method == "PUT":
            return _json(route, {"group": self.shelf.group, "finished": self.shelf.finished})
        if api == f"{sessions}/{self.token}/results" and method == "POST":
            self.results.append(_form(route.request))
            return _json(route, {})
        if api in (f"{sessions}/{self.token}/logs", f"{sessions}/{self.token}",
                   f"{sessions}/{self.token}/delete"):
            return _json(route, {})
        return _json(route, {"error": f"unknown API call {method} {api}"}, 404)


def _json(route, value, status: int = 200) -> None:
    route.fulfill(status=status, content_type="application/json", body=json.dumps(value))


def _file(route, path: Path) -> None:
    if not path.is_file():
        return route.fulfill(status=404, body="not found")
    route.fulfill(status=200, body=path.read_bytes(),
                  content_type=_TYPES.get(path.suffix, "application/octet-stream"))


def _form(request) -> dict[str, str]:
    """The fields of a multipart/form-data request body."""
    kind = request.headers.get("content-type", "")
    boundary = kind.split("boundary=", 1)[1].strip('"')
    fields = {}
    for part in request.post_data_buffer.split(b"--" + boundary.encode()):
        head, _, value = part.partition(b"\r\n\r\n")
        name = re.search(rb'name="([^"]+)"', head)
        if name:
            fields[name[1].decode()] = value[:-2].decode("utf-8") if value.endswith(b"\r\n") \
                else value.decode("utf-8")
    return fields


class LocalServer:
    """``python -m http.server`` in a thread: the experiment folder as a local pilot sees it."""

    def __init__(self, folder: Path):
        handler = functools.partial(_QuietHandler, directory=str(folder))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}/"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


# -- the participant ------------------------------------------------------------------------------
@dataclass
class Answers:
    """How the simulated participant answers: slider values and keys chosen from the trial's
    position, so that the data can be checked against them."""

    sliders: dict[str, tuple[int, int, float, float]]   # scale -> (low, high, y, width)
    choice_keys: tuple[str, ...] = ()                   # categorization keys on offer
    label_keys: tuple[str, ...] = ()                    # norming label keys on offer
    catch_key: str | None = None
    advance_key: str | None = None

    def slider_value(self, scale: str, position: int) -> int:
        # the ends first (position 1: valence low, arousal high; 2: the other way round), so
        # that every run clicks both end ticks of both sliders exactly
        low, high, _, _ = self.sliders[scale]
        order = [low, high, (low + high) // 2, low + 1, high - 1]
        value = order[(position - 1) % len(order)]
        return low + high - value if scale == "arousal" else value

    def key(self, offered: tuple[str, ...], correct: str, position: int) -> str:
        """The correct key on even positions, the last other one on odd positions."""
        if position % 2 == 0 or len(offered) < 2:
            return correct
        return [k for k in offered if k != correct][-1]


@dataclass
class Session:
    """What one run produced."""

    mode: str                     # "pavlovia" or "local"
    csv: str                      # the data file (uploaded or downloaded)
    file_name: str
    console: list[tuple[str, str]]
    given: dict[int, dict]        # position -> what the participant answered
    seconds: float                # page load to the end of the experiment
    preload_seconds: float        # page load to the dialog's OK button becoming active
    fonts: list[str]
    screenshots: dict[str, Path]
    dialog_fields: list[str] = field(default_factory=list)   # what the start dialog asked
    api_calls: list[tuple[str, str, str]] = field(default_factory=list)

    @property
    def data(self) -> pd.DataFrame:
        return pd.read_csv(io.StringIO(self.csv.lstrip("\ufeff")), dtype=str,
                           keep_default_na=False)

    @property
    def errors(self) -> list[str]:
        return [text for kind, text in self.console if kind in ("error", "pageerror")]


_KEY_NAMES = {"space": "Space", "return": "Enter", "left": "ArrowLeft", "right": "ArrowRight",
              "up": "ArrowUp", "down": "ArrowDown"}
_SCREENS = {"welcome_keys", "practice_intro_keys", "practice_done_keys", "pause_keys",
            "goodbye_keys"}


def run_session(browser, bundle: Path, answers: Answers, *, mode: str, participant: str,
                shelf: Shelf | None = None, url_group: str | None = None,
                shots: Path | None = None, timeout_s: float = 90.0,
                preload_timeout_s: float = 60.0, viewport=(500, 400)) -> Session:
    """Run one session of the served ``bundle`` (see :func:`served_copy`) to its end.

    ``mode`` is ``"pavlovia"`` (https://pavlovia.org/run/..., the API mocked) or ``"local"``
    (a local HTTP server). Screenshots of the dialog, the first trial of each kind and the end
    go to ``shots`` when given.
    """
    index = (bundle / "index.html").read_text(encoding="utf-8")
    cdn = cdn_files(index)
    context = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]},
                                  accept_downloads=True)
    page = context.new_page()
    console: list[tuple[str, str]] = []
    page.on("console", lambda m: console.append((m.type, m.text)))
    page.on("pageerror", lambda e: console.append(("pageerror", str(e))))
    mock = PavloviaMock(bundle, shelf or Shelf())
    server = LocalServer(bundle) if mode == "local" else None
    blocked: list[str] = []

    def route(r):
        url = r.request.url
        if url in cdn:
            return r.fulfill(status=200, body=cdn[url], content_type=_TYPES[Path(url).suffix])
        parsed = urlparse(url)
        if parsed.netloc == "pavlovia.org":
            return mock.answer(r, parsed)
        if server is not None and url.startswith(server.url):
            return r.continue_()
        blocked.append(url)        # nothing else may be fetched: the test runs offline
        return r.abort()

    page.route("**/*", route)
    query = f"?participant={participant}" + (f"&group={url_group}" if url_group else "")
    start = (PAVLOVIA + RUN_PATH if mode == "pavlovia" else server.url) + "index.html" + query
    downloads = []
    page.on("download", lambda d: downloads.append(d))
    screenshots: dict[str, Path] = {}

    def shot(name):
        if shots is not None and name not in screenshots:
            screenshots[name] = shots / f"{name}.png"
            page.screenshot(path=str(screenshots[name]))

    try:
        t0 = time.monotonic()
        page.goto(start)
        page.wait_for_selector("#dialogOK:not(.disabled)", timeout=preload_timeout_s * 1000)
        preload = time.monotonic() - t0
        fields = page.eval_on_selector_all("#experiment-dialog label",
                                           "labels => labels.map(l => l.textContent.trim())")
        shot("dialog")
        page.click("#dialogOK")
        given = _participate(page, answers, shot, timeout_s)
        page.wait_for_selector("#dialogOK", timeout=30_000)     # "Thank you" and OK
        shot("end")
        seconds = time.monotonic() - t0
        if mode == "pavlovia":
            assert mock.results, f"no results uploaded; API calls: {mock.calls}"
            csv, file_name = mock.results[-1]["value"], mock.results[-1]["key"]
        else:
            deadline = time.monotonic() + 10
            while not downloads and time.monotonic() < deadline:
                page.wait_for_timeout(100)
            assert downloads, "the local pilot offered no data file for download"
            file_name = downloads[-1].suggested_filename
            csv = Path(downloads[-1].path()).read_text(encoding="utf-8")
        fonts = page.evaluate("Array.from(document.fonts).filter(f => f.status === 'loaded')"
                              ".map(f => f.family)")
    except Exception as error:
        noise = ("GL Driver", "_setAttribute", "AudioContext", "ScriptProcessorNode")
        heard = [f"{k}: {t[:300]}" for k, t in console if not any(n in t for n in noise)]
        raise AssertionError(f"{mode} session of {bundle.name} failed: {error}\nconsole:\n"
                             + "\n".join(heard[-25:]) + f"\nblocked: {blocked}") from error
    finally:
        context.close()
        if server is not None:
            server.close()
    assert not blocked, f"the page asked for what a test cannot serve: {blocked}"
    return Session(mode=mode, csv=csv, file_name=file_name, console=console, given=given,
                   seconds=seconds, preload_seconds=preload, fonts=fonts,
                   screenshots=screenshots, dialog_fields=fields, api_calls=mock.calls)


def _participate(page, answers: Answers, shot, timeout_s: float) -> dict[int, dict]:
    """Answer every screen until the experiment quits; returns what was answered, by position.

    A component counts as ready one frame after it was seen running (PsychoJS starts a
    keyboard, and clears its events, on the flip after the component's status changes); an
    answer that did not end the screen within three frames is given again (it came too early).
    """
    given: dict[int, dict] = {}
    seen: dict[tuple, int] = {}        # (component, position) -> frame it was first seen running
    acted: dict[tuple, int] = {}       # (component, position) -> frame of the last answer
    width, height = page.viewport_size["width"], page.viewport_size["height"]
    deadline = time.monotonic() + timeout_s
    state = None
    while time.monotonic() < deadline:
        state = page.evaluate("window.__stimgen_probe && window.__stimgen_probe()")
        if os.environ.get("PROBE_DEBUG") and state: print(round(time.monotonic() % 1000, 2), state["routine"], state["started"], state["frame"], (state["trial"] or {}).get("position"), flush=True)
        if state is None:
            page.wait_for_timeout(20)
            continue
        if "STOPPED" in state["status"] or "FINISHED" in state["status"]:
            return given
        frame, trial = state["frame"], state["trial"] or {}
        position = int(float(trial.get("position", 0) or 0))

        def due(component: str) -> bool:
            key = (component, position)
            seen.setdefault(key, frame)
            if frame - seen[key] < 1 or frame - acted.get(key, -10) < 3:
                return False
            acted[key] = frame
            return True

        started = set(state["started"])
        for screen in sorted(started & _SCREENS):
            if due(screen):
                shot(screen.removesuffix("_keys"))
                page.keyboard.press("Space")
        if started >= {f"{s}_slider" for s in answers.sliders} and answers.sliders \
                and due("sliders"):
            shot("rating_trial")
            for scale, (low, high, y, slider_width) in answers.sliders.items():
                value = answers.slider_value(scale, position)
                x = slider_width * ((value - low) / (high - low) - 0.5)
                page.mouse.click(width / 2 + x * height, height / 2 - y * height)
                given.setdefault(position, {})[scale] = value
            if answers.advance_key:
                page.keyboard.press(_KEY_NAMES.get(answers.advance_key, answers.advance_key))
        for component, offered, what in (("choice_keys", answers.choice_keys, "choice"),
                                         ("label_keys", answers.label_keys, "label")):
            if component in started and due(component):
                shot(f"{what}_trial")
                key = answers.key(offered, str(trial.get("correct_key", "")), position)
                page.keyboard.press(_KEY_NAMES.get(key, key))
                given.setdefault(position, {})[what] = key
        if "catch_keys" in started and due("catch_keys"):
            shot("catch")
            page.keyboard.press(_KEY_NAMES.get(answers.catch_key, answers.catch_key))
            given.setdefault(position, {})["catch"] = answers.catch_key
        if "face_clip" in started and frame - seen.setdefault(("face_clip", position), frame) > 2:
            shot("clip")
        page.wait_for_timeout(10)
    raise AssertionError(f"the experiment did not end within {timeout_s} s; answered "
                         f"{len(given)} trials; last state: {state}")


if __name__ == "__main__":        # make browser-deps
    if len(sys.argv) != 3 or sys.argv[1] != "--fetch":
        sys.exit("usage: python tests/psychojs_browser.py --fetch DIR")
    fetch_browser_deps(Path(sys.argv[2]))

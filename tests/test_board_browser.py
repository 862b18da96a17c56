"""The board (apps/board) in a real headless Chromium, driven by selenium
through Debian's chromedriver (``make chromium`` installs both).

Two browsers sign up; one posts text and an image, and the other shows it
without reloading, pushed over server-sent events; a forged CSRF token and
an oversized upload get pages that say so; log-out ends the session.
Screenshots of the pages go to ``$BOARD_ARTIFACTS`` (a temporary directory
when unset; its path is printed). The browsers, their chromedriver and
every Chromium process are gone when the module ends.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import pytest
from board_util import make_png, reset_database, serve_board

from apps.backend import routes as backend_routes
from apps.board.settings import MiB
from corofw.testing import serve_in_thread

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed "
                                "(pip install -e '.[test]')")
from selenium.webdriver.chrome.options import Options  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--window-size=1100,1000"]
WATCH_NEW_POSTS = """
window.boardMarker = "this page was not reloaded";
window.postsSeenAt = {};
new MutationObserver((changes) => {
  for (const change of changes) {
    for (const node of change.addedNodes) {
      if (node.id) { window.postsSeenAt[node.id] = Date.now(); }
    }
  }
}).observe(document.getElementById("posts"), {childList: true});
"""

if not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)):
    pytest.skip("Chromium is not installed (`make chromium` installs Debian's chromium and "
                "chromium-driver)", allow_module_level=True)


def chromium_processes(profile: str) -> list[int]:
    """The processes whose command line names the browser profile ``profile``."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                    if profile.encode() in cmdline.read():
                        found.append(int(entry))
            except OSError:
                pass
    return found


class Browser:
    """One headless Chromium with a fresh profile, through its own chromedriver."""

    def __init__(self, base_url: str, name: str) -> None:
        self.base_url = base_url
        self.name = name
        self.profile = tempfile.mkdtemp(prefix=f"corofw-chromium-{name}-")
        options = Options()
        options.binary_location = CHROMIUM
        for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={self.profile}"):
            options.add_argument(flag)
        self.service = Service(executable_path=CHROMEDRIVER)
        self.driver = webdriver.Chrome(options=options, service=self.service)

    def open(self, path: str) -> None:
        self.driver.get(self.base_url + path)

    def path(self) -> str:
        return self.driver.current_url.removeprefix(self.base_url)

    def find(self, css: str):
        return self.driver.find_element(By.CSS_SELECTOR, css)

    def wait(self, condition, timeout: float = 5.0, message: str = ""):
        return WebDriverWait(self.driver, timeout, poll_frequency=0.02).until(condition, message)

    def fill(self, fields: dict[str, str]) -> None:
        for field, value in fields.items():
            element = self.find(field)
            element.clear()
            element.send_keys(value)

    def submit(self, button: str) -> None:
        """Click ``button`` and wait for the page it leads to."""
        old = self.find("html")
        self.find(button).click()
        self.wait(lambda driver: old.id != driver.find_element(By.TAG_NAME, "html").id,
                  message=f"{button} led to no new page")

    def close(self) -> None:
        """Quit the browser, stop chromedriver by its PID, remove the profile."""
        try:
            self.driver.quit()
        finally:
            process = self.service.process
            if process is not None and process.poll() is None:
                process.kill()
                process.wait(10)
            deadline = time.monotonic() + 10
            while chromium_processes(self.profile) and time.monotonic() < deadline:
                time.sleep(0.05)
            left = chromium_processes(self.profile)
            shutil.rmtree(self.profile, ignore_errors=True)
            assert not left, f"Chromium processes left behind: {left}"


def sign_up(browser: Browser, name: str) -> None:
    browser.open("/signup")
    browser.fill({"#username": name, "#password": "correct horse battery"})
    browser.submit("#submit")
    assert browser.path() == "/"
    assert browser.find(".who").text == name


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory) -> str:
    directory = os.environ.get("BOARD_ARTIFACTS") or str(tmp_path_factory.mktemp("board"))
    os.makedirs(directory, exist_ok=True)
    print(f"\nscreenshots of the board in {directory}")
    return directory


@pytest.fixture(scope="module")
def board(pg_server, tmp_path_factory, artifacts) -> Iterator[SimpleNamespace]:
    """The board served in a thread, and two signed-up browsers, ``ada``
    and ``bob``; at the end, nothing of them is left running."""
    threads, fds = set(threading.enumerate()), set(os.listdir("/proc/self/fd"))
    if not pg_server.running:
        pg_server.start()
    reset_database(pg_server.dsn)
    media = str(tmp_path_factory.mktemp("media"))
    browsers: list[Browser] = []
    with serve_in_thread(backend_routes) as backend, \
            serve_board(pg_server.dsn, backend.url, media) as (server, _):
        try:
            with ThreadPoolExecutor(2) as starting:   # the two start-ups overlap
                launches = [starting.submit(Browser, server.url, name) for name in ("ada", "bob")]
            browsers.extend(launch.result() for launch in launches if not launch.exception())
            for launch in launches:
                if launch.exception():
                    raise launch.exception()
            for browser in browsers:
                sign_up(browser, browser.name)
            yield SimpleNamespace(ada=browsers[0], bob=browsers[1], media=media,
                                  artifacts=artifacts)
        finally:
            for browser in browsers:
                browser.close()
    deadline = time.monotonic() + 5
    while set(threading.enumerate()) - threads and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not set(threading.enumerate()) - threads, "threads left running"
    assert not set(os.listdir("/proc/self/fd")) - fds, "fds left open"


def screenshot(board: SimpleNamespace, browser: Browser, name: str) -> None:
    assert browser.driver.save_screenshot(os.path.join(board.artifacts, f"{name}.png"))


def test_a_post_with_an_image_appears_live_in_the_other_browser(board, tmp_path):
    ada, bob = board.ada, board.bob
    bob.open("/")
    bob.wait(lambda driver: driver.execute_script("return document.body.dataset.live")
             == "ready", message="the live stream never said it was ready")
    bob.driver.execute_script(WATCH_NEW_POSTS)

    image = tmp_path / "sky.png"
    image.write_bytes(make_png(96, 64, (90, 150, 230)))
    ada.open("/")
    ada.fill({"#body": "Hello from Ada's browser <b>not bold</b>"})
    ada.find("#image").send_keys(str(image))
    submitted_at = ada.driver.execute_script("return Date.now()")
    ada.submit("#post")
    assert ada.path() == "/"

    article = bob.wait(lambda driver: driver.find_elements(By.CSS_SELECTOR, "article.post"),
                       message="the post never reached the other browser")[0]
    post_id = article.get_attribute("id")
    seen_at = bob.driver.execute_script("return window.postsSeenAt[arguments[0]]", post_id)
    assert seen_at - submitted_at < 1000, f"shown {seen_at - submitted_at} ms after posting"
    assert bob.driver.execute_script("return window.boardMarker") == \
        "this page was not reloaded"
    assert article.find_element(By.CSS_SELECTOR, ".author").text == "ada"
    assert article.find_element(By.CSS_SELECTOR, ".body").text == \
        "Hello from Ada's browser <b>not bold</b>"   # shown as text, not markup
    picture = article.find_element(By.TAG_NAME, "img")
    bob.wait(lambda driver: driver.execute_script(
        "return arguments[0].complete && arguments[0].naturalWidth", picture) == 96,
        message="the image did not load")
    assert picture.get_attribute("src").startswith(ada.base_url + "/media/")
    assert len(os.listdir(board.media)) == 1
    assert bob.find("#live-status").text == "live: new posts appear here"
    screenshot(board, bob, "board-live-bob")
    screenshot(board, ada, "board-ada")


def test_the_status_panel_shows_each_backend_call(board):
    ada = board.ada
    ada.open("/")
    ada.submit("#show-status")
    rows = ada.driver.find_elements(By.CSS_SELECTOR, "#status tbody tr")
    assert [row.find_element(By.TAG_NAME, "td").text for row in rows] == \
        ["accounts", "search", "billing", "recommendations"]
    assert rows[-1].get_attribute("class") == "timed-out"
    assert "3 of 4 services answered within the 500 ms deadline" in ada.find(".summary").text
    assert ada.driver.find_elements(By.CSS_SELECTOR, "article.post")   # the posts are there too
    screenshot(board, ada, "board-with-status-panel")


def test_a_forged_csrf_token_is_refused_with_a_page(board):
    ada = board.ada
    ada.open("/")
    ada.driver.execute_script(
        "document.querySelector('#compose input[name=csrf_token]').value = 'forged'")
    ada.fill({"#body": "this must not be posted"})
    ada.submit("#post")
    assert "Refused (403)" in ada.find("h1").text
    assert ada.find("#error").text == "CSRF check failed: the CSRF token does not match"
    screenshot(board, ada, "board-forged-csrf")
    ada.open("/")
    assert "this must not be posted" not in ada.find("#posts").text


def test_an_oversized_upload_is_refused_saying_so(board, tmp_path):
    ada = board.ada
    big = tmp_path / "big.png"
    big.write_bytes(make_png(padding=3 * MiB))
    ada.open("/")
    ada.fill({"#body": "too big"})
    ada.find("#image").send_keys(str(big))
    ada.submit("#post")
    assert "Too large (413)" in ada.find("h1").text
    assert ada.find("#error").text == "The image is too large (3.0 MB); the limit is 2.0 MB."
    screenshot(board, ada, "board-oversized-upload")
    assert len(os.listdir(board.media)) == 1


def test_log_out_ends_the_session(board):
    bob = board.bob
    bob.open("/")
    bob.submit("#logout")
    assert bob.path() == "/login"
    bob.open("/")
    assert bob.path() == "/login?next=%2F"
    assert not bob.driver.find_elements(By.ID, "notice")   # logged out, not expired
    assert not bob.driver.find_elements(By.CSS_SELECTOR, ".who")

"""The labelling app in a real browser (Debian's Chromium, driven by selenium through chromedriver): keyboard-only
labelling lands exactly those judgments in the database, and script payloads in the data render as text and never
run. Skipped only when chromium or chromedriver is not installed (`.ci/run` installs them).

Set REWARDKIT_SCREENSHOTS=DIR to keep the screenshots of the labelling and progress pages (docs/ has one).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from rewardkit.label.store import NewItem, Store
from tests.label.server import ADMIN, LabelServer

webdriver = pytest.importorskip("selenium.webdriver")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER), reason="chromium and chromedriver not installed "
                                                                       "(apt-get install chromium chromium-driver)")

from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException  # noqa: E402
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

CONVERSATION = [
    {"role": "user", "content": "How do I reverse a list in Python?"},
    {"role": "assistant", "content": "Do you want a new list, or to reverse it in place?"},
    {"role": "user", "content": "A new list, please."},
]
RESPONSE_A = ("Use slicing, which returns a **new** list:\n\n```python\nnumbers = [1, 2, 3]\nbackwards = "
              "numbers[::-1]  # [3, 2, 1]\n```\n\nThe original `numbers` is unchanged.")
RESPONSE_B = ("You can call `numbers.reverse()`.\n\n- it works in place\n- it returns `None`\n\nSo `x = "
              "numbers.reverse()` leaves *x* empty.")
PAYLOADS = {
    "script": "<script>window.__pwned = 'script'; alert('script')</script>",
    "onerror": "<img src=x onerror=\"window.__pwned = 'onerror'; alert('onerror')\">",
    "link": "[click me](javascript:window.__pwned='link') <a href=\"javascript:window.__pwned='a'\">or me</a>",
}


@pytest.fixture(scope="module")
def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1280,1000", "--force-device-scale-factor=1"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def _serve(tmp_path, task, items, needed=1, scale=5):
    db = tmp_path / f"{task}.sqlite"
    store = Store(db, create=True)
    store.add_items(task, items, needed, scale)
    return store, LabelServer(db, tmp_path).wait_ready()


def _press(driver, *keys):
    actions = ActionChains(driver)
    for key in keys:
        actions.send_keys(key)
    actions.perform()


def _wait(driver) -> WebDriverWait:
    """A wait that looks again when the page is replaced under it (each judgment loads the next page)."""
    return WebDriverWait(driver, 15, ignored_exceptions=(StaleElementReferenceException, NoSuchElementException))


def _wait_for_item(driver, item_id):
    _wait(driver).until(
        lambda d: d.find_elements(By.NAME, "item_id") and d.find_element(By.NAME, "item_id").get_attribute("value")
        == str(item_id))


def _wait_for_done(driver):
    _wait(driver).until(lambda d: "Nothing is left" in d.find_element(By.TAG_NAME, "main").text)


def _screenshot(driver, tmp_path, name) -> Path:
    target = Path(os.environ.get("REWARDKIT_SCREENSHOTS") or tmp_path) / name
    target.parent.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(target))
    return target


def test_pairwise_labelling_with_the_keyboard_only(browser, tmp_path):
    items = [NewItem(CONVERSATION, [RESPONSE_A, RESPONSE_B])] + [
        NewItem(f"Question {i}: what is {i} + {i}?", [f"It is {2 * i}.", f"Maybe {2 * i + 1}?"]) for i in range(2, 5)]
    store, server = _serve(tmp_path, "pairs", items)
    token = store.add_annotator("ann")
    try:
        browser.get(f"{server.url}/?token={token}")
        _wait_for_item(browser, 1)
        assert "token" not in browser.current_url  # moved into a cookie
        assert browser.find_elements(By.CSS_SELECTOR, "pre code.language-python")  # Markdown code rendered
        screenshot = _screenshot(browser, tmp_path, "label-pairwise.png")
        assert screenshot.stat().st_size > 10_000
        _press(browser, "2", "a")  # "clearly" better, A
        _wait_for_item(browser, 2)
        _press(browser, "b")
        _wait_for_item(browser, 3)
        _press(browser, "r")  # into the reason box: shortcuts pause while typing
        _press(browser, "both are wrong, a tie", Keys.ESCAPE, "t")
        _wait_for_item(browser, 4)
        _press(browser, "s")  # skip
        _wait_for_done(browser)
    finally:
        server.stop()
    assert [(j.item_id, j.annotator, j.value, j.strength, j.reason) for j in store.judgments()] == [
        (1, "ann", "A", 2, None), (2, "ann", "B", None, None), (3, "ann", "tie", None, "both are wrong, a tie")]


def test_ranking_with_digits_backspace_and_enter(browser, tmp_path):
    store, server = _serve(tmp_path, "rankings", [NewItem("Order these", ["first", "second", "third"])])
    token = store.add_annotator("ann")
    try:
        browser.get(f"{server.url}/?token={token}")
        _wait_for_item(browser, 1)
        _press(browser, "3", "2", Keys.BACKSPACE, "1", "2", Keys.ENTER)
        _wait_for_done(browser)
    finally:
        server.stop()
    assert [j.value for j in store.judgments()] == [[2, 0, 1]]


def test_script_payloads_render_as_text_and_never_run(browser, tmp_path):
    store, server = _serve(tmp_path, "pairs", [NewItem(PAYLOADS["script"], [PAYLOADS["onerror"],
                                                                                PAYLOADS["link"]])])
    token = store.add_annotator("ann")
    try:
        browser.get(f"{server.url}/?token={token}")
        _wait_for_item(browser, 1)
        main = browser.find_element(By.TAG_NAME, "main")
        text = main.text
        assert "<script>window.__pwned = 'script'; alert('script')</script>" in text
        assert "<img src=x onerror=\"window.__pwned = 'onerror'; alert('onerror')\">" in text
        assert "[click me](javascript:window.__pwned='link')" in text
        assert main.find_elements(By.TAG_NAME, "script") == [] and main.find_elements(By.TAG_NAME, "img") == []
        assert main.find_elements(By.TAG_NAME, "a") == []
        scripts = [s.get_attribute("src") for s in browser.find_elements(By.TAG_NAME, "script")]
        assert scripts == [f"{server.url}/static/label.js"]
        for card in main.find_elements(By.CSS_SELECTOR, ".response .md"):
            card.click()  # clicking the "links" does nothing either
        assert browser.execute_script("return window.__pwned === undefined")
        # a script smuggled in anyway would still be refused by the Content-Security-Policy
        browser.execute_script("const s = document.createElement('script'); s.textContent = "
                               "\"window.__pwned = 'inline'\"; document.body.appendChild(s);")
        assert browser.execute_script("return window.__pwned === undefined")
        # and the labelling itself still works on such an item
        _press(browser, "b")
        _wait_for_done(browser)
    finally:
        server.stop()
    assert [(j.item_id, j.value) for j in store.judgments()] == [(1, "B")]


def test_progress_page(browser, tmp_path):
    items = [NewItem(f"Prompt {i}", [f"a{i}", f"b{i}"], selected_by="active" if i % 4 else "random")
             for i in range(12)]
    store, server = _serve(tmp_path, "pairs", items, needed=2)
    ids = {name: store.annotator_for_token(store.add_annotator(name)).id for name in ("ann", "bob", "cat")}
    votes = {"ann": "AABABBAAB", "bob": "AABABBABB", "cat": "AAB"}
    for name, choices in votes.items():
        for choice in choices:
            item = store.next_item(ids[name], 60)
            store.record(ids[name], item.id, choice)
    try:
        browser.get(f"{server.url}/progress?token={ADMIN}")
        _wait(browser).until(lambda d: d.find_elements(By.ID, "alpha"))
        rows = [r.text for r in browser.find_elements(By.CSS_SELECTOR, "#annotators tr")]
        assert rows == ["ann 9", "bob 9", "cat 3"]
        # ann and bob judge items 1-9 and differ once (item 8). Krippendorff: 18 values, 9 A and 9 B; D_o = 2/18,
        # D_e = 2*9*9/(18*17) -> alpha = 0.790. Fleiss: P = 8/9, P_e = 0.5 -> 0.778. Cohen: p_o = 8/9,
        # p_e = (5*4 + 4*5)/81 -> 32/41 = 0.780.
        assert browser.find_element(By.ID, "alpha").text == "0.790"
        text = browser.find_element(By.TAG_NAME, "main").text
        assert "Fleiss' κ 0.778" in text and "ann / bob 9 0.780" in text
        _screenshot(browser, tmp_path, "label-progress.png")
    finally:
        server.stop()

"""The labelling app in a real browser (Debian's Chromium, driven by selenium through chromedriver): keyboard-only
labelling lands exactly those judgments in the database, a strength counts whether it comes before or after A / B,
script payloads in the data render as text and never run, and Chinese text is marked `lang="zh"` and drawn with a
Chinese font. Skipped only when chromium or chromedriver (or, for the Chinese page, any Chinese font) is not
installed (`.ci/run` installs them: chromium, chromium-driver, fonts-noto-cjk).

Set REWARDKIT_SCREENSHOTS=DIR to keep the screenshots of the labelling and progress pages (docs/ has them).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from rewardkit.cli import main
from rewardkit.label.store import NewItem, Store
from tests.label.server import ADMIN, LabelServer

webdriver = pytest.importorskip("selenium.webdriver")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(not (CHROMIUM and CHROMEDRIVER), reason="chromium and chromedriver not installed "
                                                                       "(apt-get install chromium chromium-driver)")

from selenium.common.exceptions import WebDriverException  # noqa: E402
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
CHINESE_PROMPT = "用 Python 写一个函数，统计一段中文文本里每个词出现的次数，并按次数从多到少输出前几个词。"
CHINESE_A = ("可以先用 `jieba` 分词，再用 `collections.Counter` 计数：\n\n```python\nimport collections\n"
             "import jieba\n\n\ndef top_words(text: str, k: int = 5) -> list[tuple[str, int]]:\n"
             "    \"\"\"返回文本中出现最多的 k 个词及其次数（忽略标点和单字虚词）。\"\"\"\n"
             "    stop = {\"的\", \"了\", \"是\", \"在\", \"和\", \"也\", \"就\", \"都\", \"而\", \"及\", \"与\", "
             "\"着\", \"或\", \"一个\", \"没有\", \"我们\", \"你们\", \"他们\"}\n"
             "    words = [w for w in jieba.lcut(text) if w.strip() and w not in stop and not "
             "all(not ch.isalnum() for ch in w)]\n"
             "    return collections.Counter(words).most_common(k)\n\n\n"
             "print(top_words(\"今天天气很好，我们去公园散步。公园里的花开得很好，天气也很暖和。\"))\n"
             "# [('天气', 2), ('公园', 2), ('很', 2), ('好', 2), ('今天', 1)]\n```\n\n"
             "**注意**：中文没有空格分词，直接 `text.split()` 会把整句当成一个词。")
CHINESE_B = ("用 `str.split()` 按空格切分，然后数一数：\n\n```python\nfrom collections import Counter\n"
             "print(Counter(text.split()).most_common(5))\n```\n\n这样最简单，适合任何语言。")
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


def _serve(tmp_path, task, items, needed=1, scale=5, *args):
    db = tmp_path / f"{task}.sqlite"
    store = Store(db, create=True)
    store.add_items(task, items, needed, scale)
    return store, LabelServer(db, tmp_path, *args).wait_ready()


def _press(driver, *keys):
    actions = ActionChains(driver)
    for key in keys:
        actions.send_keys(key)
    actions.perform()


def _wait(driver) -> WebDriverWait:
    """A wait that looks again when the page is replaced under it (each judgment loads the next page). Chromium
    reports an element read mid-navigation as stale, missing, or as an 'unknown error' (its node no longer belongs
    to the document), so every WebDriver error while waiting means "look again"; a page that never gets there still
    fails, as a timeout."""
    return WebDriverWait(driver, 15, ignored_exceptions=(WebDriverException,))


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


def _pending(driver):
    """The countdown shown after A or B, or None when it is hidden."""
    panels = [p for p in driver.find_elements(By.ID, "pending") if p.is_displayed()]
    return panels[0] if panels else None


def _seconds_left(driver) -> float:
    return float(driver.find_element(By.ID, "pending-seconds").text)


def test_strength_before_or_after_the_choice_with_keyboard_and_mouse(browser, tmp_path):
    """Choice then strength, strength then choice, a choice left to its countdown, one cancelled with Esc and then
    confirmed with Enter, the mouse both ways, and a tie after a strength: each lands as meant, and the export holds
    the strengths."""
    store, server = _serve(tmp_path, "pairs", [NewItem(f"Question {i}", [f"first {i}", f"second {i}"])
                                               for i in range(1, 8)])
    token = store.add_annotator("ann")
    try:
        browser.get(f"{server.url}/?token={token}")
        _wait_for_item(browser, 1)
        hint = browser.find_element(By.ID, "strength-hint").text
        assert "before or after A / B" in hint and "waits 2 s" in hint and _pending(browser) is None
        # 1: choice, then strength. A waits, shown as chosen; 3 submits it as "much" better
        _press(browser, "a")
        panel = _pending(browser)
        assert panel is not None and "A is better" in panel.text and "how much better" in panel.text
        assert "pending-choice" in browser.find_element(By.CSS_SELECTOR, '[data-key="a"]').get_attribute("class")
        _press(browser, "3")
        _wait_for_item(browser, 2)
        # 2: strength, then choice: B submits at once, without the countdown
        _press(browser, "2", "b")
        _wait_for_item(browser, 3)
        # 3: a choice left alone: the countdown runs down, visibly, and submits it without a strength
        _press(browser, "b")
        assert "B is better" in _pending(browser).text
        first = _seconds_left(browser)
        time.sleep(0.4)
        assert 0 < _seconds_left(browser) < first <= 2.0
        _screenshot(browser, tmp_path, "label-strength.png")
        _wait_for_item(browser, 4)
        # 4: Esc takes the choice back (nothing is sent, however long one waits); B then Enter submits at once
        _press(browser, "a")
        assert _pending(browser) is not None
        _press(browser, Keys.ESCAPE)
        assert _pending(browser) is None
        time.sleep(2.5)
        assert browser.find_element(By.NAME, "item_id").get_attribute("value") == "4" and not store.judgments()[3:]
        _press(browser, "b", Keys.ENTER)
        _wait_for_item(browser, 5)
        # 5: mouse, choice then strength (the countdown pauses once the pointer is on the strengths)
        browser.find_element(By.CSS_SELECTOR, 'button[value="A"]').click()
        assert _pending(browser) is not None
        browser.find_element(By.CSS_SELECTOR, 'input[name="strength"][value="2"]').click()
        _wait_for_item(browser, 6)
        # 6: mouse, strength then choice
        browser.find_element(By.CSS_SELECTOR, 'input[name="strength"][value="1"]').click()
        browser.find_element(By.CSS_SELECTOR, 'button[value="B"]').click()
        _wait_for_item(browser, 7)
        # 7: a strength, then a tie: a tie takes no strength, so the page drops it instead of posting an error
        _press(browser, "2", "t")
        _wait_for_done(browser)
    finally:
        server.stop()
    assert [(j.item_id, j.value, j.strength) for j in store.judgments()] == [
        (1, "A", 3), (2, "B", 2), (3, "B", None), (4, "B", None), (5, "A", 2), (6, "B", 1), (7, "tie", None)]
    out = tmp_path / "labels.jsonl"
    assert main(["label", "export", str(store.path), str(out)]) == 0
    rows = {row["item_id"]: row for row in map(json.loads, out.read_text().splitlines())}
    items = {item.id: item for item in store.items()}
    assert [(i, rows[i]["chosen"], rows[i].get("strength")) for i in sorted(rows)] == [
        (1, items[1].responses[0], 3.0), (2, items[2].responses[1], 2.0), (3, items[3].responses[1], None),
        (4, items[4].responses[1], None), (5, items[5].responses[0], 2.0), (6, items[6].responses[1], 1.0)]
    assert rows[1]["votes"] == {"chosen": 1, "rejected": 0, "tie": 0}


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


def _families_drawing(driver, selector) -> set[str]:
    """The fonts Chromium actually drew the text of the first element matching `selector` with (DevTools)."""
    driver.execute_cdp_cmd("DOM.enable", {})
    driver.execute_cdp_cmd("CSS.enable", {})
    root = driver.execute_cdp_cmd("DOM.getDocument", {"depth": -1})["root"]["nodeId"]
    node = driver.execute_cdp_cmd("DOM.querySelector", {"nodeId": root, "selector": selector})["nodeId"]
    fonts = driver.execute_cdp_cmd("CSS.getPlatformFontsForNode", {"nodeId": node})["fonts"]
    return {font["familyName"] for font in fonts if font["glyphCount"]}


def _chinese_fonts() -> set[str]:
    if not shutil.which("fc-list"):
        return set()
    listed = subprocess.run(["fc-list", ":lang=zh", "family"], capture_output=True, text=True).stdout
    return {family.strip() for line in listed.splitlines() for family in line.split(",") if family.strip()}


def test_a_chinese_item_is_marked_zh_and_drawn_with_a_chinese_font(browser, tmp_path):
    fonts = _chinese_fonts()
    if not fonts:
        pytest.skip("no Chinese font installed (apt-get install fonts-noto-cjk)")
    store, server = _serve(tmp_path, "pairs", [NewItem(CHINESE_PROMPT, [CHINESE_A, CHINESE_B]),
                                               NewItem("An English question", ["Yes.", "No."])])
    token = store.add_annotator("ann")
    try:
        browser.get(f"{server.url}/?token={token}")
        _wait_for_item(browser, 1)
        assert browser.find_element(By.TAG_NAME, "html").get_attribute("lang") == "en"  # the page's own words
        assert [md.get_dom_attribute("lang") for md in browser.find_elements(By.CSS_SELECTOR, "main .md")] == [
            "zh", "zh", "zh"]  # the prompt and both responses
        family = browser.execute_script("return getComputedStyle(document.querySelector('.response .md'))"
                                        ".fontFamily")
        assert "Noto Sans CJK SC" in family and "WenQuanYi Zen Hei" in family
        # every glyph of an all-Chinese paragraph comes from a font that has Chinese: none is a box
        drawn = _families_drawing(browser, ".response.b .md p:last-child")  # 这样最简单，适合任何语言。
        assert drawn and drawn <= fonts, (drawn, sorted(fonts))
        assert "中文没有空格分词" in browser.find_element(By.CSS_SELECTOR, ".response.a").text
        # the long code line scrolls inside its card: the page does not widen and B stays in view
        assert browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
        assert browser.execute_script("const pre = document.querySelector('.response.a pre');"
                                      "return pre.scrollWidth > pre.clientWidth")
        assert browser.execute_script("return document.querySelector('.response.b').getBoundingClientRect().right"
                                      " <= window.innerWidth")
        _screenshot(browser, tmp_path, "label-chinese.png")
        _press(browser, "1", "a")
        _wait_for_item(browser, 2)
        assert [md.get_dom_attribute("lang") for md in browser.find_elements(By.CSS_SELECTOR, "main .md")] == [
            None, None, None]  # English: the language is left to the page's
    finally:
        server.stop()
    assert [(j.item_id, j.value, j.strength) for j in store.judgments()] == [(1, "A", 1)]


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

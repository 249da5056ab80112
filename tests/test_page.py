"""The page at / in a real browser (Debian's Chromium, driven by Playwright) against the real
server: each panel shows what the API answers for the same input."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import httpx
import pytest

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is in the test extra")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason="Chromium is not installed (apt-get install chromium)"
)
DOCS = Path(__file__).resolve().parent.parent / "docs"

REVIEW = "A wonderful film with excellent acting, though the ending was a little dull."
NEWSWIRE = "Crude oil prices fell as OPEC ministers failed to agree on output quotas; oil exports dropped."


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser, server):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.goto(server.url + "/")
    page.wait_for_selector("#feature-LSTAT")
    yield page
    context.close()


def screenshot(page, selector: str, name: str, tmp_path: Path) -> None:
    """Panels go to docs/ when UPDATE_SCREENSHOTS=1 (for the README), elsewhere to tmp."""
    folder = DOCS if os.environ.get("UPDATE_SCREENSHOTS") == "1" else tmp_path
    folder.mkdir(exist_ok=True)
    page.locator(selector).screenshot(path=str(folder / name))


def test_the_review_panel_shows_the_apis_verdict_and_tints_words_by_effect(page, api, tmp_path):
    page.fill("#review", REVIEW)
    page.click("#review-form button")
    page.wait_for_selector("#review-out:not([hidden])")
    answer = api.post("/imdb/predict", json={"text": REVIEW, "explain": True, "explain_top": 10_000})
    prediction = answer.json()["predictions"][0]
    verdict = page.text_content("#review-verdict")
    assert verdict.startswith("Positive" if prediction["label"] == "positive" else "Negative")
    assert f"{prediction['probability']:.4f}" in verdict
    effects = {w["word"]: w["effect"] for w in prediction["explanation"]["words"]}
    for word in ("wonderful", "excellent", "dull"):
        span = page.locator(f'#review-highlight span[data-words="{word}"]').first
        assert float(span.get_attribute("data-effect")) == pytest.approx(effects[word], abs=1e-12)
        color = span.evaluate("el => getComputedStyle(el).backgroundColor")
        assert color.startswith("rgba(22, 128, 60" if effects[word] > 0 else "rgba(200, 40, 40")
    screenshot(page, "#review-panel", "review.png", tmp_path)


def test_the_newswire_panel_shows_the_apis_top_five_topics_and_words(page, api, tmp_path):
    page.fill("#newswire", NEWSWIRE)
    page.click("#newswire-form button")
    page.wait_for_selector("#newswire-out:not([hidden])")
    answer = api.post("/reuters/predict", json={"text": NEWSWIRE, "top_k": 5, "explain": True})
    prediction = answer.json()["predictions"][0]
    shown = page.locator("#topics > span").all_text_contents()
    expected = [part for t in prediction["top"] for part in (t["label"], f"{t['probability']:.4f}")]
    assert shown == expected
    words = page.locator("#newswire-words > span:not(.num)").all_text_contents()
    assert words == [w["word"] for w in prediction["explanation"]["words"]]
    assert prediction["label"] in page.text_content("#newswire-words-title")
    screenshot(page, "#newswire-panel", "newswire.png", tmp_path)


def test_the_housing_panel_shows_the_apis_price_and_feature_effects(page, api, tmp_path):
    page.click("#housing-form button")
    page.wait_for_selector("#housing-out:not([hidden])")
    record = {n: float(page.input_value(f"#feature-{n}")) for n in
              ("CRIM", "ZN", "INDUS", "CHAS", "NOX", "RM", "AGE", "DIS", "RAD", "TAX", "PTRATIO", "B", "LSTAT")}  # fmt: skip
    prediction = api.post("/boston/predict", json={"records": [record], "explain": True}).json()["predictions"][0]
    assert f"{prediction['price']:.2f} thousand" in page.text_content("#housing-price")
    shown = page.locator("#housing-effects > span:not(.num)").all_text_contents()
    assert shown == [e["feature"] for e in prediction["explanation"]]
    screenshot(page, "#housing-panel", "housing.png", tmp_path)


def test_an_invalid_housing_value_shows_the_apis_message_next_to_the_field(page, api):
    page.fill("#feature-RM", "six")
    page.click("#housing-form button")
    page.wait_for_function("document.getElementById('feature-RM-error').textContent !== ''")
    answer = api.post("/boston/predict", json={"records": [{**dict.fromkeys(
        ("CRIM", "ZN", "INDUS", "CHAS", "NOX", "AGE", "DIS", "RAD", "TAX", "PTRATIO", "B", "LSTAT"), 1.0), "RM": "six"}]})  # fmt: skip
    assert page.text_content("#feature-RM-error") == answer.json()["detail"][0]["msg"]
    assert page.is_hidden("#housing-out")


def test_the_page_works_from_the_keyboard(page):
    page.focus("#review")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Predict sentiment"
    page.keyboard.press("Enter")
    page.wait_for_selector("#review-out:not([hidden])")


def test_the_page_fits_a_phone_width_screen(browser, server):
    context = browser.new_context(viewport={"width": 375, "height": 800}, is_mobile=True)
    page = context.new_page()
    page.goto(server.url + "/")
    page.wait_for_selector("#feature-LSTAT")
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    context.close()


def test_the_page_loads_nothing_from_outside_the_service(browser, server):
    context = browser.new_context()
    page = context.new_page()
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.goto(server.url + "/")
    page.wait_for_selector("#feature-LSTAT")
    context.close()
    assert requested and all(url.startswith(server.url) for url in requested)
    assert httpx.get(server.url + "/").headers["content-type"].startswith("text/html")

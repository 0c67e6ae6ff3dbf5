"""The search page end to end in a real headless Chromium (Debian's chromium and chromium-driver, driven
by selenium) against the real server on a free localhost port, over the toy set of test_serve.py.

It types a query, clicks a result, checks the relevance marks and P@k against the API, reloads and goes
back by the address, and draws a random item. Skipped when selenium, chromium or chromedriver is not installed (.ci/run installs them where it can).
With UCMFH_SCREENSHOT=path the page's screenshot is also written there (docs/img/search-page.png).
"""
import json
import os
import random
import shutil
from urllib.parse import urlencode
from urllib.request import urlopen

import pytest

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
if not (CHROMIUM and CHROMEDRIVER):
    pytest.skip("no browser: install Debian's chromium and chromium-driver to run the page in a browser",
                allow_module_level=True)
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install selenium)")
pytest.importorskip("uvicorn")

from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from hashindex.index_file import load_index  # noqa: E402
from hashindex.query import SearchEngine  # noqa: E402
from conftest import served  # noqa: E402
from test_serve import toy_index  # noqa: E402
from webui.app import create_app  # noqa: E402

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1280,1000")
SEED = 0   # of the server's random items


def api_search(server, **params):
    with urlopen(f"{server}api/search?{urlencode(params)}") as answer:
        return json.load(answer)


def shown(page):
    """The result ids in order and the ids marked relevant, of both columns (one script: one round trip)."""
    return tuple(page.execute_script("const cards = [...document.querySelectorAll('.result')];"
                                     "return [cards.map(c => c.dataset.id),"
                                     "        cards.filter(c => c.classList.contains('relevant')).map(c => c.dataset.id)]"))


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """The real uvicorn server over the toy index, in a thread, on a port the system picked."""
    path = toy_index(tmp_path_factory)
    with served(create_app(SearchEngine(load_index(path), path), draw=random.Random(SEED))) as url:
        yield url + "/"


@pytest.fixture
def browser(tmp_path, monkeypatch):
    monkeypatch.setenv("SE_OFFLINE", "true")    # selenium-manager must never download a driver
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*FLAGS, f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def test_a_typed_query_shows_ranked_results_and_a_click_searches_with_one(server, browser, tmp_path,
                                                                          tmp_path_factory):
    wait = WebDriverWait(browser, 15, poll_frequency=0.05)
    browser.get(server)
    wait.until(lambda page: "20 items" in page.find_element(By.ID, "facts").text)
    assert browser.find_element(By.ID, "notice").get_attribute("hidden")   # text queries are on

    browser.find_element(By.ID, "text").send_keys("a red circle", Keys.ENTER)
    images = wait.until(lambda page: page.find_elements(By.CSS_SELECTOR, "#image-results .result"))
    texts = browser.find_elements(By.CSS_SELECTOR, "#text-results .result")
    assert len(images) == 20 and len(texts) == 20           # the default k, both modalities
    assert browser.find_element(By.ID, "query").text == "Text: “a red circle”"
    first = images[0].text
    assert "#1" in first and "distance " in first and "id " in first and " background" in first
    assert "a " in texts[0].find_element(By.CLASS_NAME, "caption").text
    loaded = "return [...document.querySelectorAll('#image-results img')].slice(0, 4)" \
             ".every(img => img.complete && img.naturalWidth > 0)"
    wait.until(lambda page: page.execute_script(loaded))    # thumbnails come from /api/image/<id>
    assert browser.find_element(By.ID, "relevance").text == "No marks: a text query has no labels"
    assert shown(browser)[1] == [] and browser.current_url == f"{server}?text=a+red+circle&k=20&target=both"

    clicked = images[1].get_attribute("data-id")
    images[1].click()                                        # its image code is the next query
    wait.until(lambda page: page.find_element(By.ID, "query").text.startswith(f"Item {clicked}, its image code"))
    assert browser.find_element(By.ID, "item-id").get_attribute("value") == clicked
    nearest = "//section[@id='image-results']//button[.//span[text()='distance 0']]"
    wait.until(lambda page: clicked in [r.get_attribute("data-id") for r in page.find_elements(By.XPATH, nearest)])
    assert browser.find_element(By.ID, "error").get_attribute("hidden")
    # the marks and P@k are the API's: a result is relevant when it shares a label with the clicked item
    answers = [api_search(server, id=clicked, modality="image", target=target, k=20) for target in ("image", "text")]
    ids, marked = shown(browser)
    assert ids == [r["id"] for a in answers for r in a["results"]]
    assert marked == [r["id"] for a in answers for r in a["results"] if r["relevant"]] and 0 < len(marked) < 40
    scores = [f"{a['target'].capitalize()}s P@20 = {a['precision_at_k']:.2f} ({sum(r['relevant'] for r in a['results'])} of 20)"
              for a in answers]
    assert browser.find_element(By.ID, "relevance").text == f"{scores[0]} · {scores[1]} — ✓ shares a label with " \
                                                            f"item {clicked}"
    assert browser.find_element(By.CSS_SELECTOR, "#query .thumb").size["width"] <= 100   # the query's own, small
    wait.until(lambda page: page.execute_script(loaded))
    browser.save_screenshot(str(tmp_path / "search-page.png"))
    if os.environ.get("UCMFH_SCREENSHOT"):
        shutil.copy(tmp_path / "search-page.png", os.environ["UCMFH_SCREENSHOT"])

    address = f"{server}?{urlencode({'id': clicked, 'modality': 'image', 'k': 20, 'target': 'both'})}"
    assert browser.current_url == address
    browser.refresh()                                        # the address alone gives the same results and marks
    wait.until(lambda page: len(page.find_elements(By.CSS_SELECTOR, ".result")) == 40)
    assert shown(browser) == (ids, marked) and browser.find_element(By.ID, "item-id").get_attribute("value") == clicked
    browser.back()                                           # the text query's address runs it again
    wait.until(lambda page: page.find_element(By.ID, "query").text == "Text: “a red circle”")

    toy = load_index(toy_index(tmp_path_factory))
    drawn = str(toy.ids[random.Random(SEED).randrange(20)])   # the server's draw
    expected = [r["id"] for t in ("image", "text") for r in api_search(server, id=drawn, target=t)["results"]]
    browser.find_element(By.ID, "random").click()
    wait.until(lambda page: page.find_element(By.ID, "query").text.startswith(f"Item {drawn}, its image code"))
    wait.until(lambda page: shown(page)[0] == expected)
    assert browser.current_url == f"{server}?{urlencode({'id': drawn, 'modality': 'image', 'k': 20, 'target': 'both'})}"

    browser.find_element(By.ID, "image").send_keys(str(toy.image_paths[0]))
    wait.until(lambda page: page.find_element(By.ID, "query").text.startswith("Image "))
    assert browser.current_url == f"{server}?k=20&target=both"   # an upload cannot travel in an address
    browser.get(f"{server}?id={drawn}&target=sound")
    wait.until(lambda page: page.find_element(By.ID, "error").text ==
               "target=sound in the address: it must be one of both, image, text")

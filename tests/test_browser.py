"""`graphdef serve` in a real headless browser: Debian's chromium driven by Playwright (its own browser download
is never used: `executable_path` points at the system's chromium). Skipped only when no chromium is installed;
CI installs it (.ci/run).

GRAPHDEF_SCREENSHOTS=1 also writes the README's pictures, docs/images/serve_{values,step,paths}.png."""
import os
import re
import shutil
import threading
from pathlib import Path

import pytest

import graphdef
from graphdef.tools.serve import make_server, url_of

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
TIMEOUT_MS = 20_000
WIDTH = 960  # about the README's width: the screenshots are shown unscaled

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium installed (Debian: apt-get install chromium)")


@pytest.fixture(scope="module")
def serve():
    """model file name -> the URL of a server for it, started on a free port of 127.0.0.1 on first use."""
    servers, urls = [], {}

    def url(name):
        if name not in urls:
            srv = make_server(graphdef.load(ROOT / "models" / name), "127.0.0.1", 0)
            threading.Thread(target=srv.serve_forever, daemon=True).start()
            servers.append(srv)
            urls[name] = url_of(srv)
        return urls[name]

    yield url
    for srv in servers:
        srv.shutdown()
        srv.server_close()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": WIDTH, "height": 760})
    context.set_default_timeout(TIMEOUT_MS)
    pg = context.new_page()
    errors = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    yield pg
    context.close()
    assert not errors, errors


def open_page(page, url, loads=1):
    page.goto(url)
    page.wait_for_selector(f'body[data-loads="{loads}"]')
    return page


def cell(page, vertex, column):
    return page.inner_text(f'#values tr[data-vertex="{vertex}"] td.{column}').strip()


def loaded_again(page, before):
    page.wait_for_selector(f'body[data-loads="{before + 1}"]')


def screenshot(page, name):
    if os.environ.get("GRAPHDEF_SCREENSHOTS") == "1":
        page.screenshot(path=str(ROOT / "docs" / "images" / f"serve_{name}.png"), full_page=True)


def test_values_of_the_lecture(page, serve):
    open_page(page, serve("lecture.yaml") + "?a=4&b=5")
    assert (cell(page, "e", "value"), cell(page, "a", "grad"), cell(page, "b", "grad")) == ("54", "6", "15")
    assert "54" in page.text_content('[id="v:e"]') and page.locator('[id="e:b:c:1"]').count() == 1
    assert page.input_value("#field-a") == "4" and page.get_attribute("#field-a", "type") == "number"
    assert page.locator('label[for="field-a"]').inner_text() == "a"


def test_editing_a_field_recomputes(page, serve):
    open_page(page, serve("lecture.yaml") + "?a=4&b=5")
    page.fill("#field-a", "3")
    loaded_again(page, 1)
    assert (cell(page, "e", "value"), cell(page, "a", "grad"), cell(page, "b", "grad")) == ("48", "6", "14")
    assert "a=3" in page.url and "48" in page.text_content('[id="v:e"]')
    screenshot(page, "values")


def test_a_bad_value_shows_the_servers_message(page, serve):
    page.goto(serve("lecture.yaml") + "?a=x&b=5")
    page.wait_for_selector("#error:not([hidden])")
    assert "a must be a number" in page.inner_text("#error")
    page.wait_for_selector("body[data-loads]")  # the defaults are drawn, the bad field marked, the link kept
    assert page.get_attribute("#field-a", "aria-invalid") == "true" and "a=x" in page.url
    page.fill("#field-a", "4")
    page.wait_for_selector("#error", state="hidden")
    assert cell(page, "e", "value") == "54"


def highlighted(page) -> list:
    return page.eval_on_selector_all("#graph .hl", "elements => elements.map(e => e.id)")


def test_step_through_the_sweeps(page, serve):
    open_page(page, serve("lecture.yaml") + "?a=4&b=5&mode=step")
    assert page.inner_text("#step-count").endswith("step 1 of 10")
    assert set(highlighted(page)) == {"v:a", "v:b", "v:d[1]"}
    assert hidden_texts(page, "v:e") == ["= 54", "∂e/∂e = 1"]  # not computed yet: hidden in the drawing
    page.click("#next")
    assert page.inner_text("#step-text") == "c = a + b = 4 + 5 = 9" and highlighted(page) == ["v:c"]
    assert hidden_texts(page, "v:c") == ["∂e/∂c = 6"]
    page.focus("#next")
    for _ in range(6):
        page.keyboard.press("ArrowRight")
    assert page.inner_text("#step-text").startswith("∂e/∂b += ∂e/∂d · ∂ₗd/∂b = 9 × 1 = 9")
    assert hidden_texts(page, "v:b") == ["∂e/∂b = 15"] and hidden_texts(page, "v:d") == []
    assert set(highlighted(page)) == {"e:b:d:0", "v:b"} and "step=7" in page.url
    assert page.get_attribute('#values tr[data-vertex="b"]', "class") == "pending-grad current"
    screenshot(page, "step")
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowRight")
    assert page.inner_text("#step-text").endswith("∂e/∂b = 15, complete") and page.is_disabled("#next")
    page.keyboard.press("ArrowLeft")
    assert "step=8" in page.url
    page.click("#reset")
    assert page.is_disabled("#prev") and "step=0" in page.url


def hidden_texts(page, vertex: str) -> list:
    """The lines of a vertex's label that step mode hides (not computed yet at this step)."""
    return page.eval_on_selector_all(f'#graph g[id="{vertex}"] text.pending', "ts => ts.map(t => t.textContent)")


def path_ids(page) -> set:
    return set(page.eval_on_selector_all("#graph .path", "elements => elements.map(e => e.id)"))


def test_paths_of_the_lecture(page, serve):
    open_page(page, serve("lecture.yaml") + "?a=4&b=5&mode=paths&wrt=b")
    assert page.inner_text("#path-count").startswith("2 paths from b to e")
    assert page.locator("#paths li").count() == 2
    assert re.search(r"∂e/∂b = 6 \+ 9 = 15\b", page.inner_text("#path-sum"))
    page.hover("#paths li >> nth=0")
    assert path_ids(page) == {"e:b:c:1", "e:c:e:0", "v:b", "v:c", "v:e"}
    page.mouse.move(1, 1)
    assert not path_ids(page)
    page.focus("#paths li >> nth=1")
    assert path_ids(page) == {"e:b:d:0", "e:d:e:1", "v:b", "v:d", "v:e"}
    rows = page.eval_on_selector_all("#cost tbody tr", "rows => rows.map(r => r.innerText.split('\\t'))")
    assert [(r[0], r[2]) for r in rows] == [("path sum", "3"), ("forward mode", "6"), ("reverse mode", "5")]
    screenshot(page, "paths")
    page.select_option("#wrt", "a")
    loaded_again(page, 1)
    assert page.inner_text("#path-count").startswith("1 path from a to e") and "wrt=a" in page.url


def test_paths_of_the_diamond_are_counted_and_paged(page, serve):
    open_page(page, serve("diamond.yaml") + "?x0=0.5&mode=paths")
    assert page.inner_text("#path-count").startswith("1,024 paths from x0 to x10; paths 1–20")
    assert page.locator("#paths li").count() == 20 and page.inner_text("#page-info") == "page 1 of 52"
    assert "sum of all 1,024 products" in page.inner_text("#path-sum")
    assert page.inner_text('#cost tr[data-method="reverse mode"] td:nth-child(3)') == "40"
    page.click("#page-next")
    loaded_again(page, 1)
    assert page.inner_text("#page-info") == "page 2 of 52" and "page=2" in page.url
    assert page.get_attribute("#paths", "start") == "21"


def test_the_url_restores_the_view(page, serve, browser):
    open_page(page, serve("lecture.yaml") + "?a=4&b=5")
    page.fill("#field-b", "2")
    loaded_again(page, 1)
    page.click('[data-mode="step"]')
    loaded_again(page, 2)
    for _ in range(3):
        page.click("#next")
    page.click("#big")
    text, link = page.inner_text("#step-text"), page.url
    assert all(part in link for part in ("a=4", "b=2", "mode=step", "step=3", "big=1"))
    other = browser.new_page(viewport={"width": WIDTH, "height": 760})
    try:
        open_page(other, link)
        assert other.inner_text("#step-text") == text == "e = c × d = 6 × 3 = 18"
        assert other.input_value("#field-b") == "2" and other.get_attribute("html", "class") == "big"
        assert other.get_attribute('[data-mode="step"]', "aria-pressed") == "true"
    finally:
        other.close()


def test_a_tensor_model_shows_shapes_and_no_paths(page, serve):
    open_page(page, serve("mlp.yaml") + "?mode=paths")
    assert cell(page, "W1", "value").startswith("shape [2, 2], norm")
    assert page.is_disabled('[data-mode="paths"]') and "tensors" in page.inner_text("#note")
    assert "scalar picture" in page.inner_text("#paths-disabled")
    page.click('[data-mode="step"]')
    loaded_again(page, 1)
    page.click("#next")
    assert page.inner_text("#step-text").startswith("a1 = matmul(x, W1): shape [2]")


@pytest.mark.parametrize("name, query, value", [
    ("chain.yaml", "a=1&b=2", ("f", "0.126928")), ("lecture_network.yaml", "x1=1&x2=0.5&y1=1&y2=0", ("E", None)),
])
def test_other_scalar_models_load(page, serve, name, query, value):
    open_page(page, serve(name) + "?" + query)
    vertex, shown = value
    assert cell(page, vertex, "value") == (shown or cell(page, vertex, "value")) and page.locator("#graph svg").count()
    page.click('[data-mode="paths"]')
    loaded_again(page, 1)
    assert page.locator("#paths li").count() >= 1

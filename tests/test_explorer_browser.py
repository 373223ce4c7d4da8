"""explorer.html in a real browser: Debian's Chromium, headless, driven by Playwright.

The page is opened from file:// and must make no request and log no error. Its
JavaScript decoder is compared with PyTorch's, number by number and pixel by pixel, and
the mouse, the pins and the coordinate box are used as a person would. A screenshot is
saved to test-artifacts/ for people to look at.

Chromium missing is a failure, not a skip: scripts/ensure-test-deps.sh installs it.
"""

import base64
import io
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from deepae import latent
from deepae.explorer import explorer
from explorer_helpers import DECODERS, make_model, page_data
from test_degenerate import dead_run  # noqa: F401 (a fixture)
from test_untrusted_input import NASTY, nasty_page  # noqa: F401 (a fixture)

pytestmark = pytest.mark.browser

TIMEOUT_MS = 15_000  # any single page action; a healthy page answers in well under 1 s
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
VIEWPORT = {"width": 1280, "height": 800}
DECODE_ALL = "pts => pts.map(([u, v]) => Array.from(window.deepae.decode(u, v)))"


def open_page(browser, path: Path):
    """Open `path` from file:// in a fresh context; returns (page, problems), where
    problems collects console errors, page errors and every request that is not file:
    or data:."""
    context = browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    problems = []
    page.on("console", lambda m: m.type == "error" and problems.append(f"console: {m.text}"))
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on(
        "request",
        lambda r: r.url.startswith(("file:", "data:")) or problems.append(f"request: {r.url}"),
    )
    page.goto(path.as_uri())
    assert page.evaluate("window.deepae.ready") == "ready"
    return page, problems


@pytest.fixture(scope="module")
def article(small_run, mnist, tmp_path_factory):
    """The explorer of the small run's model (the article's 784-32-2-32-784) over all of
    MNIST's training set: 10,000 points, as `deepae train` writes it."""
    path = tmp_path_factory.mktemp("explorer") / "explorer.html"
    explorer.write_explorer(small_run.folder, small_run.ae, mnist, out=path)
    return SimpleNamespace(path=path, ae=small_run.ae, mnist=mnist)


@pytest.fixture
def page(browser, article):
    page, problems = open_page(browser, article.path)
    yield SimpleNamespace(page=page, problems=problems)
    page.context.close()


def grey(images):
    """What the page draws: values clipped to [0, 1], times 255, rounded."""
    return np.rint(np.clip(np.asarray(images, np.float64), 0, 1) * 255).reshape(len(images), -1)


def canvas_grey(page, selector):
    """The red channel (= grey) of every pixel of the canvases matching selector."""
    return np.array(
        page.eval_on_selector_all(
            selector,
            """cs => cs.map(c => Array.from(c.getContext("2d").getImageData(0, 0, c.width,
                 c.height).data.filter((_, i) => i % 4 === 0)))""",
        )
    )


def overlay_box(page):
    return page.locator("#overlay").bounding_box()


def after_two_frames(page):
    """Wait until the page has drawn two more frames (a redraw happens in the next one),
    at most TIMEOUT_MS even if the page's script never returns (evaluate has no timeout)."""
    page.wait_for_function(
        """() => { if (window.__frames === undefined) { window.__frames = 0;
             requestAnimationFrame(() => requestAnimationFrame(() => { window.__frames = 2; })); }
           if (window.__frames !== 2) return false;
           delete window.__frames; return true; }"""
    )


def test_page_opens_offline_without_errors_and_is_saved_as_a_screenshot(page, article):
    p = page.page
    info = p.evaluate("window.deepae.data")
    assert info["points"] == 10_000 and info["imagesEmbedded"] == 10_000
    assert p.locator("#legend .chip").count() == 10
    assert p.locator("#legend .chip").first.inner_text().startswith("0")
    # The first animation frame came after the scatter was drawn.
    assert p.evaluate("window.deepae.firstPaint") > 0
    box = overlay_box(p)
    p.mouse.click(box["x"] + 250, box["y"] + 300)
    p.mouse.click(box["x"] + 560, box["y"] + 220)
    p.mouse.move(box["x"] + 420, box["y"] + 380)
    ARTIFACTS.mkdir(exist_ok=True)
    p.screenshot(path=ARTIFACTS / "explorer.png")
    assert (ARTIFACTS / "explorer.png").stat().st_size > 20_000
    assert page.problems == []


def test_js_decoder_equals_pytorch_for_100_random_points(page, article):
    rng = np.random.default_rng(0)
    codes = article.ae.encode(article.mnist.x_train[:5000])
    lo, hi = codes.min(0), codes.max(0)
    points = (lo + rng.random((100, 2)) * (hi - lo)).astype(np.float32)  # (100, 2)
    expected = article.ae.decode(points).reshape(100, -1)  # (100, 784)
    got = np.array(page.page.evaluate(DECODE_ALL, points.tolist()))
    assert got.shape == (100, 784)
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)
    assert expected.std() > 0.05  # a trained decoder: the comparison is not of constants
    # And what is drawn: each point shown, then the decoded canvas read back.
    drawn = np.array(
        page.page.evaluate(
            """pts => pts.map(([x, y]) => { window.deepae.showAt(x, y);
                 const c = document.getElementById("decoded");
                 return Array.from(c.getContext("2d").getImageData(0, 0, 28, 28).data
                                   .filter((_, i) => i % 4 === 0)); })""",
            points.tolist(),
        )
    )
    diff = np.abs(drawn - grey(expected))
    assert diff.max() <= 1 and (diff == 0).mean() > 0.999  # off by one only on a .5 tie
    assert page.problems == []


@pytest.mark.parametrize("name", [n for n in DECODERS if n != "article"])
def test_js_decoder_equals_pytorch_for_other_decoders(browser, small_run, tmp_path, name):
    ae = make_model(DECODERS[name], seed=2)
    x = small_run.data.x_train[:1500]
    path = tmp_path / "explorer.html"
    path.write_text(explorer.build_explorer(ae, x, small_run.data.y_train[:1500], points=300))
    plane = latent.fit_plane(ae.encode(x))
    uv = np.random.default_rng(3).normal(scale=2, size=(100, 2))
    expected = ae.decode(plane.lift(uv)).reshape(100, -1)
    page, problems = open_page(browser, path)
    got = np.array(page.evaluate(DECODE_ALL, uv.tolist()))
    page.context.close()
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=0)
    assert problems == []


def test_moving_the_mouse_decodes_the_point_under_it(page, article):
    p = page.page
    box = overlay_box(p)
    rect = p.evaluate("window.deepae.plotRect()")
    view = p.evaluate("window.deepae.view")
    for fx, fy in [(0.2, 0.3), (0.75, 0.8), (0.5, 0.5)]:
        x = round(box["x"] + rect["left"] + fx * rect["width"])  # page pixel
        y = round(box["y"] + rect["top"] + fy * rect["height"])
        p.mouse.move(x, y)
        # Expected from the view alone: the left edge is x0, the top edge is y1.
        u = view["x0"] + (x - box["x"] - rect["left"]) / rect["width"] * (view["x1"] - view["x0"])
        v = view["y1"] - (y - box["y"] - rect["top"]) / rect["height"] * (view["y1"] - view["y0"])
        p.wait_for_function(
            "([u, v]) => Math.abs(window.deepae.current.u - u) < 1e-9 * (1 + Math.abs(u))"
            " && Math.abs(window.deepae.current.v - v) < 1e-9 * (1 + Math.abs(v))",
            arg=[u, v],
        )
        readout = p.locator("#readout")
        assert readout.inner_text() == f"z = ({u:.3f}, {v:.3f})".replace("-0.000", "0.000")
        expected = article.ae.decode([[u, v]])
        np.testing.assert_array_less(np.abs(canvas_grey(p, "#decoded") - grey(expected)), 1.5)
        near = p.evaluate("window.deepae.nearest(window.deepae.current.u, window.deepae.current.v)")
        check_nearest(p, article, u, v, near)
    assert page.problems == []


def check_nearest(p, article, u, v, near):
    """The nearest image shown is the embedded training image closest to (u, v)."""
    meta, _ = page_data(article.path.read_text())
    index = np.frombuffer(base64.b64decode(meta["points"]["index"]), "<u4")
    codes = article.ae.encode(article.mnist.x_train[index])  # (10000, 2)
    best = int(np.argmin(((codes - [u, v]) ** 2).sum(1)))
    assert near["index"] == index[best]
    assert near["label"] == article.mnist.y_train[index[best]]
    shown = canvas_grey(p, "#nearest")[0]
    np.testing.assert_array_equal(shown, article.mnist.x_train[index[best]].ravel())
    assert f"label {near['label']}, #{near['index']}" in p.locator("#nearest-caption").inner_text()


def test_two_pins_draw_the_interpolation_strip(page, article):
    p = page.page
    box = overlay_box(p)
    assert p.locator("#strip canvas").count() == 0
    p.mouse.click(box["x"] + 200, box["y"] + 420)
    assert "Now click to pin B" in p.locator("#pins-text").inner_text()
    p.mouse.click(box["x"] + 600, box["y"] + 150)
    pins = np.array(p.evaluate("window.deepae.pins"))
    expected_pins = [
        p.evaluate("xy => window.deepae.toPlane(...xy)", xy) for xy in ([200, 420], [600, 150])
    ]
    np.testing.assert_allclose(pins, expected_pins, rtol=1e-12)
    assert p.locator("#strip canvas").count() == 10
    line = pins[0] + np.linspace(0, 1, 10)[:, None] * (pins[1] - pins[0])  # (10, 2)
    strip = canvas_grey(p, "#strip canvas")
    assert np.abs(strip - grey(article.ae.decode(line.astype(np.float32)))).max() <= 1
    captions = p.locator("#strip figcaption").all_inner_texts()
    assert captions[0] == "A" and captions[-1] == "B" and captions[1] == "t=0.11"
    # A third click starts a new pair.
    p.mouse.click(box["x"] + 300, box["y"] + 300)
    assert len(p.evaluate("window.deepae.pins")) == 1 and p.locator("#strip canvas").count() == 0
    assert page.problems == []


def test_dragging_pans_moves_pins_and_wheel_zooms(page, article):
    p = page.page
    box = overlay_box(p)
    x, y = box["x"] + 400, box["y"] + 300
    before = p.evaluate("window.deepae.view")
    under = p.evaluate("xy => window.deepae.toPlane(...xy)", [400, 300])
    p.mouse.move(x, y)
    p.mouse.down()
    p.mouse.move(x + 60, y - 40, steps=4)
    p.mouse.up()
    p.wait_for_function("v => window.deepae.view.x0 !== v.x0", arg=before)
    # Panning moves the plane with the pointer: the same point is under it afterwards.
    np.testing.assert_allclose(
        p.evaluate("xy => window.deepae.toPlane(...xy)", [460, 260]), under, rtol=1e-9
    )
    assert p.evaluate("window.deepae.pins") == []  # a drag is not a click
    # Drag pin A to a new place: the decoded image follows it.
    p.mouse.click(x, y)
    p.mouse.move(x, y)
    p.mouse.down()
    p.mouse.move(x - 100, y + 50, steps=5)
    p.mouse.up()
    moved = p.evaluate("xy => window.deepae.toPlane(...xy)", [300, 350])
    np.testing.assert_allclose(p.evaluate("window.deepae.pins")[0], moved, rtol=1e-9)
    np.testing.assert_allclose(
        p.evaluate("[window.deepae.current.u, window.deepae.current.v]"), moved, rtol=1e-9
    )
    # Wheel up zooms in around the pointer.
    width = p.evaluate("window.deepae.view.x1 - window.deepae.view.x0")
    p.mouse.wheel(0, -300)
    p.wait_for_function("w => window.deepae.view.x1 - window.deepae.view.x0 < w * 0.8", arg=width)
    assert page.problems == []


def test_typed_coordinates_are_decoded(page, article):
    p = page.page
    p.fill("#coords", "1.5, -2")
    p.press("#coords", "Enter")
    current = p.evaluate("(({u, v, source}) => ({u, v, source}))(window.deepae.current)")
    assert current == {"u": 1.5, "v": -2, "source": "typed"}
    assert p.locator("#readout").inner_text() == "z = (1.500, -2.000)"
    expected = article.ae.decode([[1.5, -2.0]])
    np.testing.assert_allclose(
        p.evaluate("Array.from(window.deepae.current.pixels)"), expected.ravel(), atol=1e-5
    )
    assert np.abs(canvas_grey(p, "#decoded") - grey(expected)).max() <= 1
    # Far outside the view: the view moves to show the point.
    p.fill("#coords", "500 500")
    p.click("#decode-button")
    view = p.evaluate("window.deepae.view")
    assert view["x0"] < 500 < view["x1"] and view["y0"] < 500 < view["y1"]
    # Nonsense: a message, and the image stays.
    p.fill("#coords", "one, two")
    p.press("#coords", "Enter")
    assert "Type two numbers" in p.locator("#coord-error").inner_text()
    assert p.evaluate("window.deepae.current.u") == 500
    assert page.problems == []


def test_a_point_typed_far_away_is_shown_without_hanging_the_page(page, article):
    """A point 2^51 view widths out: float64 still tells the view's edges apart there, but
    cannot count its axis ticks one by one (tick number k + 1 == k). The page must answer;
    every action below times out (TIMEOUT_MS) if its script never returns."""
    p = page.page
    view = p.evaluate("window.deepae.view")
    u, v = 2.0**51 * (view["x1"] - view["x0"]), -(2.0**51) * (view["y1"] - view["y0"])
    p.fill("#coords", f"{u!r}, {v!r}")
    p.press("#coords", "Enter")
    p.wait_for_function(
        "([u, v]) => window.deepae.current.u === u && window.deepae.current.v === v", arg=[u, v]
    )
    after_two_frames(p)
    view = p.evaluate("window.deepae.view")
    assert view["x0"] < u < view["x1"] and view["y0"] < v < view["y1"]
    expected = article.ae.decode([[u, v]])
    np.testing.assert_allclose(
        p.evaluate("Array.from(window.deepae.current.pixels)"), expected.ravel(), atol=1e-5
    )
    # The view shows the point: the mouse over it decodes it, to a pixel.
    x, y = p.evaluate("uv => window.deepae.toPixel(...uv)", [u, v])
    box = overlay_box(p)
    p.mouse.move(box["x"] + x, box["y"] + y)
    rect, view = p.evaluate("[window.deepae.plotRect(), window.deepae.view]")
    du, dv = (view["x1"] - view["x0"]) / rect["width"], (view["y1"] - view["y0"]) / rect["height"]
    p.wait_for_function(
        "([u, v, du, dv]) => Math.abs(window.deepae.current.u - u) <= du"
        " && Math.abs(window.deepae.current.v - v) <= dv",
        arg=[u, v, du, dv],
    )
    assert page.problems == []


def test_zooming_in_a_hundred_times_keeps_the_page_working(page, article):
    """Zooming in without end (a trackpad fling) must neither hang the page nor shrink the
    view past what float64 can tell apart: the point under the pointer stays put, and the
    pixels beside it still decode points of their own."""
    p = page.page
    box = overlay_box(p)
    x, y = round(box["x"] + 400), round(box["y"] + 300)  # page pixel: events round to one
    px, py = x - box["x"], y - box["y"]  # canvas pixel
    plane = "xy => window.deepae.toPlane(...xy)"
    home, under = p.evaluate("window.deepae.view"), p.evaluate(plane, [px, py])
    p.evaluate(
        """([x, y]) => { const o = document.getElementById("overlay");
             for (let i = 0; i < 100; i++) o.dispatchEvent(new WheelEvent("wheel",
               { deltaY: -1000, clientX: x, clientY: y, bubbles: true, cancelable: true })); }""",
        [x, y],
    )  # each asks to zoom in 4.5x: 1e65x in all
    after_two_frames(p)
    np.testing.assert_allclose(p.evaluate(plane, [px, py]), under, rtol=1e-9)
    view = p.evaluate("window.deepae.view")
    assert view["x1"] - view["x0"] < 1e-6 * (home["x1"] - home["x0"])  # zoomed in, far
    here, right, below = (p.evaluate(plane, xy) for xy in ([px, py], [px + 1, py], [px, py + 1]))
    assert right[0] > here[0] and right[1] == here[1]
    assert below[1] < here[1] and below[0] == here[0]
    p.mouse.move(x + 1, y)
    p.wait_for_function(  # the page still answers the mouse
        "([u, du]) => Math.abs(window.deepae.current.u - u) < du / 2",
        arg=[right[0], right[0] - here[0]],
    )
    assert page.problems == []


def test_pca_page_decodes_through_the_plane_and_accepts_full_codes(browser, small_run, tmp_path):
    ae = make_model({"latent_size": 3})
    x = small_run.data.x_train[:1500]
    path = tmp_path / "explorer.html"
    path.write_text(explorer.build_explorer(ae, x, None, points=500))  # unlabelled data too
    plane = latent.fit_plane(ae.encode(x))
    page, problems = open_page(browser, path)
    assert page.locator("#subtitle").inner_text().startswith("500 training codes")
    assert page.locator("#legend").is_hidden()
    assert "principal components" in page.locator("#about-plane").text_content()
    page.fill("#coords", "0.5, -1.25")
    page.press("#coords", "Enter")
    z = page.evaluate("window.deepae.current.z")
    np.testing.assert_allclose(z, plane.lift([[0.5, -1.25]])[0], rtol=1e-6, atol=1e-6)
    assert page.locator("#readout").inner_text().startswith("PC1 = 0.500, PC2 = -1.250")
    page.fill("#coords", "1, 2, 3")  # a full 3-D code
    page.press("#coords", "Enter")
    got = page.evaluate("Array.from(window.deepae.current.pixels)")
    np.testing.assert_allclose(got, ae.decode([[1, 2, 3]]).ravel(), atol=1e-5)
    caption = page.locator("#nearest-caption").inner_text()
    assert caption.startswith("nearest training image: #") and "label" not in caption
    page.context.close()
    assert problems == []


def test_images_that_are_not_square_keep_their_shape(browser, mnist_small, tmp_path):
    """A 20 x 30 (H x W) model whose decoder draws all white: the decoded image fills the
    168-pixel width and 168 * 20 / 30 = 112 rows of the square, black above and below."""
    ae = make_model({"input_size": 600, "image_shape": (20, 30)})
    with torch.no_grad():
        ae.net.decoder.body[-1].bias.fill_(50.0)  # sigmoid(50) = 1: every pixel white
    wide = np.pad(mnist_small.x_train[:500, 4:24, :], ((0, 0), (0, 0), (1, 1)))  # (N, 20, 30)
    path = tmp_path / "explorer.html"
    path.write_text(explorer.build_explorer(ae, wide, None, points=200))
    page, problems = open_page(browser, path)
    page.fill("#coords", "0, 0")
    page.press("#coords", "Enter")
    shot = np.asarray(Image.open(io.BytesIO(page.locator("#decoded").screenshot())).convert("L"))
    white = shot > 200  # ~(168, 168) at the page's 1:1 scale (a row more on a half pixel)
    assert white.shape[1] == 168 and abs(white.shape[0] - 168) <= 1
    # The screenshot's edge rows may be the white card around the canvas: look inside.
    inner = white[3:-3, 10:-10].all(axis=1)  # rows of the canvas drawn white, corners aside
    rows = np.flatnonzero(inner) + 3
    assert abs(len(rows) - 112) <= 2 and rows[-1] - rows[0] + 1 == len(rows)  # one band
    assert abs(rows[0] - 28) <= 2  # centred: 28 black rows above it, 28 below
    assert not white[3:20].any() and not white[-20:-3].any()
    page.context.close()
    assert problems == []


# -- names that look like HTML, and a collapsed run (tests/test_untrusted_input.py and
# tests/test_degenerate.py build the pages; one session-wide Chromium drives them here) --


def test_nasty_names_load_as_text(browser, nasty_page):  # noqa: F811
    path, title = nasty_page
    page, problems = open_page(browser, path)  # waits for window.deepae.ready
    try:
        assert page.evaluate("window.deepae.data.classes") == list(NASTY)
        assert page.evaluate("document.title") == title
        assert page.locator("h1").inner_text() == title
        assert page.evaluate("window.pwned") is None
        assert page.locator("#legend .chip").count() == len(NASTY)
        assert problems == []
    finally:
        page.context.close()


def test_the_collapse_banner_is_visible_above_the_plot(browser, dead_run):  # noqa: F811
    page, problems = open_page(browser, dead_run / "explorer.html")
    try:
        banner = page.locator("#banner")
        assert banner.is_visible()
        assert "latent space collapsed" in banner.inner_text()
        assert banner.bounding_box()["y"] < page.locator("#scatter").bounding_box()["y"]
        assert problems == []
    finally:
        page.context.close()

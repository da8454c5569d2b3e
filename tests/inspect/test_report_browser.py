"""The report in a real browser: headless Chromium (the system's, never a downloaded one)
opens the file, finds the heads grid, clicks a head and sees the heatmap change; hostile tokens
show as text and run nothing."""

import os
import shutil

import pytest

from atenea.cli.main import main
from tests.inspect.conftest import HOSTILE

pytestmark = pytest.mark.browser

CHROMIUM = (
    os.environ.get("ATENEA_CHROMIUM")
    or shutil.which("chromium")
    or shutil.which("chromium-browser")
)
if CHROMIUM is None:
    pytest.skip(
        "no Chromium on this machine (apt-get install chromium; .ci/run installs it)",
        allow_module_level=True,
    )
playwright = pytest.importorskip("playwright.sync_api", reason="the playwright package is missing")


@pytest.fixture(scope="module")
def browser():
    with playwright.sync_playwright() as p:
        chromium = p.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        yield chromium
        chromium.close()


def open_report(browser, path):
    page = browser.new_page(viewport={"width": 1280, "height": 1600})
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(path.as_uri())
    page.wait_for_selector("body[data-ready='1']", timeout=15000)
    return page, errors


def canvas_data(page, selector):
    return page.eval_on_selector(selector, "c => c.toDataURL()")


def test_click_a_head_and_the_heatmap_changes(browser, tiny_bert, tmp_path):
    out = tmp_path / "report.html"
    assert (
        main(
            [
                "explain",
                "the robot picked up the wrench because it was heavy",
                "--focus",
                "it",
                "--model",
                str(tiny_bert),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    page, errors = open_report(browser, out)
    thumbs = page.locator(".panel canvas.thumb")
    assert thumbs.count() == 3 * 4  # layers x heads
    before = canvas_data(page, ".panel .heatmap canvas")
    page.locator('.panel canvas.thumb[data-layer="0"][data-head="3"]').click()
    heatmap = page.locator(".panel .heatmap")
    assert heatmap.get_attribute("data-layer") == "0" and heatmap.get_attribute("data-head") == "3"
    assert canvas_data(page, ".panel .heatmap canvas") != before
    assert page.locator("#head").input_value() == "3"
    # a row of the head table selects too
    page.locator('table.heads tr[data-layer="2"][data-head="1"]').click()
    assert heatmap.get_attribute("data-layer") == "2"
    # hovering a token dims the other tokens' lines
    page.locator("svg.lines text.token").nth(2).hover()
    assert page.locator("svg.lines line.dim").count() > 0
    shot = page.screenshot(full_page=True)
    from io import BytesIO

    from PIL import Image

    image = Image.open(BytesIO(shot)).convert("RGB")
    colours = image.resize((200, 200)).getcolors(maxcolors=100000)
    assert colours is not None and len(colours) > 200, "the screenshot looks blank"
    assert errors == []


def test_hostile_tokens_show_as_text_and_run_nothing(browser, tiny_bert, tmp_path):
    out = tmp_path / "hostile.html"
    text = " ".join(["the", *HOSTILE, "robot"])
    assert main(["explain", text, "--model", str(tiny_bert), "--out", str(out)]) == 0
    page, errors = open_report(browser, out)
    # whole in each label's <title> (a label too wide for its room is cut, test_report_layout.py)
    titles = page.locator("svg.lines title").all_text_contents()
    labels = page.locator("svg.lines text.token").all_text_contents()
    for token in HOSTILE:
        assert token in titles
        assert any(token.startswith(label.strip("\u2068\u2069…")) for label in labels)
    page.locator("svg.lines text.token").nth(3).hover()
    assert page.evaluate("window.__pwned") is None
    assert page.locator("img").count() == 0
    assert page.locator(".panel h2.text").text_content() == text
    assert errors == []


def heatmap_size(page):
    return page.eval_on_selector(".panel .heatmap canvas", "c => [c.width, c.height]")


def test_encoder_decoder_report_draws_non_square_cross_maps(browser, tiny_seq2seq, tmp_path):
    """Source of 5 tokens, target of 3 (2 words and EOS): the cross map is 3 rows x 5 columns;
    switching the kind to the encoder draws a square 5 x 5 map over the encoder's 2 layers."""
    out = tmp_path / "seq2seq.html"
    source = "el banco cerró la puerta"
    args = ["explain", source, "--model", str(tiny_seq2seq), "--target", "the bank"]
    assert main([*args, "--out", str(out)]) == 0
    page, errors = open_report(browser, out)
    assert page.locator("#kind-label").is_visible()
    heatmap = page.locator(".panel .heatmap")
    assert heatmap.get_attribute("data-kind") == "cross"
    width, height = heatmap_size(page)  # label column 100 px, key axis 80 px, square cells
    cell = (height - 80) / 3
    assert cell >= 6 and width - 100 == 5 * cell
    assert page.locator(".panel canvas.thumb").count() == 3 * 4  # decoder layers x heads
    thumb = page.locator(".panel canvas.thumb").first.bounding_box()
    assert thumb["width"] > thumb["height"]  # a 3 x 5 thumbnail keeps its shape
    left = page.locator("svg.lines text.token[text-anchor='end']").all_text_contents()
    right = page.locator("svg.lines text.token[text-anchor='start']").all_text_contents()
    assert left == ["the", "bank", "</s>"] and right == source.split()
    before = canvas_data(page, ".panel .heatmap canvas")

    page.select_option("#kind", "encoder")
    assert heatmap.get_attribute("data-kind") == "encoder"
    width, height = heatmap_size(page)
    assert width - 100 == height - 80  # square
    assert canvas_data(page, ".panel .heatmap canvas") != before
    assert page.locator("#layer option").count() == 2  # the encoder has 2 layers, not 3
    assert page.locator("#layer").input_value() == "1"  # layer 2 of the decoder, clamped
    assert page.locator(".panel canvas.thumb").count() == 2 * 4
    assert "encoder's self-attention only" in page.locator(".panel .rollout").text_content()

    page.select_option("#kind", "decoder")
    width, height = heatmap_size(page)
    assert (width - 100, height - 80) == (3 * 30, 3 * 30)  # BOS the bank: 3 x 3, 30 px cells
    page.locator('.panel canvas.thumb[data-layer="0"][data-head="1"]').click()
    assert heatmap.get_attribute("data-layer") == "0" and heatmap.get_attribute("data-head") == "1"
    assert errors == []


def image_report(tmp_path, layers: int, heads: int, picture_shape, labels=None):
    """``atenea explain --image``'s page (and PNGs) for a random picture of ``picture_shape``
    ``(H, W, 3)`` and a random 16x16 ViT of ``layers`` x ``heads`` with 3 classes."""
    pytest.importorskip("PIL", reason="the image report needs Pillow")
    import numpy as np
    import torch
    from PIL import Image

    import atenea
    from atenea.models import ViTConfig, ViTForImageClassification

    torch.manual_seed(0)
    config = ViTConfig(image_size=16, patch_size=4, num_channels=3, dim=24, num_layers=layers,
                       num_heads=heads, ffn_hidden=40)  # fmt: skip
    model = ViTForImageClassification(config, 3, labels=labels)
    folder = atenea.save_pretrained(model, tmp_path / "vit")
    picture = tmp_path / "photo.png"
    pixels = np.random.default_rng(0).random(picture_shape) * 255
    Image.fromarray(pixels.astype("uint8")).save(picture)
    out = tmp_path / "image.html"
    assert main(["explain", "--image", str(picture), "--model", str(folder), "--out", str(out),
                 "--png", str(tmp_path / "png")]) == 0  # fmt: skip
    return out


def test_image_report_hover_shows_where_a_patch_attends(browser, tmp_path):
    """``atenea explain --image``'s page: the picture and its overlay load, hovering a patch
    outlines it and redraws the overlay, choosing a head redraws it again."""
    out = image_report(tmp_path, layers=2, heads=3, picture_shape=(20, 24, 3))
    page, errors = open_report(browser, out)
    assert page.eval_on_selector("#picture", "i => i.complete && i.naturalWidth") == 16
    assert page.locator("#view option").count() == 1 + 2 * (1 + 3)
    before = canvas_data(page, "#overlay")
    box = page.locator("#overlay").bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.9, box["y"] + box["height"] * 0.1)  # row 0, col 3
    assert page.eval_on_selector("#overlay", "c => c.dataset.patch") == "3"
    hovered = canvas_data(page, "#overlay")
    assert hovered != before and "row 0, col 3" in page.inner_text("#info")
    page.mouse.move(0, 0)
    page.select_option("#view", "L1H2")
    assert canvas_data(page, "#overlay") not in (before, hovered)
    assert errors == []

"""The report's text in a real browser (headless Chromium, as test_report_browser.py): tokens
written right to left, or holding a direction override (U+202E), leave atenea's own numbers and
arrows in their order on screen; labels are cut whole characters at a time, with "…", within
their room; long words wrap inside the panel; heads can be chosen from the keyboard.

Order on screen is read from the positions the browser gives each piece of a line
(``Range.getClientRects``): going through a line in its logical order, a token (as one piece)
and each other character must stand further right than the one before."""

import pytest

from atenea.cli.main import main
from tests.inspect.conftest import ARABIC, EMOJI, HEBREW, LONG, OVERRIDE

# Chromium and playwright, or a skip with the reason (test_report_browser.py's checks)
from tests.inspect.test_report_browser import CHROMIUM, image_report, open_report, playwright

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def chromium():
    with playwright.sync_playwright() as p:
        launched = p.chromium.launch(executable_path=CHROMIUM,
                                     args=["--no-sandbox", "--disable-gpu", "--no-first-run"])  # fmt: skip
        yield launched
        launched.close()


TOKENS = sorted([ARABIC, HEBREW, OVERRIDE, EMOJI, LONG, "العالم"], key=len, reverse=True)
TEXT = f"robot {ARABIC} {HEBREW} {OVERRIDE} picked {OVERRIDE} the wrench"

# [piece, left edge] of each piece of each element's text, in logical order: a token of TOKENS
# is one piece, any other character (white space and isolate marks aside) another.
PIECES = """([selector, tokens]) => Array.from(document.querySelectorAll(selector), (element) => {
  const node = element.firstChild, text = node.data, pieces = [];
  const left = (a, b) => {
    const range = document.createRange(); range.setStart(node, a); range.setEnd(node, b);
    return Math.min(...Array.from(range.getClientRects(), (r) => r.left));
  };
  for (let i = 0; i < text.length;) {
    const piece = tokens.find((t) => text.startsWith(t, i)) || text[i];
    if (!/^[\\s\\u2068\\u2069]$/.test(piece)) pieces.push([piece, left(i, i + piece.length)]);
    i += piece.length;
  }
  return pieces;
})"""


def assert_in_order(page, selector, tokens=TOKENS):
    lines = page.evaluate(PIECES, [selector, tokens])
    assert lines, selector
    for pieces in lines:
        lefts = [left for _, left in pieces]
        text = "".join(piece for piece, _ in pieces)
        assert all(a < b for a, b in zip(lefts, lefts[1:])), f"out of order on screen: {text!r}"
    return lines


def explain(args, out):
    assert main(["explain", *args, "--out", str(out)]) == 0


def hover_cell(page, container, row, column):
    """Hover the cell (row, column) of the heatmap in ``container``."""
    data = page.evaluate("JSON.parse(document.getElementById('atenea-data').textContent)")
    panel = data["panels"][0]
    rows, columns = len(panel["tokens"]), len(panel.get("key_tokens") or panel["tokens"])
    cell = max(6, min(30, 520 // max(rows, columns)))
    canvas = page.locator(f".panel {container} canvas").first
    canvas.hover(position={"x": 100 + column * cell + cell / 2, "y": 80 + row * cell + cell / 2})
    return panel["tokens"]


def test_right_to_left_tokens_leave_tooltips_and_summary_in_order(
    chromium, layout_models, tmp_path
):
    out = tmp_path / "bidi.html"
    explain([TEXT, "--focus", "robot", "--model", str(layout_models / "bert")], out)
    page, errors = open_report(chromium, out)
    page.set_viewport_size({"width": 1800, "height": 1600})  # one line each, no wrapping
    tokens = hover_cell(page, ".heatmap", 0, 0)
    for query, key in [(OVERRIDE, "robot"), (ARABIC, HEBREW), ("robot", HEBREW), (HEBREW, "the")]:
        for container in (".heatmap", ".rollout"):
            hover_cell(page, container, tokens.index(query), tokens.index(key))
            (pieces,) = assert_in_order(page, f".panel {container} .tip")
            assert [p for p, _ in pieces][:1] == [query] or query == "robot"
            assert "\u2192" in [p for p, _ in pieces]
    lines = assert_in_order(page, ".panel ul.focus li")
    # the override and the Arabic word among the targets, numbers after them: the case at stake
    assert any(OVERRIDE in [p for p, _ in pieces[:-4]] for pieces in lines)
    assert errors == []


def test_translation_heading_and_alignment_lines_stay_in_order(chromium, layout_models, tmp_path):
    for name in ("seq2seq", "rnn"):
        out = tmp_path / f"{name}.html"
        model = str(layout_models / name)
        source, target = f"{OVERRIDE} the robot", f"{OVERRIDE} {ARABIC} wrench"
        explain([source, "--target", target, "--model", model], out)
        page, errors = open_report(chromium, out)
        page.set_viewport_size({"width": 1800, "height": 1600})
        # the override runs to the end of the text the user gave, and no further
        (heading,) = assert_in_order(page, ".panel h2.text", [source, target])
        assert [p for p, _ in heading] == [source, "\u2192", target]
        lines = assert_in_order(page, ".panel ul.focus li")
        assert [p for p, _ in lines[0]][:2] == [OVERRIDE, "-"]  # the target token, then ->
        heading = page.locator(".panel h3.rollout-heading").text_content()
        assert heading == ("Alignment" if name == "rnn" else "Rollout")
        assert errors == []


def test_image_prediction_keeps_each_percentage_after_its_class(chromium, tmp_path):
    labels = ["شعر", "العالم", HEBREW]
    out = image_report(tmp_path, layers=1, heads=2, picture_shape=(16, 16, 3), labels=labels)
    page, errors = open_report(chromium, out)
    (pieces,) = assert_in_order(page, "#prediction", ["شعر", "العالم", HEBREW])
    assert [p for p, _ in pieces][-1] == "%"
    assert errors == []


DRAWN = """window.__drawn = [];
const fillText = CanvasRenderingContext2D.prototype.fillText;
CanvasRenderingContext2D.prototype.fillText = function (text, ...rest) {
  window.__drawn.push(String(text)); return fillText.call(this, text, ...rest);
};"""


def test_labels_are_cut_whole_with_an_ellipsis_within_their_room(chromium, layout_models, tmp_path):
    out = tmp_path / "long.html"
    explain([f"robot {EMOJI} {LONG} picked", "--model", str(layout_models / "bert")], out)
    page = chromium.new_page(viewport={"width": 1280, "height": 1600})
    page.add_init_script(DRAWN)  # what the heatmaps draw as text
    page.goto(out.as_uri())
    page.wait_for_selector("body[data-ready='1']", timeout=15000)
    drawn = page.evaluate("window.__drawn")  # every row label, then every column label
    lone = [t for t in drawn if any(0xD800 <= ord(c) <= 0xDFFF for c in t)]
    assert lone == []  # (Python sees a lone surrogate of JavaScript as such a code point)
    cut = {
        EMOJI: "\u2068a" + "\U0001f600" * 12 + "\u2026\u2069",
        LONG: f"\u2068{'x' * 13}\u2026\u2069",
    }
    tokens = ["[CLS]", "robot", EMOJI, LONG, "picked", "[SEP]"]
    assert drawn == [cut.get(t, t) for t in tokens] * 4  # heatmap and rollout, rows and columns
    # the head view: every label inside the SVG and off the lines (x 150..270), the whole token
    # in its <title>
    boxes = page.evaluate("""() => Array.from(document.querySelectorAll('.head-view text.token'),
        (t) => { const b = t.getBBox(); return [t.getAttribute('text-anchor'), b.x, b.x + b.width,
                 t.textContent, t.parentNode.querySelector('title').textContent]; })""")
    for anchor, start, end, shown, whole in boxes:
        assert (end <= 150 if anchor == "end" else start >= 270) and 0 <= start and end <= 420
        assert shown == whole or (shown.endswith("\u2026\u2069") and whole in (EMOJI, LONG))
    assert {whole for *_, whole in boxes} >= {EMOJI, LONG}
    page.close()


def test_a_long_word_wraps_inside_the_panel(chromium, layout_models, tmp_path):
    out = tmp_path / "wrap.html"
    explain([f"robot {LONG} picked", "--focus", LONG, "--model", str(layout_models / "bert")], out)
    page, errors = open_report(chromium, out)
    # where the text itself ends (an element's own box keeps the panel's width when its text
    # runs out of it)
    overflowing = page.evaluate("""() => { const panel = document.querySelector('.panel');
        const right = panel.getBoundingClientRect().right;
        return Array.from(panel.querySelectorAll('h2, li'), (e) => {
          const range = document.createRange(); range.selectNodeContents(e);
          return [e.tagName, Math.max(...Array.from(range.getClientRects(), (r) => r.right))];
        }).filter(([, end]) => end > right); }""")
    assert overflowing == []
    assert page.locator(".panel ul.focus li").count() > 0 and errors == []


def test_heads_can_be_chosen_from_the_keyboard(chromium, layout_models, tmp_path):
    out = tmp_path / "keys.html"
    explain(["the robot picked the wrench", "--model", str(layout_models / "bert")], out)
    page, errors = open_report(chromium, out)
    heatmap = page.locator(".panel .heatmap")
    thumb = page.locator('.panel canvas.thumb[data-layer="0"][data-head="1"]')
    assert thumb.get_attribute("tabindex") == "0" and thumb.get_attribute("role") == "button"
    thumb.focus()
    page.keyboard.press("Enter")
    assert (heatmap.get_attribute("data-layer"), heatmap.get_attribute("data-head")) == ("0", "1")
    page.keyboard.press("Tab")  # on to the next head, chosen with Space
    page.keyboard.press(" ")
    assert (heatmap.get_attribute("data-layer"), heatmap.get_attribute("data-head")) == ("1", "0")
    row = page.locator('table.heads tr[data-layer="1"][data-head="1"]')
    row.focus()
    page.keyboard.press("Enter")
    assert heatmap.get_attribute("data-head") == "1" and "selected" in row.get_attribute("class")
    assert errors == []

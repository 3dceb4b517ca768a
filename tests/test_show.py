"""``charlm show`` (charlm/commands/show.py) and its page (charlm/inspect/page.py): the numbers
in the page and the JSON are activations()'s, the page asks nothing of the network, bad input
is one line; and, in headless Chromium, the page works as a user would use it."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import assert_one_line_error, invoke

TEXT = "the dogs near the cat sleep .\nthe cat runs !\nthe dogs are happy and the cat is tired .\n" * 3
CHROMIUM = os.environ.get("CHARLM_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run", "--disable-sync"]


def tiny_lm(kind: str, cell: str, layers: int = 2, hidden: int = 16):
    """An untrained model of ``cell`` over a ``kind`` tokenizer of a small text with non-ASCII."""
    from charlm.config import ModelConfig
    from charlm.data.tokenizers import build_tokenizer
    from charlm.nn.lm import LanguageModel
    from charlm.nn.model import build_model

    tokenizer = build_tokenizer(kind, "the dogs near the cat sleep .\nThe cats run ! é ü\n")
    config = ModelConfig(cell=cell, layers=layers, hidden=hidden, embedding=8)
    return LanguageModel(build_model(config, tokenizer.vocab_size), tokenizer, config)


def assert_page_matches(lm, text, data, names):
    """The page's numbers (read back) are activations()'s: each value within half its unit's
    quantization step, the surprisal -logp / ln 2, the same next tokens."""
    from charlm.inspect.activations import activations

    acts = activations(lm, text, top_k=5)
    assert data["tokens"] == len(acts) and data["pieces"] == acts.pieces
    arrays = data["arrays"]
    for layer in range(lm.config.layers):
        for name in names:
            step = arrays[f"step/{layer + 1}/{name}"]
            error = np.abs(data["values"][layer][name] - acts.values[layer][name]).max(axis=0)
            assert np.all(error <= step / 2 + 1e-6 * np.maximum(1, np.abs(acts.values[layer][name]).max(axis=0))), \
                (layer, name, float((error - step / 2).max()))
    surprisal = arrays["surprisal"]
    expected = -acts.logp / math.log(2)
    assert np.array_equal(np.isnan(surprisal), np.isnan(expected))
    np.testing.assert_allclose(surprisal[~np.isnan(expected)], expected[~np.isnan(expected)], rtol=1e-6, atol=1e-6)
    labels = data["labels"]
    assert [labels[i] for i in arrays["token"]] == acts.tokens
    from charlm.evaluate import token_label

    assert [[labels[i] for i in row] for row in arrays["top_ids"]] == \
        [[token_label(lm.tokenizer, i) for i in row] for row in acts.top_ids]
    np.testing.assert_allclose(arrays["top_probs"] / 65535, acts.top_probs, atol=1 / 65535)


# ---- the numbers ------------------------------------------------------------------------------------


def test_page_numbers_are_activations(lm):
    from charlm.inspect.page import page, read_page, show
    from charlm.inspect.saturation import saturation

    shown = show(lm, TEXT, values="h,c,f", units="1:3,2:5", about={"model": "m.keras", "text": "a test"})
    body, bits = page(shown)
    assert bits == 8
    data = read_page(body)
    assert data["values"] and list(data["values"][0]) == ["h", "c", "f"]
    assert_page_matches(lm, TEXT, data, ["h", "c", "f"])
    assert data["preset"] == [[1, 3], [2, 5]] and data["first"] == {"layer": 1, "value": "h", "unit": 3}
    # the saturation panel's counts are saturation()'s fractions
    expected = saturation(lm, TEXT)
    sat = data["saturation"]
    assert sat["gates"] == ["i", "f", "o"] and sat["thresholds"] == expected["thresholds"]
    for layer, per_gate in enumerate(expected["layers"]):
        for g, gate in enumerate(sat["gates"]):
            assert np.array(sat["left"][layer][g]) / data["tokens"] == pytest.approx(per_gate[gate]["left"])
            assert np.array(sat["right"][layer][g]) / data["tokens"] == pytest.approx(per_gate[gate]["right"])


@pytest.mark.parametrize("bits", [3, 4, 5, 6, 8])
def test_each_precision_is_within_half_a_step(lm, bits):
    from charlm.inspect.page import page, read_page, show

    body, used = page(show(lm, TEXT), bits=bits)
    data = read_page(body)
    assert used == data["bits"] == bits
    assert max(int(q.max()) for name, q in data["arrays"].items() if name.startswith("q/")) <= (1 << bits) - 1
    assert_page_matches(lm, TEXT, data, ["h", "c"])


@pytest.mark.parametrize("kind, cell", [("byte", "rnn"), ("word", "gru"), ("char", "lstm")])
def test_every_tokenizer_and_cell(kind, cell):
    from charlm.inspect.page import numbers, page, read_page, show

    lm = tiny_lm(kind, cell)
    text = "the cat near the dogs runs .\nThe dogs sleep ! é ü zebra\n"
    shown = show(lm, text, units="2:3")
    data = read_page(page(shown)[0])
    names = ["h", "c"] if cell == "lstm" else ["h"]
    assert list(data["values"][0]) == names
    assert_page_matches(lm, text, data, names)
    assert "".join(data["pieces"]) == ("".join(text.split(" ")) if kind == "word" else text)
    assert data["saturation"]["gates"] == {"rnn": ["h"], "gru": ["z", "r"], "lstm": ["i", "f", "o"]}[cell]
    unknown = lm.tokenizer.count_unknown(text)  # "z" and "b"; "runs" and "zebra"; no byte
    assert (unknown > 0) == (kind != "byte")
    assert data["about"]["unknown"] == len(data["unknown_at"]) == shown.about["unknown"] == unknown
    if kind == "byte":  # a two-byte character stands on its first byte
        at = data["pieces"].index("é")
        assert data["pieces"][at + 1] == "" and data["labels"][data["arrays"]["token"][at]] == "<0xC3>"
    result = numbers(shown)
    assert [u["layer"] for u in result["units"]] == [2] and result["units"][0]["unit"] == 3


def test_default_unit_is_the_liveliest_of_the_top_layer(lm):
    from charlm.inspect.page import first_unit, show

    shown = show(lm, TEXT)
    assert first_unit(shown) == (1, int(np.argmax(shown.acts.values[1]["h"].std(axis=0))))


def test_embedded_bytes_round_trip():
    from charlm.inspect.page import ESCAPED, embed, unembed

    rng = np.random.default_rng(0)
    for blob in [b"", bytes(range(256)) * 3, rng.integers(0, 256, 10_000, dtype=np.uint8).tobytes(), b"\x01" * 9]:
        embedded = embed(blob)
        assert unembed(embedded) == blob
        for byte in ESCAPED:
            if byte != 0x01:
                assert bytes([byte]) not in embedded


def test_units_and_values_are_checked():
    from charlm.errors import CharlmError
    from charlm.inspect.page import check_units, check_values

    assert check_units("1:37, 2:200,1:37", 2, 512) == [(0, 37), (1, 200)]
    assert check_values(None, "lstm") == ("h", "c") and check_values(None, "gru") == ("h",)
    assert check_values("h,f,h", "lstm") == ("h", "f")
    for spec, fragment in [("3:5", "layer 3 does not exist"), ("0:5", "layer 0 does not exist"),
                           ("1:512", "unit 512 does not exist"), ("1-5", "LAYER:UNIT"), ("a:b", "LAYER:UNIT")]:
        with pytest.raises(CharlmError, match=fragment):
            check_units(spec, 2, 512)
    with pytest.raises(CharlmError, match="has no 'z'"):
        check_values("h,z", "lstm")


# ---- the command ----------------------------------------------------------------------------------


def test_command_writes_a_page(tiny_model_path, lm, tmp_path):
    from charlm.inspect.page import read_page

    out = tmp_path / "page.html"
    result = invoke("show", tiny_model_path, "--text", TEXT, "--units", "2:7,1:0", "-o", out)
    assert result.exit_code == 0, result.stderr
    unknown = lm.tokenizer.count_unknown(TEXT)  # the "!"s
    assert unknown > 0 and result.stderr.count("\n") == 1
    assert f"wrote {out}" in result.stderr and f" {unknown} unknown" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["page.html"]
    data = read_page(out)
    assert data["preset"] == [[2, 7], [1, 0]] and data["first"]["layer"] == 2
    assert data["about"]["text"] == "--text" and data["about"]["model"] == str(tiny_model_path)
    assert_page_matches(lm, TEXT, data, ["h", "c"])


def test_command_reads_the_bundled_text_and_counts_unknown(tiny_model_path, tmp_path):
    from charlm.inspect.page import read_page

    out = tmp_path / "page.html"
    assert invoke("show", tiny_model_path, "-o", out, "--max-tokens", 300).exit_code == 0
    data = read_page(out)
    assert data["tokens"] == 300 and "held-out" in data["about"]["text"]
    source = tmp_path / "text.txt"
    source.write_text("the cat \u2603 sleeps \u2603\n", encoding="utf-8")
    result = invoke("show", tiny_model_path, "--file", source, "-o", out, "--values", "h")
    assert result.exit_code == 0, result.stderr
    assert "2 unknown" in result.stderr
    data = read_page(out)
    assert data["about"]["unknown"] == 2 and len(data["unknown_at"]) == 2 and data["values"][0].keys() == {"h"}


def test_json_holds_the_numbers(tiny_model_path, lm, tmp_path):
    from charlm.inspect.activations import activations
    from charlm.inspect.saturation import saturation

    result = invoke("show", tiny_model_path, "--text", TEXT, "--units", "1:3,2:31", "--values", "h,c,o", "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    acts = activations(lm, TEXT, top_k=5)
    assert data["tokens"] == acts.tokens and data["pieces"] == acts.pieces and data["values"] == ["h", "c", "o"]
    expected = -acts.logp / math.log(2)
    assert [s is None for s in data["surprisal"]] == list(np.isnan(expected))
    np.testing.assert_allclose([s for s in data["surprisal"] if s is not None], expected[~np.isnan(expected)], atol=1e-6)
    np.testing.assert_allclose(data["top_probs"], acts.top_probs, atol=1e-6)
    from charlm.evaluate import token_label

    assert data["top_tokens"] == [[token_label(lm.tokenizer, i) for i in row] for row in acts.top_ids]
    assert [(u["layer"], u["unit"]) for u in data["units"]] == [(1, 3), (2, 31)]
    for entry in data["units"]:
        for name in ("h", "c", "o"):
            np.testing.assert_allclose(entry["values"][name], acts.values[entry["layer"] - 1][name][:, entry["unit"]],
                                       atol=1e-6)
    assert data["saturation"] == json.loads(json.dumps(saturation(lm, TEXT)))
    # to a file, every unit when none is chosen
    out = tmp_path / "numbers.json"
    result = invoke("show", tiny_model_path, "--text", TEXT, "--json", "-o", out)
    assert result.exit_code == 0, result.stderr
    units = json.loads(out.read_text(encoding="utf-8"))["units"]
    assert len(units) == 2 * 32 and units[-1]["layer"] == 2 and units[-1]["unit"] == 31


def test_page_is_self_contained(tiny_model_path, tmp_path):
    out = tmp_path / "page.html"
    assert invoke("show", tiny_model_path, "--max-tokens", 500, "-o", out).exit_code == 0
    body = out.read_bytes()
    start = body.index(b'id="charlm-blob">')
    markup = (body[:start] + body[body.index(b"</script>", start):]).decode("ascii")
    assert "http://" not in markup and "https://" not in markup
    assert not re.search(r"\b(src|href|action|srcset|poster)\s*=", markup, re.IGNORECASE)
    assert not re.search(r"<(link|img|iframe|object|embed|audio|video|source|base)\b|@import|url\(", markup, re.IGNORECASE)
    assert "Content-Security-Policy" in markup and "default-src 'none'" in markup
    assert markup.isascii() and b"charset=\"windows-1252\"" in body[:300]


@pytest.mark.parametrize("args, fragments", [
    (["--units", "3:5"], ["layer 3 does not exist", "1 to 2"]),
    (["--units", "1:32"], ["unit 32 does not exist", "0 to 31"]),
    (["--units", "first"], ["LAYER:UNIT"]),
    (["--values", "h,z"], ["has no 'z'"]),
    (["--text", ""], ["empty"]),
    (["--text", "ab", "--file", "x.txt"], ["not both"]),
])
def test_bad_input_is_one_line(tiny_model_path, tmp_path, args, fragments):
    out = tmp_path / "page.html"
    arguments = list(args) if "--text" in args else ["--text", TEXT, *args]
    assert_one_line_error(invoke("show", tiny_model_path, *arguments, "-o", out), *fragments)
    assert list(tmp_path.iterdir()) == []


def test_not_a_model_is_one_line(tmp_path):
    fake = tmp_path / "model.keras"
    fake.write_text("not a model", encoding="utf-8")
    out = tmp_path / "page.html"
    assert_one_line_error(invoke("show", fake, "--text", TEXT, "-o", out), str(fake))
    assert_one_line_error(invoke("show", tmp_path / "missing.keras", "--text", TEXT, "-o", out), "not found")
    assert not out.exists()


def test_unwritable_output_is_one_line(tiny_model_path, tmp_path):
    assert_one_line_error(invoke("show", tiny_model_path, "--text", TEXT, "-o", tmp_path / "no" / "page.html"),
                          "cannot write", "does not exist")
    assert_one_line_error(invoke("show", tiny_model_path, "--text", TEXT, "-o", tmp_path), "cannot write", "directory")
    blocker = tmp_path / "file"
    blocker.write_text("x", encoding="utf-8")
    assert_one_line_error(invoke("show", tiny_model_path, "--text", TEXT, "-o", blocker / "page.html"), "cannot write")
    assert_one_line_error(invoke("show", tiny_model_path, "--text", TEXT), "-o PAGE.html")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_write_failure_leaves_no_file(tiny_model_path, tmp_path, monkeypatch):
    def fail(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", fail)  # the page is built, but writing it fails
    out = tmp_path / "page.html"
    assert_one_line_error(invoke("show", tiny_model_path, "--text", TEXT, "-o", out), "cannot write", "No space")
    assert list(tmp_path.iterdir()) == []


def test_a_text_too_long_for_the_page_is_refused(tiny_model_path, tmp_path, monkeypatch):
    import charlm.inspect.page as pages

    out = tmp_path / "page.html"
    # refused before reading: the page could not fit however well it compressed
    monkeypatch.setattr(pages, "LIMIT", 1_000)
    line = assert_one_line_error(invoke("show", tiny_model_path, "--max-tokens", 1000, "--values", "h,c", "-o", out),
                                 "over the 0.001 MB limit", "--max-tokens", "--values h")
    assert "at least" in line
    # refused once built: even at the coarsest precision the page passes the limit
    monkeypatch.setattr(pages, "LIMIT", 40_000)
    line = assert_one_line_error(invoke("show", tiny_model_path, "--max-tokens", 1000, "--values", "h,c", "-o", out),
                                 "even at 3 bits", "--max-tokens")
    suggested = int(re.search(r"--max-tokens (\d+)", line).group(1))
    assert 0 < suggested < 1000
    assert list(tmp_path.iterdir()) == []
    # the suggestion fits
    result = invoke("show", tiny_model_path, "--max-tokens", suggested, "--values", "h,c", "-o", out)
    assert result.exit_code == 0, result.stderr
    assert out.stat().st_size <= 40_000


def test_without_values_a_page_too_small_for_h_and_c_keeps_h(lm, tiny_model_path, tmp_path, monkeypatch):
    import charlm.inspect.page as pages
    from charlm.inspect.text import read_text

    out = tmp_path / "page.html"
    shown = pages.show(lm, read_text(lm, max_tokens=1000).text)
    h_alone = len(pages.page(pages.keeping(shown, ["h"]), bits=3)[0])
    assert len(pages.page(shown, bits=3)[0]) > h_alone + 2_000  # c takes room: the limit below holds h only
    monkeypatch.setattr(pages, "LIMIT", h_alone + 1_000)
    result = invoke("show", tiny_model_path, "--max-tokens", 1000, "-o", out)
    assert result.exit_code == 0, result.stderr
    assert "so the page holds h" in result.stderr and result.stderr.count("\n") == 1
    data = pages.read_page(out.read_bytes())
    assert [list(layer) for layer in data["values"]] == [["h"], ["h"]] and out.stat().st_size <= h_alone + 1_000
    # where even h does not fit, the refusal speaks of h alone
    monkeypatch.setattr(pages, "LIMIT", 1_000)
    line = assert_one_line_error(invoke("show", tiny_model_path, "--max-tokens", 1000, "-o", out), "--max-tokens")
    assert "--values" not in line


def test_json_too_long_is_refused(tiny_model_path, tmp_path, monkeypatch):
    import charlm.inspect.page as pages

    out = tmp_path / "numbers.json"
    monkeypatch.setattr(pages, "LIMIT", 200_000)
    line = assert_one_line_error(invoke("show", tiny_model_path, "--max-tokens", 1000, "--json", "-o", out),
                                 "the JSON for 1,000 tokens", "--max-tokens", "--units")
    assert "at least" in line and not out.exists()
    result = invoke("show", tiny_model_path, "--max-tokens", 1000, "--json", "--units", "1:1", "-o", out)
    assert result.exit_code == 0, result.stderr
    assert len(json.loads(out.read_text(encoding="utf-8"))["units"]) == 1


def test_precision_drops_before_the_page_passes_the_limit(lm):
    import charlm.inspect.page as pages

    shown = pages.show(lm, TEXT * 4)
    full, bits = pages.page(shown)
    assert bits == 8
    smaller, bits = pages.page(shown, limit=int(len(full) * 0.8))
    assert bits < 8 and len(smaller) <= len(full) * 0.8
    assert_page_matches(lm, TEXT * 4, pages.read_page(smaller), ["h", "c"])


# ---- in a browser ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium from the system's packages, driven by Playwright (never downloaded)."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="the browser tests need Playwright (pip install playwright)")
    if not (Path(CHROMIUM).is_file() and os.access(CHROMIUM, os.X_OK)):
        pytest.skip(f"the browser tests need Chromium at {CHROMIUM} (apt-get install chromium)")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory) -> Path:
    """Where the browser tests leave their screenshots: $CHARLM_SCREENSHOTS or a temporary folder."""
    folder = Path(os.environ.get("CHARLM_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


class Visit:
    """A page opened in the browser, with its console messages and every request it made."""

    def __init__(self, browser, path: Path):
        self.errors, self.requests, self.url = [], [], path.resolve().as_uri()
        self.page = browser.new_page(viewport={"width": 1400, "height": 900})
        self.page.on("console", lambda m: m.type in ("error", "warning") and self.errors.append(f"{m.type}: {m.text}"))
        self.page.on("pageerror", lambda error: self.errors.append(f"page error: {error}"))
        self.page.on("requestfailed", lambda r: self.errors.append(f"request failed: {r.url}"))
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.goto(self.url)
        self.page.wait_for_selector("body[data-ready]", timeout=60_000)

    def check_quiet(self):
        assert self.errors == []
        assert self.requests == [self.url], self.requests

    def colours(self) -> list:
        return self.page.eval_on_selector_all("#text .t", "spans => spans.map(s => getComputedStyle(s).backgroundColor)")

    def close(self):
        self.page.close()


def coloured_share(png: Path) -> float:
    """The share of a screenshot's pixels that are neither white nor grey."""
    from PIL import Image

    pixels = np.asarray(Image.open(png).convert("RGB")).astype(int)
    return float(((pixels.max(axis=2) - pixels.min(axis=2)) > 40).mean())


def is_white(colour: str) -> bool:
    return colour in ("rgb(255, 255, 255)", "rgba(0, 0, 0, 0)", "")


@pytest.mark.slow
def test_page_in_a_browser(browser, screenshots, tiny_model_path, tmp_path):
    from charlm.inspect.page import read_page

    out = tmp_path / "page.html"
    result = invoke("show", tiny_model_path, "--max-tokens", 1200, "--units", "1:3,2:5", "--values", "h,c,f", "-o", out)
    assert result.exit_code == 0, result.stderr
    data = read_page(out)
    visit = Visit(browser, out)
    page = visit.page

    # the text, each token a coloured span; the legend names the unit
    assert page.locator("#text .t").count() == data["tokens"] == 1200
    colours = visit.colours()
    assert sum(not is_white(c) for c in colours) > 0.8 * len(colours)
    assert page.inner_text("#legtitle") == "layer 1, unit 3, hidden state h"
    page.screenshot(path=screenshots / "show-char.png")
    assert coloured_share(screenshots / "show-char.png") > 0.05

    # the page decodes the numbers Python wrote
    for layer, name, unit, t in [(1, "h", 3, 0), (2, "c", 31, 777), (2, "f", 0, 1199), (1, "c", 17, 5)]:
        js = page.evaluate(f"charlmPage.value({layer}, '{name}', {unit}, {t})")
        assert js == pytest.approx(float(data["values"][layer - 1][name][t, unit]), rel=1e-6, abs=1e-6)

    # pointing at a token: its surprisal and the five most likely next tokens
    t = 41
    page.hover(f'#text .t[data-i="{t}"]')
    tip = page.locator("#tip")
    assert tip.is_visible()
    rows = page.locator("#tip #top tr")
    assert rows.count() == 5
    labels = data["labels"]
    expected = [labels[i] for i in data["arrays"]["top_ids"][t]]
    shown = [r.replace("\u2423", " ").replace("\u21b5", "\\n") for r in page.locator("#tip #top td.lab").all_inner_texts()]
    assert shown == expected
    bits = float(data["arrays"]["surprisal"][t])
    assert f"surprisal {bits:.2f} bits" in tip.inner_text()
    page.screenshot(path=screenshots / "show-hover.png")

    # another unit, another layer, another value: other colours, another legend
    page.click("#presets button:nth-child(2)")
    assert page.inner_text("#legtitle") == "layer 2, unit 5, hidden state h"
    assert visit.colours() != colours
    page.fill("#unit", "9")
    page.press("#unit", "Enter")
    page.select_option("#value", "c")
    assert page.inner_text("#legtitle") == "layer 2, unit 9, cell state c"
    page.select_option("#layer", "1")
    assert page.inner_text("#legtitle") == "layer 1, unit 9, cell state c"
    page.click("#next")
    assert page.inner_text("#legtitle") == "layer 1, unit 10, cell state c"
    recoloured = visit.colours()
    assert recoloured != colours
    page.select_option("#value", "f")
    assert page.inner_text("#legtitle") == "layer 1, unit 10, forget gate f"
    gate_colours = visit.colours()  # auto: a gate over the unit's range ...
    page.select_option("#scale", "zero")  # ... or centred on 0
    assert visit.colours() != gate_colours
    page.select_option("#scale", "auto")

    # find units: select a span with the mouse, get a ranked list, click one to colour by it
    page.mouse.move(10, 10)
    page.click("#findbtn")
    first, last = page.locator('#text .t[data-i="200"]'), page.locator('#text .t[data-i="230"]')
    a, b = first.bounding_box(), last.bounding_box()
    page.mouse.move(a["x"] + 1, a["y"] + a["height"] / 2)
    page.mouse.down()
    page.mouse.move(b["x"] + b["width"] / 2, b["y"] + b["height"] / 2, steps=8)
    page.mouse.move(b["x"] + b["width"] - 1, b["y"] + b["height"] / 2, steps=2)
    page.mouse.up()
    page.wait_for_selector("#found li")
    marked = page.eval_on_selector_all("#text .span", "spans => spans.map(s => +s.dataset.i)")
    assert marked[0] == 200 and marked[-1] in (229, 230) and marked == list(range(marked[0], marked[-1] + 1))
    zs = [float(z) for z in page.eval_on_selector_all("#found button", "bs => bs.map(b => b.dataset.z)")]
    assert len(zs) >= 10 and [abs(z) for z in zs] == sorted((abs(z) for z in zs), reverse=True)
    # the top unit is numpy's: the largest |z| of the mean inside the span against the rest
    best = max(abs(z) for z in span_zscores(data, marked[0], marked[-1]).values())
    assert abs(zs[0]) == pytest.approx(best, rel=1e-6)
    for item in (1, 2):
        key = page.get_attribute(f"#found li:nth-child({item}) button", "data-key")
        before = visit.colours()
        page.click(f"#found li:nth-child({item}) button")
        layer, unit, name = key.split(":")
        assert page.evaluate("document.body.dataset.selected") == key
        assert page.inner_text("#legtitle").startswith(f"layer {layer}, unit {unit}, ")
        assert visit.colours() != before
        if item == 1:
            page.screenshot(path=screenshots / "show-find.png")

    # the saturation panel: a unit per dot, a click selects it
    assert page.locator("#sat svg").count() == 2 * 3
    assert page.locator("#sat svg circle.u").count() == 2 * 3 * 32
    page.locator('#sat circle.u[data-l="2"][data-g="f"][data-u="12"]').dispatch_event("click")
    assert page.inner_text("#legtitle") == "layer 2, unit 12, forget gate f"

    # surprisal colouring
    page.select_option("#value", "surprisal")
    assert page.inner_text("#legtitle").startswith("surprisal")
    visit.check_quiet()
    visit.close()


def span_zscores(data, a: int, b: int) -> dict:
    """(layer, value, unit) -> z of the unit's mean over tokens a..b against the other tokens."""
    zs = {}
    n = data["tokens"]
    inside = np.zeros(n, bool)
    inside[a : b + 1] = True
    for layer, per_name in enumerate(data["values"], 1):
        for name in per_name:
            q = data["arrays"][f"q/{layer}/{name}"].astype(np.float64)  # (H, N): z is the same for the levels
            variance = q.var(axis=1)
            live = variance > 1e-9
            z = (q[:, inside].mean(axis=1) - q[:, ~inside].mean(axis=1)) / np.sqrt(
                np.where(live, variance, 1) * (1 / inside.sum() + 1 / (~inside).sum()))
            for unit in np.flatnonzero(live):
                zs[layer, name, int(unit)] = float(z[unit])
    return zs


@pytest.mark.slow
@pytest.mark.parametrize("kind, cell", [("byte", "rnn"), ("word", "gru")])
def test_byte_and_word_pages_in_a_browser(browser, screenshots, tmp_path, kind, cell):
    lm = tiny_lm(kind, cell, hidden=24)
    model = lm.save(tmp_path / f"{kind}.keras")
    out = tmp_path / "page.html"
    text = "the cat near the dogs runs .\nThe dogs sleep ! é ü zebra\n" * 3
    result = invoke("show", model, "--text", text, "-o", out)
    assert result.exit_code == 0, result.stderr
    visit = Visit(browser, out)
    page = visit.page
    spans = page.locator("#text .t")
    assert spans.count() == len(lm.tokenizer.encode(text))
    rendered = page.inner_text("#text").replace("\u21b5\n", "\n")
    assert rendered.replace(" ", "").replace("\n", "") == text.replace(" ", "").replace("\n", "")
    colours = visit.colours()
    assert sum(not is_white(c) for c in colours) > 0.5 * len(colours)
    spans.nth(3).hover()
    assert page.locator("#tip #top tr").count() == 5
    page.click("#next")
    assert visit.colours() != colours
    page.screenshot(path=screenshots / f"show-{kind}.png")
    visit.check_quiet()
    visit.close()

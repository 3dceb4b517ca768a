"""``charlm show``'s page: a text coloured by the values of a model's units, as one
self-contained HTML file.

Everything the page shows is computed here, in one pass over the text
(:func:`charlm.inspect.activations.read_windows`, as :func:`~charlm.inspect.activations.activations`
reads it): the values of the chosen names (default h, and c for an LSTM) in every layer, each
token's log-probability and the model's five most likely next tokens, and the gate-saturation
counts of :mod:`charlm.inspect.saturation`. The page (the template ``page.html`` beside this
module) holds the numbers inline and draws everything itself: it makes no request of any kind.

The values are stored unit by unit, each unit quantized to ``bits`` bits relative to its own
range over the text (``value = lo + q * step``, so a value is off by at most ``step / 2``), at
the finest of :data:`BITS` that keeps the page within :data:`LIMIT`. All numeric arrays are
packed into one zlib stream, which the browser inflates with its built-in
``DecompressionStream``. The stream stands in the page as raw bytes, not base64: the page is
encoded in windows-1252, whose 256 characters are the 256 byte values, so the bytes cost one
character each; the four bytes HTML parsing would change or act on (NUL, CR, "<", and the escape
byte itself) are escaped as two (:func:`embed`). That makes a page a quarter smaller than
base64 would. Everything else in the page is ASCII. :func:`read_page` reads a page's numbers
back.
"""

from __future__ import annotations

import html
import json
import math
import dataclasses
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from charlm.errors import CharlmError
from charlm.evaluate import token_label
from charlm.inspect.activations import NAMES, WINDOW, Activations, read_windows, text_pieces
from charlm.inspect.saturation import GATES, SaturationCounts
from charlm.nn.kernels import TRACED

LIMIT = 10_000_000  # bytes: the largest page (or JSON file) charlm show writes
BITS = (8, 6, 5, 4, 3)  # the precisions a page may store its values at, finest first
TOP_K = 5  # next tokens shown per token
TEMPLATE = Path(__file__).with_name("page.html")
FORMAT = 1  # of the data inside a page (read_page checks it)
# The smallest a page's values plausibly compress to, in bits per value: a text that would
# pass the limit even so is refused before the model reads it.
FLOOR_BITS = 0.5
ESCAPE = 0x01  # in the embedded bytes: the next byte is one of ESCAPED, plus 0x40
ESCAPED = (0x00, ESCAPE, 0x0D, 0x3C)  # NUL and CR (HTML parsing changes them), "<" (could end the script)
JSON_BYTES = 9  # about the characters of one value in the JSON output ("-0.12345,")


class PageTooLarge(CharlmError):
    """The page (or JSON) would pass its size limit."""


@dataclass
class Shown:
    """What one page shows.

    Attributes:
        acts: the values of ``values`` in every layer, the log-probabilities, and the
            :data:`TOP_K` most likely next tokens after each token
            (:class:`charlm.inspect.activations.Activations`).
        saturation: the gate saturation over the same text, as
            :func:`charlm.inspect.saturation.saturation` returns it.
        values: the value names in the page, in order.
        units: the units to preselect, (layer, unit) with layers from 0.
        about: what the page says about itself: model, text, tokenizer, unknown tokens.
        labels: token id -> label (:func:`charlm.evaluate.token_label`) of every token the
            page names: the text's and the predicted ones.
        unknown_at: the positions of the tokens unknown to the model.
        left, right: (layers, gates, H) the saturation counts behind ``saturation``.
    """

    acts: Activations
    saturation: dict
    values: tuple
    units: list
    about: dict
    labels: dict
    unknown_at: np.ndarray
    left: np.ndarray
    right: np.ndarray

    @property
    def surprisal(self) -> np.ndarray:
        """(N,) each token's surprisal in bits, -log2 p (NaN for an unpredicted first token)."""
        return -self.acts.logp / math.log(2)


# ---- the choices -------------------------------------------------------------------------------


def check_values(spec, cell: str) -> tuple:
    """The value names of ``--values`` (comma-separated, or a sequence; None: h, and c for an
    LSTM), checked against the cell's."""
    if spec is None:
        return ("h", "c") if cell == "lstm" else ("h",)
    parts = spec.split(",") if isinstance(spec, str) else list(spec)
    names = tuple(dict.fromkeys(part.strip() for part in parts if part.strip()))
    if not names:
        raise CharlmError("--values names no value; give names such as h,c,f")
    for name in names:
        if name not in TRACED[cell]:
            raise CharlmError(f"--values: a {cell} layer has no {name!r}; it has {', '.join(TRACED[cell])}")
    return names


def check_units(spec, layers: int, hidden: int) -> list:
    """The units of ``--units`` ("1:37,2:200": layer:unit, layers from 1, units from 0; or a
    sequence of (layer, unit) pairs so counted) as (layer, unit) pairs with layers from 0."""
    if spec is None:
        return []
    if isinstance(spec, str):
        pairs = []
        for part in (p.strip() for p in spec.split(",")):
            if not part:
                continue
            layer, colon, unit = part.partition(":")
            if not colon or not layer.strip().isdigit() or not unit.strip().isdigit():
                raise CharlmError(f"--units takes LAYER:UNIT pairs such as 1:37,2:200, got {part!r}")
            pairs.append((int(layer), int(unit)))
    else:
        pairs = [(int(layer), int(unit)) for layer, unit in spec]
    units = []
    for layer, unit in pairs:
        if not 1 <= layer <= layers:
            raise CharlmError(f"--units {layer}:{unit}: layer {layer} does not exist: the model has "
                              f"{layers} layer(s), 1 to {layers}")
        if not 0 <= unit < hidden:
            raise CharlmError(f"--units {layer}:{unit}: unit {unit} does not exist: each layer has "
                              f"{hidden} units, 0 to {hidden - 1}")
        if (layer - 1, unit) not in units:
            units.append((layer - 1, unit))
    return units


def check_size(tokens: int, units: int, values, limit: int | None = None, as_json: bool = False):
    """Refuse, before the model reads anything, a text whose page (or JSON, of ``units``
    units) could not fit ``limit`` bytes however well its values compressed."""
    limit = LIMIT if limit is None else limit
    if as_json:
        fixed, least = 0, tokens * (len(values) * units + TOP_K * 2 + 2) * JSON_BYTES
    else:
        fixed = TEMPLATE.stat().st_size
        least = fixed + tokens * len(values) * units * FLOOR_BITS / 8
    if least > limit:
        raise PageTooLarge(_too_big(least, tokens, limit, values, as_json, least=True, fixed=fixed))


def _too_big(size: float, tokens: int, limit: int, values, as_json: bool, least: bool = False,
             fixed: float = 0, fits: int | None = None) -> str:
    """The refusal of a page (or JSON) of ``size`` bytes for ``tokens`` tokens, ``fixed`` of
    them whatever the text, with a --max-tokens that would fit (``fits``, where known)."""
    if fits is None:
        fits = int(tokens * max(limit - fixed, 0) / max(size - fixed, 1) * 0.9)
    scale = 10 ** max(0, len(str(max(fits, 1))) - 2)
    fewer = max(1, fits // scale * scale)  # rounded down to two digits
    ways = [f"fewer tokens (--max-tokens {fewer})"]
    if len(values) > 1:
        ways.append(f"fewer values (--values {values[0]})")
    if as_json:
        ways.append("fewer units (--units)")
    what = "the JSON" if as_json else "the page"
    return (f"{what} for {tokens:,} tokens would be {'at least' if least else 'about'} {_mb(size)}, over the "
            f"{_mb(limit)} limit; read {' or '.join(ways)}")


def _mb(size: float) -> str:
    return f"{size / 1e6:.3g} MB"


# ---- reading the text --------------------------------------------------------------------------


def show(lm, text: str, values=None, units=None, about=None, window: int = WINDOW) -> Shown:
    """Read ``text`` with ``lm`` once and keep what a page shows (see :class:`Shown`):
    ``values`` (names, default h and an LSTM's c) of every layer, log-probabilities, the
    :data:`TOP_K` next tokens, and the gate saturation. ``units`` are preselected ones
    (see :func:`check_units`)."""
    config = lm.config
    values = check_values(values, config.cell)
    units = check_units(units, config.layers, config.hidden)
    ids = lm.tokenizer.encode(text).astype(np.int32) if text else np.zeros(0, np.int32)
    n, hidden, top_k = len(ids), config.hidden, min(TOP_K, lm.tokenizer.vocab_size)
    kept = [{name: np.zeros((n, hidden), np.float32) for name in values} for _ in range(config.layers)]
    counts = SaturationCounts(config.cell, config.layers, hidden)
    logp = np.full(n, np.nan)
    top_ids, top_probs = np.zeros((n, top_k), np.int32), np.zeros((n, top_k), np.float32)
    states = []
    for part in read_windows(lm, ids, tuple(dict.fromkeys(values + counts.gates)), None, top_k, window):
        for layer, part_values in enumerate(part.values):
            for name in values:
                kept[layer][name][part.at] = part_values[name]
        counts.add(part)
        logp[part.predicted] = part.logp
        top_ids[part.at], top_probs[part.at] = part.top_ids, part.top_probs
        states = part.states
    labels = {int(i): token_label(lm.tokenizer, i) for i in np.unique(np.concatenate([ids, top_ids.ravel()]))}
    acts = Activations(config.cell, ids, [labels[int(i)] for i in ids], text_pieces(lm.tokenizer, text), kept,
                       logp, top_ids, top_probs, [s.numpy()[0] for s in states])
    saturation = counts.result()
    unk = lm.tokenizer.unk_id
    unknown_at = np.flatnonzero(ids == unk) if unk is not None else np.zeros(0, np.int64)
    about = {"cell": config.cell, "layers": config.layers, "units": hidden, "tokenizer": lm.tokenizer.kind,
             "tokens": n, "unknown": len(unknown_at), **(about or {})}
    return Shown(acts, saturation, values, units, about, labels, unknown_at, counts.left, counts.right)


def keeping(shown: Shown, values) -> Shown:
    """``shown`` with only the value names ``values`` (a smaller page of the same text)."""
    values = tuple(values)
    kept = [{name: layer[name] for name in values} for layer in shown.acts.values]
    return dataclasses.replace(shown, values=values, acts=dataclasses.replace(shown.acts, values=kept))


def first_unit(shown: Shown) -> tuple:
    """The unit a page opens on: the first preselected one, else the unit of the top layer
    whose first value varies most over the text."""
    if shown.units:
        return shown.units[0]
    top = len(shown.acts.values) - 1
    return top, int(np.argmax(shown.acts.values[top][shown.values[0]].std(axis=0)))


# ---- the page ----------------------------------------------------------------------------------


def quantize(values: np.ndarray, bits: int):
    """(N, H) float values as (H, N) uint8 levels of ``bits`` bits, relative to each unit's
    range: ``values ~ lo + q * step``, within ``step / 2``. Returns (q, lo, step)."""
    values = np.asarray(values, np.float32)
    levels = (1 << bits) - 1
    lo, hi = values.min(axis=0), values.max(axis=0)
    step = ((hi - lo) / np.float32(levels)).astype(np.float32)
    q = np.rint((values - lo) / np.where(step > 0, step, 1)).clip(0, levels).astype(np.uint8)
    return np.ascontiguousarray(q.T), lo.astype(np.float32), step


def page(shown: Shown, limit: int | None = None, bits=None) -> tuple:
    """The HTML page of ``shown`` (bytes), at the finest precision of :data:`BITS` (or at
    ``bits``) whose page fits ``limit`` bytes; a one-line error if none does.
    Returns (page, bits)."""
    limit = LIMIT if limit is None else limit
    candidates = BITS if bits is None else (bits,)
    data, arrays = _page_data(shown)
    base = len(_assemble(data, arrays, {}, candidates[0], shown))
    # Start at the finest precision whose estimate fits, then go coarser while the page does not.
    estimates = [base + _estimate(shown, b) for b in candidates]
    first = next((i for i, size in enumerate(estimates) if size <= limit * 0.98), len(candidates) - 1)
    size = estimates[-1]
    for b in candidates[first:]:
        body = _assemble(data, arrays, _value_arrays(shown, b), b, shown)
        size = len(body)
        if size <= limit:
            return body, b
    n = len(shown.acts)
    fixed = len(_assemble(dict(data, pieces=[], unknown_at=[]), {}, {}, 8, shown))  # what does not grow with the text

    def estimate(tokens):  # the size of the page of the text's first ``tokens`` tokens
        return fixed + (base - fixed) * tokens / n + _estimate(shown, candidates[-1], tokens)

    low, high = 0, n  # the most tokens that fit, by bisection
    while low < high:
        middle = (low + high + 1) // 2
        low, high = (middle, high) if estimate(middle) <= limit * 0.95 else (low, middle - 1)
    message = _too_big(size, n, limit, shown.values, False, fits=low)
    raise PageTooLarge(message.replace(" MB, over", f" MB even at {candidates[-1]} bits per value, over", 1))


def _page_data(shown: Shown) -> tuple:
    """The page's JSON (but for the arrays' layout) and its arrays other than the values."""
    acts = shown.acts
    ids_used = sorted(shown.labels)
    index_type = np.uint16 if len(ids_used) < 1 << 16 else np.uint32
    lookup = np.zeros(max(ids_used) + 1, index_type)
    lookup[ids_used] = np.arange(len(ids_used), dtype=index_type)
    arrays = {
        "surprisal": shown.surprisal.astype(np.float32),
        "token": lookup[acts.ids],
        "top_ids": lookup[acts.top_ids],
        "top_probs": np.rint(np.clip(acts.top_probs, 0, 1) * 65535).astype(np.uint16),
    }
    layer, unit = first_unit(shown)
    data = {
        "format": FORMAT,
        "about": shown.about,
        "kind": shown.about["tokenizer"], "cell": acts.cell, "layers": len(acts.values), "units": acts.units,
        "tokens": len(acts), "values": list(shown.values),
        "names": {name: NAMES[name] for name in TRACED[acts.cell]},
        "pieces": acts.pieces,
        "labels": [shown.labels[i] for i in ids_used],
        "unknown_at": shown.unknown_at.tolist(),
        "top_k": int(acts.top_ids.shape[1]),
        "preset": [[layer_ + 1, unit_] for layer_, unit_ in shown.units],
        "first": {"layer": layer + 1, "value": shown.values[0], "unit": unit},
        "saturation": {"gates": list(GATES[acts.cell]), "thresholds": shown.saturation["thresholds"],
                       "left": shown.left.tolist(), "right": shown.right.tolist()},
    }
    return data, arrays


def _value_arrays(shown: Shown, bits: int) -> dict:
    arrays = {}
    for layer, kept in enumerate(shown.acts.values):
        for name in shown.values:
            q, lo, step = quantize(kept[name], bits)
            arrays[f"q/{layer + 1}/{name}"] = q
            arrays[f"lo/{layer + 1}/{name}"] = lo
            arrays[f"step/{layer + 1}/{name}"] = step
    return arrays


def _estimate(shown: Shown, bits: int, tokens: int | None = None) -> float:
    """The bytes the values (of the first ``tokens`` tokens) add to a page at ``bits`` bits,
    from a sample of the units (all of them where there are few values)."""
    acts = shown.acts
    tokens = len(acts) if tokens is None else tokens
    if tokens == 0:
        return 0.0
    every = max(1, math.ceil(tokens * acts.units / 500_000))  # about 500,000 values per layer and name
    size = 0.0
    for kept in acts.values:
        for name in shown.values:
            q, _, _ = quantize(kept[name][:tokens, ::every], bits)
            size += len(zlib.compress(q.tobytes(), 6)) * acts.units / q.shape[0] + 8 * acts.units
    return size * (1 + len(ESCAPED) / 256)


def _assemble(data: dict, arrays: dict, values: dict, bits: int, shown: Shown) -> bytes:
    data = dict(data, bits=bits)
    layout, blob = _pack({**arrays, **values})
    data["arrays"] = layout
    model = shown.about.get("model", "")
    title = html.escape(f"charlm show: {Path(model).name}" if model else "charlm show")
    head, rest = TEMPLATE.read_text(encoding="ascii").split("__BLOB__")
    head = head.replace("__TITLE__", title).replace("__DATA__", _script_json(data))
    return b"".join([head.encode("ascii", "xmlcharrefreplace"), embed(zlib.compress(blob, 6)), rest.encode("ascii")])


def _script_json(data) -> str:
    """ASCII JSON that can stand inside a <script> element: no "<", ">" or "&" in it."""
    text = json.dumps(data, ensure_ascii=True, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _pack(arrays: dict) -> tuple:
    """Arrays laid end to end (each at a multiple of 8 bytes, little-endian) and their layout."""
    parts, layout, offset = [], {}, 0
    for name, array in arrays.items():
        array = np.ascontiguousarray(array, dtype=np.dtype(array.dtype).newbyteorder("<"))
        pad = -offset % 8
        parts.append(b"\0" * pad)
        offset += pad
        layout[name] = {"dtype": array.dtype.name, "shape": list(array.shape), "offset": offset}
        parts.append(array.tobytes())
        offset += array.nbytes
    return layout, b"".join(parts)


def embed(blob: bytes) -> bytes:
    """``blob`` as it stands in a page: each byte of :data:`ESCAPED` as :data:`ESCAPE` and the
    byte plus 0x40, the others as they are (see the module docstring)."""
    raw = np.frombuffer(blob, np.uint8)
    special = np.isin(raw, ESCAPED)
    at = np.arange(len(raw)) + np.cumsum(special)  # where each byte's value goes
    out = np.empty(len(raw) + int(special.sum()), np.uint8)
    out[at] = np.where(special, raw + 0x40, raw)
    out[at[special] - 1] = ESCAPE
    return out.tobytes()


def unembed(embedded: bytes) -> bytes:
    """The bytes :func:`embed` embedded."""
    raw = np.frombuffer(embedded, np.uint8).copy()
    escapes = np.flatnonzero(raw == ESCAPE)
    raw[escapes + 1] -= 0x40
    return np.delete(raw, escapes).tobytes()


def read_page(page_bytes) -> dict:
    """A page's numbers read back from its bytes (or its path): its JSON (``about``,
    ``pieces``, ``labels``, ``bits``, ``saturation``, ...) with ``arrays`` (name -> NumPy array,
    as packed) and ``values`` (per layer from 0, name -> (N, H) float32 values, dequantized as
    the page does)."""
    if isinstance(page_bytes, (str, Path)):
        page_bytes = Path(page_bytes).read_bytes()

    def script(name):
        start = page_bytes.index(f'id="{name}">'.encode()) + len(f'id="{name}">')
        return page_bytes[start : page_bytes.index(b"</script>", start)]

    data = json.loads(script("charlm-data").decode("ascii"))
    if data.get("format") != FORMAT:
        raise CharlmError("not a page of this version of charlm show")
    blob = zlib.decompress(unembed(script("charlm-blob")))
    arrays = {}
    for name, spec in data["arrays"].items():
        dtype = np.dtype(spec["dtype"]).newbyteorder("<")
        count = int(np.prod(spec["shape"]))
        arrays[name] = np.frombuffer(blob, dtype, count, spec["offset"]).reshape(spec["shape"])
    data["arrays"] = arrays
    data["values"] = [{name: (arrays[f"lo/{layer}/{name}"] + arrays[f"q/{layer}/{name}"].T.astype(np.float32)
                              * arrays[f"step/{layer}/{name}"]) for name in data["values"]}
                      for layer in range(1, data["layers"] + 1)]
    return data


# ---- the numbers as JSON -----------------------------------------------------------------------


def numbers(shown: Shown, limit: int | None = None) -> dict:
    """The page's numbers as a JSON-ready dict: the tokens, each one's surprisal in bits and
    the next-token predictions, the values of the preselected units (all units where none
    are), and the saturation; one-line error where it would pass ``limit`` bytes."""
    limit = LIMIT if limit is None else limit
    acts = shown.acts
    units = shown.units or [(layer, unit) for layer in range(acts.layers) for unit in range(acts.units)]
    check_size(len(acts), len(units), shown.values, limit, as_json=True)
    labels = shown.labels
    surprisal = [None if math.isnan(s) else s for s in np.round(shown.surprisal, 6).tolist()]
    return {
        "about": shown.about,
        "tokens": acts.tokens,
        "pieces": acts.pieces,
        "surprisal": surprisal,
        "top_tokens": [[labels[int(i)] for i in row] for row in acts.top_ids],
        "top_probs": np.round(acts.top_probs.astype(np.float64), 6).tolist(),
        "values": list(shown.values),
        "units": [{"layer": layer + 1, "unit": unit,
                   "values": {name: np.round(acts.values[layer][name][:, unit].astype(np.float64), 6).tolist()
                              for name in shown.values}} for layer, unit in units],
        "saturation": shown.saturation,
    }

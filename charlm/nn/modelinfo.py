"""What a model file holds (``charlm info``), read without loading the Keras model or TensorFlow.

The settings come from the file's ``charlm.json`` member; the parameter counts
from the shapes of the arrays in its ``model.weights.h5`` member, so the numbers
are those of the weights actually stored.
"""

from __future__ import annotations

import io
import re
import zipfile
from pathlib import Path

import h5py

from charlm.errors import CharlmError
from charlm.nn.modelfile import read_record

# Vocabularies up to this size are listed in full by `charlm info`.
SHOW_CHARS = 300
SHOW_WORDS = 60


def describe(path) -> dict:
    """A JSON-ready description of the model file at ``path``: architecture and
    parameter counts, tokenizer, training settings, corpus fingerprint, results and
    the Keras/TensorFlow versions it was saved with. One-line errors for files that
    are not charlm models."""
    path = Path(path)
    record = read_record(path)
    info = record.get("info") or {}
    tokenizer = record["tokenizer"]
    vocabulary = tokenizer.get("vocabulary", [])
    layers = _layer_parameters(path)
    description = {
        "path": str(path),
        "model": record["model"],
        "layers": layers,
        "parameters": sum(layer["parameters"] for layer in layers),
        "tokenizer": {
            "kind": tokenizer.get("kind"),
            "vocab_size": len(vocabulary),
            "normalization": tokenizer.get("normalization"),
        },
        "train": info.get("train"),
        "corpus": info.get("corpus"),
        "step": info.get("step"),
        "best_val_loss": info.get("best_val_loss"),
        "best_val_bits_per_char": info.get("best_val_bits_per_char"),
        "versions": record.get("versions", {}),
    }
    if tokenizer.get("kind") == "word":  # the rules it reads text with (files older than them: off)
        description["tokenizer"].update(lowercase=tokenizer.get("lowercase", False),
                                        split_punctuation=tokenizer.get("split_punctuation", False),
                                        numbers_token=tokenizer.get("numbers_token"))
    limit = SHOW_CHARS if tokenizer.get("kind") == "char" else SHOW_WORDS if tokenizer.get("kind") == "word" else 0
    if len(vocabulary) <= limit:
        description["tokenizer"]["symbols"] = vocabulary
    return description


def _layer_parameters(path: Path) -> list[dict]:
    """[{name, shapes, parameters}] for each layer with weights, in model order
    (embedding, recurrent layers bottom first, output)."""
    try:
        with zipfile.ZipFile(path) as archive:
            data = archive.read("model.weights.h5")
        layers = {}
        with h5py.File(io.BytesIO(data), "r") as weights:

            def visit(name, item):
                if isinstance(item, h5py.Dataset) and name.startswith("layers/"):
                    layer = name.split("/")[1]
                    layers.setdefault(layer, []).append(tuple(int(d) for d in item.shape))

            weights.visititems(visit)
    except (KeyError, OSError, zipfile.BadZipFile) as error:
        raise CharlmError(f"{path} has no readable weights ({error})") from None

    def order(name):
        # Keras names the groups after the class: a tied model's embedding is a ReversibleEmbedding.
        rank = 0 if name.startswith(("embedding", "reversible_embedding")) else 2 if name.startswith("dense") else 1
        suffix = re.search(r"_(\d+)$", name)
        return rank, int(suffix.group(1)) if suffix else 0

    return [
        {"name": name, "shapes": shapes, "parameters": sum(_size(s) for s in shapes)}
        for name, shapes in sorted(layers.items(), key=lambda item: order(item[0]))
    ]


def _size(shape) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def regularisers_text(m: dict) -> str:
    """The training-time regularisers of a model's settings (a ModelConfig as a dict, as the model
    file records it), in words: "dropout 0.2", or per place ("dropout input 0.1, hidden 0.25,
    output 0.1, locked"), then weight drop and embedding dropout where set."""
    places = {place: m.get(f"dropout_{place}") for place in ("input", "hidden", "output")}
    if any(rate is not None for rate in places.values()):
        rates = ", ".join(f"{place} {m['dropout'] if rate is None else rate:g}" for place, rate in places.items())
        text = f"dropout {rates}"
    else:
        text = f"dropout {m['dropout']:g}"
    if m.get("locked_dropout"):
        text += " (locked)" if "," not in text else ", locked"
    for key, name in (("weight_drop", "weight drop"), ("embedding_dropout", "embedding dropout")):
        if m.get(key):
            text += f", {name} {m[key]:g}"
    return text


def format_description(d: dict) -> str:
    """The human-readable text of :func:`describe`'s dict."""
    m, tok = d["model"], d["tokenizer"]
    lines = [
        f"{d['path']}: charlm {m['layers']}x{m['hidden']} {m['cell'].upper()} language model, "
        f"{d['parameters']:,} parameters",
        f"  model:       embedding {m['embedding']}, {m['layers']} {m['cell']} layer(s) of {m['hidden']}, "
        f"{regularisers_text(m)}" + (", output tied to the embedding" if m.get("tie_weights") else ""),
    ]
    for layer in d["layers"]:
        shapes = ", ".join("x".join(map(str, s)) for s in layer["shapes"])
        lines.append(f"    {layer['name']:<14} {layer['parameters']:>12,}  ({shapes})")
    norm = f", normalization {tok['normalization']}" if tok.get("normalization") else ""
    rules = [text for key, text in (("lowercase", "lower-cased"), ("split_punctuation", "punctuation split off"))
             if tok.get(key)] + ([f"numbers as {tok['numbers_token']}"] if tok.get("numbers_token") else [])
    norm += "".join(", " + text for text in rules)
    lines.append(f"  tokenizer:   {tok['kind']}, vocabulary of {tok['vocab_size']}{norm}")
    if "symbols" in tok:
        specials = [s for s in tok["symbols"] if len(s) > 1 and s.startswith("<")]
        ordinary = [s for s in tok["symbols"] if s not in specials]
        # Characters as one Python string literal, so spaces and newlines are visible.
        shown = repr("".join(ordinary)) if tok["kind"] == "char" else " ".join(ordinary)
        lines.append(f"  symbols:     {' '.join(specials)} {shown}")
    if d.get("train"):
        t = d["train"]
        lines.append("  training:    " + ", ".join(f"{k} {v}" for k, v in t.items()))
    if d.get("corpus"):
        files = d["corpus"].get("files", [])
        lines.append(f"  corpus:      {', '.join(files)} (sha256 {d['corpus'].get('sha256', '?')[:16]}...)")
    if d.get("best_val_loss") is not None:
        lines.append(
            f"  best:        val loss {d['best_val_loss']:.4f} nats/token, "
            f"{d['best_val_bits_per_char']:.4f} bits/char, at step {d.get('step')}"
        )
    versions = d.get("versions") or {}
    if versions:
        lines.append("  saved with:  " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    return "\n".join(lines)

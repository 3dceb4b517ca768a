"""PyTorch RNN language models brought into charlm (``charlm import``).

The literature's word-level models have one shape: PyTorch's ``word_language_model`` example
and Gulordava et al.'s ``colorlessgreenRNNs`` (both ``RNNModel``) are an ``encoder``
(``nn.Embedding``, (V, E)), an ``rnn`` (``nn.LSTM``, ``nn.GRU`` or a tanh ``nn.RNN`` of
``num_layers`` layers) and a ``decoder`` (``nn.Linear``, (V, H) and (V,)), whose weight may be
the encoder's (``--tied``). Its state dict (``torch.save(model.state_dict(), PATH)``) and its
vocabulary (one word a line; a word's id is its position) make a charlm model of the same
architecture that computes the same logits.

The weights map onto Keras' layers as follows (Keras' layouts: :mod:`charlm.nn.kernels`):

* LSTM: PyTorch's gate order i, f, g, o is Keras' i, f, c, o; kernel = W_ih^T, recurrent kernel =
  W_hh^T, and the two bias vectors, which PyTorch adds, are one: b = b_ih + b_hh.
* GRU: PyTorch's r, z, n become Keras' z, r, h; PyTorch applies the reset gate to W_hn·h + b_hn,
  as Keras' ``reset_after=True`` does, so b_ih and b_hh stay apart as Keras' input and recurrent
  biases.
* tanh RNN: kernel = W_ih^T, recurrent kernel = W_hh^T, b = b_ih + b_hh. (A state dict does not
  say whether the nonlinearity was tanh or ReLU; charlm has only tanh, so ``cell="rnn"`` must be
  asked for.)

The vocabulary becomes charlm's word vocabulary, special symbols first: ``<pad>``, ``<unk>``
(the row of the vocabulary's unknown word, ``<unk>`` in both sources) and ``<eol>`` (the row of
its end-of-sentence word, ``<eos>`` in both, which those models read where charlm reads a line
break), then every other word in its original order. A special symbol the vocabulary lacks gets
a zero embedding and a logit of :data:`NEVER` (never predicted; ``<pad>`` always).
"""

from __future__ import annotations

import hashlib
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from charlm.config import ModelConfig
from charlm.data.tokenizers import EOL, PAD, UNK, WordTokenizer
from charlm.errors import CharlmError
from charlm.nn.model import build_model, recurrent_layers

# The logit of a symbol the imported model cannot predict: its probability underflows to 0.
NEVER = -1e4
# PyTorch's gate blocks, in Keras' order: (rows of W_ih, W_hh, b_ih, b_hh) per Keras block.
_GATES_FROM_TORCH = {"lstm": (0, 1, 2, 3), "gru": (1, 0, 2), "rnn": (0,)}
_CELL_OF_GATES = {4: "lstm", 3: "gru", 1: "rnn"}


@dataclass
class TorchRNN:
    """What an ``RNNModel`` state dict holds, as float32 arrays in PyTorch's layouts."""

    cell: str
    encoder: np.ndarray  # (V, E)
    layers: list  # per layer (w_ih (G, D), w_hh (G, H), b_ih (G,), b_hh (G,))
    decoder_w: np.ndarray  # (V, H)
    decoder_b: np.ndarray  # (V,)

    @property
    def tied(self) -> bool:
        return self.decoder_w.shape == self.encoder.shape and np.array_equal(self.decoder_w, self.encoder)

    def config(self) -> ModelConfig:
        return ModelConfig(cell=self.cell, layers=len(self.layers), hidden=self.layers[0][1].shape[1],
                           embedding=self.encoder.shape[1], dropout=0.0, tie_weights=self.tied)


@dataclass(frozen=True)
class Imported:
    """An imported model and how its vocabulary was mapped."""

    lm: object  # charlm.nn.lm.LanguageModel
    source_vocab_size: int
    added: tuple[str, ...]  # charlm special symbols the source vocabulary lacked

    def describe(self) -> str:
        c = self.lm.config
        added = f"; added {', '.join(self.added)} (never predicted)" if self.added else ""
        return (f"{c.layers}x{c.hidden} {c.cell.upper()}, embedding {c.embedding}, "
                f"{'tied' if c.tie_weights else 'untied'} output, vocabulary of {self.source_vocab_size:,} words{added}")


def import_torch(model_path, vocab_path, unk: str = "<unk>", eos: str = "<eos>", cell: str | None = None) -> Imported:
    """A :class:`charlm.nn.lm.LanguageModel` computing what the PyTorch ``RNNModel`` whose state
    dict is at ``model_path`` computes, over the vocabulary at ``vocab_path``; ``unk`` and ``eos``
    name its unknown and end-of-sentence words; ``cell`` (lstm, gru, rnn) must agree with the
    state dict and is needed for a plain RNN."""
    from charlm.nn.lm import LanguageModel

    source = read_state_dict(model_path, cell)
    words = read_vocabulary(vocab_path)
    if len(words) != source.encoder.shape[0]:
        raise CharlmError(f"{vocab_path} has {len(words):,} words but the model's embedding has "
                          f"{source.encoder.shape[0]:,} rows: not the vocabulary of this model")
    vocabulary, rows = charlm_vocabulary(words, unk, eos)
    config = source.config()
    model = build_model(config, len(vocabulary))
    set_weights(model, source, rows)
    info = {"imported": {"from": str(model_path), "sha256": _sha256(model_path), "vocabulary": str(vocab_path),
                         "unk": unk, "eos": eos, "format": "pytorch RNNModel state dict"}}
    lm = LanguageModel(model, WordTokenizer(vocabulary), config, info)
    added = tuple(symbol for symbol, row in zip(vocabulary, rows) if row < 0)
    return Imported(lm, len(words), added)


def read_state_dict(path, cell: str | None = None) -> TorchRNN:
    """The arrays of an ``RNNModel`` state dict saved with ``torch.save``; one-line errors for
    anything else (a pickled model object is never unpickled)."""
    try:
        import torch
    except ImportError:
        raise CharlmError("reading a PyTorch file needs PyTorch (pip install torch)") from None
    path = Path(path)
    if not path.is_file():
        raise CharlmError(f"model file not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise CharlmError(f"{path} holds pickled Python objects (a whole model?), which charlm never unpickles; "
                          "save its state dict instead: torch.save(model.state_dict(), PATH) "
                          "(docs/training.md, 'Importing PyTorch models')") from None
    except Exception as error:  # torch raises many types for files that are not its own
        raise CharlmError(f"cannot read {path} as a PyTorch file ({type(error).__name__}: "
                          f"{' '.join(str(error).split())[:200]})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CharlmError(f"{path} holds a {type(state).__name__}, not a state dict (a dict of tensors)")
    arrays = {_plain(key): value.detach().to(torch.float32).numpy() for key, value in state.items()}
    return _rnn_model(path, arrays, cell)


def _plain(key: str) -> str:
    """A state dict key without the ``module.`` prefix nn.DataParallel adds."""
    return key[len("module."):] if key.startswith("module.") else key


def _rnn_model(path, arrays: dict, cell: str | None) -> TorchRNN:
    for key in arrays:
        if key.startswith("rnn.") and ("_reverse" in key or "weight_hr" in key):
            raise CharlmError(f"{path}: {key} belongs to a bidirectional or projected RNN, which a language "
                              "model of charlm's shape cannot be")
    expected = {"encoder.weight", "decoder.weight", "decoder.bias"}
    unexpected = sorted(k for k in arrays if k not in expected and not k.startswith("rnn."))
    if unexpected or "encoder.weight" not in arrays or "decoder.weight" not in arrays:
        found = ", ".join(sorted(arrays)[:6]) + (", ..." if len(arrays) > 6 else "")
        raise CharlmError(f"{path} is not the state dict of an RNNModel (encoder, rnn, decoder); it holds {found}")
    encoder, decoder_w = arrays["encoder.weight"], arrays["decoder.weight"]
    n_layers = 0
    while f"rnn.weight_ih_l{n_layers}" in arrays:
        n_layers += 1
    if n_layers == 0:
        raise CharlmError(f"{path} has no recurrent layer (rnn.weight_ih_l0)")
    hidden = arrays["rnn.weight_hh_l0"].shape[1]
    gates = arrays["rnn.weight_hh_l0"].shape[0] // hidden
    found_cell = _CELL_OF_GATES.get(gates)
    if found_cell is None or gates * hidden != arrays["rnn.weight_hh_l0"].shape[0]:
        raise CharlmError(f"{path}: rnn.weight_hh_l0 of shape {arrays['rnn.weight_hh_l0'].shape} is not an LSTM, "
                          "GRU or RNN layer's")
    if cell is not None and cell != found_cell:
        raise CharlmError(f"--cell {cell} conflicts with {path}, whose layers are {found_cell.upper()} layers")
    if found_cell == "rnn" and cell is None:
        raise CharlmError(f"{path} holds a plain RNN, whose nonlinearity a state dict does not record; charlm's is "
                          "tanh: if the model is RNN_TANH, pass --cell rnn (charlm has no ReLU RNN)")
    layers = []
    for k in range(n_layers):
        inputs = encoder.shape[1] if k == 0 else hidden
        w_ih, w_hh = arrays[f"rnn.weight_ih_l{k}"], arrays.get(f"rnn.weight_hh_l{k}")
        zeros = np.zeros(gates * hidden, np.float32)
        b_ih, b_hh = arrays.get(f"rnn.bias_ih_l{k}", zeros), arrays.get(f"rnn.bias_hh_l{k}", zeros)
        want = [(gates * hidden, inputs), (gates * hidden, hidden), (gates * hidden,), (gates * hidden,)]
        for name, array, shape in zip(("weight_ih", "weight_hh", "bias_ih", "bias_hh"), (w_ih, w_hh, b_ih, b_hh), want):
            if array is None or array.shape != shape:
                got = "missing" if array is None else f"of shape {array.shape}"
                raise CharlmError(f"{path}: rnn.{name}_l{k} is {got}, expected {shape}")
        layers.append((w_ih, w_hh, b_ih, b_hh))
    if decoder_w.shape != (encoder.shape[0], hidden):
        raise CharlmError(f"{path}: decoder.weight has shape {decoder_w.shape}, expected "
                          f"{(encoder.shape[0], hidden)} (vocabulary x hidden)")
    decoder_b = arrays.get("decoder.bias", np.zeros(encoder.shape[0], np.float32))
    return TorchRNN(found_cell, encoder, layers, decoder_w, decoder_b)


def read_vocabulary(path) -> list[str]:
    """The words of a vocabulary file, in order: whitespace-separated, one a line as both sources
    write them (and read them, with ``split()``)."""
    try:
        words = Path(path).read_text(encoding="utf-8").split()
    except FileNotFoundError:
        raise CharlmError(f"vocabulary file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise CharlmError(f"cannot read the vocabulary {path} ({error})") from None
    repeated = len(words) - len(set(words))
    if repeated:
        raise CharlmError(f"{path} lists {repeated} word(s) twice; a vocabulary lists each word once")
    return words


def charlm_vocabulary(words: list[str], unk: str, eos: str) -> tuple[list[str], np.ndarray]:
    """charlm's vocabulary for the source ``words`` and, for each of its symbols, the source id
    whose weights it takes (-1: none, a symbol the source lacks). ``unk`` becomes ``<unk>`` and
    ``eos`` ``<eol>``."""
    index = {w: i for i, w in enumerate(words)}
    sources = {PAD: PAD, UNK: unk, EOL: eos}
    for special, name in sources.items():
        if special != name and special in index:
            raise CharlmError(f"the vocabulary has both {name!r} and {special!r}; charlm reads {name!r} as "
                              f"{special!r}, so one of them would be lost")
    taken = {index[name] for name in sources.values() if name in index}
    vocabulary = [*sources, *(w for i, w in enumerate(words) if i not in taken)]
    rows = [index.get(name, -1) for name in sources.values()]
    rows += [i for i in range(len(words)) if i not in taken]
    return vocabulary, np.asarray(rows, np.int64)


def keras_rnn_weights(cell: str, w_ih, w_hh, b_ih, b_hh) -> list[np.ndarray]:
    """One PyTorch layer's weights as the Keras layer's [kernel, recurrent_kernel, bias]."""
    hidden = w_hh.shape[1]
    order = np.concatenate([np.arange(g * hidden, (g + 1) * hidden) for g in _GATES_FROM_TORCH[cell]])
    kernel, recurrent = w_ih[order].T, w_hh[order].T  # (D, G), (H, G)
    bias = np.stack([b_ih[order], b_hh[order]]) if cell == "gru" else b_ih[order] + b_hh[order]
    return [np.ascontiguousarray(kernel), np.ascontiguousarray(recurrent), bias]


def set_weights(model, source: TorchRNN, rows: np.ndarray):
    """Give ``model`` (built from ``source.config()``) the source's weights, the embedding rows
    and output columns in charlm's vocabulary order (``rows``: see :func:`charlm_vocabulary`)."""
    missing = rows < 0
    taken = np.where(missing, 0, rows)
    embedding = np.where(missing[:, None], 0.0, source.encoder[taken]).astype(np.float32)  # (V', E)
    bias = np.where(missing, NEVER, source.decoder_b[taken]).astype(np.float32)  # (V',)
    model.get_layer("embedding").set_weights([embedding])
    for layer, weights in zip(recurrent_layers(model), source.layers):
        layer.cell.set_weights(keras_rnn_weights(source.cell, *weights))
    if source.tied:
        model.get_layer("output_bias").set_weights([bias[None, :]])
    else:
        decoder = np.where(missing[:, None], 0.0, source.decoder_w[taken]).astype(np.float32)  # (V', H)
        model.get_layer("logits").set_weights([np.ascontiguousarray(decoder.T), bias])


def _sha256(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()

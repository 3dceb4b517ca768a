"""A TensorFlow SavedModel that generates text, for serving without charlm (``charlm export``).

The SavedModel holds the model's weights as variables and one serving signature,
``serving_default``, whose graph does everything in TensorFlow ops:

    inputs:  prompts      string [batch]   the texts to continue (UTF-8; may be empty)
             length       int32 []         tokens to generate per prompt (at most max_length)
             temperature  float32 []       softmax temperature; 0 or less: always the most likely token
             seed         int64 []         the same seed, prompts and settings give the same texts
    outputs: generated    string [batch]   the continuation only (word models: with the space that
                                           joins it to the prompt)
             text         string [batch]   prompt + generated

Inside: the prompts are tokenized (char: Unicode code points through a lookup table,
unknown ones to the unknown symbol; byte: UTF-8 bytes; word: whitespace split, line
breaks as ``<eol>``), consumed token by token in a ``tf.while_loop`` in which each row
stops at its own prompt length, then ``length`` tokens are drawn in a second
``tf.while_loop`` and detokenized. The step arithmetic is that of
:class:`charlm.sample.Sampler` (traced into the graph, its weights as variables); padding and unknown symbols are
never drawn; token t of every row is drawn with ``tf.random.stateless_categorical`` and
the seed pair (seed, t), so texts are reproducible but not the same as ``charlm
sample``'s for the same seed (which draws its noise differently). Char models
trained with --normalize: the prompts are not normalized in the graph (TensorFlow
has no Unicode normalization op); pass them normalized.

Loading needs TensorFlow only: ``tf.saved_model.load(dir).signatures["serving_default"]``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from charlm.data.tokenizers import EOL
from charlm.errors import CharlmError
from charlm.fileio import atomic_directory
from charlm.runtime import import_keras
from charlm.sample import Sampler

import_keras()
import tensorflow as tf  # noqa: E402  (after import_keras, which starts it)

DEFAULT_MAX_LENGTH = 10_000
SIGNATURE = "serving_default"


def export_saved_model(lm, directory, force: bool = False, max_length: int = DEFAULT_MAX_LENGTH) -> Path:
    """Write ``lm`` (a :class:`charlm.nn.lm.LanguageModel`) as a SavedModel in ``directory``.

    Refuses an existing non-empty directory unless ``force``; the SavedModel is written
    into a temporary directory beside it and renamed into place only once complete.
    ``max_length`` caps the ``length`` input, so that one request cannot run for ever.
    """
    directory = Path(directory)
    check_target(directory, force)
    if max_length < 1:
        raise CharlmError(f"--max-length must be at least 1, got {max_length}")
    rules = getattr(lm.tokenizer, "rules", None)
    if rules is not None and not rules.plain:
        # The SavedModel's tokenizer only cuts prompts at whitespace; reading them otherwise
        # than the model was trained to would change every prompt without saying so.
        raise CharlmError("the exported model cuts prompts at whitespace only, and this word model reads text "
                          "lower-cased, with punctuation split off or numbers mapped; export a model trained "
                          "without --lowercase, --split-punctuation and --numbers-token")
    module = build_generator(lm, max_length)
    with atomic_directory(directory) as tmp:
        signature = module.serve.get_concrete_function()
        tf.saved_model.save(module, str(tmp), signatures={SIGNATURE: signature})
        extra = tmp / "assets.extra"
        extra.mkdir(exist_ok=True)
        (extra / "charlm.json").write_text(json.dumps(module.description(lm), indent=2) + "\n", encoding="utf-8")
    return directory


def check_target(directory: Path, force: bool):
    """One-line errors for a --saved-model target that cannot or must not be written."""
    if directory.exists() and not directory.is_dir():
        raise CharlmError(f"--saved-model {directory} exists and is not a directory")
    if directory.is_dir() and any(directory.iterdir()) and not force:
        raise CharlmError(f"--saved-model {directory} exists and is not empty; use --force to replace it")
    if not directory.parent.is_dir():
        raise CharlmError(f"--saved-model {directory}: directory {directory.parent} does not exist")
    if not os.access(directory.parent, os.W_OK):
        raise CharlmError(f"--saved-model {directory}: directory {directory.parent} is not writable")


def build_generator(lm, max_length: int = DEFAULT_MAX_LENGTH):
    """The ``tf.Module`` that :func:`export_saved_model` saves; its ``serve`` tf.function
    is the serving signature (callable in-process too)."""
    return GeneratorModule(lm, max_length)


class GeneratorModule(tf.Module):
    """The ``tf.Module`` whose ``serve`` function is the serving signature."""

    def __init__(self, lm, max_length):
        super().__init__(name="charlm_generator")
        tokenizer = lm.tokenizer
        self.kind = tokenizer.kind
        self.sampler = Sampler(lm, variables=True)  # the one-step arithmetic
        self.weights = self.sampler.variables  # tracked, so they are saved
        self.max_length = max_length
        self.state_shapes = [int(s.shape[-1]) for s in lm.zero_states(1)]  # H per state tensor
        self.unk_id = tokenizer.unk_id if tokenizer.unk_id is not None else tokenizer.pad_id
        self.eol_id = tokenizer.index.get(EOL, -1)
        self.mask = tf.constant(self.sampler.mask.numpy())  # -inf on the never-sampled ids, (V,)
        vocab = tokenizer.vocabulary
        # id -> output piece
        if self.kind == "char":
            # As CharTokenizer.decode: padding -> "", unknown -> U+FFFD (never drawn anyway).
            pieces = ["" if i == tokenizer.pad_id else "\ufffd" if i == tokenizer.unk_id else s
                      for i, s in enumerate(vocab)]
        elif self.kind == "byte":
            pieces = [b""] + [bytes([b]) for b in range(256)]
        else:
            pieces = ["\n" if s == EOL else ("" if i == tokenizer.pad_id else s) for i, s in enumerate(vocab)]
        self.pieces = tf.constant(pieces, dtype=tf.string)
        # symbol -> id, for the prompt
        if self.kind == "char":
            keys = [(ord(s), i) for i, s in enumerate(vocab) if i not in (tokenizer.pad_id, tokenizer.unk_id)]
            self.table = tf.lookup.StaticHashTable(
                tf.lookup.KeyValueTensorInitializer(
                    tf.constant([k for k, _ in keys], tf.int64), tf.constant([i for _, i in keys], tf.int32)
                ),
                default_value=self.unk_id,
            )
        elif self.kind == "word":
            self.table = tf.lookup.StaticHashTable(
                tf.lookup.KeyValueTensorInitializer(
                    tf.constant(vocab, tf.string), tf.range(len(vocab), dtype=tf.int32)
                ),
                default_value=self.unk_id,
            )

    def description(self, lm) -> dict:
        return {
            "format": "charlm-saved-model",
            "signature": SIGNATURE,
            "inputs": {"prompts": "string [batch]", "length": "int32 []", "temperature": "float32 []",
                       "seed": "int64 []"},
            "outputs": {"generated": "string [batch]", "text": "string [batch]"},
            "max_length": self.max_length,
            "tokenizer": {"kind": self.kind, "vocab_size": lm.tokenizer.vocab_size},
            "model": {"cell": lm.config.cell, "layers": lm.config.layers, "hidden": lm.config.hidden},
            "info": {k: lm.info.get(k) for k in ("best_val_loss", "best_val_bits_per_char", "step")},
        }

    # ---- text <-> ids ----------------------------------------------------------------

    def tokenize(self, prompts):
        """prompts (B,) string -> ids (B, P) int32 right-padded with 0, lengths (B,) int32."""
        if self.kind == "char":
            codepoints = tf.strings.unicode_decode(prompts, "UTF-8", errors="replace")
            ids = tf.ragged.map_flat_values(lambda c: self.table.lookup(tf.cast(c, tf.int64)), codepoints)
        elif self.kind == "byte":
            pieces = tf.strings.bytes_split(prompts)
            values = tf.reshape(tf.io.decode_raw(pieces.flat_values, tf.uint8), [-1])
            ids = pieces.with_flat_values(tf.cast(values, tf.int32) + 1)
        else:
            spaced = tf.strings.regex_replace(prompts, "\n", f" {EOL} ")
            ids = tf.ragged.map_flat_values(self.table.lookup, tf.strings.split(spaced))
        return ids.to_tensor(0), tf.cast(ids.row_lengths(), tf.int32)

    def detokenize(self, prompts, ids):
        """ids (B, L) int32 -> the generated text of each row (B,) string."""
        pieces = tf.gather(self.pieces, ids)  # (B, L)
        if self.kind == "word":
            # A space between two words, and before the first one when the prompt ends in a
            # word (not when it is empty or ends in whitespace), as charlm.sample joins them.
            is_word = tf.not_equal(ids, self.eol_id)
            after_word = tf.logical_not(tf.strings.regex_full_match(prompts, r"(?s)(|.*\s)"))
            before = tf.concat([after_word[:, None], is_word[:, :-1]], axis=1)
            pieces = tf.where(tf.logical_and(is_word, before), " " + pieces, pieces)
        text = tf.strings.reduce_join(pieces, axis=1)
        if self.kind == "byte":
            text = tf.strings.unicode_transcode(text, "UTF-8", "UTF-8", errors="replace")
        return text

    # ---- the signature ---------------------------------------------------------------

    @tf.function(input_signature=[
        tf.TensorSpec([None], tf.string, name="prompts"),
        tf.TensorSpec([], tf.int32, name="length"),
        tf.TensorSpec([], tf.float32, name="temperature"),
        tf.TensorSpec([], tf.int64, name="seed"),
    ])
    def serve(self, prompts, length, temperature, seed):
        sampler, step = self.sampler, self.sampler.stepper()
        ids, lengths = self.tokenize(prompts)  # (B, P), (B,)
        batch = tf.shape(prompts)[0]
        states = [tf.zeros([batch, h]) for h in self.state_shapes]
        hidden = tf.zeros_like(states[0])

        # Prime: row b consumes its first lengths[b] tokens; its state stops there.
        def prime(t, hidden, *states):
            new_hidden, new_states = step(ids[:, t], list(states))
            live = (t < lengths)[:, None]  # (B, 1)
            return (t + 1, tf.where(live, new_hidden, hidden),
                    *[tf.where(live, n, s) for n, s in zip(new_states, states)])

        _, hidden, *states = tf.while_loop(
            lambda t, *_: t < tf.shape(ids)[1], prime, (tf.constant(0), hidden, *states)
        )
        # No prompt: zero logits, so the first token is uniform over the ordinary symbols.
        logits = tf.where((lengths > 0)[:, None], sampler.logits_of(hidden), 0.0)

        steps = tf.clip_by_value(length, 0, self.max_length)

        def generate(t, tokens, logits, *states):
            masked = logits + self.mask
            pair = tf.stack([seed, tf.cast(t, tf.int64)])
            token = tf.cond(
                temperature > 0,
                lambda: tf.random.stateless_categorical(masked / temperature, 1, pair, dtype=tf.int32)[:, 0],
                lambda: tf.argmax(masked, axis=1, output_type=tf.int32),
            )
            hidden, states = step(token, list(states))
            return (t + 1, tokens.write(t, token), sampler.logits_of(hidden), *states)

        tokens = tf.TensorArray(tf.int32, size=steps, element_shape=[None])
        _, tokens, *_ = tf.while_loop(
            lambda t, *_: t < steps, generate, (tf.constant(0), tokens, logits, *states)
        )
        # (B, L); an empty TensorArray of unknown row count cannot be stacked, hence the cond.
        out = tf.cond(steps > 0, lambda: tf.transpose(tokens.stack()), lambda: tf.zeros([batch, 0], tf.int32))
        generated = self.detokenize(prompts, out)
        return {"generated": generated, "text": prompts + generated}

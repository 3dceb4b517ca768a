"""charlm eval and charlm score: streamed log-probabilities checked against one plain
forward pass over the whole text, the derived figures, and the command lines."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from tests.helpers import BUNDLED_CORPUS, assert_one_line_error, invoke

TEXT = BUNDLED_CORPUS.read_text(encoding="utf-8")[:613]  # not a multiple of any window below


def reference_logprobs(lm, text):
    """log p of each token of text after a line break: one unbatched forward pass, numpy softmax."""
    import tensorflow as tf

    ids = lm.tokenizer.encode("\n" + text)
    forward = tf.function(lambda tokens, states: lm.model([tokens, *states], training=False)[0])
    logits = np.asarray(forward(ids[None, :-1], lm.zero_states(1))[0], np.float64)
    logp = logits - logits.max(axis=1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(axis=1, keepdims=True))
    return logp[np.arange(len(ids) - 1), ids[1:]]


@pytest.mark.parametrize("model", ["lm", "wide_lm"])  # wide_lm: compiled with XLA
def test_single_stream_matches_one_forward_pass(model, request):
    from charlm.config import StreamSettings
    from charlm.evaluate import text_logprobs

    lm = request.getfixturevalue(model)

    ids, logp = text_logprobs(lm, TEXT, StreamSettings(streams=1, window=50, warmup=0))
    assert len(ids) == len(logp) == len(TEXT)
    np.testing.assert_allclose(logp, reference_logprobs(lm, TEXT), atol=2e-4)


def test_parallel_streams_keep_every_token(lm):
    from charlm.config import StreamSettings
    from charlm.evaluate import TokenScorer, plan_streams, start_ids, stream_logprobs

    scorer = TokenScorer(lm)
    ids, start = lm.tokenizer.encode(TEXT), start_ids(lm.tokenizer)
    reference = reference_logprobs(lm, TEXT)
    # Warm-up as long as the text: each piece re-reads everything before it, so the
    # stitched result must equal the serial pass exactly, tail included.
    assert plan_streams(len(ids), StreamSettings(streams=5, window=25)) == 5  # 613 // (4 x 25) >= 5
    full = stream_logprobs(scorer, ids, start, StreamSettings(streams=5, window=25, warmup=len(ids)))
    cold = stream_logprobs(scorer, ids, start, StreamSettings(streams=5, window=25, warmup=0))
    assert len(full) == len(cold) == len(ids)
    np.testing.assert_allclose(full, reference, atol=2e-4)
    # Without warm-up the first piece is still exact, the later pieces start cold.
    first = len(ids) // 5  # the pieces' bounds: np.linspace(0, n, 6)
    np.testing.assert_allclose(cold[:first], reference[:first], atol=2e-4)
    assert not np.allclose(cold[first:first + 5], reference[first:first + 5], atol=1e-3)


def test_passes_bounded_by_the_logits_budget_score_the_same(lm, monkeypatch):
    """A vocabulary too large for whole windows under LOGITS_BUDGET makes the passes shorter
    (the states carried between them): every log-probability is the one of whole windows."""
    from charlm import evaluate
    from charlm.config import StreamSettings

    scorer = evaluate.TokenScorer(lm)
    ids, start = lm.tokenizer.encode(TEXT), evaluate.start_ids(lm.tokenizer)
    settings = StreamSettings(streams=5, window=25, warmup=len(ids))
    vocab = scorer.vocab_size
    assert evaluate.pass_window(5, vocab, settings) == 25
    whole = evaluate.stream_logprobs(scorer, ids, start, settings)
    monkeypatch.setattr(evaluate, "LOGITS_BUDGET", 5 * 3 * vocab + vocab)  # room for 3 tokens of 5 rows
    assert evaluate.pass_window(5, vocab, settings) == 3
    bounded = evaluate.stream_logprobs(scorer, ids, start, settings)
    np.testing.assert_allclose(bounded, whole, atol=1e-5)
    np.testing.assert_allclose(bounded, reference_logprobs(lm, TEXT), atol=2e-4)
    monkeypatch.setattr(evaluate, "LOGITS_BUDGET", 1)  # never below one token a row
    assert evaluate.pass_window(5, vocab, settings) == 1
    np.testing.assert_allclose(evaluate.stream_logprobs(scorer, ids, start, settings), whole, atol=1e-5)


@pytest.mark.parametrize("vocab, window", [(65, 256), (10_000, 6), (33_000, 1)])
def test_default_passes_hold_at_most_32_mib_of_logits(vocab, window):
    """charlm eval's default 128 streams read windows of 256 tokens of a character model, but of
    a word model only what keeps the (128, window, V) float32 logits within 32 MiB."""
    from charlm.evaluate import LOGITS_BUDGET, pass_window

    assert pass_window(128, vocab) == window
    assert LOGITS_BUDGET * 4 == 32 * 2**20
    assert 128 * window * vocab * 4 <= 32 * 2**20


def test_evaluate_figures(lm):
    from charlm.config import StreamSettings
    from charlm.evaluate import evaluate

    text = TEXT[:400] + " été\n"  # non-ASCII: outside the tiny vocabulary, and 2 UTF-8 bytes each
    result = evaluate(lm, text, StreamSettings(streams=3, window=32, warmup=64))
    total_nats = result["loss"] * result["tokens"]
    assert result["tokens"] == result["chars"] == len(text)
    assert result["bytes"] == len(text.encode("utf-8")) == len(text) + 2
    assert result["bits_per_char"] == pytest.approx(result["loss"] / math.log(2))
    assert result["bits_per_byte"] == pytest.approx(total_nats / math.log(2) / result["bytes"])
    assert result["perplexity"] == pytest.approx(math.exp(result["loss"]))
    assert result["words"] == len(text.split()) + text.count("\n")
    assert result["word_perplexity"] == pytest.approx(math.exp(total_nats / result["words"]))
    assert result["unknown"] == 2 and result["oov_rate"] == pytest.approx(2 / len(text))
    assert total_nats == pytest.approx(-reference_logprobs(lm, text).sum(), rel=1e-4)
    assert (result["streams"], result["window"]) == (3, 32)  # the pass's shape: logits far below the budget


def test_eval_cli_json(tiny_model_path, tmp_path):
    path = tmp_path / "text.txt"
    path.write_text(TEXT, encoding="utf-8")
    result = invoke("eval", tiny_model_path, path, "--json")
    assert result.exit_code == 0, result.output
    figures = json.loads(result.stdout)
    for key in ("loss", "perplexity", "bits_per_char", "bits_per_byte", "tokens", "chars", "bytes",
                "word_perplexity", "oov_rate"):
        assert key in figures
    assert figures["tokens"] == len(TEXT)
    assert figures["bits_per_char"] == pytest.approx(figures["loss"] / math.log(2))
    text_result = invoke("eval", tiny_model_path, path)
    assert text_result.exit_code == 0 and "bits/char" in text_result.stdout


def test_score_rows_add_up_to_eval(tiny_model_path, tmp_path):
    text = "the keys are old .\nthe key is old .\n"
    path = tmp_path / "s.txt"
    path.write_text(text, encoding="utf-8")
    tsv = invoke("score", tiny_model_path, "--text", text)
    assert tsv.exit_code == 0, tsv.output
    lines = tsv.stdout.strip("\n").split("\n")
    assert lines[0] == "index\ttoken\tsurprisal_bits"
    rows = [line.split("\t") for line in lines[1:]]
    assert len(rows) == len(text)
    assert [r[1] for r in rows[:3]] == ["t", "h", "e"] and rows[18][1] == "\\n"
    as_json = json.loads(invoke("score", tiny_model_path, path, "--json").stdout)
    bits = [row["surprisal"] for row in as_json["tokens"]]
    assert bits == pytest.approx([float(r[2]) for r in rows], abs=1e-3)
    figures = json.loads(invoke("eval", tiny_model_path, path, "--json").stdout)
    assert sum(bits) == pytest.approx(figures["loss"] * figures["tokens"] / math.log(2), rel=1e-5)


@pytest.mark.parametrize("args, message", [
    (["eval", "{model}", "{missing}"], "corpus not found"),
    (["eval", "{missing}", "{text}"], "model file not found"),
    (["eval", "{model}", "{text}", "--streams", "0"], "--streams"),
    (["score", "{model}"], "either a FILE or --text"),
    (["score", "{model}", "{text}", "--text", "x"], "either a FILE or --text"),
    (["score", "{model}", "--text", ""], "empty"),
])
def test_bad_input_is_one_line(tiny_model_path, tmp_path, args, message):
    text = tmp_path / "t.txt"
    text.write_text("the key is old .\n", encoding="utf-8")
    names = {"model": tiny_model_path, "missing": tmp_path / "nope.txt", "text": text}
    assert_one_line_error(invoke(*[a.format(**names) for a in args]), message)

"""scripts/torch_peers.py, the PyTorch peers of scripts/bench_quality.py: the GPT is causal and
counts its parameters once, each validation scores the tokens it says with the context it says
(checked against plain loops), the clock keeps the best weights, and the split is charlm's."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest

from tests.helpers import REPO

torch = pytest.importorskip("torch", reason="the PyTorch peers need PyTorch (CI has none)")
sys.path.insert(0, str(REPO / "scripts"))
import torch_peers  # noqa: E402
from torch.nn import functional as F  # noqa: E402

from charlm.data.streams import StreamBatches  # noqa: E402

SMALL = torch_peers.GPTConfig(vocab=11, block=16, layers=2, heads=2, width=16)


def _gpt(config=SMALL, seed=0):
    torch.manual_seed(seed)
    return torch_peers.GPT(config).eval()


def test_gpt_logits_at_a_position_ignore_the_tokens_after_it():
    model = _gpt()
    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(0, SMALL.vocab, (3, SMALL.block), generator=generator)
    changed = ids.clone()
    changed[:, 9:] = (ids[:, 9:] + 1) % SMALL.vocab
    with torch.no_grad():
        logits, after = model(ids), model(changed)
        shorter = model(ids[:, :5])
    assert logits.shape == (3, SMALL.block, SMALL.vocab)
    torch.testing.assert_close(after[:, :9], logits[:, :9], rtol=0, atol=1e-6)
    assert not torch.allclose(after[:, 9:], logits[:, 9:])  # the later positions do see the change
    torch.testing.assert_close(shorter, logits[:, :5], rtol=0, atol=1e-6)  # a shorter context reads the same


def test_gpt_output_matrix_is_the_token_embedding_counted_once():
    model = _gpt()
    assert model.head.weight is model.tokens.weight
    V, T, C, L = SMALL.vocab, SMALL.block, SMALL.width, SMALL.layers
    # embeddings, per block qkv 3C^2 + projection C^2 + MLP 8C^2 + two LayerNorm gains, the final gain
    assert sum(p.numel() for p in model.parameters()) == V * C + T * C + L * (12 * C * C + 2 * C) + C


def _loss(model, x, y):
    """Summed nats of the targets ``y`` (T,) after the inputs ``x`` (T,) read as one sequence."""
    with torch.no_grad():
        return F.cross_entropy(model(x[None])[0], y, reduction="sum").item()


def test_window_loss_in_blocks_scores_every_target_of_every_whole_block():
    model = _gpt()
    ids = np.random.default_rng(2).integers(0, SMALL.vocab, 100)
    t = torch.from_numpy(ids)
    starts = range(0, 100 - SMALL.block, SMALL.block)  # 0, 16, ..., 80: the last block's target is id 96
    total = sum(_loss(model, t[s:s + 16], t[s + 1:s + 17]) for s in starts)
    nats, tokens = torch_peers.window_loss(model, ids, rows=4)  # chunks of 4 windows: 4 + 2
    assert tokens == 6 * 16
    assert nats == pytest.approx(total / tokens, rel=1e-6)


def test_window_loss_sliding_scores_each_target_once_with_at_least_block_minus_stride_context():
    model = _gpt()
    ids = np.random.default_rng(3).integers(0, SMALL.vocab, 60)
    t, block, stride = torch.from_numpy(ids), SMALL.block, 4
    # Target i (ids[i]) is scored once: i = 1..16 from the first window, then each from the window
    # that ends at it when that window starts at a multiple of the stride.
    total, scored = _loss(model, t[:block], t[1:block + 1]), list(range(1, block + 1))
    for start in range(stride, len(ids) - block, stride):
        x = t[start:start + block]
        with torch.no_grad():
            logp = torch.log_softmax(model(x[None])[0], -1)
        for j in range(block - stride, block):
            total -= logp[j, t[start + j + 1]].item()
            scored.append(start + j + 1)
    assert scored == list(range(1, scored[-1] + 1))
    nats, tokens = torch_peers.window_loss(model, ids, stride, rows=3)
    assert tokens == len(scored)
    assert nats == pytest.approx(total / tokens, rel=1e-6)


def test_stream_loss_reads_each_stream_whole_from_a_zero_state_as_charlm_validates():
    torch.manual_seed(0)
    model = torch_peers.LSTMModel(vocab=7, embedding=4, hidden=5, layers=2, dropout=0.5)  # left training
    ids = np.random.default_rng(4).integers(0, 7, 200)
    batches = StreamBatches(ids, 3, 8)  # 3 streams of 66: 8 windows, 64 targets each
    nats, tokens = torch_peers.stream_loss(model, batches)
    assert tokens == 3 * 64
    assert model.training  # given back as it came
    model.eval()  # the reference without dropout, each stream in one pass
    total = 0.0
    with torch.no_grad():
        for row in batches.streams:
            x = torch.from_numpy(row[:64].astype(np.int64))[:, None]  # (T, 1)
            logits, _ = model(x, model.zero_state(1))
            total += F.cross_entropy(logits[:, 0], torch.from_numpy(row[1:65].astype(np.int64)),
                                     reduction="sum").item()
    assert nats == pytest.approx(total / tokens, rel=1e-6)


def test_train_for_validates_after_the_deadline_and_keeps_the_best_weights():
    model = torch.nn.Linear(1, 1, bias=False)
    torch.nn.init.zeros_(model.weight)
    losses = iter([3.0, 1.0, 2.0] + [5.0] * 100)

    def step(k, fraction):  # the weight counts the steps taken
        assert 0.0 <= fraction < 1.0  # a step starts only inside the budget
        with torch.no_grad():
            model.weight += 1.0
        torch.zeros(20000).exp_()  # a little work, so that a budget of 0.1 s holds some steps
        return 0.5

    run = torch_peers.train_for(0.1 / 60, step, model, lambda: (next(losses), 42))
    history = run["history"]
    assert 1 <= len(history) <= torch_peers.VALIDATIONS + 1
    assert history[-1]["step"] == run["steps"] and history[-1]["seconds"] >= 0.1
    best = min(history, key=lambda row: row["val_nats"])
    assert run["best_val_nats"] == best["val_nats"] and run["val_tokens"] == 42
    assert run["best_state"]["weight"].item() == best["step"]  # the weights as they were then
    assert [row["step"] for row in history] == sorted({row["step"] for row in history})


def test_gpt_lr_warms_up_then_follows_a_cosine_over_the_budget():
    r = torch_peers.GPT_RECIPE
    assert torch_peers.gpt_lr(0, 0.0) == pytest.approx(r["lr"] / (r["warmup"] + 1))
    assert torch_peers.gpt_lr(r["warmup"], 0.0) == r["lr"]
    assert torch_peers.gpt_lr(10**6, 0.5) == pytest.approx((r["lr"] + r["min_lr"]) / 2)
    assert torch_peers.gpt_lr(10**6, 1.0) == pytest.approx(r["min_lr"])
    assert torch_peers.gpt_lr(10**6, 0.25) == pytest.approx(
        r["min_lr"] + (r["lr"] - r["min_lr"]) * (1 + math.cos(math.pi / 4)) / 2)


def test_split_ids_is_charlms_split_and_vocabulary(tmp_path):
    from charlm.config import TokenizerConfig, TrainConfig
    from charlm.data.prepare import prepare

    corpus = tmp_path / "corpus.txt"
    corpus.write_text("".join(f"line {i}: the cat sat on mat {i * 7 % 13}\n" for i in range(400)) + "Zq!\n",
                      encoding="utf-8")
    train_ids, val_ids, tokenizer = torch_peers.split_ids(corpus, 0.05)
    data = prepare([corpus], TokenizerConfig(), TrainConfig(batch_size=2, bptt=4, val_fraction=0.05))
    assert tokenizer.vocabulary == data.tokenizer.vocabulary
    assert (len(train_ids), len(val_ids)) == (data.train_tokens, data.val_tokens)
    assert np.array_equal(val_ids[:data.validation.streams.size], data.validation.streams.ravel())
    assert np.count_nonzero(val_ids == tokenizer.unk_id) == data.val_unknown > 0  # "Zq!" never trained

"""The PyTorch peers of scripts/bench_quality.py, each trained for a wall-clock budget on charlm's
split and vocabulary: the text less its last ``--val-fraction`` of characters trains
(:func:`charlm.data.corpus.split_text`, the cut ``charlm train`` makes), the rest validates, and the
vocabulary is charlm's char tokenizer built from the training part (``<pad>`` and ``<unk>`` first).

    lstm  charlm's default model (embedding 64, 2x256 LSTM) with a standard recipe: Adam at 2e-3,
          global-norm clipping at 5 (``clip_grad_norm_``), dropout on the embedding, between the
          layers and before the decoder (``--lstm-dropout``, 0.2: char-rnn advises dropout for a
          model about as large as its data, here 0.88M parameters and 1.06M characters, and more
          when validation loss stays above training loss; the value is not tuned); B=64 streams,
          windows of T=64 (charlm's layout, :mod:`charlm.data.streams`), the state carried across
          windows (truncated BPTT) and zeroed at each epoch's start, as charlm does. PyTorch's LSTM
          has two bias vectors per layer: 2,048 parameters more than charlm's.
          Validated as charlm validates: the validation text as B streams from a zero state, in
          windows of T with the state carried, the tokens past the last whole window unscored.
    gpt   a small GPT in nanoGPT's laptop configuration for shakespeare_char: 4 layers, 4 heads,
          width 128, context 64, batch 12 of random 64-token blocks, dropout 0, no biases;
          pre-LayerNorm blocks of causal self-attention and a GELU MLP, learned position
          embeddings, output tied to the token embedding; AdamW (lr 1e-3, betas 0.9/0.99, weight
          decay 0.1 on the matrices), clipping at 1, 100 warm-up steps, then a cosine from 1e-3 to
          1e-4 over the budget's wall clock (nanoGPT's decays over its 2,000 iterations; a budget
          in minutes has no iteration count).
          Validated on non-overlapping blocks of 64 (nanoGPT's measure, over every block instead of
          random ones: a token sees 0-63 tokens of context); its best weights also on a sliding
          window (``sliding_val_nats``: windows every 32 tokens, each target after the first
          window scored with 32-63 tokens of context).

Each validates at every tenth of the budget and keeps the best. The clock starts with the
training loop and includes those validations, as ``charlm train --max-minutes`` counts its
epoch-end validations; the step that passes the deadline is followed by one last validation
(charlm's too), which is not counted. PyTorch runs as many threads as the process has cores
(``--threads``), as TensorFlow does for charlm.

    python scripts/torch_peers.py lstm --minutes 10      # one JSON object: the last line of stdout
    python scripts/torch_peers.py gpt --minutes 0.3 --out /tmp/gpt
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from charlm.data.corpus import read_corpus, split_text  # noqa: E402
from charlm.data.streams import StreamBatches  # noqa: E402
from charlm.data.tokenizers import CharTokenizer  # noqa: E402
from charlm.fileio import write_text  # noqa: E402

CORPUS = REPO.parent / "shared" / "data" / "corpora" / "tinyshakespeare.txt"
VALIDATIONS = 10  # validations per budget, evenly spaced in time
LSTM_RECIPE = dict(embedding=64, hidden=256, layers=2, batch=64, bptt=64, lr=2e-3, clip=5.0)
GPT_RECIPE = dict(batch=12, lr=1e-3, min_lr=1e-4, warmup=100, betas=(0.9, 0.99), weight_decay=0.1, clip=1.0)
SLIDING_STRIDE = 32


def cpu_threads() -> int:
    """The cores this process may run on: as many threads as TensorFlow gives charlm."""
    return len(os.sched_getaffinity(0))


def split_ids(corpus, val_fraction: float):
    """(training ids, validation ids, tokenizer): charlm's cut and charlm's char vocabulary of the
    training part, the ids int64 numpy arrays."""
    train_text, val_text = split_text(read_corpus([corpus]).text, val_fraction)
    tokenizer = CharTokenizer.build(train_text)
    return (tokenizer.encode(train_text).astype(np.int64), tokenizer.encode(val_text).astype(np.int64),
            tokenizer)


# ---- the LSTM ---------------------------------------------------------------------------------


class LSTMModel(nn.Module):
    """PyTorch's word_language_model RNNModel (LSTM) with an embedding width of its own: embedding
    (E), dropout, ``nn.LSTM`` (H units, dropout between its layers), dropout, linear decoder
    (optionally tied to the embedding, which needs E == H); its initialisation: embedding and
    decoder uniform in +-0.1, decoder bias 0, the LSTM PyTorch's own. The dropout falls where
    charlm's ``--dropout`` does."""

    def __init__(self, vocab, embedding, hidden, layers, dropout=0.0, tie=False):
        super().__init__()
        self.drop = nn.Dropout(dropout)
        self.encoder = nn.Embedding(vocab, embedding)
        self.rnn = nn.LSTM(embedding, hidden, layers, dropout=dropout)
        self.decoder = nn.Linear(hidden, vocab)
        if tie:
            self.decoder.weight = self.encoder.weight
        nn.init.uniform_(self.encoder.weight, -0.1, 0.1)
        nn.init.zeros_(self.decoder.bias)
        nn.init.uniform_(self.decoder.weight, -0.1, 0.1)

    def forward(self, tokens, state):  # tokens (T, B) -> logits (T, B, V), state ((L, B, H), (L, B, H))
        output, state = self.rnn(self.drop(self.encoder(tokens)), state)
        return self.decoder(self.drop(output)), state

    def zero_state(self, rows: int):
        """The (h, c) of ``rows`` fresh streams."""
        return tuple(torch.zeros(self.rnn.num_layers, rows, self.rnn.hidden_size) for _ in range(2))


def _time_major(ids) -> torch.Tensor:
    """A (B, T) window of ids as the (T, B) int64 tensor nn.LSTM reads."""
    return torch.from_numpy(np.ascontiguousarray(ids.T, dtype=np.int64))


@torch.no_grad()
def stream_loss(model: LSTMModel, batches: StreamBatches) -> tuple[float, int]:
    """charlm's validation (``CompiledSteps.evaluate``): every window of ``batches`` in order, from
    zero states, the state carried across windows. (mean nats per token, tokens scored)."""
    was_training = model.training
    model.eval()
    state, total = model.zero_state(batches.batch_size), 0.0
    for x, y in batches:
        logits, state = model(_time_major(x), state)
        total += F.cross_entropy(logits.flatten(0, 1), _time_major(y).flatten(), reduction="sum").item()
    model.train(was_training)
    tokens = len(batches) * batches.tokens_per_window
    return total / tokens, tokens


def train_lstm(train_ids, val_ids, vocab: int, minutes: float, dropout: float, seed: int = 0):
    """The LSTM peer (module docstring): :func:`train_for`'s result with the parameter and token
    counts, settings and how it validates."""
    torch.manual_seed(seed)
    c = LSTM_RECIPE
    model = LSTMModel(vocab, c["embedding"], c["hidden"], c["layers"], dropout)
    params = list(model.parameters())
    optimizer = torch.optim.Adam(params, lr=c["lr"])
    train = StreamBatches(train_ids, c["batch"], c["bptt"], "training")
    validation = StreamBatches(val_ids, c["batch"], c["bptt"], "validation")
    state = None
    model.train()

    def step(k, fraction):
        nonlocal state
        window = k % len(train)
        if window == 0:  # each epoch starts from a fresh state, as charlm's does
            state = model.zero_state(c["batch"])
        x, y = train.window(window)
        logits, state = model(_time_major(x), tuple(s.detach() for s in state))
        loss = F.cross_entropy(logits.flatten(0, 1), _time_major(y).flatten())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, c["clip"])
        optimizer.step()
        return loss.item()

    run = train_for(minutes, step, model, lambda: stream_loss(model, validation))
    return {
        "params": sum(p.numel() for p in params),
        "tokens": run["steps"] * train.tokens_per_window,
        "settings": {**c, "dropout": dropout, "optimizer": "adam", "clip": "global"},
        "validation": f"{c['batch']} streams from zero state, windows of {c['bptt']}, state carried "
                      "(charlm's layout)",
        **run,
    }


# ---- the GPT ----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class GPTConfig:
    """nanoGPT's laptop configuration for shakespeare_char."""

    vocab: int
    block: int = 64
    layers: int = 4
    heads: int = 4
    width: int = 128
    dropout: float = 0.0


class SelfAttention(nn.Module):
    """Multi-head causal self-attention: a token attends to itself and the tokens before it."""

    def __init__(self, c: GPTConfig):
        super().__init__()
        self.heads, self.dropout = c.heads, c.dropout
        self.qkv = nn.Linear(c.width, 3 * c.width, bias=False)
        self.proj = nn.Linear(c.width, c.width, bias=False)

    def forward(self, x):  # (B, T, C) -> (B, T, C)
        B, T, C = x.shape
        q, k, v = (t.view(B, T, self.heads, C // self.heads).transpose(1, 2)  # (B, heads, T, C / heads)
                   for t in self.qkv(x).split(C, dim=2))
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0,
                                           is_causal=True)
        return self.proj(y.transpose(1, 2).reshape(B, T, C))


class Block(nn.Module):
    """Pre-LayerNorm transformer block: x + attention(LN(x)), then + MLP(LN(x)) (4C, GELU)."""

    def __init__(self, c: GPTConfig):
        super().__init__()
        self.ln1 = nn.LayerNorm(c.width, bias=False)
        self.attention = SelfAttention(c)
        self.ln2 = nn.LayerNorm(c.width, bias=False)
        self.mlp = nn.Sequential(nn.Linear(c.width, 4 * c.width, bias=False), nn.GELU(),
                                 nn.Linear(4 * c.width, c.width, bias=False))
        self.drop = nn.Dropout(c.dropout)

    def forward(self, x):
        x = x + self.drop(self.attention(self.ln1(x)))
        return x + self.drop(self.mlp(self.ln2(x)))


class GPT(nn.Module):
    """Token and learned position embeddings, ``layers`` blocks, a final LayerNorm, and the token
    embedding's transpose as the output matrix. Weights N(0, 0.02), the two projections that
    write into the residual stream scaled by 1/sqrt(2 x layers) (GPT-2's initialisation)."""

    def __init__(self, c: GPTConfig):
        super().__init__()
        self.config = c
        self.tokens = nn.Embedding(c.vocab, c.width)
        self.positions = nn.Embedding(c.block, c.width)
        self.drop = nn.Dropout(c.dropout)
        self.blocks = nn.ModuleList(Block(c) for _ in range(c.layers))
        self.ln = nn.LayerNorm(c.width, bias=False)
        self.head = nn.Linear(c.width, c.vocab, bias=False)
        self.head.weight = self.tokens.weight
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, 0.0, 0.02)
        for block in self.blocks:
            for residual in (block.attention.proj, block.mlp[2]):
                nn.init.normal_(residual.weight, 0.0, 0.02 / math.sqrt(2 * c.layers))

    def forward(self, idx):  # (B, T) ids, T <= block -> (B, T, V) logits
        positions = torch.arange(idx.shape[1], device=idx.device)
        x = self.drop(self.tokens(idx) + self.positions(positions))
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln(x))


@torch.no_grad()
def window_loss(model: GPT, ids, stride: int | None = None, rows: int = 256) -> tuple[float, int]:
    """Mean nats per token of ``ids`` read in windows of the model's context: every ``stride``
    tokens (default: the context, i.e. non-overlapping blocks), the first window scoring all its
    targets and each later one only its last ``stride`` (each with at least context - stride tokens
    of context); targets past the last window go unscored. (mean, tokens scored)."""
    block = model.config.block
    stride = stride or block
    was_training = model.training
    model.eval()
    ids = torch.as_tensor(np.asarray(ids, dtype=np.int64))
    starts = torch.arange(0, len(ids) - block, stride)  # a window needs block + 1 ids
    offsets = torch.arange(block)
    total, tokens = 0.0, 0
    for chunk in starts.split(rows):
        x, y = ids[chunk[:, None] + offsets], ids[chunk[:, None] + offsets + 1]  # (R, block)
        nats = F.cross_entropy(model(x).flatten(0, 1), y.flatten(), reduction="none").view_as(y)
        scored = (offsets >= block - stride) | (chunk[:, None] == 0)  # (R, block)
        total += nats[scored].sum().item()
        tokens += int(scored.sum())
    model.train(was_training)
    return total / tokens, tokens


def gpt_lr(step: int, fraction: float) -> float:
    """nanoGPT's schedule on the clock: linear warm-up over the first steps, then a cosine from
    lr to min_lr over the budget's elapsed ``fraction``."""
    r = GPT_RECIPE
    if step < r["warmup"]:
        return r["lr"] * (step + 1) / (r["warmup"] + 1)
    return r["min_lr"] + 0.5 * (1.0 + math.cos(math.pi * min(1.0, fraction))) * (r["lr"] - r["min_lr"])


def train_gpt(train_ids, val_ids, vocab: int, minutes: float, seed: int = 0):
    """The GPT peer (module docstring): :func:`train_for`'s result with the parameter and token
    counts, the sliding-window figure of the best weights, settings and how it validates."""
    torch.manual_seed(seed)
    r, c = GPT_RECIPE, GPTConfig(vocab)
    model = GPT(c)
    params = list(model.parameters())
    # Weight decay on the matrices (and embeddings), not on the LayerNorm gains, as nanoGPT's.
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": r["weight_decay"]},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    optimizer = torch.optim.AdamW(groups, lr=r["lr"], betas=r["betas"])
    data = torch.from_numpy(train_ids)
    generator = torch.Generator().manual_seed(seed)
    offsets = torch.arange(c.block)
    model.train()

    def step(k, fraction):
        for group in optimizer.param_groups:
            group["lr"] = gpt_lr(k, fraction)
        starts = torch.randint(len(data) - c.block, (r["batch"], 1), generator=generator)
        x, y = data[starts + offsets], data[starts + offsets + 1]  # (batch, block)
        loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, r["clip"])
        optimizer.step()
        return loss.item()

    run = train_for(minutes, step, model, lambda: window_loss(model, val_ids))
    best_model = GPT(c)
    best_model.load_state_dict(run["best_state"])
    sliding, _ = window_loss(best_model, val_ids, SLIDING_STRIDE)
    return {
        "params": sum(p.numel() for p in params),
        "tokens": run["steps"] * r["batch"] * c.block,
        "sliding_val_nats": sliding,
        "settings": {**dataclasses.asdict(c), **r, "schedule": "warmup, then cosine over the budget's wall clock"},
        "validation": f"non-overlapping blocks of {c.block} (sliding_val_nats: windows every {SLIDING_STRIDE})",
        **run,
    }


# ---- the clock --------------------------------------------------------------------------------


def train_for(minutes: float, step, model: nn.Module, validate) -> dict:
    """Call ``step(k, fraction of the budget elapsed)`` (it returns the training loss) until
    ``minutes`` of wall clock have passed, and ``validate()`` (it returns (nats, tokens)) at each
    tenth of the budget and after the last step; the clock includes the validations. Returns the
    steps, the best validation and a copy of the model's weights then, the history and the time."""
    budget = 60.0 * minutes
    started = time.perf_counter()
    history, losses, k, due = [], [], 0, 1
    best, best_state, val_tokens = math.inf, None, 0
    while True:
        losses.append(step(k, (time.perf_counter() - started) / budget))
        k += 1
        elapsed = time.perf_counter() - started
        last = elapsed >= budget
        if last or elapsed >= due * budget / VALIDATIONS:
            nats, val_tokens = validate()
            elapsed = time.perf_counter() - started
            history.append({"step": k, "seconds": elapsed, "val_nats": nats,
                            "train_nats": float(np.mean(losses[-100:]))})
            due = math.floor(elapsed * VALIDATIONS / budget) + 1  # the next tenth not yet begun
            if nats < best:
                best, best_state = nats, copy.deepcopy(model.state_dict())
        if last:
            break
    return {"best_val_nats": best, "steps": k, "seconds": time.perf_counter() - started,
            "val_tokens": val_tokens, "history": history, "best_state": best_state}


# ---- the command line -------------------------------------------------------------------------


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("system", choices=["lstm", "gpt"])
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    parser.add_argument("--minutes", type=float, default=10.0, help="wall-clock training budget")
    parser.add_argument("--val-fraction", type=float, default=0.05, help="the last part of the text validating")
    parser.add_argument("--lstm-dropout", type=float, default=0.2, help="the LSTM's dropout")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=cpu_threads(), help="PyTorch's intra-op threads")
    parser.add_argument("--out", type=Path, help="folder to keep the best weights (model.pt) and history.json in")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    train_ids, val_ids, tokenizer = split_ids(args.corpus, args.val_fraction)
    if args.system == "lstm":
        result = train_lstm(train_ids, val_ids, tokenizer.vocab_size, args.minutes, args.lstm_dropout, args.seed)
    else:
        result = train_gpt(train_ids, val_ids, tokenizer.vocab_size, args.minutes, args.seed)
    best_state = result.pop("best_state")
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        torch.save({"state_dict": best_state, "vocabulary": tokenizer.vocabulary, "settings": result["settings"]},
                   args.out / "model.pt")
        write_text(args.out / "history.json", json.dumps(result["history"], indent=2) + "\n")
    print(json.dumps({**result, "threads": args.threads}), flush=True)


if __name__ == "__main__":
    main()

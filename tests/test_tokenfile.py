"""Streaming tokenization into a cached, memory-mapped token file (charlm.data.tokenfile): the
same batches as tokenizing the whole text in memory, read in chunks of any size; documents
separated by <doc>; the cache reused, never for another corpus, rebuilt when damaged; invalid
UTF-8 located or replaced; the narrowest dtype for the ids."""

import json
import os
import unicodedata
from pathlib import Path

import numpy as np
import pytest

import charlm.data.corpus
from charlm.config import TokenizerConfig, TrainConfig
from charlm.data.corpus import read_corpus, split_text
from charlm.data.prepare import DataConfig, prepare
from charlm.data.streams import StreamBatches
from charlm.data.tokenfile import token_dtype
from charlm.data.tokenizers import DOC, build_tokenizer
from tests.helpers import BUNDLED_CORPUS

# Mixed scripts, combining marks, emoji, CRLF: every UTF-8 sequence length.
MIXED = ("Grüße, naïve café — 日本語のテキスト 🙂🚀 e\u0301 ﬁ x\r\n"
         "ab cd ef\n"
         "Ωμέγα δ' ἄλφα\tend\n") * 40


def _config(**kw):
    return TrainConfig(**{"batch_size": 4, "bptt": 8, "val_fraction": 0.1, **kw})


WORD_OPTIONS = {"lowercase": True, "split_punctuation": True, "numbers_token": "<num>"}


def _in_memory(path, kind, train_config, normalization=None, **word_options):
    """The in-memory pipeline of the core: read, split, build, encode, batch."""
    corpus = read_corpus([path])
    train, val = split_text(corpus.text, train_config.val_fraction, on_whitespace=kind == "word")
    tokenizer = build_tokenizer(kind, train, normalization, **word_options)
    B, T = train_config.batch_size, train_config.bptt
    return (tokenizer, StreamBatches(tokenizer.encode(train), B, T),
            StreamBatches(tokenizer.encode(val), B, T, "validation"), len(val))


@pytest.fixture
def tiny_chunks(monkeypatch):
    """Read 7 bytes at a time: UTF-8 sequences, words and lines straddle every chunk border."""
    monkeypatch.setattr(charlm.data.corpus, "CHUNK_BYTES", 7)


def _mapped(array):
    """Whether ``array`` is a view into a memory map (nothing copied)."""
    while array is not None:
        if isinstance(array, np.memmap):
            return True
        array = array.base
    return False


@pytest.mark.parametrize("kind,normalization,options", [
    ("char", None, {}), ("char", "NFKC", {}), ("byte", None, {}), ("word", None, {}), ("word", None, WORD_OPTIONS)])
@pytest.mark.parametrize("chunks", ["large", "tiny"])
def test_memory_mapped_pipeline_yields_the_same_batches_as_in_memory(tmp_path, request, kind, normalization,
                                                                     options, chunks):
    if chunks == "tiny":  # (words: the same tokens whatever the chunk size)
        request.getfixturevalue("tiny_chunks")
    path = tmp_path / "mixed.txt"
    # Words also end at the whitespace that is not ASCII's (no-break space, em space, U+2028, U+001C).
    extra = "The keys (3,000 of them) aren't old.\n" * 20 + "a\xa0b\u2003c\u2028d\x1ce\x85f \u3000g\n" * 5
    path.write_text(MIXED + extra, encoding="utf-8")
    config = _config()
    tokenizer, train, val, val_chars = _in_memory(path, kind, config, normalization, **options)
    data = prepare([path], TokenizerConfig(kind=kind, normalization=normalization, **options), config)
    assert data.tokenizer.vocabulary == tokenizer.vocabulary
    assert data.tokenizer.get_config() == tokenizer.get_config()
    for ours, theirs in ((data.train, train), (data.validation, val)):
        assert len(ours) == len(theirs)
        for k in range(len(ours)):
            for a, b in zip(ours.window(k), theirs.window(k)):
                assert a.dtype == np.int32 and np.array_equal(a, b)
    assert data.val_chars_per_token == pytest.approx(val_chars / data.val_tokens, rel=1e-12)
    assert _mapped(data.train.streams) and _mapped(data.validation.streams)


def test_bundled_corpus_batches_match_and_stay_memory_mapped(tmp_path):
    config = TrainConfig(batch_size=16, bptt=50)
    tokenizer, train, val, _ = _in_memory(BUNDLED_CORPUS, "char", config)
    data = prepare([BUNDLED_CORPUS], TokenizerConfig(), config, data_config=DataConfig(cache_dir=str(tmp_path)))
    assert data.train.streams.dtype == np.uint8  # 30-odd symbols: one byte per token on disk
    assert np.array_equal(data.train.streams, train.streams) and np.array_equal(data.validation.streams, val.streams)
    assert _mapped(data.train.streams)
    assert data.token_file and os.path.getsize(data.token_file) == data.train_tokens + data.val_tokens


@pytest.mark.parametrize("kind", ["char", "byte"])
def test_token_file_round_trips_to_the_text(tmp_path, tiny_chunks, kind):
    path = tmp_path / "mixed.txt"
    path.write_text(MIXED, encoding="utf-8")
    data = prepare([path], TokenizerConfig(kind=kind), _config(), data_config=DataConfig(cache_dir=str(tmp_path / "c")))
    ids = np.memmap(data.token_file, dtype=json.loads(open(data.token_file[:-7] + ".json").read())["dtype"])
    if kind == "char":  # the validation part may hold characters the training part lacked
        tokenizer = build_tokenizer("char", MIXED)
        assert set(data.tokenizer.vocabulary) == set(tokenizer.vocabulary)
    assert data.tokenizer.decode(ids) == MIXED


def test_documents_are_separated_by_a_doc_token(tmp_path, tiny_chunks):
    texts = ["first file\nends without a newline", "second: naïve 🙂\n", "", "fourth\n" * 30]
    folder = tmp_path / "docs"
    folder.mkdir()
    for i, text in enumerate(texts):
        (folder / f"{i}.txt").write_text(text, encoding="utf-8")
    data = prepare([folder], TokenizerConfig(), _config(batch_size=2, bptt=4, val_fraction=0.2),
                   data_config=DataConfig(cache_dir=str(tmp_path / "c")))
    doc = data.tokenizer.index[DOC]
    assert doc == 2 and doc in data.tokenizer.special_ids
    ids = np.fromfile(data.token_file, dtype=np.uint8)
    pieces = np.split(ids, np.flatnonzero(ids == doc))
    assert [data.tokenizer.decode(p[p != doc]) for p in pieces] == texts
    # A single file has no <doc> in its vocabulary: its ids are as before.
    single = prepare([folder / "3.txt"], TokenizerConfig(), _config(batch_size=2, bptt=4))
    assert DOC not in single.tokenizer.index


def test_second_run_reuses_the_cache_and_a_changed_corpus_never_gets_it(tmp_path):
    path = tmp_path / "c.txt"
    text = BUNDLED_CORPUS.read_text(encoding="utf-8")[:50_000]
    path.write_text(text, encoding="utf-8")
    settings = dict(tokenizer_config=TokenizerConfig(), train_config=_config(),
                    data_config=DataConfig(cache_dir=str(tmp_path / "cache")))
    first = prepare([path], **settings)
    second = prepare([path], **settings)
    assert not first.cached and second.cached and first.token_file == second.token_file
    assert np.array_equal(first.train.streams, second.train.streams)
    # Same size, one character changed: a different key, a fresh token file.
    path.write_text(text[:1000] + ("X" if text[1000] != "X" else "Y") + text[1001:], encoding="utf-8")
    third = prepare([path], **settings)
    assert not third.cached and third.token_file != first.token_file
    assert "X" in third.tokenizer.vocabulary
    # Other tokenizer settings or val fraction: other keys too.
    other = prepare([path], TokenizerConfig(kind="byte"), _config(), data_config=settings["data_config"])
    assert not other.cached and other.token_file not in (first.token_file, third.token_file)


@pytest.mark.parametrize("damage", ["truncate", "flip", "header"])
def test_damaged_cached_token_file_is_detected_and_rebuilt(tmp_path, damage):
    path = tmp_path / "c.txt"
    path.write_text(BUNDLED_CORPUS.read_text(encoding="utf-8")[:30_000], encoding="utf-8")
    settings = dict(tokenizer_config=TokenizerConfig(), train_config=_config(),
                    data_config=DataConfig(cache_dir=str(tmp_path / "cache")))
    good = prepare([path], **settings)
    expected = np.array(good.train.streams)
    token_file = good.token_file
    del good
    if damage == "truncate":
        os.truncate(token_file, 20_000)
    elif damage == "flip":
        with open(token_file, "r+b") as f:
            f.seek(12_345)
            byte = f.read(1)
            f.seek(12_345)
            f.write(bytes([byte[0] ^ 0x01]))
    else:
        with open(token_file[: -len(".tokens")] + ".json", "w") as f:
            f.write('{"format": 1, "dtyp')
    lines = []
    again = prepare([path], **settings, log=lines.append)
    assert not again.cached
    assert any("warning" in line and "rebuilding" in line for line in lines)
    assert np.array_equal(again.train.streams, expected)
    assert prepare([path], **settings).cached  # and the rebuilt file is good


def test_normalization_equals_whole_text_normalization_across_chunks(tmp_path, tiny_chunks):
    decomposed = unicodedata.normalize("NFD", MIXED)
    path = tmp_path / "nfd.txt"
    path.write_text(decomposed, encoding="utf-8")
    data = prepare([path], TokenizerConfig(normalization="NFC"), _config())
    train, _ = split_text(decomposed, 0.1)
    assert data.tokenizer.vocabulary[2:] == sorted(set(unicodedata.normalize("NFC", train)))


@pytest.mark.parametrize("chunks", ["large", "tiny"])
def test_invalid_utf8_is_located_or_replaced_as_in_memory(tmp_path, request, chunks):
    if chunks == "tiny":
        request.getfixturevalue("tiny_chunks")
    data = ("abc déf " * 50).encode() + b"bad \xe6\x97 here \xff and more text\n" + ("ghi " * 300).encode()
    path = tmp_path / "bad.txt"
    path.write_bytes(data)
    at = data.index(b"\xe6")
    with pytest.raises(charlm.data.corpus.CharlmError, match=rf"bad.txt: byte {at} \(0xe6\)"):
        prepare([path], TokenizerConfig(), _config())
    replaced = prepare([path], TokenizerConfig(encoding_errors="replace"), _config(val_fraction=0.5))
    text = data.decode("utf-8", "replace")
    assert replaced.tokenizer.decode(np.concatenate([replaced.train.streams.ravel(), [0]]))[:100] == text[:100]
    assert replaced.train_tokens == len(split_text(text, 0.5)[0])
    # The byte tokenizer reads any bytes as they are.
    raw = prepare([path], TokenizerConfig(kind="byte"), _config(val_fraction=0.5))
    ids = np.asarray(raw.train.streams).ravel()
    assert bytes((ids - 1).astype(np.uint8)) == data[: ids.size]


@pytest.mark.parametrize("vocab_size,dtype", [(2, np.uint8), (256, np.uint8), (257, np.uint16),
                                              (65_536, np.uint16), (65_537, np.uint32)])
def test_token_dtype_is_the_narrowest_that_fits(vocab_size, dtype):
    assert token_dtype(vocab_size) == dtype


@pytest.mark.parametrize("options", [{}, WORD_OPTIONS])
def test_word_token_file_counts_unknown_words_and_separates_documents(tmp_path, tiny_chunks, options):
    folder = tmp_path / "docs"
    folder.mkdir()
    texts = ["The cat sat.\nThe dog sat.\n" * 30, "A cat ran 42 km.\n" * 20, "Zebras run, quagga!\n" * 5]
    for i, text in enumerate(texts):
        (folder / f"{i}.txt").write_text(text, encoding="utf-8")
    data = prepare([folder], TokenizerConfig(kind="word", **options), _config(batch_size=2, bptt=4, val_fraction=0.1),
                   data_config=DataConfig(cache_dir=str(tmp_path / "c")))
    tokenizer = data.tokenizer
    assert tokenizer.rules.lowercase == bool(options) and DOC in tokenizer.index
    ids = np.fromfile(data.token_file, dtype=token_dtype(tokenizer.vocab_size))
    doc = tokenizer.index[DOC]
    pieces = np.split(ids, np.flatnonzero(ids == doc))
    # Each document reads back as its words; the unknown ones (validation only) as <unk>.
    for piece, text in zip(pieces, texts):
        expected = tokenizer.split(text)
        assert [tokenizer.vocabulary[i] if i != tokenizer.unk_id else None for i in piece[piece != doc]] == \
            [w if w in tokenizer.index else None for w in expected]
    header = json.loads(Path(data.token_file[: -len(".tokens")] + ".json").read_text())
    train, val = ids[: data.train_tokens], ids[data.train_tokens:]
    assert header["unknown"] == [int(np.sum(train == tokenizer.unk_id)), int(np.sum(val == tokenizer.unk_id))]
    assert header["unknown"][0] == 0 and header["unknown"][1] > 0  # "quagga" only in the validation part
    again = prepare([folder], TokenizerConfig(kind="word", **options), _config(batch_size=2, bptt=4, val_fraction=0.1),
                    data_config=DataConfig(cache_dir=str(tmp_path / "c")))
    assert again.cached and (again.train_unknown, again.val_unknown) == tuple(header["unknown"])


def test_a_given_word_tokenizer_keeps_its_options_and_vocabulary(tmp_path):
    from charlm.data.tokenizers import WordTokenizer

    path = tmp_path / "new.txt"
    text = "The Cats sat, and the dogs ran.\n" * 50
    path.write_text(text, encoding="utf-8")
    given = WordTokenizer.build("the cats sat .\n", lowercase=True, split_punctuation=True)
    data = prepare([path], TokenizerConfig(kind="word"), _config(), given,
                   data_config=DataConfig(cache_dir=str(tmp_path / "c")))
    assert data.tokenizer is given
    ids = np.fromfile(data.token_file, dtype=token_dtype(given.vocab_size))
    assert np.array_equal(ids, given.encode(text))  # "The Cats sat," read as "the cats sat ,"
    assert data.train_unknown == int(np.sum(ids[: data.train_tokens] == given.unk_id)) > 0


@pytest.mark.slow
def test_bench_data_reports_the_word_figures_beside_the_char_one(tmp_path):
    import subprocess
    import sys

    from tests.helpers import REPO

    text = tmp_path / "text.txt"
    text.write_text("The keys to the cabinet are on the table, 3,000 of them.\n" * 2000, encoding="utf-8")
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "bench_data.py"), "--words-only", "--word-sizes",
                             "0.2,0.4", "--word-corpus", str(text), "--json"], capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    for key in ("word_tokenize_mb_per_s", "word_tokenize_mb_per_s_options", "char_tokenize_mb_per_s_wikitext",
                "word_tokenize_mb_per_cpu_s", "word_rss_ratio"):
        assert report[key] > 0, key
    # <pad> <unk> <eol>, then The keys to the cabinet are on table, 3,000 of them.; or with the
    # options the keys to cabinet are on table , <num> of them .
    assert report["word_vocab_size"] == {"word": 3 + 11, "word_options": 3 + 12}

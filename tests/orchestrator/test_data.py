"""orchestrator.data: corpus sources, the seeded split by file, packing, the loader and its resume."""

from __future__ import annotations

import math
import os
import pathlib
import sys
import sysconfig
import types

import numpy as np
import pytest
import torch

from orchestrator import data
from orchestrator.data import TokenLoader, load_corpus, unigram_entropy, validation_batches


@pytest.fixture
def folder(tmp_path) -> pathlib.Path:
    """40 files in nested folders (one not valid UTF-8), plus an empty file and a symlink, both skipped."""
    root = tmp_path / "corpus"
    rng = np.random.default_rng(7)
    for i in range(40):
        sub = root / f"pkg{i % 3}" / ("deep" if i % 5 == 0 else "")
        sub.mkdir(parents=True, exist_ok=True)
        words = " ".join(f"word{int(w)}" for w in rng.integers(0, 50, size=int(rng.integers(20, 200))))
        (sub / f"f{i:02d}.txt").write_text(f"# file {i}\n{words}\n")
    (root / "pkg0" / "latin1.txt").write_bytes(b"caf\xe9 \xff\xfe bytes are bytes\n")
    (root / "empty.txt").write_bytes(b"")
    os.symlink(root / "pkg1" / "f01.txt", root / "link.txt")
    return root


def regular_files(root: pathlib.Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.is_symlink() and p.stat().st_size
    }


def joined(files: dict[str, bytes], names) -> bytes:
    return b"\n".join(files[n] for n in names)


# -- sources and split ---------------------------------------------------------------------------------


def test_stdlib_corpus_is_every_py_file_split_by_file():
    corpus = load_corpus()
    root = pathlib.Path(sysconfig.get_paths()["stdlib"])
    expected = sorted(
        p.relative_to(root).as_posix()
        for p in root.rglob("*.py")
        if "site-packages" not in p.relative_to(root).parts and p.is_file() and not p.is_symlink() and p.stat().st_size
    )
    assert corpus.vocab_size == 256 and corpus.tokenizer == "byte" and corpus.bytes_per_token == 1.0
    assert corpus.train.dtype == np.uint8 and corpus.val.dtype == np.uint8
    assert sorted(corpus.train_paths + corpus.val_paths) == expected
    assert not set(corpus.train_paths) & set(corpus.val_paths)
    assert corpus.train_files == len(corpus.train_paths) and corpus.val_files == len(corpus.val_paths)
    assert 0.02 < corpus.val_files / len(expected) < 0.10  # val_fraction 0.05
    assert len(corpus.train) == sum((root / n).stat().st_size for n in corpus.train_paths) + corpus.train_files - 1
    first = (root / corpus.train_paths[0]).read_bytes()
    assert corpus.train[: len(first)].tobytes() == first and corpus.train[len(first)] == ord("\n")
    assert 2.0 < unigram_entropy(corpus.val) < 6.0
    assert load_corpus() is corpus  # cached in the process


def test_folder_source_round_trips_bytes(folder):
    corpus = load_corpus(str(folder), seed=3, val_fraction=0.2)
    files = regular_files(folder)
    assert "empty.txt" not in files and "link.txt" not in files
    assert sorted(corpus.train_paths + corpus.val_paths) == sorted(files)  # split by file, no file twice
    assert not set(corpus.train_paths) & set(corpus.val_paths)
    assert list(corpus.train_paths) == sorted(corpus.train_paths)  # sorted by relative path
    assert corpus.train.tobytes() == joined(files, corpus.train_paths)
    assert corpus.val.tobytes() == joined(files, corpus.val_paths)
    assert corpus.train.nbytes + corpus.val.nbytes == sum(map(len, files.values())) + len(files) - 2


def test_split_is_deterministic_and_depends_on_the_seed(folder):
    first = load_corpus(str(folder), seed=0, val_fraction=0.25)
    data._load.cache_clear()
    again = load_corpus(str(folder), seed=0, val_fraction=0.25)
    assert again is not first
    assert again.val_paths == first.val_paths and again.train_paths == first.train_paths
    assert np.array_equal(again.train, first.train) and np.array_equal(again.val, first.val)
    other = load_corpus(str(folder), seed=1, val_fraction=0.25)
    assert set(other.val_paths) != set(first.val_paths)
    # the membership rule itself: sha256 of "seed:path" as a fraction of 2^64
    for name in first.train_paths + first.val_paths:
        assert (name in first.val_paths) == (data._split_fraction(0, name) < 0.25)


def test_both_splits_are_never_empty(folder):
    files = regular_files(folder)
    tiny = load_corpus(str(folder), val_fraction=1e-9)
    assert tiny.val_files == 1 and tiny.val_paths[0] == min(files, key=lambda n: data._split_fraction(0, n))
    huge = load_corpus(str(folder), val_fraction=0.999999)
    assert huge.train_files == 1 and huge.val_files == len(files) - 1
    assert len(tiny.train) and len(huge.train) and len(tiny.val) and len(huge.val)


def test_single_file_source_splits_its_tail(tmp_path):
    text = ("".join(f"line {i}: {'x' * (i % 17)}\n" for i in range(400))).encode()
    path = tmp_path / "one.txt"
    path.write_bytes(text)
    corpus = load_corpus(str(path), val_fraction=0.1)
    assert corpus.train_files == corpus.val_files == 1
    assert len(corpus.val) == math.ceil(0.1 * len(text))
    assert corpus.train.tobytes() + corpus.val.tobytes() == text


def test_cache_sees_edited_files(tmp_path):
    root = tmp_path / "c"
    root.mkdir()
    for i in range(4):
        (root / f"{i}.txt").write_text(f"file {i} " * 20)
    first = load_corpus(str(root))
    assert load_corpus(str(root)) is first
    (root / "0.txt").write_text("changed " * 30)
    second = load_corpus(str(root))
    assert second is not first
    assert b"changed" in (second.train.tobytes() + second.val.tobytes())


@pytest.mark.parametrize("source", ["/no/such/path", "", "relative/missing"])
def test_bad_source_names_data(source):
    with pytest.raises(ValueError) as err:
        load_corpus(source)
    assert err.value.field == "data" and str(err.value).startswith("data:")


def test_folder_without_files_names_data(tmp_path):
    (tmp_path / "only_empty.txt").write_bytes(b"")
    with pytest.raises(ValueError, match="^data:"):
        load_corpus(str(tmp_path))


def test_bad_tokenizer_and_fraction_are_named():
    with pytest.raises(ValueError, match="^tokenizer:"):
        load_corpus(tokenizer="sentencepiece")
    with pytest.raises(ValueError, match="^val_fraction:"):
        load_corpus(val_fraction=0.0)


def test_gpt2_without_tiktoken_names_tokenizer(folder, monkeypatch):
    monkeypatch.setitem(sys.modules, "tiktoken", None)  # import fails as when it is not installed
    with pytest.raises(ValueError) as err:
        load_corpus(str(folder), tokenizer="gpt2")
    assert err.value.field == "tokenizer" and "tiktoken" in str(err.value)


class PairEncoding:
    """Stand-in for tiktoken's Encoding with the calls data.py makes: bytes are tokens 0..255, two
    consecutive lowercase ASCII letters one token 256 + 26 a + b (so ids exceed a byte)."""

    n_vocab = 50257

    def encode_ordinary(self, text: str) -> list[int]:
        raw, out, i = text.encode("utf-8"), [], 0
        while i < len(raw):
            if i + 1 < len(raw) and 97 <= raw[i] <= 122 and 97 <= raw[i + 1] <= 122:
                out.append(256 + 26 * (raw[i] - 97) + raw[i + 1] - 97)
                i += 2
            else:
                out.append(raw[i])
                i += 1
        return out

    def decode_bytes(self, tokens: list[int]) -> bytes:
        return b"".join(bytes([t]) if t < 256 else bytes([97 + (t - 256) // 26, 97 + (t - 256) % 26]) for t in tokens)


def test_gpt2_path_appends_encodings_into_uint16(folder, monkeypatch):
    monkeypatch.setitem(sys.modules, "tiktoken", types.SimpleNamespace(get_encoding=lambda name: PairEncoding()))
    corpus = load_corpus(str(folder), tokenizer="gpt2", seed=5, val_fraction=0.2)
    enc, files = PairEncoding(), regular_files(folder)
    texts = {n: b.decode("utf-8", errors="replace") for n, b in files.items()}
    expected_val = enc.encode_ordinary("\n".join(texts[n] for n in corpus.val_paths))
    assert corpus.vocab_size == 50257 and corpus.val.dtype == np.uint16 and corpus.train.dtype == np.uint16
    assert corpus.val.tolist() == expected_val and corpus.train.max() > 255
    val_bytes = len("\n".join(texts[n] for n in corpus.val_paths).encode())
    assert corpus.bytes_per_token == pytest.approx(val_bytes / len(expected_val))
    assert 1.2 < corpus.bytes_per_token < 2.0
    assert data.bytes_per_token(corpus.val, "gpt2") == pytest.approx(corpus.bytes_per_token)
    assert data.bytes_per_token(np.arange(10, dtype=np.uint8), "byte") == 1.0
    assert isinstance(corpus.val.base.obj, data.array)  # a view of the array("H") itself, not a copy


# -- statistics ----------------------------------------------------------------------------------------


def test_unigram_entropy_of_known_arrays():
    assert unigram_entropy(np.array([0, 0, 1, 1], dtype=np.uint8)) == pytest.approx(math.log(2))
    assert unigram_entropy(np.full(10, 7, dtype=np.uint16)) == 0.0
    assert unigram_entropy(np.arange(256, dtype=np.uint8).repeat(3)) == pytest.approx(math.log(256))
    assert unigram_entropy(np.array([3, 3, 3, 300], dtype=np.uint16)) == pytest.approx(
        -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    )


# -- packing and loading -------------------------------------------------------------------------------

TOKENS = (np.arange(1000) * 7 % 251).astype(np.uint8)  # 1000 tokens: 99 sequences of 10 (+1)


def test_packed_sequences_are_contiguous_and_shifted():
    loader = TokenLoader(TOKENS, seq_len=10, batch_size=4, seed=0, shuffle=False)
    assert loader.sequences == 99
    x, y = next(loader)
    assert x.dtype == y.dtype == torch.int64 and x.shape == y.shape == (4, 10)
    for i in range(4):
        assert x[i].tolist() == TOKENS[i * 10 : i * 10 + 10].tolist()
        assert y[i].tolist() == TOKENS[i * 10 + 1 : i * 10 + 11].tolist()
    shuffled = TokenLoader(TOKENS, seq_len=10, batch_size=8, seed=3)
    x, y = next(shuffled)
    assert torch.equal(x[:, 1:], y[:, :-1])
    starts = shuffled.order(0)[:8]  # the batch is the first 8 sequences of epoch 0's order
    assert sorted(starts.tolist()) != list(range(8))
    for row, start in zip(x, starts, strict=False):
        assert row.tolist() == TOKENS[start * 10 : start * 10 + 10].tolist()


def stream(loader: TokenLoader, batches: int) -> list[torch.Tensor]:
    return [next(loader)[0] for _ in range(batches)]


def test_loader_is_seeded_and_covers_each_epoch_once():
    a, b = TokenLoader(TOKENS, 10, 9, seed=1), TokenLoader(TOKENS, 10, 9, seed=1)
    first, second = stream(a, 11), stream(b, 11)  # 99 sequences = 11 batches of 9: one epoch
    assert all(torch.equal(p, q) for p, q in zip(first, second, strict=False))
    rows = [tuple(r.tolist()) for batch in first for r in batch]
    assert sorted(rows) == sorted(tuple(TOKENS[s * 10 : s * 10 + 10].tolist()) for s in range(99))
    next_epoch = stream(a, 11)
    assert not all(torch.equal(p, q) for p, q in zip(first, next_epoch, strict=False))  # reshuffled with seed + epoch
    assert a.state_dict()["epoch"] == 1 and a.state_dict()["position"] == 99
    other = stream(TokenLoader(TOKENS, 10, 9, seed=2), 11)
    assert not all(torch.equal(p, q) for p, q in zip(first, other, strict=False))


def test_loader_resumes_the_same_stream():
    uninterrupted = stream(TokenLoader(TOKENS, 10, 7, seed=4), 40)  # 7 does not divide 99: batches span epochs
    loader = TokenLoader(TOKENS, 10, 7, seed=4)
    stream(loader, 17)
    state = loader.state_dict()
    resumed = TokenLoader(TOKENS, 10, 7, seed=4)
    resumed.load_state_dict(state)
    assert all(torch.equal(p, q) for p, q in zip(stream(resumed, 23), uninterrupted[17:], strict=False))
    with pytest.raises(ValueError):
        TokenLoader(TOKENS, 10, 7, seed=5).load_state_dict(state)


def test_validation_batches_are_fixed_and_cover_the_start():
    first = validation_batches(TOKENS, seq_len=10, batch_size=4, max_tokens=95)  # 9 sequences
    second = validation_batches(TOKENS, seq_len=10, batch_size=4, max_tokens=95)
    assert [x.shape[0] for x, _ in first] == [4, 4, 1]
    assert all(torch.equal(a, c) and torch.equal(b, d) for (a, b), (c, d) in zip(first, second, strict=False))
    xs = torch.cat([x for x, _ in first]).flatten()
    ys = torch.cat([y for _, y in first])
    assert xs.tolist() == TOKENS[:90].tolist()
    assert ys[:, -1].tolist() == TOKENS[10:91:10].tolist()
    whole = validation_batches(TOKENS, 10, 4, max_tokens=10**9)
    assert sum(x.shape[0] for x, _ in whole) == 99


def test_too_short_split_names_seq_len():
    with pytest.raises(ValueError, match="^seq_len:"):
        TokenLoader(TOKENS[:10], seq_len=10, batch_size=1, seed=0)
    with pytest.raises(ValueError, match="^seq_len:"):
        validation_batches(TOKENS[:5], seq_len=10, batch_size=1, max_tokens=100)

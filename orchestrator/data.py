"""Training data: a real corpus available offline, tokenised, split by file and packed into sequences.

Sources: `stdlib` (the Python standard library's `*.py` files, found through `sysconfig`, `site-packages`
skipped) or a text file or folder (every regular file under it). Files are taken in the order of their
relative paths. Tokenizers: `byte` (V = 256, a token is a byte value) and `gpt2` (tiktoken's GPT-2 BPE,
V = 50257, when tiktoken and its encoding file are available offline).

Split by file, seeded: a file goes to validation when sha256(f"{seed}:{relative path}") read as a fraction
of 2^64 is below `val_fraction`; both splits are kept non-empty (a lone file is the one exception to the
split by file: its last `val_fraction` of tokens is the validation split). Each split is one contiguous
token array (uint8 for byte, uint16 for gpt2), files joined by one newline token, held once in memory and
cached per process. Sequences are packed contiguously: sequence i covers tokens
[i L, i L + L + 1), inputs its first L tokens and targets its last L.
"""

from __future__ import annotations

import hashlib
import math
import os
import stat
import sysconfig
from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import torch

from .errors import ConfigError

TOKENIZERS = ("byte", "gpt2")
NEWLINE_BYTE = 10


@dataclass(frozen=True, eq=False)
class Corpus:
    """Tokenised train and validation splits. train, val: (T,) uint8 (byte) or uint16 (gpt2), read-only."""

    train: np.ndarray
    val: np.ndarray
    vocab_size: int
    tokenizer: str
    #: bytes of text per validation token (1 for byte): bits per byte = loss / ln 2 / bytes_per_token
    bytes_per_token: float
    train_files: int
    val_files: int
    source: str
    #: relative paths of the files of each split, in token order (a lone file is in both)
    train_paths: tuple[str, ...] = ()
    val_paths: tuple[str, ...] = ()


@dataclass(frozen=True)
class _File:
    rel: str  # relative path, '/'-separated: the split key
    path: str
    size: int
    mtime_ns: int = 0  # with size, part of the cache key: an edited file is read again


# -- sources -------------------------------------------------------------------------------------------


def _regular_files(root: str, suffix: str = "", skip_dir: str | None = None) -> list[_File]:
    """Non-empty regular files under root (symlinks not followed), sorted by relative path."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        if skip_dir is not None:
            dirnames[:] = [d for d in dirnames if d != skip_dir]
        for name in filenames:
            if not name.endswith(suffix):
                continue
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            if stat.S_ISREG(st.st_mode) and st.st_size > 0:
                found.append(_File(os.path.relpath(path, root).replace(os.sep, "/"), path, st.st_size, st.st_mtime_ns))
    return sorted(found, key=lambda f: f.rel)


def _list_source(source: str) -> tuple[str, list[_File]]:
    """(resolved source, its files); ConfigError naming `data` when it is missing or empty."""
    if not isinstance(source, str) or not source:
        raise ConfigError("data", source, "must be `stdlib` or the path of a text file or folder")
    if source == "stdlib":
        root = sysconfig.get_paths()["stdlib"]
        files = _regular_files(root, suffix=".py", skip_dir="site-packages")
        where = f"stdlib ({root})"
    else:
        path = os.path.abspath(os.path.expanduser(source))
        if os.path.isdir(path):
            files, where = _regular_files(path), path
        elif os.path.isfile(path):
            st = os.stat(path)
            files = [_File(os.path.basename(path), path, st.st_size, st.st_mtime_ns)] if st.st_size else []
            where = path
        else:
            raise ConfigError("data", source, "no such file or folder (or `stdlib`)")
    if not files:
        raise ConfigError("data", source, f"no non-empty files in {where}")
    return where, files


def _split_fraction(seed: int, rel: str) -> float:
    """sha256(f"{seed}:{rel}") as a number in [0, 1): stable across processes and platforms."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{rel}".encode()).digest()[:8], "big") / 2.0**64


def split_files(files: list[_File], seed: int, val_fraction: float) -> tuple[list[_File], list[_File]]:
    """(train, val) files, both non-empty when there are at least two files; order kept."""
    keys = {f.rel: _split_fraction(seed, f.rel) for f in files}
    val = [f for f in files if keys[f.rel] < val_fraction]
    if not val:
        val = [min(files, key=lambda f: keys[f.rel])]
    if len(val) == len(files) and len(files) > 1:
        val.remove(max(files, key=lambda f: keys[f.rel]))
    in_val = {f.rel for f in val}
    return [f for f in files if f.rel not in in_val], val


# -- tokenisation --------------------------------------------------------------------------------------


def _gpt2_encoding():
    try:
        import tiktoken

        return tiktoken.get_encoding("gpt2")
    except Exception as exc:  # not installed, or its encoding file cannot be fetched offline
        raise ConfigError(
            "tokenizer",
            "gpt2",
            "needs the `tiktoken` package with its gpt2 encoding file "
            f"available offline (cached): {type(exc).__name__}: {exc}",
        ) from None


def _read_bytes(files: list[_File]) -> np.ndarray:
    """(sum of sizes + files - 1,) uint8: each file read straight into its slice, newline-separated."""
    out = np.empty(sum(f.size for f in files) + len(files) - 1, dtype=np.uint8)
    # numpy's stubs declare ndarray.__buffer__ only for Python >= 3.12; an ndarray is a buffer on every version
    view, offset = memoryview(out), 0  # type: ignore[arg-type]
    for i, f in enumerate(files):
        if i:
            out[offset] = NEWLINE_BYTE
            offset += 1
        with open(f.path, "rb") as handle:
            got = handle.readinto(view[offset : offset + f.size])
        if got != f.size:
            raise ConfigError("data", f.path, f"changed while being read ({got} of {f.size} bytes)")
        offset += f.size
    out.flags.writeable = False
    return out


def _encode_gpt2(files: list[_File], encoding) -> tuple[np.ndarray, int]:
    """((T,) uint16 tokens, bytes of text they decode to): per-file encodings appended to one array('H')."""
    tokens, text_bytes = array("H"), 0
    newline = encoding.encode_ordinary("\n")
    for i, f in enumerate(files):
        if i:
            tokens.extend(newline)
            text_bytes += 1
        with open(f.path, "rb") as handle:
            text = handle.read().decode("utf-8", errors="replace")
        tokens.extend(encoding.encode_ordinary(text))
        text_bytes += len(text.encode("utf-8"))
    out = np.frombuffer(tokens, dtype=np.uint16)  # zero copy; `out.base` keeps the array alive
    out.flags.writeable = False
    return out, text_bytes


def _tokenize_one(files: list[_File], tokenizer: str, encoding) -> tuple[np.ndarray, int]:
    if tokenizer == "byte":
        data = _read_bytes(files)
        return data, len(data)
    return _encode_gpt2(files, encoding)


@lru_cache(maxsize=4)
def _load(where: str, files: tuple[_File, ...], tokenizer: str, seed: int, val_fraction: float) -> Corpus:
    # a tiktoken Encoding (tiktoken is untyped), or None for the byte tokenizer, which never uses it
    encoding: Any = _gpt2_encoding() if tokenizer == "gpt2" else None
    vocab = 256 if tokenizer == "byte" else encoding.n_vocab
    if len(files) == 1:  # nothing to split by file: the file's tail is the validation split
        tokens, text_bytes = _tokenize_one(list(files), tokenizer, encoding)
        n_val = max(1, math.ceil(val_fraction * len(tokens)))
        if n_val >= len(tokens):
            raise ConfigError("data", files[0].path, f"has {len(tokens)} token(s): too short to split")
        train, val = tokens[:-n_val], tokens[-n_val:]
        val_bytes = len(val) if tokenizer == "byte" else len(encoding.decode_bytes(val.tolist()))
        names = (files[0].rel,)
        return Corpus(train, val, vocab, tokenizer, val_bytes / len(val), 1, 1, where, names, names)
    train_files, val_files = split_files(list(files), seed, val_fraction)
    train, _ = _tokenize_one(train_files, tokenizer, encoding)
    val, val_bytes = _tokenize_one(val_files, tokenizer, encoding)
    if not len(train) or not len(val):
        raise ConfigError("data", where, "a split has no tokens")
    return Corpus(
        train,
        val,
        vocab,
        tokenizer,
        val_bytes / len(val),
        len(train_files),
        len(val_files),
        where,
        tuple(f.rel for f in train_files),
        tuple(f.rel for f in val_files),
    )


def load_corpus(source: str = "stdlib", tokenizer: str = "byte", seed: int = 0, val_fraction: float = 0.05) -> Corpus:
    """The tokenised, split corpus of `source`; cached per (source, its files' sizes, tokenizer, seed,
    val_fraction) in this process. ConfigError (a ValueError) naming `data`, `tokenizer` or `val_fraction`."""
    if tokenizer not in TOKENIZERS:
        raise ConfigError("tokenizer", tokenizer, f"must be one of {', '.join(TOKENIZERS)}")
    if isinstance(val_fraction, bool) or not isinstance(val_fraction, (int, float)) or not 0 < val_fraction < 1:
        raise ConfigError("val_fraction", val_fraction, "must be a number in (0, 1)")
    where, files = _list_source(source)
    return _load(where, tuple(files), tokenizer, int(seed), float(val_fraction))


# -- statistics ----------------------------------------------------------------------------------------


def unigram_entropy(tokens: np.ndarray) -> float:
    """Entropy (nats) of the token frequencies of `tokens` (T,): the loss of the best context-free model."""
    counts = np.bincount(np.asarray(tokens).ravel())
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def bytes_per_token(tokens: np.ndarray, tokenizer: str) -> float:
    """Bytes of text per token of `tokens` (T,): 1 for byte; for gpt2 the length of their decoded bytes / T."""
    if tokenizer == "byte":
        return 1.0
    if tokenizer != "gpt2":
        raise ConfigError("tokenizer", tokenizer, f"must be one of {', '.join(TOKENIZERS)}")
    return len(_gpt2_encoding().decode_bytes(np.asarray(tokens).tolist())) / len(tokens)


# -- packing and loading -------------------------------------------------------------------------------


def _sequences(tokens: np.ndarray, seq_len: int) -> int:
    """Number of packed sequences of seq_len + 1 tokens (overlapping by one) in tokens (T,)."""
    if isinstance(seq_len, bool) or not isinstance(seq_len, int) or seq_len < 1:
        raise ConfigError("seq_len", seq_len, "must be a positive integer")
    count = (len(tokens) - 1) // seq_len
    if count < 1:
        raise ConfigError("seq_len", seq_len, f"needs {seq_len + 1} tokens; the split has {len(tokens)}")
    return count


def _batch(tokens: np.ndarray, seq_len: int, index: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Sequences `index` (B,) -> x, y (B, seq_len) int64, y = x shifted by one token."""
    picked = tokens[index[:, None] * seq_len + np.arange(seq_len + 1)]  # (B, seq_len + 1)
    rows = torch.from_numpy(picked.astype(np.int64))
    return rows[:, :-1].contiguous(), rows[:, 1:].contiguous()


class TokenLoader:
    """Infinite iterator of (x, y) LongTensor batches (batch_size, seq_len) over packed sequences of `tokens`.

    Order: a permutation of the sequence indices seeded by seed + epoch (identity when not shuffled);
    a batch that reaches the end of an epoch continues into the next. `state_dict()` (epoch, position)
    restores the stream exactly.
    """

    def __init__(self, tokens: np.ndarray, seq_len: int, batch_size: int, seed: int, shuffle: bool = True):
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError("batch_size", batch_size, "must be a positive integer")
        self.tokens, self.seq_len, self.batch_size = tokens, seq_len, batch_size
        self.seed, self.shuffle = int(seed), shuffle
        self.sequences = _sequences(tokens, seq_len)
        self.epoch, self.position = 0, 0
        self._order_epoch, self._order = -1, np.empty(0, dtype=np.int64)

    def order(self, epoch: int) -> np.ndarray:
        """(sequences,) sequence indices of `epoch`."""
        if epoch != self._order_epoch:
            if self.shuffle:
                self._order = np.random.default_rng(self.seed + epoch).permutation(self.sequences)
            else:
                self._order = np.arange(self.sequences)
            self._order_epoch = epoch
        return self._order

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self

    def __next__(self) -> tuple[torch.Tensor, torch.Tensor]:
        parts, need = [], self.batch_size
        while need:
            if self.position == self.sequences:
                self.epoch, self.position = self.epoch + 1, 0
            take = min(need, self.sequences - self.position)
            parts.append(self.order(self.epoch)[self.position : self.position + take])
            self.position += take
            need -= take
        return _batch(self.tokens, self.seq_len, np.concatenate(parts))

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "position": self.position, "sequences": self.sequences, "seed": self.seed}

    def load_state_dict(self, state: dict) -> None:
        if state.get("sequences", self.sequences) != self.sequences or state.get("seed", self.seed) != self.seed:
            raise ValueError(
                f"loader state is for {state.get('sequences')} sequences with seed {state.get('seed')}, "
                f"this loader has {self.sequences} with seed {self.seed}"
            )
        epoch, position = int(state["epoch"]), int(state["position"])
        if epoch < 0 or not 0 <= position <= self.sequences:
            raise ValueError(f"loader state out of range: epoch {epoch}, position {position}")
        self.epoch, self.position = epoch, position


def validation_batches(
    tokens: np.ndarray, seq_len: int, batch_size: int, max_tokens: int
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Fixed batches (x, y) of (<= batch_size, seq_len) covering the first `max_tokens` tokens of `tokens`
    in order (at least one sequence); the last batch may be smaller."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError("batch_size", batch_size, "must be a positive integer")
    count = min(_sequences(tokens, seq_len), max(1, int(max_tokens) // seq_len))
    index = np.arange(count)
    return [_batch(tokens, seq_len, index[i : i + batch_size]) for i in range(0, count, batch_size)]

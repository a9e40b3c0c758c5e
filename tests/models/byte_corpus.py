"""A byte-level corpus from the Python standard library's own source files (V = 256), for the tests."""

from __future__ import annotations

import math
import pathlib
import sysconfig

import torch


def stdlib_bytes(max_bytes: int = 1_500_000) -> bytes:
    """Concatenated .py files of the stdlib (top-level modules, sorted by name), truncated to max_bytes."""
    root = pathlib.Path(sysconfig.get_paths()["stdlib"])
    files = sorted(p for p in root.glob("*.py") if p.is_file())
    assert files, f"no .py files under {root}"
    chunks, total = [], 0
    for path in files:
        data = path.read_bytes()
        chunks.append(data)
        total += len(data)
        if total >= max_bytes:
            break
    return b"".join(chunks)[:max_bytes]


class ByteCorpus:
    """Train / validation split (last `val_fraction` of the bytes) with random-window batches."""

    def __init__(self, max_bytes: int = 1_500_000, val_fraction: float = 0.1):
        data = torch.frombuffer(bytearray(stdlib_bytes(max_bytes)), dtype=torch.uint8).long()
        split = int(len(data) * (1 - val_fraction))
        self.train, self.val = data[:split], data[split:]

    def unigram_entropy(self) -> float:
        """Entropy (nats) of the byte distribution of the validation text itself: the loss of the best
        context-free model of that text."""
        counts = torch.bincount(self.val, minlength=256).double()
        p = counts[counts > 0] / counts.sum()
        return float(-(p * p.log()).sum())

    def batch(self, split: str, batch: int, seq_len: int, generator: torch.Generator) -> torch.Tensor:
        """(batch, seq_len + 1) token windows: inputs are [:, :-1], targets [:, 1:]."""
        data = self.train if split == "train" else self.val
        starts = torch.randint(0, len(data) - seq_len - 1, (batch,), generator=generator)
        return torch.stack([data[s : s + seq_len + 1] for s in starts.tolist()])

    def val_batches(self, batch: int, seq_len: int, count: int) -> list[torch.Tensor]:
        """Fixed, evenly spaced validation windows."""
        stride = (len(self.val) - seq_len - 1) // max(1, batch * count)
        rows = [self.val[i * stride : i * stride + seq_len + 1] for i in range(batch * count)]
        return [torch.stack(rows[i * batch : (i + 1) * batch]) for i in range(count)]


def nats_to_bits(x: float) -> float:
    return x / math.log(2)

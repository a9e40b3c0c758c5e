"""lm_loss: the chunked cross-entropy equals the whole-logits one and never keeps a (B, N, V) tensor."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from models import catalog  # noqa: F401
from models.base import VOCAB_ALIGN, lm_loss, vocab_logits
from models.registry import get

CONFIG = dict(vocab_size=97, d_model=32, n_layers=1, n_heads=2)


def build(name, **overrides):
    entry = get(name)
    torch.manual_seed(0)
    return entry.build(entry.make_config(CONFIG | overrides)).double()


def loss_and_grads(model, ids, chunk):
    model.zero_grad(set_to_none=True)
    loss = lm_loss(model, ids[:, :-1], ids[:, 1:], chunk)
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None]


@pytest.mark.parametrize("name", ["transformer", "phase7", "phase8"])
@pytest.mark.parametrize("chunk", [1, 7, 40, 1000])
def test_chunked_loss_and_gradients_equal_the_whole_logits_ones(name, chunk):
    model = build(name)
    ids = torch.randint(0, 97, (2, 21), generator=torch.Generator().manual_seed(1))
    whole, whole_grads = loss_and_grads(model, ids, 0)
    chunked, chunked_grads = loss_and_grads(model, ids, chunk)
    torch.testing.assert_close(chunked, whole, rtol=1e-6, atol=0)  # the loss runs in fp32
    assert len(chunked_grads) == len(whole_grads)
    for a, b in zip(chunked_grads, whole_grads, strict=False):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


def largest_saved(model, ids, chunk) -> int:
    sizes = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: sizes.append(t.numel()) or t, lambda t: t):
        lm_loss(model, ids[:, :-1], ids[:, 1:], chunk)
    return max(sizes)


def test_chunked_loss_saves_no_full_logits():
    model = build("transformer", vocab_size=997)  # logits far larger than any other activation
    ids = torch.randint(0, 997, (2, 65), generator=torch.Generator().manual_seed(2))
    full = 2 * 64 * 997
    assert largest_saved(model, ids, 0) >= full
    assert largest_saved(model, ids, 16) < full // 4


@pytest.mark.parametrize("vocab", [64, 97, 50257 % 1000])
def test_vocab_logits_equal_the_plain_head_and_have_an_aligned_row_stride(vocab):
    g = torch.Generator().manual_seed(3)
    x = torch.randn(3, 5, 16, dtype=torch.float64, generator=g, requires_grad=True)
    w = torch.randn(vocab, 16, dtype=torch.float64, generator=g, requires_grad=True)
    logits = vocab_logits(x, w)
    assert logits.shape == (3, 5, vocab) and logits.stride(-2) % VOCAB_ALIGN == 0
    expected = x @ w.T
    torch.testing.assert_close(logits, expected, rtol=0, atol=1e-12)
    grad = torch.randn(logits.shape, dtype=torch.float64, generator=g)
    got = torch.autograd.grad(logits, (x, w), grad)
    want = torch.autograd.grad(expected, (x, w), grad)
    for a, b in zip(got, want, strict=False):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


class PadDtypes(TorchDispatchMode):
    """Records the dtype of every tensor that is padded."""

    def __enter__(self):
        self.dtypes = []
        return super().__enter__()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.overloadpacket in (torch.ops.aten.constant_pad_nd, torch.ops.aten.pad):
            self.dtypes.append(args[0].dtype)
        return func(*args, **(kwargs or {}))


def test_under_autocast_vocab_logits_pad_the_cast_and_equal_padding_the_fp32_weight():
    g = torch.Generator().manual_seed(5)
    x = torch.randn(3, 5, 16, generator=g, requires_grad=True)
    w = torch.randn(97, 16, generator=g, requires_grad=True)
    grad = torch.randn(3, 5, 97, generator=g).bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        with PadDtypes() as pads:
            got = vocab_logits(x, w)
        padded_fp32 = F.linear(x, F.pad(w, (0, 0, 0, 128 - 97)))[..., :97]
    assert pads.dtypes == [torch.bfloat16]  # the weight is padded after its cast
    assert got.dtype == torch.bfloat16 and torch.equal(got, padded_fp32)
    ours, reference = torch.autograd.grad(got, (x, w), grad), torch.autograd.grad(padded_fp32, (x, w), grad)
    for a, b in zip(ours, reference, strict=True):
        assert a.dtype == b.dtype == torch.float32 and torch.equal(a, b)


@pytest.mark.parametrize("tie", [False, True])
def test_model_logits_come_from_the_padded_head(tie):
    model = build("transformer", tie_head=tie)
    logits = model(torch.randint(0, 97, (2, 9), generator=torch.Generator().manual_seed(4)))
    assert logits.shape == (2, 9, 97) and logits.stride(-2) == 128  # 97 padded to 128

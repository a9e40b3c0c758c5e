"""The causal-LM shell every model shares: embedding -> blocks -> final norm -> head.

A model is `ids (B, N) -> logits (B, N, V)`. Blocks map (B, N, d) -> (B, N, d); a block may set
`self.aux_loss` (a scalar tensor) during forward, and :attr:`CausalLM.aux_loss` sums them (taking them
from the blocks) so that training adds it to the cross-entropy.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from .layers.autocast import autocast_inputs
from .layers.embedding import LowRankEmbedding, lowrank_embedding_params

#: activation checkpointing as every model uses it. No model draws random numbers in its forward, so the
#: RNG state is not saved for the recomputation (saving it reads the generator, which a CUDA-graph capture
#: forbids).
recompute = functools.partial(checkpoint, use_reentrant=False, preserve_rng_state=False)


def make_embedding(config) -> nn.Module:
    """The token embedding a config asks for: low-rank/dense, or HTT."""
    if config.embedding == "htt":
        from .layers.htt import HTT_RANK, HTTEmbedding

        return HTTEmbedding(config.vocab_size, config.d_model, getattr(config, "htt_rank", HTT_RANK))
    return LowRankEmbedding(config.vocab_size, config.d_model, config.embed_rank)


def embedding_params(config) -> int:
    if config.embedding == "htt":
        from .layers.htt import HTT_RANK, htt_params

        return htt_params(config.vocab_size, config.d_model, getattr(config, "htt_rank", HTT_RANK))
    return lowrank_embedding_params(config.vocab_size, config.d_model, config.embed_rank)


def head_params(config) -> int:
    return 0 if config.tie_head else config.d_model * config.vocab_size


class PreNormBlock(nn.Module):
    """x: (B, N, d) -> (B, N, d): `x + mix(norm x)`, then `x + ffn(norm x)` when there is an FFN."""

    def __init__(self, d_model: int, mix: nn.Module, ffn: nn.Module | None, make_norm: Callable[[int], nn.Module]):
        super().__init__()
        self.norm1, self.mix = make_norm(d_model), mix
        self.norm2, self.ffn = (make_norm(d_model), ffn) if ffn is not None else (None, None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.mix(self.norm1(x))
        if self.ffn is not None:
            x = x + self.ffn(self.norm2(x))
        return x


class CausalLM(nn.Module):
    """ids: (B, N) -> logits (B, N, V)."""

    def __init__(self, config, blocks: list[nn.Module], make_norm: Callable[[int], nn.Module]):
        super().__init__()
        self.config = config
        self.embed = make_embedding(config)
        self.blocks = nn.ModuleList(blocks)
        self.norm = make_norm(config.d_model)
        self.head = None if config.tie_head else nn.Linear(config.d_model, config.vocab_size, bias=False)
        self.aux_loss: torch.Tensor | None = None

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.project_to_vocab(self.hidden(ids))  # (B, N, V)

    def hidden(self, ids: torch.Tensor) -> torch.Tensor:
        """ids: (B, N) -> final-norm states (B, N, d), the head's input; sets :attr:`aux_loss`."""
        x = self.embed(ids)  # (B, N, d)
        use_ckpt = self.config.grad_checkpoint and self.training and torch.is_grad_enabled()
        aux = []
        for block in self.blocks:
            x, block_aux = recompute(_block_step, block, x) if use_ckpt else _block_step(block, x)
            if block_aux is not None:
                aux.append(block_aux)
        self.aux_loss = torch.stack(aux).sum() if aux else None
        return self.norm(x)

    def project_to_vocab(self, x: torch.Tensor) -> torch.Tensor:
        if self.head is not None:
            return vocab_logits(x, self.head.weight)
        if hasattr(self.embed, "tied_logits"):
            return self.embed.tied_logits(x)
        return vocab_logits(x, self.embed.table.weight)


def _block_step(block: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(block(x), the aux loss the block set or None), the block left holding none: a kept aux loss keeps
    its step's autograd graph, and the parameters' gradient accumulators, alive into the next step, and
    a CUDA-graph capture cannot use accumulators created on another stream. `finally`: a recomputation in
    backward stops inside the block once it has what backward needs."""
    try:
        out = block(x)
        aux = getattr(block, "aux_loss", None)
    finally:
        if getattr(block, "aux_loss", None) is not None:
            block.aux_loss = None
    return out, aux


VOCAB_ALIGN = 64


def vocab_logits(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """x: (..., d), weight: (V, d) -> logits (..., V), computed with V padded by zero rows to a multiple
    of VOCAB_ALIGN and returned as a view whose row stride is the padded width.

    With V = 50257 every head GEMM (logits, their recompute, dx, dW) has a leading dimension that is not a
    multiple of 8 elements, and cuBLAS falls back to align-1 kernels: on the H200 those took 20 % of the
    ~1.3B phase8 training step at 16K tokens (results/profiles/). The zero rows change no value.
    """
    vocab = weight.shape[0]
    pad = -vocab % VOCAB_ALIGN
    if pad == 0:
        return F.linear(x, weight)
    (weight,) = autocast_inputs(weight, 1)  # under autocast: pad the bf16 cast, not the fp32 weight (half the bytes)
    return F.linear(x, F.pad(weight, (0, 0, 0, pad)))[..., :vocab]


def _cross_entropy_sum(model: CausalLM, x: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(model.project_to_vocab(x).float(), targets, reduction="sum")


def lm_loss(model: CausalLM, ids: torch.Tensor, targets: torch.Tensor, chunk_tokens: int = 0) -> torch.Tensor:
    """Mean next-token cross-entropy in fp32 (auxiliary losses not included). ids, targets: (B, N).

    chunk_tokens > 0: the head and the loss run over that many tokens at a time and the chunk's logits are
    recomputed in backward, so no (B, N, V) tensor ever exists (at 16K tokens and V = 50257 the fp32
    logits alone are 3 GiB, and the loss's own softmax and gradient as much again).
    """
    if not chunk_tokens:
        return F.cross_entropy(model(ids).flatten(0, 1).float(), targets.flatten())
    x = model.hidden(ids).flatten(0, 1)  # (B*N, d)
    t = targets.flatten()
    total = x.new_zeros((), dtype=torch.float32)
    for start in range(0, t.numel(), chunk_tokens):
        end = start + chunk_tokens
        if torch.is_grad_enabled():
            total = total + recompute(_cross_entropy_sum, model, x[start:end], t[start:end])
        else:
            total = total + _cross_entropy_sum(model, x[start:end], t[start:end])
    return total / t.numel()

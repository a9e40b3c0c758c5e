"""Phase 8's optional modules (models.md), each off by default and each changing the loss when on.

- EntailmentCones: auxiliary loss. Tokens are embedded in the Poincare ball, x_t = exp0(P h_t); each
  consecutive pair (x_t, x_{t+1}) is asked to lie in the entailment cone of x_t, whose half-aperture is
  the learned `clamp(softplus(a), 0.1, 2.0)`:  loss = weight * mean_t relu(Xi(x_t, x_{t+1}) - aperture),
  with Xi(x, y) the angle at x between the ray 0 -> x (extended outwards) and the geodesic x -> y
  (Ganea et al. 2018; curvature c is handled by scaling both points by sqrt(c), angles are invariant).
- PersistentHomology: a differentiable topology regulariser. `landmarks` (64) evenly spaced tokens of
  each sequence are mapped into the ball; the 0-dimensional persistence diagram of their Vietoris-Rips
  filtration (hyperbolic distances) has its deaths at the edges of the minimum spanning tree. The MST
  (Prim, no grad) selects the edges, the loss is weight * mean of their (differentiable) lengths: it pulls
  the representation's connected components together. No-grad diagnostics after each forward:
  `betti0` = components at the median landmark distance and `betti1` = the cycle rank E - V + betti0 of
  that threshold graph (the first Betti number of the graph, an upper bound of the Rips complex's).
- SheafAttention: a residual branch. The normalised input is split into H head stalks x_i; restriction
  maps F_i (Dh -> Ds) send them to a shared edge stalk; disagreement D_ij = |F_i x_i - F_j x_j|^2 / Ds;
  head weights w = softmax_i(-mean_j D_ij); consensus s = sum_i w_i F_i x_i; output W_o s. Per token,
  so causal by construction.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from kernels.poincare import exp0
from kernels.window_attn import pair_dist

from .poincare_layers import Curvature, inverse_softplus, upcast

_COS_EPS = 1e-6


def cone_angle(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Xi(x, y) on the unit-curvature ball. x, y: (..., D) -> (..., ) in [0, pi]."""
    xy = (x * y).sum(-1)
    x2 = (x * x).sum(-1)
    y2 = (y * y).sum(-1)
    num = xy * (1 + x2) - x2 * (1 + y2)
    diff = (x - y).pow(2).sum(-1).clamp_min(1e-12).sqrt()
    den = x2.clamp_min(1e-12).sqrt() * diff * (1 + x2 * y2 - 2 * xy).clamp_min(1e-12).sqrt()
    return torch.acos((num / den).clamp(-1 + _COS_EPS, 1 - _COS_EPS))


class EntailmentCones(nn.Module):
    """h: (B, N, d) -> scalar auxiliary loss."""

    def __init__(self, d_model: int, dim: int, weight: float, c_init: float, c_min: float, c_max: float):
        super().__init__()
        self.weight = weight
        self.proj = nn.Linear(d_model, dim, bias=False)
        self.aperture_raw = nn.Parameter(torch.tensor(inverse_softplus(0.5)))
        self.curvature = Curvature((), c_init, c_min, c_max)

    def aperture(self) -> torch.Tensor:
        return F.softplus(upcast(self.aperture_raw)).clamp(0.1, 2.0)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        c = self.curvature()
        x = exp0(upcast(self.proj(h)), c) * c.sqrt()  # (B, N, D) on the unit ball
        if x.shape[1] < 2:
            return x.sum() * 0.0
        xi = cone_angle(x[:, :-1], x[:, 1:])  # (B, N - 1)
        return self.weight * F.relu(xi - self.aperture()).mean()


def entailment_params(d_model: int, dim: int) -> int:
    return d_model * dim + 2


def _mst_edges(d: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Prim's algorithm on dense distances d (B, M, M) -> (child, parent) indices (B, M - 1)."""
    bsz, m, _ = d.shape
    ar = torch.arange(bsz, device=d.device)
    in_tree = torch.zeros(bsz, m, dtype=torch.bool, device=d.device)
    in_tree[:, 0] = True
    best = d[:, 0].clone()  # distance of each node to the tree
    parent = torch.zeros(bsz, m, dtype=torch.long, device=d.device)
    children, parents = [], []
    for _ in range(m - 1):
        j = best.masked_fill(in_tree, float("inf")).argmin(-1)  # (B,)
        children.append(j)
        parents.append(parent[ar, j])
        in_tree[ar, j] = True
        closer = d[ar, j] < best
        best = torch.where(closer, d[ar, j], best)
        parent = torch.where(closer, j[:, None], parent)
    return torch.stack(children, 1), torch.stack(parents, 1)


class PersistentHomology(nn.Module):
    """h: (B, N, d) -> scalar regulariser; sets `betti0`, `betti1` (float, batch means) as diagnostics."""

    def __init__(self, d_model: int, dim: int, landmarks: int, weight: float, c_init: float, c_min: float,
                 c_max: float):
        super().__init__()
        self.landmarks, self.weight = landmarks, weight
        self.proj = nn.Linear(d_model, dim, bias=False)
        self.curvature = Curvature((), c_init, c_min, c_max)
        self.betti0: float | None = None
        self.betti1: float | None = None

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        bsz, n, _ = h.shape
        m = min(self.landmarks, n)
        idx = torch.linspace(0, n - 1, m, device=h.device).round().long()  # (M,)
        c = self.curvature()
        x = exp0(upcast(self.proj(h[:, idx])), c)  # (B, M, D) in the ball
        x2 = (x * x).sum(-1, keepdim=True)
        d = pair_dist(x2, x2.transpose(1, 2), x @ x.transpose(1, 2), c)  # (B, M, M)
        if m < 2:
            return d.sum() * 0.0
        with torch.no_grad():
            child, par = _mst_edges(d.detach())
            off = ~torch.eye(m, dtype=torch.bool, device=h.device)
            b0, b1 = betti_numbers(d.detach(), d.detach()[:, off].median(-1).values)
            self.betti0, self.betti1 = float(b0.double().mean()), float(b1.double().mean())
        deaths = d[torch.arange(bsz, device=h.device)[:, None], child, par]  # (B, M - 1): MST edge lengths
        return self.weight * deaths.mean()


def betti_numbers(d: torch.Tensor, eps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Betti-0 and the cycle rank of the graph {d_ij < eps}. d (B, M, M), eps (B,) -> (B,), (B,) integers."""
    m = d.shape[-1]
    off = ~torch.eye(m, dtype=torch.bool, device=d.device)
    adj = (d < eps[:, None, None]) & off  # (B, M, M)
    # connected components by label propagation (at most M rounds of min over neighbours)
    labels = torch.arange(m, device=d.device).expand(d.shape[0], m).clone()
    for _ in range(m):
        neigh = torch.where(adj, labels[:, None, :], m).min(-1).values
        new = torch.minimum(labels, neigh)
        if torch.equal(new, labels):
            break
        labels = new
    b0 = (labels == torch.arange(m, device=d.device)).sum(-1)  # one root label per component
    edges = adj.sum((-1, -2)) // 2
    return b0, edges - m + b0


def homology_params(d_model: int, dim: int) -> int:
    return d_model * dim + 1


class SheafAttention(nn.Module):
    """h: (B, N, d) -> (B, N, d)."""

    def __init__(self, d_model: int, n_heads: int, stalk_dim: int):
        super().__init__()
        self.n_heads, self.stalk_dim = n_heads, stalk_dim
        dh = d_model // n_heads
        self.restriction = nn.Parameter(torch.randn(n_heads, dh, stalk_dim) / math.sqrt(dh))
        self.out = nn.Linear(stalk_dim, d_model, bias=False)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        b, n, d = h.shape
        x = h.view(b, n, self.n_heads, d // self.n_heads)  # (B, N, H, Dh)
        z = torch.einsum("bnhi,hij->bnhj", x, self.restriction.to(h.dtype))  # (B, N, H, Ds)
        z2 = (upcast(z) ** 2).sum(-1)  # (B, N, H)
        gram = upcast(z) @ upcast(z).transpose(-1, -2)  # (B, N, H, H)
        dis = (z2[..., :, None] + z2[..., None, :] - 2 * gram).clamp_min(0.0) / self.stalk_dim  # (B, N, H, H)
        w = torch.softmax(-dis.mean(-1), dim=-1)  # (B, N, H): agreement weights
        s = (w.unsqueeze(-1) * upcast(z)).sum(-2)  # (B, N, Ds) consensus
        return self.out(s.to(h.dtype))


def sheaf_params(d_model: int, n_heads: int, stalk_dim: int) -> int:
    return n_heads * (d_model // n_heads) * stalk_dim + stalk_dim * d_model

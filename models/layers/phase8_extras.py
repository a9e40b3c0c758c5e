"""Phase 8's optional modules (docs/models.md), each off by default and each changing the loss when on.

- EntailmentCones: auxiliary loss. Tokens are embedded in the Poincare ball, x_t = exp0(P h_t); each
  consecutive pair (x_t, x_{t+1}) is asked to lie in the entailment cone of x_t, whose half-aperture is
  the learned `clamp(softplus(a), 0.1, 2.0)`:  loss = weight * mean_t relu(Xi(x_t, x_{t+1}) - aperture),
  with Xi(x, y) the angle at x between the ray 0 -> x (extended outwards) and the geodesic x -> y
  (Ganea et al. 2018; curvature c is handled by scaling both points by sqrt(c), angles are invariant).
- PersistentHomology: a differentiable topology regulariser. `landmarks` (64) evenly spaced tokens of
  each sequence, rescaled to unit RMS norm, are mapped into the ball; the 0-dimensional persistence
  diagram of their Vietoris-Rips filtration (hyperbolic distances) has its deaths at the edges of the
  minimum spanning tree. The loss is weight * mean MST edge / mean pairwise distance: scale-invariant (a
  smaller projection cannot lower it), it rewards clustered representations. No Betti-1 diagnostic: the
  cycle rank of a graph thresholded at the median distance is fixed by the landmark count (docs/models.md).
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
    nodes = torch.arange(m, device=d.device)
    in_tree = nodes == 0  # (M,), broadcast to (B, M) at the first update
    best = d[:, 0].clone()  # distance of each node to the tree
    parent = torch.zeros(bsz, m, dtype=torch.long, device=d.device)
    children, parents = [], []
    for _ in range(m - 1):
        j = best.masked_fill(in_tree, float("inf")).argmin(-1)  # (B,)
        children.append(j)
        parents.append(parent[ar, j])
        in_tree = in_tree | (nodes == j[:, None])  # not in_tree[ar, j] = True: its CPU scalar breaks a capture
        closer = d[ar, j] < best
        best = torch.where(closer, d[ar, j], best)
        parent = torch.where(closer, j[:, None], parent)
    return torch.stack(children, 1), torch.stack(parents, 1)


def normalised_persistence(u: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Total 0-dimensional persistence of a landmark set relative to its spread, scale-invariant.

    u: (B, M, D) tangent vectors, c > 0 -> (B,) in (0, 1]. The landmarks are rescaled to unit RMS norm (so
    scaling u, e.g. by shrinking a projection, changes nothing) and mapped into the ball, x = exp0_c(u /
    rms); the deaths of the 0-dimensional persistence diagram of their Vietoris-Rips filtration are the
    edge lengths of the minimum spanning tree (Prim, no grad, selects the edges; the lengths are
    differentiable). Returned: mean MST edge / mean pairwise distance, low for clustered sets and high
    for spread-out ones.
    """
    bsz, m, _ = u.shape
    rms = u.pow(2).sum(-1).mean(-1).clamp_min(1e-24).sqrt()  # (B,)
    x = exp0(u / rms[:, None, None], c)  # (B, M, D) in the ball
    x2 = (x * x).sum(-1, keepdim=True)
    d = pair_dist(x2, x2.transpose(1, 2), x @ x.transpose(1, 2), c)  # (B, M, M)
    with torch.no_grad():
        child, par = _mst_edges(d.detach())
    deaths = d[torch.arange(bsz, device=u.device)[:, None], child, par]  # (B, M - 1): MST edge lengths
    off = 1.0 - torch.eye(m, dtype=d.dtype, device=u.device)  # a float mask: boolean indexing syncs the host
    return deaths.mean(-1) / ((d * off).sum((-1, -2)) / (m * (m - 1)))


class PersistentHomology(nn.Module):
    """h: (B, N, d) -> scalar regulariser, weight * mean over the batch of :func:`normalised_persistence`
    of `landmarks` evenly spaced tokens projected to `dim`; the unweighted value of the last forward is
    kept, detached and without a host synchronisation, in `persistence` (B,) as the diagnostic."""

    def __init__(
        self, d_model: int, dim: int, landmarks: int, weight: float, c_init: float, c_min: float, c_max: float
    ):
        super().__init__()
        self.landmarks, self.weight = landmarks, weight
        self.proj = nn.Linear(d_model, dim, bias=False)
        self.curvature = Curvature((), c_init, c_min, c_max)
        self.persistence: torch.Tensor | None = None

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        n = h.shape[1]
        m = min(self.landmarks, n)
        u = upcast(self.proj(h[:, torch.linspace(0, n - 1, m, device=h.device).round().long()]))  # (B, M, D)
        if m < 3:  # fewer than two MST edges: nothing to compare with the spread
            return u.sum() * 0.0
        value = normalised_persistence(u, self.curvature())  # (B,)
        self.persistence = value.detach()
        return self.weight * value.mean()


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

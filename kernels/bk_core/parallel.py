"""BK-Core in parallel form (vectorised PyTorch, log-depth scans along N, exact adjoint backward).

Forward: a_t = h0 + v_t - z; the step w -> 1/(a_t - b2 w) (b2 = beta^2) is the Mobius map of
M_t = [[0, 1], [-b2, a_t]]; g_t = (M_t ... M_1)(0) = P_t[0, 1] / P_t[1, 1]. Prefix products by a
Hillis-Steele doubling scan (later factor on the left), each new partial product divided by its largest
entry. Bidirectional: G_t = 1/(a_t - b2 gL_{t-1} - b2 gR_{t+1}), gR the causal sweep of the flipped sequence.

Backward (complex gradients in PyTorch's convention, gbar = dL/dRe g + i dL/dIm g): with
mu_t = conj(g_t^2) * (gbar_t + b2 mu_{t+1}), mu_{N+1} = 0 (a reverse first-order linear recurrence, solved
by the same doubling scan): dL/da_t = -mu_t, dL/db2 = sum_t Re(conj(g_{t-1}) mu_t). Hence
dv = -Re mu, dh0 = -sum Re mu, dz_re = sum Re mu, dz_im = sum Im mu, dbeta = 2 beta dL/db2.

`bk_core_parallel(v (B, N, C), h0, beta, z_re, z_im (C,), causal) -> (g_re, g_im)` (B, N, C), v's dtype
(float32 or float64; parameters are cast to it).
"""

from __future__ import annotations

import torch

__all__ = ["bk_core_parallel", "BKCoreParallel", "mobius_prefix", "linear_scan"]


def _complex_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.complex128 if dtype == torch.float64 else torch.complex64


def _amax(x: torch.Tensor) -> torch.Tensor:
    """max(|Re|, |Im|) elementwise of a complex tensor (a cheap norm for rescaling)."""
    r = torch.view_as_real(x).abs()
    return torch.maximum(r[..., 0], r[..., 1])


def mobius_prefix(a: torch.Tensor, b2: torch.Tensor) -> torch.Tensor:
    """Causal continued fraction by a doubling scan. a (B, N, C) complex; b2 (C,) real -> g (B, N, C)."""
    n = a.shape[1]
    p00 = torch.zeros_like(a)
    p01 = torch.ones_like(a)
    p10 = (-b2).to(a.dtype).expand_as(a).clone()
    p11 = a.clone()
    # Pre-scale each M_t so its largest entry is 1 (the map is unchanged).
    s = torch.maximum(torch.maximum(_amax(p10), _amax(p11)), torch.ones_like(p11.real))
    p01, p10, p11 = p01 / s, p10 / s, p11 / s
    k = 1
    while k < n:
        # P_t <- P_t @ P_{t-k} for t >= k (P_t covers the later factors: it goes on the left).
        l00, l01, l10, l11 = p00[:, k:], p01[:, k:], p10[:, k:], p11[:, k:]
        r00, r01, r10, r11 = p00[:, :-k], p01[:, :-k], p10[:, :-k], p11[:, :-k]
        n00 = l00 * r00 + l01 * r10
        n01 = l00 * r01 + l01 * r11
        n10 = l10 * r00 + l11 * r10
        n11 = l10 * r01 + l11 * r11
        s = torch.maximum(torch.maximum(_amax(n00), _amax(n01)), torch.maximum(_amax(n10), _amax(n11)))
        s = torch.clamp_min(s, torch.finfo(s.dtype).tiny)
        p00 = torch.cat([p00[:, :k], n00 / s], dim=1)
        p01 = torch.cat([p01[:, :k], n01 / s], dim=1)
        p10 = torch.cat([p10[:, :k], n10 / s], dim=1)
        p11 = torch.cat([p11[:, :k], n11 / s], dim=1)
        k *= 2
    return p01 / p11


def linear_scan(c: torch.Tensor, d: torch.Tensor, reverse: bool = False) -> torch.Tensor:
    """x_t = c_t x_{t-1} + d_t along dim 1 with x_0 = 0 (reverse: x_t = c_t x_{t+1} + d_t, x_{N+1} = 0)."""
    if reverse:
        return linear_scan(c.flip(1), d.flip(1)).flip(1)
    n = c.shape[1]
    k = 1
    while k < n:
        d = torch.cat([d[:, :k], d[:, k:] + c[:, k:] * d[:, :-k]], dim=1)
        c = torch.cat([c[:, :k], c[:, k:] * c[:, :-k]], dim=1)
        k *= 2
    return d


def _shift(x: torch.Tensor, by: int) -> torch.Tensor:
    """y_t = x_{t-by} along dim 1, zero where out of range (by = +1: previous, -1: next)."""
    zero = torch.zeros_like(x[:, :1])
    if by == 1:
        return torch.cat([zero, x[:, :-1]], dim=1)
    return torch.cat([x[:, 1:], zero], dim=1)


def _causal_adjoint(g: torch.Tensor, b2: torch.Tensor, gbar: torch.Tensor):
    """Adjoint of the causal sweep. Returns (dL/da (B, N, C) complex, dL/db2 (C,) real)."""
    g2c = (g * g).conj()
    mu = linear_scan(b2 * g2c, g2c * gbar, reverse=True)
    gb2 = (_shift(g, 1).conj() * mu).real.sum(dim=(0, 1))
    return -mu, gb2


def _forward(a, b2, causal):
    gl = mobius_prefix(a, b2)
    if causal:
        return gl, None, None
    gr = mobius_prefix(a.flip(1), b2).flip(1)
    g = 1.0 / (a - b2 * _shift(gl, 1) - b2 * _shift(gr, -1))
    return g, gl, gr


def _backward(a, b2, g, gl, gr, gbar, causal):
    if causal:
        return _causal_adjoint(g, b2, gbar)
    k = (g * g).conj() * gbar
    da = -k
    gb2 = ((_shift(gl, 1) + _shift(gr, -1)).conj() * k).real.sum(dim=(0, 1))
    da_l, gb2_l = _causal_adjoint(gl, b2, b2 * _shift(k, -1))
    da_r, gb2_r = _causal_adjoint(gr.flip(1), b2, (b2 * _shift(k, 1)).flip(1))
    return da + da_l + da_r.flip(1), gb2 + gb2_l + gb2_r


class BKCoreParallel(torch.autograd.Function):
    """(v, h0, beta, z_re, z_im, causal) -> (g_re, g_im); all real tensors of one dtype."""

    @staticmethod
    def forward(ctx, v, h0, beta, z_re, z_im, causal):
        a = torch.complex(v + (h0 - z_re), (-z_im).expand_as(v))
        b2 = beta * beta
        g, gl, gr = _forward(a, b2, causal)
        ctx.causal = causal
        ctx.save_for_backward(a, beta, g, gl, gr)
        return g.real.contiguous(), g.imag.contiguous()

    @staticmethod
    def backward(ctx, g_re_bar, g_im_bar):
        a, beta, g, gl, gr = ctx.saved_tensors
        gbar = torch.complex(g_re_bar, g_im_bar)
        da, gb2 = _backward(a, beta * beta, g, gl, gr, gbar, ctx.causal)
        dre = da.real
        d_h0 = dre.sum(dim=(0, 1))
        return dre.contiguous(), d_h0, 2.0 * beta * gb2, -d_h0, -da.imag.sum(dim=(0, 1)), None


def bk_core_parallel(v, h0, beta, z_re, z_im, causal: bool = True):
    """Parallel-scan BK-Core. v (B, N, C) float32/float64; h0, beta, z_re, z_im (C,) -> (g_re, g_im) (B, N, C)."""
    dtype = v.dtype if v.dtype in (torch.float32, torch.float64) else torch.float32
    v = v.to(dtype)
    h0, beta, z_re, z_im = (p.to(dtype) for p in (h0, beta, z_re, z_im))
    return BKCoreParallel.apply(v, h0, beta, z_re, z_im, bool(causal))

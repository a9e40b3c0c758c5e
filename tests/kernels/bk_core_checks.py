"""Shared checks of the Triton BK-Core (interpreter and GPU test modules) against float64 references."""

import functools

import torch


def make_inputs(b, n, c, seed=0, device="cpu", eta_min=0.05):
    gen = torch.Generator().manual_seed(seed)
    v = 5.0 * torch.tanh(2.0 * torch.randn(b, n, c, generator=gen, dtype=torch.float64))
    h0 = 0.5 * torch.randn(c, generator=gen, dtype=torch.float64)
    beta = 1.0 + 0.5 * torch.randn(c, generator=gen, dtype=torch.float64)
    z_re = torch.linspace(-1.5, 1.5, c, dtype=torch.float64)
    z_im = eta_min + 0.5 * torch.rand(c, generator=gen, dtype=torch.float64)
    return [t.to(device) for t in (v, h0, beta, z_re, z_im)]


def in_band(b, n, c, seed=0, device="cpu", eta=0.02):
    """make_inputs with the potentials inside the band (|v| < 0.25) and z_im = eta. There a carry's influence
    outlasts a segment (at eta 0.02 a carry 1% off leaves g ~0.6% off 64 rows on); with make_inputs' |v| up to
    5 it fades within a few rows, and a wrong carry between segments goes unseen."""
    v, h0, beta, z_re, z_im = make_inputs(b, n, c, seed, device)
    return [0.05 * v, h0, beta, z_re, torch.full_like(z_im, eta)]


def check_against(reference, x64, causal, chunk=None, tol=1e-4, fn=None):
    """Outputs and all five input gradients of `fn` (float32; default bk_core_triton at `chunk`) vs `reference`
    (float64).

    The kernel module is imported here: a process decides (TRITON_INTERPRET) before it gets here."""
    from kernels.bk_core.triton import bk_core_triton

    if fn is None:
        fn = functools.partial(bk_core_triton, chunk=chunk)
    gen = torch.Generator().manual_seed(123)
    w_re = torch.randn(x64[0].shape, generator=gen, dtype=torch.float64).to(x64[0].device)
    w_im = torch.randn(x64[0].shape, generator=gen, dtype=torch.float64).to(x64[0].device)
    xr = [t.clone().requires_grad_() for t in x64]
    r_re, r_im = reference(*xr, causal=causal)
    ref_grads = torch.autograd.grad((r_re * w_re).sum() + (r_im * w_im).sum(), xr, allow_unused=True)
    xt = [t.float().requires_grad_() for t in x64]
    o_re, o_im = fn(*xt, causal=causal)
    assert o_re.dtype == torch.float32 and o_re.shape == x64[0].shape
    scale = torch.complex(r_re, r_im).abs().max()
    torch.testing.assert_close(o_re.double() / scale, r_re.detach() / scale, rtol=tol, atol=tol)
    torch.testing.assert_close(o_im.double() / scale, r_im.detach() / scale, rtol=tol, atol=tol)
    grads = torch.autograd.grad((o_re * w_re.float()).sum() + (o_im * w_im.float()).sum(), xt)
    for name, got, ref in zip(("v", "h0", "beta", "z_re", "z_im"), grads, ref_grads, strict=False):
        ref = torch.zeros_like(got, dtype=torch.float64) if ref is None else ref
        gscale = max(ref.abs().max().item(), 1.0)
        torch.testing.assert_close(got.double() / gscale, ref / gscale, rtol=tol, atol=tol, msg=name)


def two_pass(*x, causal):
    """bk_core_triton's outputs in float64: the two-pass kernels as a `reference` for check_against."""
    from kernels.bk_core.triton import bk_core_triton

    return tuple(t.double() for t in bk_core_triton(*x, causal=causal))


def check_halo_fallback(device, reverse, chunk=8, max_halo=32):
    """The halo kernels flag the batch rows whose halos fall short, and the two-pass kernels redo exactly those.

    Two batch rows share the channels' parameters (eta 0.02, 70 channels: two channel blocks): row 0's potentials
    lie in the band, where a carry outlasts a halo of max_halo rows (flagged), row 1's reach |v| ~ 5, where it
    fades within max_halo rows (not flagged; at 16 rows it does not). Forward and adjoint: row 0 is bitwise the
    two-pass kernels' result (the halo kernel alone is off there), row 1 bitwise the halo kernel's, close to the
    two-pass one."""
    from kernels.bk_core import triton as bk

    band = in_band(1, 48, 70, seed=3, device=device)
    far = make_inputs(1, 48, 70, seed=4, device=device)
    x = [torch.cat([band[0], far[0]]).float()] + [p.float() for p in band[1:]]
    B, N, C = x[0].shape
    plan = bk._plan(B, N, C, chunk)
    gen = torch.Generator().manual_seed(5)
    dg = [torch.randn(B, N, C, generator=gen).to(device) for _ in range(2)]

    g_re, g_im, w = bk._sweep(*x, reverse, chunk, max_halo)
    two_pass_fwd = bk._sweep(*x, reverse, chunk, 0)
    halo_fwd = [torch.empty_like(w), torch.empty_like(g_re), torch.empty_like(g_im)]
    flag = bk._halo_sweep(*x, halo_fwd[0], halo_fwd[1], halo_fwd[2], reverse, plan, max_halo)
    assert flag.view(B, -1).tolist() == [[1, 1], [0, 0]]
    _check_rows((g_re, g_im), two_pass_fwd[:2], halo_fwd[1:])

    args = (*x, two_pass_fwd[2], *two_pass_fwd[:2], *dg)
    dv, grads = bk._adjoint(*args, reverse, chunk, max_halo)
    dv_two_pass, grads_two_pass = bk._adjoint(*args, reverse, chunk, 0)
    dv_halo = torch.empty_like(dv)
    red = torch.empty(4, C, B * plan[3], device=device)
    flag = bk._halo_adjoint(*args, dv_halo, red, reverse, plan, max_halo)
    assert flag.view(B, -1).tolist() == [[1, 1], [0, 0]]
    _check_rows((dv,), (dv_two_pass,), (dv_halo,))
    torch.testing.assert_close(grads, grads_two_pass, rtol=1e-5, atol=1e-5)


def _check_rows(got, two_pass, halo):
    """Row 0 of each of got is bitwise two_pass's, and halo's is off from it; row 1 is bitwise halo's and close."""
    for t, ref, h in zip(got, two_pass, halo, strict=True):
        assert torch.equal(t[0], ref[0]) and torch.equal(t[1], h[1])
        scale = ref.abs().max()
        assert ((h[0] - ref[0]).abs().max() / scale).item() > 1e-4
        torch.testing.assert_close(t[1] / scale, ref[1] / scale, rtol=1e-5, atol=1e-5)

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

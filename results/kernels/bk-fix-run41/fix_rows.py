"""How many rows run 41's fix-up touches: float64 BK-Core sweeps (B 2, N 4096, C 64), c_i = b2 conj(g_i^2), and per
segment of 128 rows the rows from the leftmost i with |c_i ... c_end| > 2^-30 to the segment's end, per channel and
per program (64 channels: the leftmost over them).

    python3 fix_rows.py
"""

import math

import torch


def fixed_rows(v, h0, beta, z_re, z_im, L=128, log2_threshold=-30):
    """(rows a channel fixes, rows a program fixes), each the mean over segments, and the program's max."""
    B, N, C = v.shape
    a = torch.complex(v.double() + (h0 - z_re).double(), (-z_im).double().expand_as(v))
    b2 = beta.double() ** 2
    g, gs = torch.zeros(B, C, dtype=torch.complex128), []
    for t in range(N):
        g = 1.0 / (a[:, t] - b2 * g) if t else 1.0 / a[:, t]
        gs.append(g)
    log_c = torch.log((b2 * torch.stack(gs, 1).conj() ** 2).abs())
    S = N // L
    suffix = log_c[:, : S * L].reshape(B, S, L, C).flip(2).cumsum(2).flip(2)  # log |Phi_i|
    idx = torch.arange(L).view(1, 1, L, 1)
    first = torch.where(suffix > log2_threshold * math.log(2), idx, torch.full_like(idx, L)).amin(2)  # (B, S, C)
    program = (L - first.amin(-1)).float()
    return (L - first).float().mean().item(), program.mean().item(), program.max().item()


def main():
    torch.manual_seed(0)
    B, N, C = 2, 4096, 64
    cases = {
        "bench/kernels.py's inputs (z_im 0.5-1.5)": (
            torch.randn(B, N, C),
            torch.randn(C) * 0.1,
            torch.rand(C) + 0.5,
            torch.zeros(C),
            torch.rand(C) + 0.5,
        ),
    }
    for s in (0.5, 1.0, 2.0):  # BKCore's initial parameters, potentials 5 tanh(s x / 5)
        v = 5 * torch.tanh(s * torch.randn(B, N, C) / 5)
        cases[f"BKCore at init (eta 0.1-0.5), v = 5 tanh({s} x / 5)"] = (
            v,
            torch.zeros(C),
            torch.ones(C),
            torch.linspace(-1, 1, C),
            torch.linspace(0.1, 0.5, C),
        )
    cases["no potential, eta 0.01"] = (
        torch.zeros(B, N, C),
        torch.zeros(C),
        torch.ones(C),
        torch.linspace(-1, 1, C),
        torch.full((C,), 0.01),
    )
    for name, args in cases.items():
        channel, program, most = fixed_rows(*args)
        print(f"{name}: rows of 128 fixed, a channel {channel:.1f}, a program {program:.1f} ({program / 128:.0%}), "
              f"at most {most:.0f}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()

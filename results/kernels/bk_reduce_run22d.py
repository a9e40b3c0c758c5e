"""Time the BK-Core backward's share reduction, (B, S, 4, C) -> (4, C), three ways, from CUDA graphs."""
import torch, triton
B, S, C = 16, 256, 64
red = torch.randn(B, S, 4, C, device="cuda")
ones = torch.ones(1, B * S, device="cuda")
ways = {
    "sum(dim=(0,1))": lambda: red.sum(dim=(0, 1)),
    "view.sum(0)": lambda: red.view(B * S, 4 * C).sum(0),
    "ones @ view": lambda: (ones @ red.view(B * S, 4 * C)).view(4, C),
    "two-stage": lambda: red.view(B * S // 64, 64, 4 * C).sum(1).sum(0),
}
ref = ways["sum(dim=(0,1))"]().double()
for name, f in ways.items():
    err = (f().view(4, C).double() - ref).abs().max().item()
    g = torch.cuda.CUDAGraph()
    s = torch.cuda.Stream(); s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        f(); f()
    torch.cuda.current_stream().wait_stream(s)
    with torch.cuda.graph(g):
        f()
    ms = triton.testing.do_bench(g.replay, warmup=50, rep=300)
    print(f"{name:16s} {ms * 1000:7.2f} us  max|diff| {err:.2e}")

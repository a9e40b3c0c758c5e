"""How many Triton public-function calls one forward of phase7 (19 layers) and phase8 (14 layers) makes, the
layer counts of the ~350M configs (examples/kernels-on-off.yaml), at d 64 on the CPU (Triton interpreted).
Each call goes through kernels/custom_op.py, which asks torch.compiler.is_compiling() once: that is counted,
by the calling function's name.

    python results/kernels/host-ops/count_kernel_calls.py      # from the checkout's root
"""
import collections, inspect, os, sys
os.environ["TRITON_INTERPRET"] = "1"
sys.path.insert(0, os.getcwd())
import torch
from kernels.backend import backend
from models import catalog, registry  # noqa: F401  (the catalog fills the registry)

counts = collections.Counter()
is_compiling = torch.compiler.is_compiling


def counting():
    counts[inspect.currentframe().f_back.f_back.f_code.co_name] += 1  # custom_op's call() -> the public function
    return is_compiling()


torch.compiler.is_compiling = counting
for name, layers in (("phase7", 19), ("phase8", 14)):
    entry = registry.get(name)
    model = entry.build(entry.make_config({"d_model": 64, "n_heads": 4, "n_layers": layers, "vocab_size": 100}))
    counts.clear()
    with backend("triton"):
        out = model(torch.randint(0, 100, (1, 32)))
    print(name, layers, sum(counts.values()), dict(counts))

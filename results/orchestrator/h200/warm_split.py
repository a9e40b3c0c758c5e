"""What protocol step 1 costs per dtype in a fresh process (a fresh CUDA context, as each run has).

    PYTHONPATH=. python3 results/orchestrator/h200/warm_split.py a   # order fp32, fp16, bf16
    PYTHONPATH=. python3 results/orchestrator/h200/warm_split.py b   # order bf16, fp32, fp16

Prints the CUDA initialisation time, then each dtype's `warm_up_math` time and the memory allocated after it.
"""

import sys
import time

import torch

from orchestrator.measure import warm_up_math

ORDERS = {"a": (torch.float32, torch.float16, torch.bfloat16), "b": (torch.bfloat16, torch.float32, torch.float16)}

began = time.perf_counter()
dev = torch.device("cuda", 0)
torch.cuda.set_device(dev)
torch.zeros(1, device=dev)
torch.cuda.synchronize()
out = [f"init {time.perf_counter() - began:.3f}s"]
for dtype in ORDERS[sys.argv[1]]:
    began = time.perf_counter()
    warm_up_math(dev, (dtype,))
    torch.cuda.synchronize()
    out.append(f"{dtype} {time.perf_counter() - began:.3f}s alloc {torch.cuda.memory_allocated(dev)}")
print(sys.argv[1], " | ".join(out))

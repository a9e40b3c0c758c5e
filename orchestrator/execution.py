"""How a step executes under `execution: graph`: eagerly for a warm-up, then replayed from a CUDA graph.

See docs/measurement.md (execution modes). `eager` calls the step itself; `compile` is applied when the
model is built (:meth:`orchestrator.measure.Job.build`), so both call the step directly.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar, cast

import torch

#: eager calls on a side stream before the capture (lazy initialisation happens there, never inside it)
GRAPH_WARMUP_STEPS = 2

Out = TypeVar("Out")


class GraphedStep(Generic[Out]):
    """`step()` called through a CUDA graph: the first `warmup` calls run eagerly on a side stream (AdamW
    creates its state, Triton autotunes, cuBLAS picks its kernels), the next call is captured and then
    replayed, and every later call is one replay. Each call performs one step's work, so a training loop
    loses no step to the capture.

    The captured step must not synchronise the host, and it reads its inputs from static tensors that the
    caller refills by copy between calls. Its output is static too: a replay overwrites it. Allocations
    made during the capture live in the graph's private pool for as long as this object does; a peak
    taken across the capture includes that pool: a step that sets the gradients to None first has the
    captured backward allocate them there.

    Not thread-safe: one object per step function, called from one thread.
    """

    def __init__(self, step: Callable[[], Out], device: torch.device, warmup: int = GRAPH_WARMUP_STEPS):
        self.step, self.device, self.warmup = step, device, warmup
        self.calls = 0
        self.graph: torch.cuda.CUDAGraph | None = None
        self.out: Out | None = None

    @property
    def captured(self) -> bool:
        return self.graph is not None

    def __call__(self) -> Out:
        if self.graph is None and self.calls < self.warmup:
            self.calls += 1
            return self._on_side_stream()
        graph = self.graph
        if graph is None:
            graph = self._capture()
        graph.replay()
        return cast(Out, self.out)  # set by the capture; None only before it

    def _on_side_stream(self) -> Out:
        main = torch.cuda.current_stream(self.device)
        side = torch.cuda.Stream(self.device)
        side.wait_stream(main)
        with torch.cuda.stream(side):
            out = self.step()
        main.wait_stream(side)
        return out

    def _capture(self) -> torch.cuda.CUDAGraph:
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self.out = self.step()
        self.graph = graph
        return graph

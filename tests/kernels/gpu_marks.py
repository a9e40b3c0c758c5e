"""The marks of a module of compiled-kernel tests: `pytestmark = GPU_ONLY`.

Such a module runs in a pytest process of its own: the interpreter test modules set TRITON_INTERPRET=1 at import,
after which every kernel would run interpreted, so a module finding it set skips instead.
"""

import os

import pytest
import torch

GPU_ONLY = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"),
    pytest.mark.skipif(
        os.environ.get("TRITON_INTERPRET") == "1", reason="interpreted process: run GPU tests separately"
    ),
]

"""kernels/row_dot.py under the Triton interpreter (CPU): sum(a * b, -1) against float32 copies, for row widths
the tile pads (odd widths), one row, and more rows than a program takes; and -(a . b) / den, linear attention's
normaliser gradient.

TRITON_INTERPRET is read when kernels.row_dot is imported (at @triton.jit time): it is set before that import.
"""

import os

os.environ["TRITON_INTERPRET"] = "1"

import pytest  # noqa: E402
import torch  # noqa: E402

from kernels.row_dot import ROWS, row_dot, row_dot_ref  # noqa: E402


@pytest.mark.parametrize("shape", [(1, 16), (3, 5, 7), (2, ROWS + 3, 64), (ROWS * 2, 128)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_row_dot_matches_float32_copies(shape, dtype):
    g = torch.Generator().manual_seed(sum(shape))
    a, b = (torch.randn(shape, generator=g).to(dtype) for _ in range(2))
    out = row_dot(a, b)
    assert out.shape == shape[:-1] and out.dtype == torch.float32
    torch.testing.assert_close(out, row_dot_ref(a, b), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shape", [(1, 16), (3, 5, 7), (2, ROWS + 3, 64)])
def test_row_dot_over_den_is_the_normalisers_gradient(shape):
    g = torch.Generator().manual_seed(len(shape))
    a, b = (torch.randn(shape, generator=g) for _ in range(2))
    den = torch.rand(shape[:-1], generator=g) + 0.5
    out = row_dot(a, b, den)
    torch.testing.assert_close(out, -(a * b).sum(-1) / den, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out, row_dot_ref(a, b, den), rtol=1e-5, atol=1e-5)

"""kernels/grid.py: the launchers' plain-Python cdiv and next_power_of_2 agree with triton's."""

import triton

from kernels.grid import cdiv, next_power_of_2


def test_cdiv_and_next_power_of_2_agree_with_triton():
    for n in range(1, 2100):
        assert next_power_of_2(n) == triton.next_power_of_2(n), n
        for b in (1, 2, 3, 4, 7, 16, 64, 1024):
            assert cdiv(n, b) == triton.cdiv(n, b), (n, b)
    assert cdiv(0, 16) == 0 and next_power_of_2(2**31 + 1) == 2**32

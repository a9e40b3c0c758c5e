"""Host-side integer helpers of the launchers (grid sizes, power-of-two tiles), in plain Python.

`triton.cdiv` and `triton.next_power_of_2` are constexpr functions in triton 3.9: about 2 us a call on the
host where this is 0.04 us, and a BK-Core forward and backward asked for twenty (`bench/host_ops.py`, glue
time). Kernels keep `tl.cdiv`.
"""

from __future__ import annotations


def cdiv(a: int, b: int) -> int:
    """ceil(a / b) for b > 0."""
    return -(-a // b)


def next_power_of_2(n: int) -> int:
    """The smallest power of two >= n, for n >= 1."""
    return 1 << (n - 1).bit_length()


__all__ = ["cdiv", "next_power_of_2"]

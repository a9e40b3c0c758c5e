"""Triton kernels for the models' hot paths, each beside its pure-PyTorch reference.

Every op folder holds `naive.py` (the reference: the math, plain PyTorch, used on CPU and in tests),
`triton.py` (kernels, launchers, autograd Function, public function) and an `__init__.py` whose public
function dispatches between the two through :func:`kernels.backend.use_triton`.
"""

"""Compute backends: the seam between the network and the kernels.

Everything above this package reaches kernels through a backend object
returned by :func:`get_backend`; nothing above it assumes that arrays live
in host memory. Today there is the CPU backend (Numba); the CUDA backend
plugs in here.

Shape letters used by every kernel: ``B`` batch, ``H`` heads, ``Lq`` /
``Lk`` query / key positions, ``D`` query and key width, ``Dv`` value
width, ``A`` additive-score width.
"""

from ._dispatch import get_backend, resolve_device

__all__ = ["get_backend", "resolve_device"]

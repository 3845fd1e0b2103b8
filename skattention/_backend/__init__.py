"""Compute backends: the seam between the network and the kernels.

Everything above this package reaches kernels through a backend object
returned by :func:`get_backend`; nothing above it assumes that arrays live
in host memory. The CPU backend (Numba) and the CUDA backend
(numba.cuda, imported only when requested) have the same methods.

Shape letters used by every kernel: ``B`` batch, ``H`` heads, ``Lq`` /
``Lk`` query / key positions, ``D`` query and key width, ``Dv`` value
width, ``A`` additive-score width.
"""

from ._dispatch import cuda_unavailable_reason, get_backend, resolve_device

__all__ = ["get_backend", "resolve_device", "cuda_unavailable_reason"]

"""The CUDA backend: numba.cuda kernels behind one object.

Imported only when the CUDA backend is requested (``device="cuda"``), never
by ``import skattention``: importing ``numba.cuda`` costs a few tenths of a
second and needs the optional ``numba-cuda`` package (the ``cuda`` extra).

The methods mirror :class:`~._cpu.CPUBackend` on Numba device arrays:
attention from :class:`~._cuda_attention.CUDAAttentionOps`, the per-token
layers from :class:`~._cuda_layers.CUDALayerOps`, losses and optimizers from
:class:`~._cuda_training.CUDATrainingOps`, allocation and layout glue from
:class:`~._cuda_arrays.CUDAArrayOps`. No kernel uses atomics and every
output element is written by one thread summing in a fixed order, so
training with a fixed ``random_state`` gives the same model run after run on
the same GPU (not bitwise the CPU's: summation orders differ).
"""

import importlib.util

__all__ = ["CUDABackend", "cuda_unavailable_reason"]

_INSTALL_HINT = 'pip install "skattention[cuda]"'

# Without numba-cuda, ``numba.cuda`` is Numba's deprecated built-in target (or
# missing): the kernel modules are not imported, and the backend refuses to
# start with the reason below instead of failing at import.
_IMPORT_ERROR = None
_MIXINS = ()
if importlib.util.find_spec("numba_cuda") is not None:
    try:
        from ._cuda_arrays import CUDAArrayOps
        from ._cuda_attention import CUDAAttentionOps
        from ._cuda_layers import CUDALayerOps
        from ._cuda_training import CUDATrainingOps
    except ImportError as exc:  # a broken numba-cuda install
        _IMPORT_ERROR = exc
    else:
        _MIXINS = (CUDAAttentionOps, CUDALayerOps, CUDATrainingOps, CUDAArrayOps)


def cuda_unavailable_reason():
    """Why the CUDA backend cannot run here, or None when it can.

    The CUDA simulator (``NUMBA_ENABLE_CUDASIM=1`` before Numba is imported)
    counts as usable: the tests run the kernels in it.

    Returns
    -------
    reason : str or None
        One line: numba-cuda missing (with the install command), no driver
        or no device (with the driver's message), or the device failing to
        start.
    """
    if importlib.util.find_spec("numba_cuda") is None:
        return f"the numba-cuda package is not installed ({_INSTALL_HINT})"
    if _IMPORT_ERROR is not None:
        detail = " ".join(str(_IMPORT_ERROR).split())
        return f"numba.cuda failed to import: {detail} ({_INSTALL_HINT})"
    from numba import cuda

    try:
        if not cuda.is_available():
            detail = " ".join(str(cuda.cuda_error() or "").split())
            return ("no usable CUDA driver or GPU was found"
                    + (f": {detail}" if detail else "")
                    + f" (check the NVIDIA driver; {_INSTALL_HINT} installs the CUDA libraries)")
        cuda.get_current_device()
    except Exception as exc:  # a broken driver install must give a reason, not a crash
        detail = " ".join(str(exc).split()) or type(exc).__name__
        return f"the CUDA device could not be initialised: {detail}"
    return None


class CUDABackend(*_MIXINS):
    """numba.cuda kernels on one GPU.

    Arrays are C-contiguous Numba device arrays (float32 for the layer,
    loss and optimizer kernels; the attention kernels also take float64);
    outputs are preallocated and filled in place. Kernels run on the default
    stream, in call order.

    Parameters
    ----------
    device_id : int or None, default=None
        GPU to use (``numba.cuda.select_device``); None keeps the current
        device (device 0 unless selected otherwise).

    Attributes
    ----------
    name : str
        ``"cuda"``.
    device_id : int or None

    Raises
    ------
    RuntimeError
        If CUDA cannot be used here (see :func:`cuda_unavailable_reason`).
    """

    name = "cuda"

    def __init__(self, device_id=None):
        reason = cuda_unavailable_reason()
        if reason is not None:
            raise RuntimeError(f"the CUDA backend cannot be used: {reason}.")
        self.device_id = None if device_id is None else int(device_id)
        if self.device_id is not None:
            from numba import cuda

            cuda.select_device(self.device_id)

    def __repr__(self):
        return f"CUDABackend(device_id={self.device_id})"

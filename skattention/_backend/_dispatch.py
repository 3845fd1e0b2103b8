"""Choose the backend for a ``device`` setting."""

import os

__all__ = ["get_backend", "resolve_device"]

_DEVICES = ("auto", "cpu", "cuda")


def _cuda_usable():
    """Whether a real CUDA device can be used, without importing numba.cuda needlessly.

    Returns
    -------
    usable : bool
        False when the ``numba-cuda`` package is missing, when the CUDA
        simulator is on, or when no driver or device is found.
    """
    if os.environ.get("NUMBA_ENABLE_CUDASIM", "0") == "1":
        return False
    try:
        from numba import cuda
    except ImportError:
        return False
    try:
        return bool(cuda.is_available())
    except Exception:  # a broken driver install must not break device="auto"
        return False


def resolve_device(device):
    """Resolve a ``device`` setting to the device that will be used.

    Parameters
    ----------
    device : {"auto", "cpu", "cuda"}
        ``"auto"`` picks CUDA when a real GPU is usable, else the CPU.

    Returns
    -------
    device : {"cpu", "cuda"}

    Raises
    ------
    ValueError
        If ``device`` is not one of the accepted strings.
    RuntimeError
        If ``device="cuda"`` and no CUDA backend is available.
    """
    if device not in _DEVICES:
        raise ValueError(f"device must be one of {_DEVICES}, got {device!r}.")
    if device == "cpu":
        return "cpu"
    # The CUDA kernels are not part of this release yet, so "auto" always
    # resolves to the CPU and an explicit "cuda" says why it cannot run.
    if device == "auto":
        return "cpu"
    if _cuda_usable():
        reason = "a CUDA device was found, but skattention's CUDA backend is not available yet"
    else:
        reason = (
            "no usable CUDA device was found (install the 'cuda' extra, "
            "`pip install skattention[cuda]`, and check the NVIDIA driver)"
        )
    raise RuntimeError(f"device='cuda' cannot be used: {reason}. Use device='cpu'.")


def get_backend(device="cpu", n_threads=None):
    """Return the compute backend for a device.

    Parameters
    ----------
    device : {"auto", "cpu", "cuda"}, default="cpu"
    n_threads : int or None, default=None
        Threads for the CPU kernels; None uses Numba's current thread count.

    Returns
    -------
    backend : CPUBackend
        An object exposing the kernels (see :class:`~skattention._backend._cpu.CPUBackend`).
    """
    resolved = resolve_device(device)
    if resolved == "cpu":
        from ._cpu import CPUBackend

        return CPUBackend(n_threads=n_threads)
    raise AssertionError("unreachable: resolve_device only returns supported devices")

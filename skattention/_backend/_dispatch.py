"""Choose the backend for a ``device`` setting."""

import functools

import numba

__all__ = ["get_backend", "resolve_device", "cuda_unavailable_reason"]

_DEVICES = ("auto", "cpu", "cuda")


def _simulator_on():
    # Numba reads NUMBA_ENABLE_CUDASIM once, into its config, when imported.
    return bool(numba.config.ENABLE_CUDASIM)


@functools.lru_cache(maxsize=2)
def _probe(simulator):
    """:func:`cuda_unavailable_reason`, once per process and simulator setting."""
    return _unavailable_reason()


def cuda_unavailable_reason():
    """Why the CUDA backend cannot run here, or None when it can (cached).

    Returns
    -------
    reason : str or None
        One sentence naming what is missing and how to fix it.
    """
    return _probe(_simulator_on())


def _unavailable_reason():
    """Probe numba.cuda and the CUDA kernels.

    Imports ``numba.cuda`` (and the CUDA kernels) only when called, so
    ``device="cpu"`` never pays for it. Numba's CUDA simulator
    (``NUMBA_ENABLE_CUDASIM=1``) counts as usable: the test suite runs the
    CUDA path on it.

    Returns
    -------
    reason : str or None
        One sentence naming what is missing and how to fix it.
    """
    try:
        from numba import cuda
    except ImportError:
        return ("the numba-cuda package is not installed "
                "(install the 'cuda' extra: pip install \"skattention[cuda]\")")
    try:
        available = bool(cuda.is_available())
    except Exception as exc:  # a broken driver install must not escape as a crash
        return f"the CUDA driver could not be initialised ({type(exc).__name__}: {exc})"
    if not available:
        return ("no usable CUDA GPU or driver was found (numba.cuda.is_available() is "
                "False; check `nvidia-smi` and that the 'cuda' extra matches the driver's "
                "CUDA version)")
    try:
        from . import _cuda  # noqa: F401
    except ImportError as exc:
        return f"skattention's CUDA kernels could not be loaded ({exc})"
    return None


def resolve_device(device):
    """Resolve a ``device`` setting to the device that will be used.

    Parameters
    ----------
    device : {"auto", "cpu", "cuda"}
        ``"auto"`` picks CUDA when a real GPU is usable (never the
        simulator), else the CPU.

    Returns
    -------
    device : {"cpu", "cuda"}

    Raises
    ------
    ValueError
        If ``device`` is not one of the accepted strings.
    RuntimeError
        If ``device="cuda"`` and the CUDA backend cannot run here; the
        message says why and what to install.
    """
    if device not in _DEVICES:
        raise ValueError(f"device must be one of {_DEVICES}, got {device!r}.")
    if device == "cpu":
        return "cpu"
    if device == "auto":
        if _simulator_on():
            return "cpu"
        return "cuda" if cuda_unavailable_reason() is None else "cpu"
    reason = cuda_unavailable_reason()
    if reason is not None:
        raise RuntimeError(f"device='cuda' cannot be used: {reason}. Use device='cpu'.")
    return "cuda"


def get_backend(device="cpu", n_threads=None):
    """Return the compute backend for a device.

    Parameters
    ----------
    device : {"auto", "cpu", "cuda"}, default="cpu"
    n_threads : int or None, default=None
        Threads for the CPU kernels; None uses Numba's current thread count.
        Ignored by the CUDA backend.

    Returns
    -------
    backend : CPUBackend or CUDABackend
        An object exposing the kernels (see :class:`~skattention._backend._cpu.CPUBackend`);
        the CUDA backend has the same methods on device arrays.
    """
    resolved = resolve_device(device)
    if resolved == "cpu":
        from ._cpu import CPUBackend

        return CPUBackend(n_threads=n_threads)
    from ._cuda import CUDABackend

    return CUDABackend()

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
    """The CUDA backend's own probe, once per process and simulator setting.

    Imported only when called, so ``device="cpu"`` never loads
    ``numba.cuda``. The simulator counts as usable there (the tests run the
    CUDA path on it); :func:`resolve_device` keeps ``"auto"`` off it.
    """
    from ._cuda import cuda_unavailable_reason as probe

    return probe()


def cuda_unavailable_reason():
    """Why the CUDA backend cannot run here, or None when it can (cached).

    Returns
    -------
    reason : str or None
        One sentence naming what is missing and how to fix it.
    """
    return _probe(_simulator_on())


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

"""The one place where Numba compilation is configured.

Every compiled kernel of the package is built through :func:`jit`, so that
caching, its fallback and compile flags are decided once.

Notes
-----
* ``cache=True`` makes Numba look for a writable cache directory while the
  decorator runs; when none exists it raises ``RuntimeError`` and the whole
  ``import skattention`` would fail. :func:`jit` falls back to an uncached
  build with a warning instead.
* Numba's on-disk cache key ignores compile flags such as ``parallel``: a
  serial and a parallel build of the same Python function share one entry and
  load each other's code. Serial and parallel drivers are therefore always
  distinct ``def`` statements that call shared helper functions.
* Setting the environment variable ``SKATTENTION_NUMBA_CACHE=0`` disables the
  on-disk cache (useful when developing kernels, since Numba does not
  invalidate a cached caller when a callee in another module changes).
"""

import os
import warnings

import numba

__all__ = ["jit", "cache_enabled"]


def cache_enabled():
    """Whether compiled kernels are cached on disk.

    Returns
    -------
    enabled : bool
        False when ``SKATTENTION_NUMBA_CACHE`` is set to ``"0"``.
    """
    return os.environ.get("SKATTENTION_NUMBA_CACHE", "1") != "0"


def jit(parallel=False, **options):
    """Compile a function in nopython mode, cached on disk when possible.

    Parameters
    ----------
    parallel : bool, default=False
        Build with ``prange`` support. A parallel driver must be its own
        ``def`` (see the module notes).
    **options
        Further keyword arguments for :func:`numba.njit` (for instance
        ``inline="always"``). ``cache`` is decided here and may not be given.

    Returns
    -------
    decorator : callable
        Takes a Python function and returns the Numba dispatcher.
    """
    if "cache" in options:
        raise TypeError("jit() decides caching itself; do not pass cache=")
    # NumPy's error model: a float division by zero gives inf/nan instead of
    # raising ZeroDivisionError from deep inside a kernel (diverged training
    # is then reported by the non-finite loss check), and the loops keep no
    # per-division branch, so they vectorise.
    options.setdefault("error_model", "numpy")

    def decorator(function):
        if cache_enabled():
            try:
                return numba.njit(cache=True, parallel=parallel, **options)(function)
            except RuntimeError as exc:
                # Raised when no cache locator is writable (read-only site-packages,
                # no HOME, no NUMBA_CACHE_DIR): compile without a cache instead.
                warnings.warn(
                    f"skattention: Numba on-disk cache disabled ({exc}); kernels "
                    "will be compiled in every new process. Set NUMBA_CACHE_DIR "
                    "to a writable folder to enable it.",
                    RuntimeWarning,
                    stacklevel=2,
                )
        return numba.njit(cache=False, parallel=parallel, **options)(function)

    return decorator

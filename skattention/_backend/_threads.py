"""Thread budget of the CPU kernels.

Numba's ``prange`` loops are the only thread pool the kernels use. The
matrix products inside them call the BLAS that Numba links (SciPy's
OpenBLAS, a second copy next to NumPy's); that BLAS is held at one thread
while a kernel runs, so the two pools never oversubscribe the cores and the
result of a product does not depend on how many threads the BLAS would pick.
"""

import contextlib
import threading

import numba

__all__ = ["kernel_threads", "default_n_threads"]

_lock = threading.Lock()
_scipy_blas = None


def default_n_threads():
    """Thread count the kernels use when the caller does not choose one.

    Returns
    -------
    n_threads : int
        Numba's current thread count for the calling thread (set by
        ``numba.set_num_threads`` or capped by ``NUMBA_NUM_THREADS``, which
        joblib's workers set to their share of the cores).
    """
    return numba.get_num_threads()


def _scipy_blas_controllers():
    """threadpoolctl controllers of the BLAS copies that Numba's kernels call."""
    global _scipy_blas
    with _lock:
        if _scipy_blas is None:
            # Numba's np.dot binds scipy.linalg.cython_blas; importing it first
            # makes sure the library is loaded before threadpoolctl scans.
            import scipy.linalg.cython_blas  # noqa: F401
            from threadpoolctl import ThreadpoolController

            controller = ThreadpoolController().select(user_api="blas")
            _scipy_blas = [
                lib for lib in controller.lib_controllers if "scipy" in lib.filepath
            ]
        return _scipy_blas


@contextlib.contextmanager
def kernel_threads(n_threads):
    """Run kernels with ``n_threads`` Numba threads and a one-thread BLAS.

    Parameters
    ----------
    n_threads : int
        Threads for ``prange`` loops, at least 1; values above Numba's
        maximum (``numba.config.NUMBA_NUM_THREADS``) are capped.

    Yields
    ------
    n_threads : int
        The thread count actually in force.
    """
    n_threads = max(1, min(int(n_threads), numba.config.NUMBA_NUM_THREADS))
    previous = numba.get_num_threads()
    blas = _scipy_blas_controllers()
    blas_previous = [lib.num_threads for lib in blas]
    numba.set_num_threads(n_threads)
    for lib in blas:
        lib.set_num_threads(1)
    try:
        yield n_threads
    finally:
        numba.set_num_threads(previous)
        for lib, count in zip(blas, blas_previous):
            lib.set_num_threads(count)

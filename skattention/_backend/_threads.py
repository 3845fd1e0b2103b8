"""Thread budget of the CPU kernels, and what keeps it safe.

Numba's ``prange`` loops are the only thread pool the kernels use. The
matrix products inside them call the BLAS that Numba links (SciPy's
OpenBLAS, a second copy next to NumPy's); that BLAS is held at one thread
while any kernel runs, so the two pools never oversubscribe the cores and the
result of a product does not depend on how many threads the BLAS would pick.

Kernels run in parallel by default (all of Numba's threads, like torch or
``HistGradientBoostingClassifier``). Every kernel has a serial and a
parallel build that give bitwise identical results (iterations of a
``prange`` loop write disjoint outputs, nothing is reduced across them), so
the choice between them below is a pure scheduling decision: it never
changes a prediction or a fitted parameter.

Threading decisions (measured on Linux, numba 0.68, 2 cores):

* **Layer: whatever Numba picks** (``tbb``, then GNU OpenMP ``omp``, then
  ``workqueue``; ``NUMBA_THREADING_LAYER`` is respected). Forcing a layer
  was rejected: ``tbb`` is an extra package (and ``tbbpool`` needs
  ``LD_LIBRARY_PATH`` in a venv), ``workqueue`` alone is unsafe under
  threads, and ``omp`` alone is unsafe under ``fork``. The two rules below
  make all three layers safe.
* **One parallel kernel at a time per process.** A non-blocking lock
  (``_pool_lock``) is taken around each parallel kernel call; a thread that
  finds it held runs the *serial* build of its kernel instead of waiting.
  Without it, ``predict`` from 4 Python threads under ``workqueue`` aborts
  the interpreter ("Concurrent access has been detected", SIGABRT); under
  ``omp`` every thread would start its own team (4 threads x all cores).
  With it, concurrent calls never enter the pool together, on any layer.
* **Serial in a forked child.** GNU OpenMP is not fork-safe: a child forked
  (``os.fork``, ``multiprocessing`` "fork") after the parent had started
  Numba's pool is killed with SIGTERM ("Terminating: fork() called from a
  process already using GNU OpenMP, this is unsafe.") by its first parallel
  kernel, and a ``multiprocessing.Pool`` then waits forever for the lost
  task. An :func:`os.register_at_fork` hook marks such a child, and every
  kernel call in it uses the serial build (thread count 1), so the pool is
  never touched there. Fork workers are usually many, so one thread each is
  also what avoids oversubscription. Measured (tests/test_reliability.py's
  fork script, parent fitted and predicted with 2 threads): without the hook
  the ``os.fork`` child died of SIGTERM after 0.07 s and the
  ``multiprocessing`` fork pool hung until the 30 s deadline; with it the
  child predicted bitwise-equal probabilities in 0.08 s and the pool in
  0.15 s.
  ``spawn``/``forkserver`` children and joblib's loky workers are fresh
  interpreters and run parallel kernels with the thread count joblib gives
  them (``NUMBA_NUM_THREADS``).
* **BLAS limit counted, set from any thread.** The one-thread BLAS limit is
  process-wide, so it is reference-counted: the first kernel in sets it, the
  last one out restores it (a per-call save/restore let one thread restore
  the BLAS while another was still inside a kernel). It is set through
  threadpoolctl's raw setter, because threadpoolctl >= 3.6 silently ignores
  ``set_num_threads`` from any Python thread but its "controlling" one, which
  left the BLAS multi-threaded inside kernels called from worker threads.

Cost: one uncontended lock per kernel call; ``predict`` timings (one call
and 4 threads at once) matched the previous per-call scheme within noise.
"""

import contextlib
import os
import threading

import numba

try:
    from numba.np.ufunc import parallel as _numba_parallel
except ImportError:  # pragma: no cover - layout of another Numba version
    _numba_parallel = None

__all__ = ["kernel_threads", "hold_blas", "default_n_threads", "serial_only"]

_lock = threading.Lock()          # guards the BLAS controllers' lookup
_blas_lock = threading.Lock()     # guards _blas_depth / _blas_saved
_pool_lock = threading.Lock()     # held by the one thread in a parallel kernel
_scipy_blas = None
_blas_depth = 0
_blas_saved = None
_serial_only = False


def _numba_pool_started():
    """Whether Numba's threading layer has been launched in this process."""
    # Unknown Numba internals: assume started (serial is always correct).
    return bool(getattr(_numba_parallel, "_is_initialized", True))


def _after_fork_in_child():
    """Make a forked child safe: fresh locks, serial kernels if the pool ran."""
    global _lock, _blas_lock, _pool_lock, _blas_depth, _serial_only
    # Locks held by other parent threads at the fork would stay held forever.
    _lock = threading.Lock()
    _blas_lock = threading.Lock()
    _pool_lock = threading.Lock()
    if _blas_depth and _blas_saved is not None:
        # The threads that held the BLAS at one thread do not exist here.
        for lib, count in zip(_scipy_blas or (), _blas_saved):
            _set_blas_threads(lib, count)
    _blas_depth = 0
    if _numba_pool_started():
        _serial_only = True


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def serial_only():
    """Whether this process runs only the serial kernel builds.

    Returns
    -------
    serial : bool
        True in a child forked after the parent had started Numba's thread
        pool (see the module notes).
    """
    return _serial_only


def default_n_threads():
    """Thread count the kernels use when the caller does not choose one.

    Returns
    -------
    n_threads : int
        Numba's current thread count for the calling thread (set by
        ``numba.set_num_threads`` or capped by ``NUMBA_NUM_THREADS``, which
        joblib's workers set to their share of the cores); 1 in a forked
        child (see the module notes).
    """
    if _serial_only:
        return 1
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


def _set_blas_threads(lib, count):
    """Set a BLAS's thread count from any Python thread.

    threadpoolctl (>= 3.6) lets only one "controlling" Python thread change a
    process-wide OpenBLAS pool and silently ignores the others, so a kernel
    called from a worker thread would leave the BLAS multi-threaded. The
    counting in :func:`_hold_blas` already coordinates our threads, so the
    limit is set directly.
    """
    setter = getattr(lib, "_real_set_num_threads", None) or lib.set_num_threads
    setter(count)


def _hold_blas():
    """Hold the kernels' BLAS at one thread (counted, so threads may nest)."""
    global _blas_depth, _blas_saved
    with _blas_lock:
        if _blas_depth:
            # Already held (inside a pass): only count.
            _blas_depth += 1
            return
    blas = _scipy_blas_controllers()
    with _blas_lock:
        if _blas_depth == 0:
            _blas_saved = [lib.num_threads for lib in blas]
            for lib in blas:
                _set_blas_threads(lib, 1)
        _blas_depth += 1


def _release_blas():
    """Undo :func:`_hold_blas`; the last kernel out restores the BLAS."""
    global _blas_depth
    with _blas_lock:
        _blas_depth = max(0, _blas_depth - 1)
        if _blas_depth == 0 and _blas_saved is not None:
            for lib, count in zip(_scipy_blas, _blas_saved):
                _set_blas_threads(lib, count)


@contextlib.contextmanager
def hold_blas():
    """Hold the kernels' BLAS at one thread for a block of kernel calls.

    Every :func:`kernel_threads` sets and restores the limit itself (two
    threadpoolctl calls, ~4 us of its ~9 us); inside this block the limit is
    already held, so a pass of many small kernels skips that. Counted like
    the per-kernel hold, so blocks and kernels nest from any thread.
    """
    _hold_blas()
    try:
        yield
    finally:
        _release_blas()


class kernel_threads:
    """Run kernels with up to ``n_threads`` Numba threads and a one-thread BLAS.

    A context manager; ``with kernel_threads(n) as used:``. Callers must run
    the serial build of a kernel when the yielded count is 1 and the
    parallel build otherwise (with the yielded count as its scratch size):
    the count is lowered to 1 in a forked child and while another thread of
    this process is running a parallel kernel (see the module notes). A
    class rather than a generator: a training step enters it ~60 times, and
    the generator protocol cost 1 us of its 3.3 us inside a pass.

    Parameters
    ----------
    n_threads : int
        Threads wanted for ``prange`` loops, at least 1; values above Numba's
        maximum (``numba.config.NUMBA_NUM_THREADS``) are capped.

    Yields
    ------
    n_threads : int
        The thread count actually in force (``numba.get_num_threads()``).
    """

    __slots__ = ("_wanted", "_pool", "_previous", "_used")

    def __init__(self, n_threads):
        self._wanted = n_threads

    def __enter__(self):
        n_threads = max(1, min(int(self._wanted), numba.config.NUMBA_NUM_THREADS))
        pool = None
        if n_threads > 1:
            if _serial_only:
                n_threads = 1
            else:
                pool = _pool_lock
                if not pool.acquire(blocking=False):
                    pool = None
                    n_threads = 1
        try:
            previous = numba.get_num_threads()
            _hold_blas()
            try:
                # Setting an unchanged count still costs ~1 us per call.
                if previous != n_threads:
                    numba.set_num_threads(n_threads)
            except BaseException:
                _release_blas()
                raise
        except BaseException:
            if pool is not None:
                pool.release()
            raise
        self._pool, self._previous, self._used = pool, previous, n_threads
        return n_threads

    def __exit__(self, exc_type, exc, traceback):
        try:
            if self._previous != self._used:
                numba.set_num_threads(self._previous)
        finally:
            try:
                _release_blas()
            finally:
                if self._pool is not None:
                    self._pool.release()
        return False

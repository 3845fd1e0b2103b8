"""Threads, processes, determinism and interruption.

The estimators run parallel kernels by default (``n_jobs=None``). These tests
check that this stays safe and deterministic wherever users call them from:
several Python threads at once, a child forked after the parent used the
thread pool, joblib's loky and threading backends, separate processes, and a
fit cut short by Ctrl-C. The mechanism is described in
``skattention/_backend/_threads.py``.

Anything that could hang (fork) runs in a subprocess under a timeout, so a
hang fails one test instead of the whole suite.
"""

import os
import signal
import subprocess
import sys
import textwrap
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numba
import numpy as np
import pytest
from joblib import Parallel, delayed
from sklearn.exceptions import ConvergenceWarning

from skattention import AttentionClassifier, AttentionRegressor
from skattention._backend import _threads
from skattention._backend._threads import kernel_threads
from skattention._nn import AttentionNetwork

from blas_probe import blas_rows_depend_on_batch

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(d_model=8, n_heads=2, d_ff=16, batch_size=32, max_iter=4, random_state=0,
            learning_rate_init=1e-2)
PARALLEL = numba.config.NUMBA_NUM_THREADS > 1
needs_threads = pytest.mark.skipif(not PARALLEL, reason="needs NUMBA_NUM_THREADS > 1")


def data(n=64, T=7, F=2, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, T, F))
    return X, (X[:, :, 0].sum(axis=1) > 0).astype(int)


def quiet_fit(estimator, X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return estimator.fit(X, y)


@pytest.fixture(scope="module")
def fitted():
    """A classifier fitted with the default n_jobs (parallel kernels), and its data."""
    X, y = data()
    return quiet_fit(AttentionClassifier(**TINY, n_layers=1), X, y), X


def run_python(code, timeout, **env):
    """Run ``code`` in a fresh interpreter; a hang past ``timeout`` fails the test."""
    environment = {**os.environ, "PYTHONPATH": str(ROOT), **env}
    try:
        return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT,
                              env=environment, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"subprocess hung for more than {timeout} s:\n{exc.stdout}\n{exc.stderr}")


# --------------------------------------------------------------------- threads

METHODS = ["predict", "predict_proba", "predict_log_proba", "transform", "explain"]


@pytest.mark.parametrize("method", METHODS)
def test_methods_from_four_threads_at_once_match_a_sequential_call(fitted, method):
    clf, X = fitted
    assert clf.n_jobs is None  # the default: parallel kernels
    expected = getattr(clf, method)(X)
    barrier = threading.Barrier(4)

    def call(_):
        barrier.wait()
        return [getattr(clf, method)(X) for _ in range(3)]

    with ThreadPoolExecutor(4) as pool:
        results = [r for batch in pool.map(call, range(4)) for r in batch]
    assert len(results) == 12
    for result in results:
        np.testing.assert_array_equal(result, expected)


def test_two_estimators_fit_concurrently_in_two_threads():
    X, y = data()
    Xr, yr = data(seed=1)
    yr = Xr[:, :, 1].mean(axis=1)
    make = [lambda: AttentionClassifier(**TINY), lambda: AttentionRegressor(**TINY, n_layers=2)]
    args = [(X, y), (Xr, yr)]
    alone = [quiet_fit(m(), *a) for m, a in zip(make, args)]
    barrier = threading.Barrier(2)

    def fit(i):
        barrier.wait()
        return quiet_fit(make[i](), *args[i])

    with ThreadPoolExecutor(2) as pool:
        together = list(pool.map(fit, range(2)))
    for a, b, (Xi, _) in zip(alone, together, args):
        np.testing.assert_array_equal(a.params_, b.params_)
        np.testing.assert_array_equal(a.predict(Xi), b.predict(Xi))


@needs_threads
def test_kernel_threads_gives_the_pool_to_one_thread_at_a_time():
    inside = threading.Event()
    leave = threading.Event()
    seen = {}

    def holder():
        with kernel_threads(2) as n:
            seen["holder"] = (n, numba.get_num_threads())
            inside.set()
            leave.wait(10)

    thread = threading.Thread(target=holder)
    thread.start()
    try:
        assert inside.wait(10)
        with kernel_threads(2) as n:
            # The pool is busy: this thread gets the serial build.
            seen["other"] = (n, numba.get_num_threads())
    finally:
        leave.set()
        thread.join(10)
    assert seen == {"holder": (2, 2), "other": (1, 1)}
    with kernel_threads(2) as n:  # free again
        assert n == 2


def test_kernel_threads_holds_scipy_blas_at_one_thread_and_restores_it():
    blas = _threads._scipy_blas_controllers()
    if not blas:
        pytest.skip("no SciPy BLAS found by threadpoolctl")
    before = [lib.num_threads for lib in blas]
    entered = threading.Barrier(2)
    leave = threading.Event()

    def nested():
        with kernel_threads(1):
            entered.wait(10)
            leave.wait(10)

    thread = threading.Thread(target=nested)
    thread.start()
    with kernel_threads(1):
        entered.wait(10)
    # The other thread is still inside a kernel: the BLAS stays at one thread.
    assert [lib.num_threads for lib in blas] == [1] * len(blas)
    leave.set()
    thread.join(10)
    assert [lib.num_threads for lib in blas] == before


def test_a_pass_holds_scipy_blas_once_and_restores_it_even_after_an_error():
    from skattention._backend._cpu import CPUBackend

    blas = _threads._scipy_blas_controllers()
    if not blas:
        pytest.skip("no SciPy BLAS found by threadpoolctl")
    before = [lib.num_threads for lib in blas]
    backend = CPUBackend(n_threads=2)
    calls = []
    original = _threads._set_blas_threads

    def counting(lib, count):
        calls.append(count)
        original(lib, count)

    _threads._set_blas_threads = counting
    try:
        with backend.reuse_buffers("pass"):
            assert [lib.num_threads for lib in blas] == [1] * len(blas)
            x = np.ones((300, 8), np.float32)
            for _ in range(5):  # kernels inside the pass do not touch the limit again
                backend.linear_forward(x, np.ones((8, 4), np.float32), None, "identity",
                                       np.empty((300, 4), np.float32))
        assert calls == [1] * len(blas) + before
        with pytest.raises(RuntimeError, match="boom"):
            with backend.reuse_buffers("pass"):
                raise RuntimeError("boom")
    finally:
        _threads._set_blas_threads = original
    assert [lib.num_threads for lib in blas] == before
    assert _threads._blas_depth == 0


def test_kernel_threads_restores_everything_after_an_error():
    before = numba.get_num_threads()
    with pytest.raises(RuntimeError, match="boom"):
        with kernel_threads(2):
            raise RuntimeError("boom")
    assert numba.get_num_threads() == before
    assert _threads._pool_lock.acquire(blocking=False)  # the pool lock was released
    _threads._pool_lock.release()
    assert _threads._blas_depth == 0


# ----------------------------------------------------------------------- fork

FORK_SCRIPT = """
import multiprocessing, os, sys, time, warnings
import numpy as np
warnings.simplefilter("ignore")
from skattention import AttentionClassifier
from skattention._backend import _threads

DISABLE_GUARD = {disable}
if DISABLE_GUARD:  # runs after the package's own hook: undo it
    os.register_at_fork(after_in_child=lambda: setattr(_threads, "_serial_only", False))

rng = np.random.default_rng(0)
X = rng.normal(size=(64, 7, 2))
y = (X[:, :, 0].sum(axis=1) > 0).astype(int)
clf = AttentionClassifier(d_model=8, n_heads=2, d_ff=16, max_iter=3, batch_size=32,
                          random_state=0).fit(X, y)
# Load the serial builds too, so that the child compiles nothing.
clf.set_params(n_jobs=1).predict_proba(X)
clf.set_params(n_jobs=None)
expected = clf.predict_proba(X)  # the parent has now run parallel kernels
import numba
assert numba.get_num_threads() > 1 and _threads._numba_pool_started()

def predict(part):
    return clf.predict_proba(X[part::2])

def check(name, ok):
    print(name, "OK" if ok else "MISMATCH", flush=True)

# os.fork(): the child predicts and reports through its exit status.
start = time.time()
pid = os.fork()
if pid == 0:
    ok = np.array_equal(clf.predict_proba(X), expected) and _threads.serial_only()
    os._exit(0 if ok else 3)
while time.time() - start < {deadline}:
    done, status = os.waitpid(pid, os.WNOHANG)
    if done:
        break
    time.sleep(0.05)
else:
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    print("fork HANG", flush=True)
    sys.exit(1)
code = os.waitstatus_to_exitcode(status)
print("fork exit", code, "%.2f s" % (time.time() - start), flush=True)
if code != 0:
    sys.exit(1)

# multiprocessing with the "fork" start method.
start = time.time()
with multiprocessing.get_context("fork").Pool(2) as pool:
    try:
        parts = pool.map_async(predict, [0, 1]).get(timeout={deadline})
    except multiprocessing.TimeoutError:
        print("pool HANG", flush=True)
        pool.terminate()
        sys.exit(1)
print("pool %.2f s" % (time.time() - start), flush=True)
# Bitwise where this machine's BLAS allows it (tests/blas_probe.py).
same = np.array_equal if {exact} else (lambda a, b: np.allclose(a, b, rtol=1e-5, atol=1e-6))
check("pool", same(parts[0], expected[0::2]) and same(parts[1], expected[1::2]))
"""


@needs_threads
def test_prediction_after_fork_once_the_parent_ran_parallel_kernels():
    script = FORK_SCRIPT.format(disable=False, deadline=30,
                                exact=not blas_rows_depend_on_batch())
    result = run_python(script, timeout=400)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "fork exit 0" in result.stdout
    assert "pool OK" in result.stdout, result.stdout + result.stderr
    assert "Terminating" not in result.stderr


@needs_threads
def test_without_the_fork_guard_the_omp_layer_kills_the_child():
    """The guard is what makes the test above pass (GNU OpenMP layer only)."""
    probe = run_python("import numba, numpy as np\n"
                       "@numba.njit(parallel=True)\n"
                       "def f(a):\n"
                       "    for i in numba.prange(a.size): a[i] = i\n"
                       "f(np.zeros(4)); print(numba.threading_layer())", timeout=120)
    if probe.stdout.strip() != "omp":
        pytest.skip(f"threading layer is {probe.stdout.strip()!r}, not GNU OpenMP")
    script = FORK_SCRIPT.format(disable=True, deadline=15,
                                exact=not blas_rows_depend_on_batch())
    result = run_python(script, timeout=400)
    assert result.returncode != 0
    assert "fork exit -15" in result.stdout or "HANG" in result.stdout, result.stdout


# --------------------------------------------------------------------- joblib

@pytest.mark.parametrize("backend", ["threading", "loky"])
def test_joblib_backends_give_identical_predictions(fitted, backend):
    clf, X = fitted
    expected = clf.predict_proba(X)
    results = Parallel(n_jobs=2, backend=backend, timeout=300)(
        delayed(clf.predict_proba)(X) for _ in range(4))
    for result in results:
        np.testing.assert_array_equal(result, expected)


# ---------------------------------------------------------------- determinism

@pytest.mark.parametrize("cls", [AttentionClassifier, AttentionRegressor])
def test_same_random_state_is_bitwise_reproducible_across_fits_and_n_jobs(cls):
    X, y = data(n=80)
    if cls is AttentionRegressor:
        y = X[:, :, 0].mean(axis=1)
    params = dict(TINY, n_layers=2, dropout=0.1)
    fits = [quiet_fit(cls(**params, n_jobs=n_jobs), X, y) for n_jobs in (None, None, 1, 2)]
    for other in fits[1:]:
        np.testing.assert_array_equal(other.params_, fits[0].params_)
        np.testing.assert_array_equal(other.predict(X), fits[0].predict(X))
        assert other.loss_curve_ == fits[0].loss_curve_


def test_same_random_state_is_bitwise_reproducible_across_processes(tmp_path):
    X, y = data(n=80)
    clf = quiet_fit(AttentionClassifier(**TINY, n_layers=2, dropout=0.1), X, y)
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", y)
    code = f"""
    import warnings
    import numpy as np
    warnings.simplefilter("ignore")
    from skattention import AttentionClassifier
    X, y = np.load({str(tmp_path / 'X.npy')!r}), np.load({str(tmp_path / 'y.npy')!r})
    clf = AttentionClassifier(**{TINY!r}, n_layers=2, dropout=0.1).fit(X, y)
    np.save({str(tmp_path / 'params.npy')!r}, clf.params_)
    np.save({str(tmp_path / 'proba.npy')!r}, clf.predict_proba(X))
    """
    result = run_python(code, timeout=400)
    assert result.returncode == 0, result.stderr
    np.testing.assert_array_equal(np.load(tmp_path / "params.npy"), clf.params_)
    np.testing.assert_array_equal(np.load(tmp_path / "proba.npy"), clf.predict_proba(X))


# ------------------------------------------------------------------- Ctrl-C

def interrupt_on_call(monkeypatch, owner, name, at, how):
    """Make ``owner.name`` raise KeyboardInterrupt (or deliver SIGINT) on call ``at``."""
    original = getattr(owner, name)
    calls = []

    def wrapper(*args, **kwargs):
        calls.append(1)
        if len(calls) == at:
            if how == "signal":
                # A real Ctrl-C: the default SIGINT handler raises
                # KeyboardInterrupt at the next bytecode of this thread.
                signal.raise_signal(signal.SIGINT)
            else:
                raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, wrapper)
    return calls


@pytest.mark.parametrize("target, expected_epochs", [
    # 64 samples, batch_size 32: two backward calls per epoch, so the third
    # is inside epoch 2 and only epoch 1 completed.
    ("backward", 1),
    # The third epoch is interrupted before it starts.
    ("run_epoch", 2),
])
@pytest.mark.parametrize("how", ["raise", "signal"])
def test_keyboard_interrupt_during_fit_keeps_a_usable_model(monkeypatch, target,
                                                            expected_epochs, how):
    if how == "signal" and threading.current_thread() is not threading.main_thread():
        pytest.skip("SIGINT is delivered to the main thread only")
    if how == "signal" and signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        pytest.skip("SIGINT handler replaced by the test runner")
    import skattention.estimators._base as base

    owner = AttentionNetwork if target == "backward" else base
    calls = interrupt_on_call(monkeypatch, owner, target, 3, how)
    X, y = data()
    clf = AttentionClassifier(**{**TINY, "max_iter": 10})
    try:
        with pytest.warns(UserWarning, match="interrupted"):
            clf.fit(X, y)
    except KeyboardInterrupt:  # must not end the test session
        pytest.fail("KeyboardInterrupt escaped from fit")
    assert len(calls) == 3
    assert clf.n_iter_ == expected_epochs
    assert len(clf.loss_curve_) == expected_epochs
    assert np.isfinite(clf.params_).all()
    proba = clf.predict_proba(X)
    assert np.isfinite(proba).all()
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert set(clf.predict(X)) <= set(clf.classes_)
    assert clf.attention_weights_.shape == (X.shape[0], X.shape[1])
    # Training can go on from where it stopped.
    monkeypatch.undo()
    clf.partial_fit(X, y)
    assert clf.n_iter_ == expected_epochs + 1

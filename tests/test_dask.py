"""Scaling out with Dask: distributed grid search and batch prediction.

A real ``dask.distributed.LocalCluster`` (2 worker processes x 1 thread, on
loopback) is started by the tests themselves. Checked:

* ``GridSearchCV`` / ``RandomizedSearchCV`` under
  ``joblib.parallel_config(backend="dask")`` give exactly the sequential
  search's ``cv_results_``, ``best_params_`` and best-estimator predictions
  (the estimators are deterministic for a fixed ``random_state`` and bitwise
  identical across thread counts);
* the workers' Numba thread pools fit the cores (``NUMBA_NUM_THREADS`` is set
  for them: dask itself only sets OMP/MKL/OpenBLAS to 1);
* prediction over a dask array (``map_blocks``) or a dask DataFrame column
  (``map_partitions``), and through dask-ml's ``ParallelPostFit``, equals the
  in-memory ``predict``.

The module skips where ``distributed`` is not installed, unless
``SKATTENTION_REQUIRE_DASK=1`` (set by the CI job that installs the ``dask``
extra), where a missing dask is an error rather than a silent skip.
"""

import operator
import os
import sys

import numpy as np
import pytest

if os.environ.get("SKATTENTION_REQUIRE_DASK") == "1":
    try:
        import distributed  # noqa: F401
    except ImportError as exc:  # pragma: no cover - only in a broken CI job
        raise ImportError(
            "SKATTENTION_REQUIRE_DASK=1 but dask.distributed cannot be imported; "
            "install the 'dask' extra (python -m pip install '.[dask]')."
        ) from exc
else:
    pytest.importorskip("distributed")

import dask.array as da  # noqa: E402
import dask.dataframe as dd  # noqa: E402
import joblib  # noqa: E402
import pandas as pd  # noqa: E402
from distributed import Client, LocalCluster, get_task_stream  # noqa: E402
from scipy.stats import loguniform  # noqa: E402
from sklearn.model_selection import GridSearchCV, RandomizedSearchCV  # noqa: E402

from skattention import AttentionClassifier, TextAttentionClassifier  # noqa: E402

from blas_probe import assert_same_predictions  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

N_WORKERS = 2
SMALL = dict(d_model=8, max_iter=5, random_state=0, n_jobs=1)
GRID = {"n_heads": [1, 2], "attention_score": ["scaled_dot", "general"]}


def _cores():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _worker_threads():
    """Numba threads per worker so that workers x threads fit the cores."""
    return max(1, _cores() // N_WORKERS)


@pytest.fixture(scope="module")
def client():
    """A 2-process loopback cluster, its workers' Numba pools sized to the cores."""
    saved_environ = dict(os.environ)
    # Workers are spawned, so they inherit this process's environment
    # (NUMBA_CACHE_DIR, PYTHONPATH) and load the kernels the sequential
    # searches compiled into the on-disk cache. ``env`` is applied in each
    # worker before it imports anything of ours, hence before Numba reads
    # NUMBA_NUM_THREADS.
    cluster = LocalCluster(
        n_workers=N_WORKERS, threads_per_worker=1, processes=True, host="127.0.0.1",
        dashboard_address=None, worker_dashboard_address=None,
        env={"NUMBA_NUM_THREADS": str(_worker_threads())},
    )
    client = Client(cluster)
    try:
        yield client
    finally:
        client.close()
        cluster.close()
        # The nanny writes its pre-spawn variables (OMP_NUM_THREADS=1, ...) into
        # this process's environment; later tests' subprocesses must not see them.
        os.environ.clear()
        os.environ.update(saved_environ)


def _numeric_data(n=60, length=10, n_features=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, length, n_features)).astype(np.float32)
    y = (X[:, :, 0].mean(axis=1) > 0).astype(np.int64)
    return X, y


def _text_data(n=60, seed=0):
    rng = np.random.default_rng(seed)
    words = np.array(["good", "bad", "great", "awful", "fine", "meh", "ok", "the", "a", "film"])
    docs = [" ".join(rng.choice(words, size=int(rng.integers(2, 9)))) for _ in range(n)]
    y = np.array(["pos" if ("good" in d or "great" in d) else "neg" for d in docs])
    return docs, y


def _assert_same_search(sequential, distributed_search, X):
    results_a, results_b = sequential.cv_results_, distributed_search.cv_results_
    assert results_a.keys() == results_b.keys()
    for key in results_a:
        if key.endswith("_time"):
            continue
        if key == "params":
            assert results_a[key] == results_b[key]
        else:
            np.testing.assert_array_equal(np.asarray(results_a[key]),
                                          np.asarray(results_b[key]), err_msg=key)
    assert sequential.best_params_ == distributed_search.best_params_
    assert sequential.best_index_ == distributed_search.best_index_
    np.testing.assert_array_equal(sequential.best_estimator_.predict(X),
                                  distributed_search.best_estimator_.predict(X))
    np.testing.assert_array_equal(sequential.best_estimator_.predict_proba(X),
                                  distributed_search.best_estimator_.predict_proba(X))


def _check_numba_threads():
    import numba

    return {"config": numba.config.NUMBA_NUM_THREADS, "threads": numba.get_num_threads(),
            "env": os.environ.get("NUMBA_NUM_THREADS"),
            "omp": os.environ.get("OMP_NUM_THREADS")}


def _ran_skattention():
    return "skattention" in sys.modules


def test_workers_numba_threads_within_budget(client):
    info = client.run(_check_numba_threads)
    assert len(info) == N_WORKERS
    for worker in info.values():
        assert worker["env"] == str(_worker_threads())
        assert worker["config"] == _worker_threads()
        assert worker["threads"] == _worker_threads()
        assert worker["omp"] == "1"  # set by dask itself
    total = sum(worker["threads"] for worker in info.values())  # 1 dask thread each
    assert total <= max(_cores(), N_WORKERS)


def _scoring():
    # Log-loss depends on every probability bit, not only on the labels.
    return {"accuracy": "accuracy", "nll": "neg_log_loss"}


def test_grid_search_on_dask_matches_sequential(client):
    X, y = _numeric_data()

    def search():
        return GridSearchCV(AttentionClassifier(**SMALL), GRID, cv=2, scoring=_scoring(),
                            refit="nll", return_train_score=True, error_score="raise",
                            n_jobs=-1)

    # Sequential first: it also warms the on-disk kernel cache the workers read.
    sequential = search().set_params(n_jobs=1).fit(X, y)
    with get_task_stream(client) as tasks, joblib.parallel_config(backend="dask"):
        on_dask = search().fit(X, y)
    # The fits ran on the cluster (joblib may batch the 4 x 2 fits into fewer tasks).
    assert tasks.data and {task["worker"] for task in tasks.data} <= set(client.run(os.getpid))
    assert any(client.run(_ran_skattention).values())
    _assert_same_search(sequential, on_dask, X)


def test_randomized_search_text_on_dask_matches_sequential(client):
    docs, y = _text_data()
    distributions = {"n_heads": [1, 2], "attention_score": ["scaled_dot", "general"],
                     "learning_rate_init": loguniform(1e-3, 1e-1)}

    def search(n_jobs):
        return RandomizedSearchCV(
            TextAttentionClassifier(**SMALL), distributions, n_iter=4, cv=2,
            scoring=_scoring(), refit="nll", random_state=0, error_score="raise",
            n_jobs=n_jobs)

    sequential = search(1).fit(docs, y)
    with get_task_stream(client) as tasks, joblib.parallel_config(backend="dask"):
        on_dask = search(-1).fit(docs, y)
    assert tasks.data
    _assert_same_search(sequential, on_dask, docs)


@pytest.fixture(scope="module")
def fitted_numeric():
    X, y = _numeric_data(n=90, seed=1)
    return AttentionClassifier(n_heads=2, **SMALL).fit(X, y), X


@pytest.fixture(scope="module")
def fitted_text():
    docs, y = _text_data(n=90, seed=1)
    return TextAttentionClassifier(n_heads=2, **SMALL).fit(docs, y), docs


def test_map_blocks_predict_equals_in_memory(client, fitted_numeric):
    model, X = fitted_numeric
    X_dask = da.from_array(X, chunks=(25, -1, -1))  # chunked along samples only
    expected = model.predict(X)
    labels = X_dask.map_blocks(model.predict, drop_axis=[1, 2], dtype=expected.dtype)
    np.testing.assert_array_equal(labels.compute(), expected)
    proba = X_dask.map_blocks(model.predict_proba, drop_axis=2,
                              chunks=(X_dask.chunks[0], (len(model.classes_),)),
                              dtype=np.float64)
    assert_same_predictions(proba.compute(), model.predict_proba(X))


def test_map_partitions_text_column_equals_in_memory(client, fitted_text):
    model, docs = fitted_text
    frame = dd.from_pandas(pd.DataFrame({"text": docs, "id": np.arange(len(docs))}),
                           npartitions=4)
    expected = model.predict(docs)
    labels = frame["text"].map_partitions(model.predict, meta=("text", expected.dtype))
    np.testing.assert_array_equal(np.asarray(labels.compute()), expected)


def _as_sequences(X):
    """(n, T * F) rows back to (n, T, F) sequences (T=10, F=3 here)."""
    return X.reshape(X.shape[0], 10, 3)


def test_parallel_post_fit_equals_in_memory(client, fitted_numeric, fitted_text):
    """dask-ml's ParallelPostFit assumes 2D ``(n_samples, n_features)`` input.

    ``predict`` maps blocks with ``drop_axis=1``, so a 3D array or a 1D
    array of documents fails, and a dask *Series* is not recognised (only a
    DataFrame is), so it would be computed whole on the client. The working
    forms: flattened sequences with a reshaping step, and a DataFrame with a
    column-selecting step.
    """
    wrappers = pytest.importorskip("dask_ml.wrappers")
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer

    # Pipelines of already-fitted steps: fitting them would refit the model.
    model, X = fitted_numeric
    reshape = FunctionTransformer(_as_sequences).fit(X.reshape(len(X), -1))
    flat = Pipeline([("reshape", reshape), ("model", model)])
    X_flat = da.from_array(X.reshape(len(X), -1), chunks=(25, -1))
    wrapped = wrappers.ParallelPostFit(flat, predict_meta=np.array([], dtype=np.int64))
    np.testing.assert_array_equal(wrapped.predict(X_flat).compute(), model.predict(X))

    text_model, docs = fitted_text
    select = FunctionTransformer(operator.itemgetter("text")).fit(pd.DataFrame({"text": docs}))
    pipeline = Pipeline([("select", select), ("model", text_model)])
    frame = dd.from_pandas(pd.DataFrame({"text": docs}), npartitions=3)
    wrapped = wrappers.ParallelPostFit(pipeline, predict_meta=np.array([], dtype=object))
    labels = wrapped.predict(frame)
    assert isinstance(labels, (dd.Series, da.Array))  # lazy: it runs on the workers
    np.testing.assert_array_equal(np.asarray(labels.compute()), text_model.predict(docs))

"""Estimators on the CUDA backend, end to end, against the CPU backend.

Runs where ``numba.cuda`` is usable: on a GPU, or on Numba's CUDA simulator
(``NUMBA_ENABLE_CUDASIM=1``), which ``tests/test_cuda_simulated.py`` starts
in a subprocess so that a plain ``pytest`` run covers this module too.
"""

import pickle

import numpy as np
import pytest

cuda = pytest.importorskip("numba.cuda")
if not cuda.is_available():
    pytest.skip("no CUDA device and the CUDA simulator is off", allow_module_level=True)

from skattention import (  # noqa: E402
    AttentionClassifier,
    AttentionRegressor,
    TextAttentionClassifier,
    load,
    save,
)
from skattention._backend import (  # noqa: E402
    _cuda_arrays,
    _cuda_attention,
    _cuda_layers,
    _cuda_training,
    resolve_device,
)
from skattention._nn._network import build_layout  # noqa: E402

SIMULATED = bool(__import__("numba").config.ENABLE_CUDASIM)

# Tiny on purpose: the simulator runs one OS thread per CUDA thread, and each
# kernel launch of a layer-norm or GEMM costs it tens of milliseconds per block.
SMALL = dict(d_model=4, n_heads=2, d_ff=4, batch_size=4, max_iter=2, random_state=0, n_jobs=1,
             learning_rate_init=1e-2)


@pytest.fixture(autouse=True)
def small_blocks(monkeypatch):
    """Tiny blocks on the simulator, so that small data still spans several blocks."""
    if not SIMULATED:
        return  # on a GPU the launch sizes are compiled in
    for module, name, value in [
            (_cuda_arrays, "THREADS", 8), (_cuda_arrays, "COLUMN_ROWS", 3),
            (_cuda_layers, "TILE", 4), (_cuda_layers, "TILE_PAD", 5),
            (_cuda_layers, "NORM_THREADS", 4), (_cuda_layers, "SPLIT_ROWS", 5),
            (_cuda_layers, "MAX_SPLITS", 3), (_cuda_training, "NORM_THREADS", 4),
            (_cuda_attention, "THREADS", 4), (_cuda_attention, "TILE", 3),
            (_cuda_attention, "POOL_THREADS", 4), (_cuda_attention, "REDUCE_THREADS", 4)]:
        monkeypatch.setattr(module, name, value)


def _comparable(model):
    """Fitted parameters without the key biases of the self-attention layers.

    A key bias shifts every score of a query by the same amount, so softmax
    ignores it and its exact gradient is 0: what the two backends compute
    there is rounding noise (~1e-9), which Adam normalises into full-size
    steps of arbitrary sign. Every other parameter must agree.
    """
    layout = build_layout(model._config)
    keep = np.ones(layout.size, dtype=bool)
    d = model._config.d_model
    for i in range(model._config.n_layers):
        block = layout.slice(f"layers.{i}.attn.qkv.bias")
        keep[block.start + d: block.start + 2 * d] = False
    return model.params_[keep]


def _sequences(n=5, length=3, n_features=2, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, length, n_features))
    X[::3, -1:] = np.nan  # unequal lengths as NaN padding
    X[0, 0, 0] = 3.0  # both classes present
    X[1, :, 0] = -3.0
    y = (np.nan_to_num(X[:, :, 0]).sum(axis=1) > 0).astype(int)
    return X, y


def _fit_both(make, X, y):
    cpu = make(device="cpu").fit(X, y)
    gpu = make(device="cuda").fit(X, y)
    return cpu, gpu


def test_classifier_trains_on_cuda_like_on_the_cpu_and_travels_as_host_arrays(tmp_path):
    X, y = _sequences()
    make = lambda **kw: AttentionClassifier(**SMALL, **kw)  # noqa: E731
    cpu, gpu = _fit_both(make, X, y)
    assert gpu.device_ == "cuda" and cpu.device_ == "cpu"
    assert isinstance(gpu.params_, np.ndarray)
    np.testing.assert_allclose(_comparable(gpu), _comparable(cpu), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(gpu.loss_curve_, cpu.loss_curve_, rtol=1e-4)
    proba = gpu.predict_proba(X)
    np.testing.assert_allclose(proba, cpu.predict_proba(X), atol=1e-5)
    np.testing.assert_allclose(gpu.transform(X), cpu.transform(X), atol=1e-5)
    np.testing.assert_allclose(gpu.attention_weights_, cpu.attention_weights_, atol=1e-5)

    payload = pickle.dumps(gpu)
    assert b"numba" not in payload  # no device array, dispatcher or numba.cuda object inside
    np.testing.assert_array_equal(pickle.loads(payload).params_, gpu.params_)
    path = tmp_path / "model.skat"
    save(gpu, path)
    np.testing.assert_array_equal(load(path).params_, gpu.params_)


def test_regressor_with_additive_score_mean_pooling_dropout_and_scaling_matches_cpu():
    X, _ = _sequences(seed=1)
    y = np.nan_to_num(X[:, :, 1]).mean(axis=1)
    make = lambda **kw: AttentionRegressor(  # noqa: E731
        attention_score="additive", pooling="mean", dropout=0.1, positional="learned",
        length_scaling="sqrt", store_attention_weights=False, **dict(SMALL, max_iter=1), **kw)
    cpu, gpu = _fit_both(make, X, y)
    np.testing.assert_allclose(_comparable(gpu), _comparable(cpu), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(gpu.predict(X), cpu.predict(X), atol=1e-5)


def test_text_classifier_on_cuda_matches_the_cpu():
    texts = ["good film", "bad film", "really good", "really bad", "good", "bad"]
    y = [1, 0, 1, 0, 1, 0]
    make = lambda **kw: TextAttentionClassifier(**dict(SMALL, max_iter=1), **kw)  # noqa: E731
    cpu, gpu = _fit_both(make, texts, y)
    np.testing.assert_allclose(_comparable(gpu), _comparable(cpu), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(gpu.predict_proba(texts), cpu.predict_proba(texts), atol=1e-5)


def test_same_random_state_gives_the_same_model_and_partial_fit_continues():
    X, y = _sequences()
    # No encoder layer: the layers' kernels are covered above, this is about the optimizer.
    settings = dict(SMALL, max_iter=1, n_layers=0, store_attention_weights=False)
    first = AttentionClassifier(device="cuda", **settings).partial_fit(X, y, classes=[0, 1])
    second = AttentionClassifier(device="cuda", **settings).partial_fit(X, y, classes=[0, 1])
    np.testing.assert_array_equal(first.params_, second.params_)
    first.partial_fit(X, y)
    assert first.n_iter_ == 2
    assert all(isinstance(m, np.ndarray) for m in first._optimizer_state[1].values())
    assert not np.array_equal(first.params_, second.params_)


@pytest.mark.skipif(not SIMULATED, reason="on a real GPU 'auto' rightly picks it")
def test_auto_never_picks_the_simulator():
    assert resolve_device("auto") == "cpu"
    assert resolve_device("cuda") == "cuda"

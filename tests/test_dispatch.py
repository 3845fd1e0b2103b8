"""Device resolution and the backend seam."""

import numba
import pytest

from skattention._backend import get_backend, resolve_device
from skattention._backend._cpu import CPUBackend


def test_cpu_and_auto_resolve_to_cpu_without_a_gpu():
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") == "cpu"
    backend = get_backend("auto", n_threads=1)
    assert isinstance(backend, CPUBackend) and backend.name == "cpu"
    assert backend.n_threads == 1


def test_cuda_request_gives_an_error_that_says_what_to_do():
    with pytest.raises(RuntimeError, match=r"device='cuda' cannot be used.*device='cpu'"):
        resolve_device("cuda")


@pytest.mark.parametrize("device", ["gpu", "CPU", None, 0])
def test_unknown_device_is_rejected_by_name(device):
    with pytest.raises(ValueError, match="device must be one of"):
        resolve_device(device)


def test_default_thread_count_follows_numba():
    assert get_backend("cpu").n_threads == numba.get_num_threads()
    assert get_backend("cpu", n_threads=0).n_threads == 1


def test_run_picks_the_serial_build_for_one_thread_and_parallel_otherwise():
    calls = []

    def serial(*args):
        calls.append(("serial", numba.get_num_threads()))

    def parallel(*args):
        calls.append(("parallel", numba.get_num_threads()))

    CPUBackend(n_threads=1).run(serial, parallel)
    CPUBackend(n_threads=2).run(serial, parallel)
    assert calls[0] == ("serial", 1)
    expected_parallel = min(2, numba.config.NUMBA_NUM_THREADS)
    assert calls[1][0] == ("parallel" if expected_parallel > 1 else "serial")
    assert calls[1][1] == expected_parallel


def test_a_gpu_fitted_model_predicts_on_a_machine_without_a_gpu(tmp_path):
    # A model fitted with device="cuda" holds host parameters and device_="cuda"
    # (tests/test_cuda_estimators.py proves both on the simulator). Here no
    # GPU is usable, so its predictions must come from the CPU kernels, also
    # after save/load.
    import numpy as np

    from skattention import AttentionClassifier, load, save
    from skattention._backend import cuda_unavailable_reason

    if cuda_unavailable_reason() is None:
        pytest.skip("a CUDA device (or the simulator) is usable here")
    rng = np.random.default_rng(0)
    X = rng.normal(size=(20, 5, 2))
    y = (X[:, :, 0].sum(axis=1) > 0).astype(int)
    model = AttentionClassifier(d_model=8, n_heads=2, max_iter=3, random_state=0,
                                device="cpu").fit(X, y)
    expected = model.predict_proba(X)
    model.device_ = "cuda"
    np.testing.assert_array_equal(model.predict_proba(X), expected)
    path = tmp_path / "gpu-model.skat"
    save(model, path)
    with pytest.warns(UserWarning, match="cuda"):
        loaded = load(path)
    assert (loaded.device_, loaded.fitted_device_) == ("cpu", "cuda")
    np.testing.assert_array_equal(loaded.predict_proba(X), expected)

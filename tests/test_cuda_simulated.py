"""Run the CUDA test modules on Numba's CUDA simulator, from a plain pytest run.

Numba reads ``NUMBA_ENABLE_CUDASIM`` once, when it is imported, so the
simulator cannot be switched on inside this process: the CUDA modules run in
a child pytest with it set. There they execute every CUDA kernel (as Python
threads, one per CUDA thread) and compare it with the CPU backend.
"""

import os
import subprocess
import sys

import numba
import pytest

CUDA_MODULES = ["test_cuda_attention.py", "test_cuda_layers.py", "test_cuda_estimators.py"]
HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.mark.skipif(bool(numba.config.ENABLE_CUDASIM),
                    reason="already on the simulator: the CUDA modules run directly")
def test_cuda_modules_pass_on_the_simulator():
    pytest.importorskip("numba_cuda", reason="the numba-cuda package is not installed")
    modules = [os.path.join(HERE, name) for name in CUDA_MODULES]
    missing = [m for m in modules if not os.path.exists(m)]
    assert not missing, missing
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1")
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs", *modules],
        env=env, capture_output=True, text=True, timeout=1200)
    output = result.stdout[-6000:] + result.stderr[-2000:]
    assert result.returncode == 0, output
    # A module skipped as a whole would pass silently; on the simulator every test runs.
    assert "SKIPPED" not in result.stdout, output
    assert " passed" in result.stdout, output

"""Every numba.cuda kernel of the package compiles to PTX, without a GPU.

Each ``skattention/_backend/_cuda_*.py`` module lists its kernels in
``PTX_KERNELS`` as ``(name, dispatcher, float32 signature)``; each is
compiled with ``numba.cuda.compile_ptx(dispatcher.py_func, signature,
cc=(9, 0))``. The simulator runs arbitrary Python, so this is what catches
kernels that a real GPU would reject (Python objects, non-constant shared
array shapes, calls that need a driver at compile time).

Needs numba-cuda and the NVRTC/NVVM libraries (``pip install
"cuda-toolkit[nvrtc,nvvm,cccl,cudart]==13.*" nvidia-nvjitlink``), and a run
without ``NUMBA_ENABLE_CUDASIM=1``. A missing compiler skips, unless
``SKATTENTION_REQUIRE_PTX=1`` (set in CI), where it fails.
"""

import importlib
import importlib.util
import os
from pathlib import Path

import pytest

import skattention._backend as backend_package

pytestmark = pytest.mark.ptx

CC = (9, 0)
MODULES = sorted(path.stem for path in Path(backend_package.__file__).parent.glob("_cuda_*.py"))


def _have_numba_cuda():
    return importlib.util.find_spec("numba_cuda") is not None


def _kernel_params():
    """``pytest.param(module, name)`` for every listed kernel (collected without compiling)."""
    if not _have_numba_cuda():
        return [pytest.param(None, None, marks=pytest.mark.skip(reason="numba-cuda missing"))]
    params = []
    for module_name in MODULES:
        module = importlib.import_module(f"skattention._backend.{module_name}")
        for name, _, _ in getattr(module, "PTX_KERNELS", ()):
            params.append(pytest.param(module_name, name, id=f"{module_name}.{name}"))
    return params


@pytest.fixture(scope="module")
def compile_ptx():
    """``numba.cuda.compile_ptx``, once it is known to work here."""
    if not _have_numba_cuda():
        _unavailable("numba-cuda is not installed (pip install \"skattention[cuda]\")")
    import numba

    if numba.config.ENABLE_CUDASIM:
        pytest.skip("compile_ptx needs the real CUDA target; unset NUMBA_ENABLE_CUDASIM")
    from numba import cuda

    def probe(x, value):
        x[0] = value

    try:
        cuda.compile_ptx(probe, "float32[::1], float32", cc=CC)
    except Exception as exc:  # the NVRTC/NVVM libraries are missing or unusable
        message = " ".join(str(exc).split())
        if "nvrtc" in message.lower() or "nvvm" in message.lower():
            _unavailable(f"the CUDA compiler libraries are missing: {message} (pip install "
                         "\"cuda-toolkit[nvrtc,nvvm,cccl,cudart]==13.*\" nvidia-nvjitlink)")
        raise
    return cuda.compile_ptx


def _unavailable(reason):
    if os.environ.get("SKATTENTION_REQUIRE_PTX") == "1":
        pytest.fail(f"{reason}; SKATTENTION_REQUIRE_PTX=1 requires the PTX check")
    pytest.skip(reason)


def test_every_cuda_module_lists_its_kernels():
    if not _have_numba_cuda():
        pytest.skip("numba-cuda is not installed")
    import numba

    if numba.config.ENABLE_CUDASIM:
        pytest.skip("the simulator has no CUDA dispatchers to inspect")
    from numba.cuda.dispatcher import CUDADispatcher

    assert "_cuda_layers" in MODULES and "_cuda_attention" in MODULES
    for module_name in MODULES:
        module = importlib.import_module(f"skattention._backend.{module_name}")
        listed = {id(kernel) for _, kernel, _ in module.PTX_KERNELS}
        names = [name for name, _, _ in module.PTX_KERNELS]
        assert len(names) == len(set(names)), f"{module_name}: duplicate PTX_KERNELS names"
        # Every module-level kernel (not device function) is compiled below.
        for attr, value in vars(module).items():
            if isinstance(value, CUDADispatcher) and not value.targetoptions.get("device"):
                assert id(value) in listed, f"{module_name}.{attr} is missing from PTX_KERNELS"


@pytest.mark.parametrize("module_name, name", _kernel_params())
def test_kernel_compiles_to_ptx(compile_ptx, module_name, name):
    module = importlib.import_module(f"skattention._backend.{module_name}")
    (kernel, signature), = [(k, s) for n, k, s in module.PTX_KERNELS if n == name]
    ptx, _ = compile_ptx(kernel.py_func, signature, cc=CC)
    assert ".entry" in ptx

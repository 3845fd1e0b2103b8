"""Importing skattention: cheap, side-effect free, robust to a read-only cache."""

import os
import subprocess
import sys
import textwrap

import pytest


def _run(code, env_update=None):
    env = dict(os.environ)
    env.update(env_update or {})
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env,
                          capture_output=True, text=True, timeout=300)


def test_import_loads_neither_cuda_nor_matplotlib():
    result = _run("""
        import sys
        import skattention
        import skattention.functional
        bad = [m for m in sys.modules if m.startswith(("numba.cuda", "numba_cuda", "matplotlib"))]
        assert not bad, bad
        print(skattention.__version__)
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == __import__("skattention").__version__


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="needs an unwritable /proc")
def test_import_and_compute_with_an_unwritable_cache_dir():
    # Not even root can create folders under /proc.
    result = _run("""
        import numpy as np
        from skattention.functional import attention
        q = np.ones((1, 1, 2, 3))
        context, weights = attention(q, q, q)
        assert np.allclose(weights, 0.5)
    """, {"NUMBA_CACHE_DIR": "/proc/skattention-no-cache-here"})
    assert result.returncode == 0, result.stderr


def test_jit_falls_back_to_an_uncached_build_when_no_cache_locator_exists():
    # Numba raises RuntimeError while decorating when no cache folder is
    # writable; simulate exactly that in a fresh interpreter.
    result = _run("""
        import warnings
        import numba
        real_njit = numba.njit

        def njit_without_locator(*args, cache=False, **kwargs):
            if cache:
                def deco(f):
                    raise RuntimeError(f"cannot cache function {f.__name__!r}: "
                                       "no locator available for file")
                return deco
            return real_njit(*args, **kwargs)

        numba.njit = njit_without_locator
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            import numpy as np
            from skattention.functional import attention
            q = np.ones((1, 1, 2, 3))
            context, weights = attention(q, q, q)
        assert np.allclose(weights.sum(-1), 1.0)
        messages = [str(w.message) for w in caught]
        assert any("on-disk cache disabled" in m for m in messages), messages
    """)
    assert result.returncode == 0, result.stderr


def test_cache_can_be_switched_off_by_environment():
    result = _run("""
        from skattention._backend import _cpu_attention as attn
        assert type(attn.dot_attention_forward_serial._cache).__name__ == "NullCache"
    """, {"SKATTENTION_NUMBA_CACHE": "0"})
    assert result.returncode == 0, result.stderr

"""Shared fixtures and hypothesis settings for the test suite."""

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

# Kernels compile on first use; a property test's first example pays for it.
settings.register_profile(
    "skattention",
    deadline=None,
    max_examples=int(os.environ.get("SKATTENTION_HYPOTHESIS_EXAMPLES", "30")),
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=True,
)
settings.load_profile("skattention")


@pytest.fixture
def rng():
    """A fresh, seeded random generator for each test."""
    return np.random.default_rng(12345)


def pytest_configure(config):
    """Register the markers that only some CI jobs select."""
    config.addinivalue_line(
        "markers", "ptx: compiles every numba.cuda kernel to PTX (needs NVRTC, no GPU)")

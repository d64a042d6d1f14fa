"""Shared fixtures: tiny random-weight models of every supported architecture, stand-ins on demand."""

import os
from pathlib import Path

import pytest

os.environ.setdefault("RESIDUAL_RESPONSE_CACHE", str(Path(__file__).resolve().parents[1] / ".cache"))

ARCHITECTURES = ("gpt2", "llama", "gemma2", "gemma3")


@pytest.fixture(scope="session", params=ARCHITECTURES)
def random_lm(request):
    """A seeded 4-block random model of each architecture (float32)."""
    from residual_response.models import build_random_model

    return build_random_model(request.param, seed=0)


@pytest.fixture(scope="session", params=ARCHITECTURES)
def random_lm64(request):
    """The same architectures in float64 (tight numerical comparisons)."""
    from residual_response.models import build_random_model

    return build_random_model(request.param, seed=0, dtype="float64")


_standins = {}


def standin(name):
    """Load a stand-in once per session."""
    from residual_response.models import load_model

    if name not in _standins:
        _standins[name] = load_model(name)
    return _standins[name]


@pytest.fixture(scope="session")
def smollm2():
    return standin("smollm2-135m")


@pytest.fixture(scope="session")
def gemma3():
    return standin("gemma3-270m")

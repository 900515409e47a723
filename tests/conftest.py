import zlib

import pytest
import torch

import lgdiff


@pytest.fixture(autouse=True)
def _float64_default_and_checks():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    with lgdiff.checks():
        yield
    torch.set_default_dtype(old)


@pytest.fixture
def generator(request) -> torch.Generator:
    """Explicit, per-test, reproducible (crc32 of the test id: str hash() is salted per process)."""
    seed = zlib.crc32(request.node.nodeid.encode())
    return torch.Generator().manual_seed(seed)


@pytest.fixture(params=["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
def device(request) -> torch.device:
    if request.param == "cuda" and not torch.cuda.is_available():
        pytest.skip("CUDA not available")
    return torch.device(request.param)


@pytest.fixture(params=["native", "eager"])
def kernel_path(request, monkeypatch):
    """Run a test with lgdiff's fused native CPU kernels (the default where a compiler is present) and without."""
    from lgdiff import _native

    monkeypatch.setattr(_native, "ENABLED", request.param == "native")
    if request.param == "native" and _native.library() is None:
        pytest.skip(f"native kernels: {_native.status()}")
    return request.param

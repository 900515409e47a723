import pytest
import torch


@pytest.fixture
def one_thread():
    """One torch thread in the test process, as the ranks run (torchrun sets OMP_NUM_THREADS=1)."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)

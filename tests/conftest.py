"""Shared pytest fixtures."""
import pytest
import torch


@pytest.fixture
def one_thread():
    """Tiny networks run as fast on one thread, and one thread is immune to the OpenMP
    spin-wait slow-down of two threads on a shared two-core machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)

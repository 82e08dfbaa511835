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


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A fresh, empty ``$SSL_LAB_HOME`` (rendered splits and zoo artefacts) for one test."""
    monkeypatch.setenv("SSL_LAB_HOME", str(tmp_path / "home"))
    return tmp_path / "home"

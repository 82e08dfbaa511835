"""Shared pytest fixtures.

The notebooks nbval executes evaluate the shipped zoo and never train: ``SSL_LAB_TRAIN=never``
is set for the whole session (the kernels inherit it) unless the caller set it. Unit tests
that train take the ``home`` fixture, which gives them an empty cache and an empty shipped
zoo and allows training.
"""
import os

import pytest
import torch

os.environ.setdefault("SSL_LAB_TRAIN", "never")


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
    """A fresh, empty ``$SSL_LAB_HOME`` (rendered splits and zoo artefacts) and an empty
    shipped zoo (``$SSL_LAB_ZOO``) for one test, with training allowed."""
    monkeypatch.setenv("SSL_LAB_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("SSL_LAB_ZOO", str(tmp_path / "zoo"))
    monkeypatch.setenv("SSL_LAB_TRAIN", "allow")
    return tmp_path / "home"

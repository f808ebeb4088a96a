"""Shared fixtures."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture
def one_thread():
    """One torch thread: tiny tensors gain nothing from the pool, and on a busy 2-core
    machine its threads only contend (use with ``pytestmark = usefixtures(...)``)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(autouse=True, scope="session")
def _replay_store(tmp_path_factory):
    """craft check and craft tracr keep their replay store in the user's cache; tests
    keep theirs in a temporary folder (``CRAFT_CACHE_DIR``)."""
    mp = pytest.MonkeyPatch()
    mp.setenv("CRAFT_CACHE_DIR", str(tmp_path_factory.mktemp("craft-cache")))
    yield
    mp.undo()

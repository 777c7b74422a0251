"""Every model test starts from the same random state, on one CPU thread."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True)
def _deterministic_single_thread() -> Iterator[None]:
    """Seed torch, and run its CPU kernels on one thread for the test.

    The tiny models' kernels are too small to gain from threads, and on a busy machine
    threads waiting for each other made the tests up to 20 times slower.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(threads)

"""Suite-wide: one intra-op torch thread (restored after the session)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread() -> Iterator[None]:
    """Tiny models run faster on one intra-op thread, far faster on a shared, loaded machine; with
    ``-n 2`` each worker then takes one of the two cores instead of fighting over both."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

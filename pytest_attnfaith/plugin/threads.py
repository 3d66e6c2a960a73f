"""pytest-xdist workers share the machine's cores instead of each using all of them.

torch gives every process as many intra-op threads as the machine has cores; ``pytest -n N`` then
runs N times that many threads on the same cores, and the oversubscribed threads wait on each other
(``benchmarks/RESULTS.md``). Each worker therefore lowers its threads to cores ÷ workers (at least 1)
when it starts — unless the user chose the thread count: ``OMP_NUM_THREADS`` or ``MKL_NUM_THREADS``
set in the environment, or fewer threads already set in the process (a lower count is never raised;
a later ``torch.set_num_threads`` in a conftest or fixture wins as usual). The ini key
``attnfaith_xdist_threads = false`` turns this off. torch is imported here, in the worker, only.
"""

from __future__ import annotations

import os

THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
INI_KEY = "attnfaith_xdist_threads"


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity where the platform has it)."""
    affinity = getattr(os, "sched_getaffinity", None)
    return len(affinity(0)) if affinity is not None else os.cpu_count() or 1


def share_cores(workers: int) -> int | None:
    """Lower torch's intra-op threads to cores ÷ ``workers``; the count now set, or None where the user set it."""
    if any(os.environ.get(name) for name in THREAD_VARIABLES):
        return None
    import torch

    share = max(1, available_cores() // max(1, workers))
    if torch.get_num_threads() > share:
        torch.set_num_threads(share)
    return torch.get_num_threads()

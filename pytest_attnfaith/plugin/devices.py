"""pytest-xdist workers pinned to one GPU each.

Worker ``gwK`` (its xdist id, ``PYTEST_XDIST_WORKER``) of a machine with G visible GPUs sees GPU K mod G alone: the plugin sets
``CUDA_VISIBLE_DEVICES`` to that one device when the worker starts, before CUDA is initialised, so ``"cuda"`` (and
``"cuda:0"``) in the worker's tests is its own GPU. A ``CUDA_VISIBLE_DEVICES`` the user set is respected: the workers
share out the devices it lists (``"2,3"``: gw0 → 2, gw1 → 3, gw2 → 2); an empty one means no GPU, and nothing is
pinned. Without it the GPUs are counted from ``/proc/driver/nvidia/gpus`` (no CUDA call, which would fix the device
list before the pin). The ini key ``attnfaith_xdist_gpus = false`` turns this off. No torch here.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, MutableMapping
from pathlib import Path

INI_KEY = "attnfaith_xdist_gpus"
VISIBLE = "CUDA_VISIBLE_DEVICES"
NVIDIA_GPUS = Path("/proc/driver/nvidia/gpus")


def worker_index(name: str | None) -> int | None:
    """K of an xdist worker ``gwK``; None outside a worker."""
    name = name or ""
    return int(name[2:]) if name.startswith("gw") and name[2:].isdigit() else None


def visible_devices(environment: Mapping[str, str], installed: int) -> list[str]:
    """The devices the workers share: those the user listed in ``CUDA_VISIBLE_DEVICES``, else the ``installed``."""
    listed = environment.get(VISIBLE)
    if listed is not None:
        return [device.strip() for device in listed.split(",") if device.strip()]
    return [str(index) for index in range(installed)]


def pinned_device(environment: Mapping[str, str], installed: int, worker: str | None = None) -> str | None:
    """The one device worker K sees (the (K mod G)-th visible one); None outside a worker or without a GPU.
    ``worker``: the worker's id (default: ``PYTEST_XDIST_WORKER``)."""
    index = worker_index(worker if worker is not None else environment.get("PYTEST_XDIST_WORKER"))
    devices = visible_devices(environment, installed)
    if index is None or not devices:
        return None
    return devices[index % len(devices)]


def installed_gpus() -> int:
    """NVIDIA GPUs on this machine, from the driver's ``/proc`` entries (0 without the driver)."""
    return len(list(NVIDIA_GPUS.iterdir())) if NVIDIA_GPUS.is_dir() else 0


def pin_worker(
    environment: MutableMapping[str, str] | None = None, installed: int | None = None, worker: str | None = None
) -> str | None:
    """Set ``CUDA_VISIBLE_DEVICES`` of this worker to its one device; the device, or None when nothing was pinned."""
    environment = os.environ if environment is None else environment
    device = pinned_device(environment, installed_gpus() if installed is None else installed, worker)
    if device is not None:
        environment[VISIBLE] = device
    return device

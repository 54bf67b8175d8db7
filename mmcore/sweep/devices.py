"""Which device and how many CPU threads each of a sweep's parallel runs gets (``--jobs-per-device K``).

Why: the models mmcore trains are small, and one run leaves a GPU mostly idle; K runs on the same
GPU fill it. Each run is a child process, pinned to one GPU by ``CUDA_VISIBLE_DEVICES`` (it then
sees that GPU as ``cuda:0``, so its recipe's ``device: cuda`` needs no change), and the CPU
threads are divided between all runs in flight so that they do not contend for cores. Without a
GPU the "device" is the CPU itself: K runs at a time, threads divided.

``Slots`` hands out slot numbers to runs as they start and takes them back as they end, so a
run always lands on a device with a free place; ``slot_env`` is the environment of one slot.
Both are pure (no torch, no processes), for ``mmcore sweep`` and for studies to share.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass

from mmcore.errors import MMCoreError


def visible_gpus(environ: dict[str, str] | None = None, count: int | None = None) -> list[str]:
    """The GPU ids runs may be pinned to: ``CUDA_VISIBLE_DEVICES``' entries when it is set, else
    ``0 .. count-1`` (``count`` defaults to torch's CUDA device count; 0 without CUDA)."""
    env = os.environ if environ is None else environ
    listed = env.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [d.strip() for d in listed.split(",") if d.strip() and d.strip() != "-1"]
    if count is None:
        import torch

        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return [str(i) for i in range(count)]


@dataclass(frozen=True)
class Placement:
    """``gpus``: the GPU ids (empty: CPU only); ``per_device``: runs sharing each device."""

    gpus: tuple[str, ...]
    per_device: int

    @property
    def slots(self) -> int:
        """Runs in flight at once: K per GPU, or K on the CPU."""
        return self.per_device * max(1, len(self.gpus))

    def device_of(self, slot: int) -> str | None:
        """The GPU id of ``slot`` (slots fill GPU 0, 1, ..., then round again), None on a CPU."""
        if not 0 <= slot < self.slots:
            raise ValueError(f"slot {slot} outside 0..{self.slots - 1}")
        return self.gpus[slot % len(self.gpus)] if self.gpus else None


def placement(jobs_per_device: int, gpus: list[str]) -> Placement:
    """Check ``--jobs-per-device`` and fix the devices it spreads over."""
    if jobs_per_device < 1:
        raise MMCoreError(f"--jobs-per-device: expected an integer >= 1, got {jobs_per_device}")
    return Placement(tuple(gpus), int(jobs_per_device))


def slot_env(place: Placement, slot: int, cpus: int | None = None, environ: dict[str, str] | None = None) -> dict[str, str]:
    """Environment additions for the run in ``slot``: its GPU and its share of the CPU threads.

    A thread count the user set (``OMP_NUM_THREADS``) is kept as it is.
    """
    env = os.environ if environ is None else environ
    out: dict[str, str] = {}
    device = place.device_of(slot)
    if device is not None:
        out["CUDA_VISIBLE_DEVICES"] = device
    if "OMP_NUM_THREADS" not in env and place.slots > 1:
        out["OMP_NUM_THREADS"] = str(max(1, (cpus or os.cpu_count() or 1) // place.slots))
    return out


class Slots:
    """Free slot numbers, taken by a run as it starts and given back as it ends (thread-safe).

    The lowest free slot is handed out first, so with fewer runs than slots every GPU still gets
    one run before any gets a second.
    """

    def __init__(self, place: Placement) -> None:
        self.place = place
        self._free = list(range(place.slots))  # slot s is on GPU s % n: lowest-first spreads over GPUs
        self._cond = threading.Condition()

    def take(self) -> int:
        with self._cond:
            while not self._free:
                self._cond.wait()
            slot = min(self._free)
            self._free.remove(slot)
            return slot

    def give(self, slot: int) -> None:
        with self._cond:
            if slot in self._free or not 0 <= slot < self.place.slots:
                raise ValueError(f"slot {slot} is not taken")
            self._free.append(slot)
            self._cond.notify()

    @contextlib.contextmanager
    def held(self, cpus: int | None = None) -> Iterator[dict[str, str]]:
        """Hold a slot for the length of one run; yields that slot's environment additions.

        Why a context: the slot must come back even when the run raises (Ctrl-C), or the pool
        would shrink by one for every interrupted run."""
        slot = self.take()
        try:
            yield slot_env(self.place, slot, cpus)
        finally:
            self.give(slot)

"""Many measurements, one machinery: where this process stands (one process, or a torchrun rank on its own GPU), a work
queue shared by the ranks (one counter on torchrun's c10d store), attempts noted on disk so that a task that kills its
worker twice is given up, and a wait for every rank at the end. `effkit sweep`, `effkit compare` and `effkit scale` all
draw their work through `drain`.

Only a store is used, no process group: the one torchrun's agent hosts at MASTER_ADDR:MASTER_PORT (it outlives restarts,
so every key carries the restart count), or, launched without an agent, one that rank 0 hosts. (A gloo process group
failed to reconnect after a `--max-restarts` restart here; the store alone does not.)
"""
from __future__ import annotations

import contextlib
import os
import signal
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Callable

from effkit.errors import UserInputError
from effkit.files import atomic_write_text, ensure_folder

MAX_ATTEMPTS = 2


@dataclass(frozen=True)
class Place:
    """Where this process stands: its rank among `world`, the device it measures on, the store it shares."""

    rank: int = 0
    world: int = 1
    device: str = "cpu"
    store: object = None
    restart: int = 0


def place(device: str) -> Place:
    """One process, or a torchrun rank (LOCAL_RANK set): the rank's own GPU and the store torchrun's ranks share."""
    if "LOCAL_RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return Place(device=device)
    import torch
    import torch.distributed as dist

    rank, world, local = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ["LOCAL_RANK"])
    if device.startswith("cuda"):
        n = torch.cuda.device_count()
        if local >= n:
            raise UserInputError(f"torchrun started {os.environ.get('LOCAL_WORLD_SIZE', world)} processes on this host but it has {n} GPU(s): "
                                 f"local rank {local} has none; use --nproc-per-node={n} or fewer")
        device = f"cuda:{local}"
        torch.cuda.set_device(local)
    agent = os.environ.get("TORCHELASTIC_USE_AGENT_STORE", "").lower() == "true"
    store = dist.TCPStore(os.environ.get("MASTER_ADDR", "127.0.0.1"), int(os.environ.get("MASTER_PORT", "29500")), world,
                          is_master=rank == 0 and not agent, wait_for_workers=False, timeout=timedelta(seconds=600))
    return Place(rank, world, device, store, int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")))


class Queue:
    """Task indices for this rank: one shared counter on the store (torchrun), or a local one (one process)."""

    def __init__(self, n: int, store=None, restart: int = 0, tag: str = "effkit"):
        self.n, self.store, self.local = n, store, 0
        self.key = f"{tag}/{restart}/next"

    def next(self) -> int | None:
        if self.store is None:
            i, self.local = self.local, self.local + 1
        else:
            i = self.store.add(self.key, 1) - 1
        return i if i < self.n else None


def simulate(durations: list[float], ranks: int) -> dict:
    """Each rank draws the next task from the shared counter when it is free (the queue above, in simulated time):
    the makespan, the total work and the idle share at the end (ranks waiting for the last task to finish)."""
    free = [0.0] * ranks
    for d in durations:
        r = min(range(ranks), key=lambda k: free[k])
        free[r] += d
    makespan = max(free)
    idle = sum(makespan - f for f in free)
    return {"makespan": makespan, "work": sum(durations), "idle_share": idle / (makespan * ranks) if makespan else 0.0}


class Stopped(BaseException):
    """SIGTERM arrived (torchrun ends the surviving ranks this way when one fails)."""


def _stop(signum, frame):
    raise Stopped(f"signal {signum}")


class Attempts:
    """How many times a task has been started, one small file per key in `folder`: a task whose worker was stopped twice
    while running it (a crash, a kill, an abort) is given up. A task stopped from outside (^C, or torchrun ending the
    ranks after another failed) is not counted against it: `with attempts.running(keys):` around the work."""

    def __init__(self, folder: str | Path):
        self.folder = ensure_folder(folder)

    def count(self, key: str) -> int:
        try:
            return int((self.folder / f"{key}.attempts").read_text().strip() or 0)
        except (OSError, ValueError):
            return 0

    def _set(self, key: str, n: int) -> None:
        atomic_write_text(self.folder / f"{key}.attempts", str(n))

    def exhausted(self, key: str) -> bool:
        return self.count(key) >= MAX_ATTEMPTS

    def why(self, key: str) -> str:
        return f"its worker was stopped {self.count(key)} times while running it (a crash, a kill or an out-of-memory abort): not tried again"

    def start(self, key: str) -> None:
        self._set(key, self.count(key) + 1)

    @contextlib.contextmanager
    def running(self, keys: list[str], done: Callable[[str], bool] = lambda key: False):
        """An attempt noted at each key for the block; if the block is stopped from outside, the attempts of the keys not
        `done` are taken back (not their fault). A crash or a kill leaves them counted."""
        for key in keys:
            self.start(key)
        try:
            yield
        except (KeyboardInterrupt, Stopped):
            for key in keys:
                if not done(key):
                    self._set(key, max(0, self.count(key) - 1))
            raise


def drain(n: int, do: Callable[[int], None], where: Place, tag: str, on_idle: Callable[[], None] | None = None) -> int:
    """Run task indices drawn from the queue until none is left (largest first is the caller's order); with a store, then
    note this rank done and, on rank 0, wait for every rank (calling `on_idle` while waiting). Returns how many tasks
    this rank ran."""
    if where.world > 1:
        signal.signal(signal.SIGTERM, _stop)
    queue = Queue(n, where.store, where.restart, tag)
    ran = 0
    while (i := queue.next()) is not None:
        do(i)
        ran += 1
    if where.store is not None:
        key = f"{tag}/{where.restart}/done"
        where.store.add(key, 1)
        if where.rank == 0:
            while where.store.add(key, 0) < where.world:
                time.sleep(0.2)
                if on_idle:
                    on_idle()
    return ran


def gate(where: Place, tag: str, check: Callable[[], None]) -> None:
    """Rank 0 runs `check` (claiming a folder, say) before any rank starts; its error, if any, stops every rank."""
    ready = f"{tag}/{where.restart}/ready"
    if where.rank == 0:
        try:
            check()
        except UserInputError as e:
            if where.store is not None:
                where.store.set(ready, "error: " + str(e))
            raise
        if where.store is not None:
            where.store.set(ready, "ok")
    elif where.store is not None:
        where.store.wait([ready])
        state = where.store.get(ready).decode()
        if state != "ok":
            raise UserInputError(state.removeprefix("error: "))

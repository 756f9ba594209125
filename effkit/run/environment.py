"""What was found when a measurement ran: the device, its driver and clocks, the software, the host.

Kept apart from RunConfig (what was asked): a record holds both, and analysis reads
only typed fields of this, never a dict by string key.
"""
from __future__ import annotations

import platform
import socket
import time
from dataclasses import asdict, dataclass, field, fields

import torch

from effkit._version import __version__
from effkit.device.facts import device_facts, live_state


@dataclass(frozen=True)
class Environment:
    device: str
    device_name: str
    driver: str | None
    cuda: str | None
    torch: str
    effkit: str
    threads: int
    host: str
    platform: str
    timestamp: str
    state_start: dict = field(default_factory=dict)  # clocks, power, temperature when the point started
    state_end: dict = field(default_factory=dict)
    load: dict = field(default_factory=dict)  # what other processes did while the point was measured (device.facts.LoadMonitor)
    backend: dict = field(default_factory=dict)  # the backend switches in force (config.backend_state): TF32, cudnn.benchmark, SDPA

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Environment":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

    def with_states(self, start: dict, end: dict, load: dict | None = None, backend: dict | None = None) -> "Environment":
        from dataclasses import replace

        return replace(self, state_start=start, state_end=end, load=load or {}, backend=backend or {},
                       timestamp=time.strftime("%Y-%m-%dT%H:%M:%S%z"))

    @property
    def load_issues(self) -> list[str]:
        from effkit.device.facts import load_issues

        return load_issues(self.load)


def capture(device: str) -> Environment:
    """The environment of `device` now."""
    facts = device_facts(device)
    return Environment(device, facts.get("name"), facts.get("driver"), torch.version.cuda, torch.__version__, __version__,
                       torch.get_num_threads(), socket.gethostname(), platform.platform(), time.strftime("%Y-%m-%dT%H:%M:%S%z"))


def state(device: str) -> dict:
    """Clocks and power now (at the start and end of a point)."""
    return live_state(device)

"""The run record: what a run asked for and what it found, versioned, one per run folder.

`run.json` in a run folder is one RunRecord: `schema_version`, the RunConfig, the
environment, and per model its counts (totals per batch, per-layer counts), its measured
points (timing with raw samples, per-layer times, the environment of each point) and its
analyses. It is written atomically; a run that is interrupted leaves it marked
`incomplete` with what was done. Every other file of a run folder (tables, figures,
HTML) is a view rebuilt from it by `effkit report`.

Schema versions read: 1 (run.json before the record: analyses and trace rows, with the
provenance inside each analysis) and 2 (this one).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from effkit._version import __version__
from effkit.analysis.roofline import ModelAnalysis
from effkit.config import RunConfig
from effkit.errors import UserInputError
from effkit.files import atomic_write_json, read_json_file
from effkit.run.environment import Environment
from effkit.run.runner import BenchPoint

SCHEMA_VERSION = 2
READABLE = (1, 2)
RECORD_FILE = "run.json"


@dataclass(frozen=True)
class ModelRecord:
    """One model's part of a run."""

    model: str
    analyses: tuple[ModelAnalysis, ...] = ()
    counts: tuple[dict, ...] = ()  # the trace's totals, one row per batch
    layers: tuple[dict, ...] = ()  # per-layer counts at the last batch
    points: tuple[BenchPoint, ...] = ()  # measured points, with raw samples
    link: str | None = None  # a comparison's link to this model's own report, relative to the comparison folder
    memory: dict | None = None  # the predicted peak memory of a step at the largest batch (trace/memory.py MemoryPrediction)

    def to_dict(self) -> dict:
        return {"model": self.model, "analyses": [a.to_dict() for a in self.analyses], "counts": list(self.counts),
                "layers": list(self.layers), "points": [p.to_dict() for p in self.points], "link": self.link, "memory": self.memory}

    @classmethod
    def from_dict(cls, d: dict) -> "ModelRecord":
        return cls(d["model"], tuple(ModelAnalysis.from_dict(a) for a in d.get("analyses") or ()), tuple(d.get("counts") or ()),
                   tuple(d.get("layers") or ()), tuple(BenchPoint.from_dict(p) for p in d.get("points") or ()), d.get("link"),
                   d.get("memory"))


@dataclass(frozen=True)
class RunRecord:
    kind: str  # "profile" or "compare"
    config: RunConfig
    models: tuple[ModelRecord, ...]
    environment: Environment | None = None  # where it was measured (None: counts only)
    status: str = "complete"  # or "incomplete": interrupted, holding what was done
    notes: tuple[str, ...] = ()
    options: dict = field(default_factory=dict)  # ceilings, fuse, measure
    schema_version: int = SCHEMA_VERSION
    effkit_version: str = __version__
    created: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    warnings: tuple[str, ...] = ()  # what makes this run's numbers less trustworthy (shown as banners)

    @property
    def analyses(self) -> list[ModelAnalysis]:
        return [a for m in self.models for a in m.analyses]

    @property
    def complete(self) -> bool:
        return self.status == "complete"

    def with_status(self, status: str, note: str | None = None) -> "RunRecord":
        return replace(self, status=status, notes=self.notes + ((note,) if note else ()))

    def to_dict(self) -> dict:
        return {"schema_version": self.schema_version, "kind": self.kind, "status": self.status, "effkit_version": self.effkit_version,
                "created": self.created, "config": self.config.to_dict(),
                "environment": self.environment.to_dict() if self.environment else None, "options": self.options,
                "notes": list(self.notes), "warnings": list(self.warnings), "models": [m.to_dict() for m in self.models]}

    @classmethod
    def from_dict(cls, d: dict) -> "RunRecord":
        return cls(d["kind"], RunConfig.from_dict(d["config"]), tuple(ModelRecord.from_dict(m) for m in d["models"]),
                   Environment.from_dict(d["environment"]) if d.get("environment") else None, d.get("status", "complete"),
                   tuple(d.get("notes") or ()), d.get("options") or {}, d["schema_version"], d.get("effkit_version", "?"), d.get("created", ""),
                   tuple(d.get("warnings") or ()))

    def save(self, folder: str | Path) -> Path:
        return atomic_write_json(Path(folder) / RECORD_FILE, self.to_dict(), indent=None)

    @classmethod
    def load(cls, folder: str | Path) -> "RunRecord":
        """The record of a run folder, of any readable schema version."""
        path = Path(folder) / RECORD_FILE
        if not path.is_file():
            raise UserInputError(f"{str(folder)!r} is not an effkit run folder (no {RECORD_FILE}); give folders written by effkit profile or compare")
        d = read_json_file(path, "run record")
        if not isinstance(d, dict):
            raise UserInputError(f"run record {str(path)!r} is not an effkit run record")
        version = d.get("schema_version", 1)
        if version not in READABLE:
            raise UserInputError(f"run record {str(path)!r} has schema version {version}; this effkit ({__version__}) reads versions "
                                 f"{', '.join(map(str, READABLE))}: rebuild it with the effkit that wrote it ({d.get('effkit_version', '?')})")
        try:
            return cls.from_dict(d) if version == 2 else _from_schema_1(d)
        except (KeyError, TypeError, ValueError) as e:
            raise UserInputError(f"run record {str(path)!r} (schema version {version}) is incomplete or damaged: {type(e).__name__}: {e}") from e


def _from_schema_1(d: dict) -> RunRecord:
    """A record from a run.json written before the record existed (analyses with provenance, trace rows)."""
    analyses = [ModelAnalysis.from_dict(a) for a in d["analyses"]]
    prov = next((a.get("provenance") for a in reversed(d["analyses"]) if a.get("provenance")), None) or {}
    first = analyses[0]
    config = RunConfig(device=prov.get("device", "cpu"), precision=prov.get("dtype", first.dtype), batches=tuple(a.batch for a in analyses)
                       if d["kind"] == "profile" else (first.batch,), mode=prov.get("mode", "infer"), layout=prov.get("layout", "contiguous"),
                       cuda_graph=bool(prov.get("cuda_graph")), compile=bool(prov.get("compile")))
    if d["kind"] == "profile":
        models = (ModelRecord(first.model, tuple(analyses), layers=tuple(d.get("trace_rows") or ())),)
    else:
        links = d.get("links") or {}
        models = tuple(ModelRecord(a.model, (a,), link=links.get(a.model)) for a in analyses)
    env = Environment.from_dict({**{k: None for k in ("device", "device_name", "driver", "cuda", "torch", "effkit", "threads", "host",
                                                      "platform", "timestamp")}, **prov}) if prov else None
    return RunRecord(d["kind"], config, models, env, "complete", ("read from a schema 1 run folder (effkit 0.1): raw samples are in its bench.json",),
                     schema_version=1, effkit_version=prov.get("effkit", "0.1.0"), created=prov.get("timestamp", ""))

"""Trace results: frozen dataclasses that keep the per-op records and derive the rest."""
from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import asdict, dataclass, fields

import pandas as pd

from effkit.trace.formulas import CONVENTIONS
from effkit.trace.paths import AUTOGRAD, ROOT, path_depth, truncate_path  # noqa: F401  (re-exported)

FVCORE_CONVENTION = "fvcore: 'flops' = MACs of the ops fvcore has handlers for; ops without a handler count 0 (listed as unsupported)"



@dataclass(frozen=True, slots=True)
class OpRecord:
    """One aten op as the tracer saw it."""

    index: int
    phase: str  # "forward" or "backward"
    path: str  # the innermost module running it
    op: str  # e.g. "aten.convolution.default"
    in_shapes: tuple
    in_dtypes: tuple
    out_shapes: tuple
    out_dtypes: tuple
    macs: int
    flops: int
    acts: int
    bytes_read: int
    bytes_written: int
    out_bytes: int
    covered: bool
    cast: bool = False  # a dtype cast autocast made (its own row, with its bytes)


# Per-layer counters: forward unless prefixed bwd_; saved_bytes is what backward keeps.
COUNTERS = ("macs", "flops", "acts", "activation_bytes", "bytes_read", "bytes_written", "ops",
            "bwd_macs", "bwd_flops", "bwd_bytes_read", "bwd_bytes_written", "saved_bytes", "casts", "cast_bytes")


@dataclass(frozen=True, slots=True)
class Layer:
    """A leaf module (or a parent's own direct ops), with everything counted for it."""

    path: str
    module_type: str
    calls: int
    output_shape: tuple | None
    params: int
    buffers: int
    macs: int = 0
    flops: int = 0
    acts: int = 0
    activation_bytes: int = 0
    bytes_read: int = 0
    bytes_written: int = 0
    ops: int = 0  # ops with a cost (views excluded)
    bwd_macs: int = 0
    bwd_flops: int = 0
    bwd_bytes_read: int = 0
    bwd_bytes_written: int = 0
    saved_bytes: int = 0
    casts: int = 0  # autocast's dtype casts (forward), included in the counts above
    cast_bytes: int = 0  # their bytes read + written

    @property
    def bytes(self) -> int:
        return self.bytes_read + self.bytes_written

    @property
    def intensity(self) -> float:
        """Arithmetic intensity, FLOP per byte (forward)."""
        return self.flops / self.bytes if self.bytes else float("nan")


@dataclass(frozen=True, slots=True)
class Uncovered:
    """An op with no formula: counted nowhere, listed here."""

    op: str
    count: int
    layers: tuple[str, ...]


@dataclass(frozen=True)
class TraceResult:
    model: str
    input_shapes: tuple[tuple[int, ...], ...]  # full shapes, batch included
    batch: int
    dtype: str
    device: str
    mode: str
    layers: tuple[Layer, ...]
    ops: tuple[OpRecord, ...]
    uncovered: tuple[Uncovered, ...]
    params: int  # unique learnable parameters of the whole model
    buffers: int
    module_types: dict  # path -> class name, every module
    module_outputs: dict  # path -> first output shape, every module that ran
    module_calls: dict
    fvcore: object = None  # FvcoreCounts when traced with counter="fvcore"
    module_inputs: dict = None  # path -> first input shape, every module that ran
    precision: str = ""  # the precision name traced (dtype is its parameter dtype)
    blocks: tuple = ()  # residual blocks: modules that add their own input to a function of it (recorder docstring)
    autocast: str = ""  # how a mixed precision's casts were found: "" (none), a policy applied on meta, or torch.autocast

    @property
    def totals(self) -> Layer:
        sums = {c: sum(getattr(layer, c) for layer in self.layers) for c in COUNTERS}
        return Layer(ROOT, self.module_types.get(ROOT, "model"), 1, self.module_outputs.get(ROOT), self.params, self.buffers, **sums)

    def rollup(self, depth: int) -> tuple[Layer, ...]:
        """Layers merged up to `depth` path components (0: the whole model), in execution order."""
        groups: dict[str, list[Layer]] = defaultdict(list)
        for layer in self.layers:
            groups[truncate_path(layer.path, depth)].append(layer)
        out = []
        for path, members in groups.items():
            if len(members) == 1 and members[0].path == path:
                out.append(members[0])
                continue
            sums = {c: sum(getattr(m, c) for m in members) for c in COUNTERS}
            out.append(Layer(path, self.module_types.get(path, "?"), self.module_calls.get(path, 0), self.module_outputs.get(path),
                             sum(m.params for m in members), sum(m.buffers for m in members), **sums))
        return tuple(out)

    def _repr_html_(self) -> str:
        """In Jupyter: the totals, the first layers, the uncovered ops and the counting conventions."""
        from html import escape

        t = self.totals
        head = (f"<b>{escape(self.model)}</b>, batch {self.batch}, {escape(self.precision or self.dtype)}, {escape(self.mode)}, traced on "
                f"{escape(self.device)}: {t.macs / 1e9:,.3f} GMACs, {t.flops / 1e9:,.3f} GFLOPs, {self.params / 1e6:,.3f} M params, "
                f"{t.acts / 1e6:,.3f} M activations, {(t.bytes_read + t.bytes_written) / 1e6:,.1f} MB moved")
        frame = self.to_frame()
        more = f"<p><i>first 40 of {len(frame)} layers; .to_frame() has them all</i></p>" if len(frame) > 40 else ""
        unc = ("<p style='color:#b00'>ops without a formula (not counted): " + escape(", ".join(f"{u.op} x{u.count}" for u in self.uncovered))
               + "</p>") if self.uncovered else ""
        conv = "<p style='font-size:smaller;color:#555'>" + escape("; ".join(f"{k}: {v}" for k, v in CONVENTIONS.items())) + "</p>"
        return f"<p>{head}</p>{frame.head(40).to_html(index=False)}{more}{unc}{conv}"

    def to_frame(self, depth: int | None = None) -> pd.DataFrame:
        """One row per layer; columns carry units in their names (bytes, flop_per_byte)."""
        return pd.DataFrame(self.rows(depth), columns=list(self.row(self.totals, True)))

    def rows(self, depth: int | None = None) -> list[dict]:
        """Layer rows as dicts: all layers, or rolled up to `depth` path components."""
        if depth is None:
            return [self.row(layer, False) for layer in self.layers]
        # a rolled-up row at exactly `depth` holds its whole subtree; shallower rows hold their own ops
        return [self.row(layer, path_depth(layer.path) >= depth or depth == 0) for layer in self.rollup(depth)]

    def row(self, layer: Layer, subtree: bool = False) -> dict:
        """One layer's counts as a dict; `subtree` when the layer holds its children (rolled up)."""
        row = layer_row(layer, self.mode)
        if self.fvcore is not None:
            path = "" if layer.path == ROOT else layer.path
            kids = [] if subtree else [p for p in self.module_types if p != ROOT and p.rpartition(".")[0] == path]
            row["fvcore_flops"] = self.fvcore.direct(self.fvcore.flops, path, kids)
            row["fvcore_acts"] = self.fvcore.direct(self.fvcore.acts, path, kids)
        return row

    def totals_row(self) -> dict:
        """The whole model's counts as one row."""
        return self.row(self.totals, True)

    def layer(self, path: str) -> Layer | None:
        """The layer at `path`, if the trace has it."""
        return next((l for l in self.layers if l.path == path), None)

    def ops_frame(self) -> pd.DataFrame:
        return pd.DataFrame([asdict(o) for o in self.ops])

    def to_dict(self, depth: int | None = None) -> dict:
        return {
            "model": self.model,
            "input_shapes": [list(s) for s in self.input_shapes],
            "batch": self.batch,
            "dtype": self.dtype,
            "precision": self.precision or self.dtype,
            "autocast": self.autocast,
            "device": self.device,
            "mode": self.mode,
            "conventions": CONVENTIONS,
            "totals": self.row(self.totals, True),
            "layers": self.rows(depth),
            "uncovered": [asdict(u) for u in self.uncovered],
            **({"fvcore": {"convention": FVCORE_CONVENTION, "unsupported": self.fvcore.unsupported}} if self.fvcore is not None else {}),
        }

    def to_json(self, depth: int | None = None) -> str:
        return json.dumps(self.to_dict(depth), indent=2)


def layer_row(layer: Layer, mode: str) -> dict:
    row = {
        "path": layer.path,
        "module_type": layer.module_type,
        "calls": layer.calls,
        "output_shape": "x".join(map(str, layer.output_shape)) if layer.output_shape else "",
        "params": layer.params,
        "buffers": layer.buffers,
        "macs": layer.macs,
        "flops": layer.flops,
        "acts": layer.acts,
        "activation_bytes": layer.activation_bytes,
        "bytes_read": layer.bytes_read,
        "bytes_written": layer.bytes_written,
        "intensity_flop_per_byte": round(layer.intensity, 4) if layer.bytes else None,
        "casts": layer.casts,
        "cast_bytes": layer.cast_bytes,
    }
    if mode == "train":
        row.update({f.name: getattr(layer, f.name) for f in fields(Layer) if f.name.startswith("bwd_") or f.name == "saved_bytes"})
    return row

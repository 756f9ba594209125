"""What the model asks for: per-op and per-layer MACs, FLOPs, bytes and activations."""
from effkit.trace.formulas import CONVENTIONS, FORMULAS, FREE, Cost, formula
from effkit.trace.result import ROOT, Layer, OpRecord, TraceResult, Uncovered
from effkit.trace.tracer import DTYPES, trace

__all__ = ["CONVENTIONS", "DTYPES", "FORMULAS", "FREE", "Cost", "Layer", "OpRecord", "ROOT", "TraceResult", "Uncovered", "formula", "trace"]

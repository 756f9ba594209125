"""What the model asks for: per-op and per-layer MACs, FLOPs, bytes and activations."""
from effkit.trace.formulas import CONVENTIONS, FORMULAS, FREE, Cost, formula
from effkit.trace.paths import AUTOGRAD, ROOT
from effkit.trace.result import Layer, OpRecord, TraceResult, Uncovered
from effkit.trace.tracer import trace, trace_ref

__all__ = ["AUTOGRAD", "CONVENTIONS", "FORMULAS", "FREE", "Cost", "Layer", "OpRecord", "ROOT", "TraceResult", "Uncovered", "formula",
           "trace", "trace_ref"]

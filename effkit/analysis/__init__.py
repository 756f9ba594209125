"""Roofline, waterline, efficiency gap, fusion what-if: pure functions of trace + ceilings + measurements."""
from effkit.analysis.model import analyse, blocks_for, layer_costs, layer_kinds, op_kind, residual_blocks
from effkit.analysis.roofline import (DEFINITIONS, Block, Fusion, LayerCost, LayerResult, ModelAnalysis, analyse_layers, fusion_what_if,
                                      roofline_time)
from effkit.device.roofs import Roof, roof_from_ceilings, roof_from_spec

__all__ = ["DEFINITIONS", "Block", "Fusion", "LayerCost", "LayerResult", "ModelAnalysis", "Roof", "analyse", "analyse_layers", "blocks_for",
           "fusion_what_if", "layer_costs", "layer_kinds", "op_kind", "residual_blocks", "roof_from_ceilings", "roof_from_spec",
           "roofline_time"]

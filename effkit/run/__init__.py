"""What the hardware does: one timing discipline, batch sweeps, per-layer kernel times."""
from effkit.run.environment import Environment
from effkit.run.layers import LayerTime, LayerTimes, profile_layers
from effkit.run.runner import BenchPoint, BenchResult, bench, run
from effkit.timing import Timing, measure

__all__ = ["BenchPoint", "BenchResult", "Environment", "LayerTime", "LayerTimes", "Timing", "bench", "measure", "profile_layers", "run"]

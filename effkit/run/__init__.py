"""What the hardware does: one timing discipline, batch sweeps, per-layer kernel times."""
from effkit.run.bench import BenchPoint, BenchResult, bench
from effkit.run.layers import LayerTime, LayerTimes, profile_layers
from effkit.timing import Timing, measure

__all__ = ["BenchPoint", "BenchResult", "LayerTime", "LayerTimes", "Timing", "bench", "measure", "profile_layers"]

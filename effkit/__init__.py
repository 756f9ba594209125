"""effkit: why is this model as fast as it is, and what would make it faster?

Python API (each mirrors a CLI command):
    effkit.trace(model, input_shape=None, batch=1, ...)  -> TraceResult (.to_frame())
    effkit.bench(model, batch=[1, 8], device="cuda", ...)  -> BenchResult (.to_frame())
    effkit.device_ceilings(device="cuda", refresh=False)  -> Ceilings (.to_frame())
    effkit.profile(model, device="cuda", batch=64, dtype="bf16")  -> ProfileRun (.folder, .analyses)
    effkit.compare([m1, m2, ...], device=..., ...)  -> ProfileRun of the comparison
    effkit.scale("regnety_400mf", ["d", "w", "r", "dWr"], [1, 2, 4, 8, 16])  -> ScaleResult (.to_frame())
    effkit.list_models(pattern)
"""
__version__ = "0.1.0"

from effkit.errors import EffkitError, UserInputError  # noqa: E402
from effkit.models import build_model, list_models  # noqa: E402
from effkit.trace.tracer import trace  # noqa: E402  (the function; the stage's package is effkit.trace)
from effkit.device.ceilings import device_ceilings  # noqa: E402
from effkit.run.bench import bench  # noqa: E402
from effkit.profile import compare, profile  # noqa: E402
from effkit.scale import scale  # noqa: E402

__all__ = ["EffkitError", "UserInputError", "__version__", "bench", "build_model", "compare", "device_ceilings", "list_models", "profile",
           "scale", "trace"]

"""effkit: why is this model as fast as it is, and what would make it faster?

Python API (each mirrors a CLI command):
    effkit.trace(model, input_shape=None, batch=1, ...)  -> TraceResult (.to_frame())
    effkit.bench(model, batch=[1, 8], device="cuda", ...)  -> BenchResult (.to_frame())
    effkit.device_ceilings(device="cuda", refresh=False)  -> Ceilings (.to_frame())
    effkit.profile(model, device="cuda", batch=64, dtype="bf16")  -> ProfileRun (.folder, .analyses); fused=True adds the fusion check
    effkit.compare([m1, m2, ...], device=..., ...)  -> ProfileRun of the comparison
    effkit.scale("regnety_400mf", ["d", "w", "r", "dWr"], [1, 2, 4, 8, 16])  -> ScaleResult (.to_frame())
    effkit.advise(model, device="cuda", batch=64, budget_s=300)  -> AdviceResult (.ranking, .snippet, .to_frame())
    effkit.diff(a, b)  -> DiffResult (.summary(), .layers, .end_to_end, .to_dict()): run folders, trace JSON or specs
    effkit.list_models(pattern), effkit.resolve(spec) -> ModelRef, effkit.RunConfig(...)
"""
from effkit._version import __version__
from effkit.config import PRECISIONS, Precision, RunConfig
from effkit.advising import advise
from effkit.device.ceilings import device_ceilings
from effkit.diffing import diff
from effkit.errors import EffkitError, UserInputError
from effkit.models import ModelRef, build_model, list_models, resolve
from effkit.profiling import compare, profile
from effkit.run.runner import bench
from effkit.scaling import scale
from effkit.sweeping import sweep
from effkit.trace.tracer import trace  # the function; the stage's package stays importable as effkit.trace.*

__all__ = ["PRECISIONS", "EffkitError", "ModelRef", "Precision", "RunConfig", "UserInputError", "__version__", "advise", "bench", "build_model", "compare",
           "device_ceilings", "diff", "list_models", "profile", "resolve", "scale", "sweep", "trace"]

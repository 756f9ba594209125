"""Run a function of tensors under the recorder and return its op records."""
import torch
import torch.nn as nn

from effkit.trace.recorder import Recorder


class Fn(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, *xs):
        return self.fn(*xs)


def records(fn, *inputs, train=False):
    """OpRecords of `fn(*inputs)` (forward, and backward of the sum when train=True)."""
    m = Fn(fn)
    rec = Recorder(m, train=train).attach()
    try:
        with (torch.enable_grad() if train else torch.no_grad()), rec:
            out = m(*inputs)
            if train:
                rec.phase = "backward"
                out.backward(torch.ones_like(out))
    finally:
        rec.detach_hooks()
    return [r for r in rec.records if r.op != "aten.ones_like.default"]


def one(fn, *inputs, op=None):
    """The single costed record of `fn` (or the one whose op name contains `op`)."""
    rs = [r for r in records(fn, *inputs) if op is None or op in r.op]
    assert len(rs) == 1, [r.op for r in rs]
    return rs[0]


def cpu_profile(tmp_path, model: str = "mbconv_net"):
    """A quick measured CPU profile of `model` at 32², batch 1, into tmp_path / "p", against a made-up test ceiling (1e11
    FLOP/s fp32, 2e10 B/s): (the ProfileRun, its ModelRef, its RunConfig, the ceilings file's path as a string)."""
    import json

    import effkit.profiling as profiling
    from effkit.models.ref import resolve

    ceil = tmp_path / "ceil.json"
    ceil.write_text(json.dumps({"name": "test cpu", "peak_flops": {"fp32": 1e11}, "bandwidth_bytes_per_s": 2e10}))
    ref = resolve(model, resolution=32)
    config = profiling._config("cpu", 1, "fp32", True, False, False, 0.02)
    return profiling.run_profile(ref, config, profiling.ProfileOptions(tmp_path / "p", str(ceil), True)), ref, config, str(ceil)

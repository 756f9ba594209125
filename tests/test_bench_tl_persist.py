"""benchmarks/tl_persist_chain.py's kernel in Triton's interpreter (fp32): every variant (persistent, flattened, x or
output by tensor descriptor, x prefetched a tile early) and the repeat form against PyTorch's chain, and its grids."""
import os

os.environ.setdefault("TRITON_INTERPRET", "1")  # as in test_kernels.py: set before Triton is first imported

import pytest  # noqa: E402

pytest.importorskip("triton")
pytest.importorskip("torch")


@pytest.fixture(scope="module")
def tp(load_bench):
    return load_bench("tl_persist_chain")


def test_every_variant_matches_pytorch(tp):
    results = tp.check_variants(sms=2)
    assert len(results) == 2 * len(tp.VARIANTS)
    bad = [(cfg, err) for cfg, err in results if not err <= 1e-4]  # fp32 in the interpreter: rounding only (7e-7 seen)
    assert not bad, bad


def test_programs(tp):
    # 53 pixels in tiles of 16: ceil(53 / 16) = 4 tiles
    assert tp.programs(53, {"block_p": 16}, 2) == 4  # one tile a program
    assert tp.programs(53, {"block_p": 16, "persist": 1}, 3) == 3  # one program on each of 3 multiprocessors
    assert tp.programs(53, {"block_p": 16, "persist": 2}, 3) == 4  # 2 x 3 = 6, but only 4 tiles
    # the H200 at 128 channels: 64 x 28² = 50,176 pixels, 784 tiles of 64; persist 2 on 132 multiprocessors = 264
    assert tp.programs(50_176, {"block_p": 64, "persist": 2}, 132) == 264


def test_a_wrong_grid_is_caught(tp, monkeypatch):
    # the check's power: launched on one program where the kernel strides by NPROG (2 or 4 here), tiles go unwritten
    import mlp_ceiling  # the module the script's fused() launches through (benchmarks/ is on sys.path here)

    real = mlp_ceiling.launcher
    monkeypatch.setattr(mlp_ceiling, "launcher", lambda d, kernel, block_p, grid=None, **kw: real(d, kernel, block_p, grid=1, **kw))
    results = tp.check_variants(sms=2)
    assert all(err > 1e-2 for cfg, err in results), [r for r in results if r[1] <= 1e-2]

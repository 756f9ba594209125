"""GPU evidence for issue 19: the block-fused Triton kernels against eager and torch.compile.

Sections, in order of priority, each written to kernels_gpu.json as it completes; a section that would not fit in
--deadline seconds is skipped and listed under "skipped" with the reason:

1. Correctness on every fused block (convfirst_net's 12, mbconv_net's 8 stride-1 ones), at its input size in the network,
   batch 1 and 64: the fused block (bf16, channels-last) against the unfused block in fp32 and in bf16. The figure is
   the max abs error over the max abs output; the stated tolerance is 2e-2 (bf16 keeps 8 bits: a rounding is 4e-3).
2. Tiles, at batch 64, per distinct block shape (`tile_variants`): for MBConv the staged-halo kernel at several frames
   and the recompute kernel; each tile checked against the fp32 block before it is timed (one over the tolerance is
   not eligible), with the compiled kernel's registers, spills, shared memory and the occupancy its registers allow.
   The best correct tiles are used from there on.
2b. (stem) The stem (conv → BN → SiLU as one im2col kernel, `FusedConvAct`): its tiles at batch 64 (`stem_variants`),
   each checked against fp32, then eager, compile and fused, and its memory roofline (`stem_cost`).
3. Per block at batch 64: eager, torch.compile (default) and fused, each under a CUDA graph, timed by CUDA events around
   200 back-to-back replays (median and IQR), and the fused roofline: max(FLOPs / bf16 peak, compulsory bytes /
   bandwidth), the compulsory bytes being input, output and folded weights once, in bf16. The H200's ceilings are the
   ones measured idle and committed in results/h200/ceilings.json (bf16 803.8 TFLOP/s, 4.24 TB/s).
3b. (parts) What each part of the ConvFirst kernel costs: the kernel timed whole, then with its expansion, its grouped
   conv, or both switched off (the constexpr PARTS), at batch 64 with the best tiles.
4. Whole networks at batch 64: eager, compile (default) and fused (every block fuse_blocks fuses, the rest eager), and a
   torch.profiler breakdown of the fused network's kernels (fused blocks against the rest).
5. Batches 1 and 256: blocks and networks, eager, compile (default) and fused.
6. torch.compile max-autotune-no-cudagraphs for both networks at batch 64 (beside eager, compile's default and fused,
   timed again if this run did not time them), and compile over the fused network (the rest compiled around the Triton
   kernels), once with every block fused and once with only the widths whose fused block beat compile's (section 3).

6b. (profile_compiled) torch.profiler over the compiled network and over the fused network with the rest compiled:
   the fused kernels' time against the rest's, and the largest kernels.
7. (block_max_autotune) torch.compile max-autotune-no-cudagraphs per block shape at batch 64.

Networks are timed with the stem fused too (`fuse_blocks`' default) and without it ("blocks only"). Every compile
starts from an empty dynamo cache (`compiled`). `--sections` runs a subset (e.g. `--sections max_autotune` alone, which
takes minutes a network); `--tile-shapes` limits the tile search to some block shapes; `--nets` one network;
`--stride-1-only` leaves the strided, width-changing ConvFirst blocks unfused (`fuse_blocks(strided=False)`; runs 2-9
measured that way) in every section.

DRAM bytes actually moved are not read here (the tables give the compulsory bytes): benchmarks/kernels_ncu.py reads
them, and the other hardware counters, with Nsight Compute where the lent machine's runtime allows it (run 29).

    python3 benchmarks/kernels_gpu.py --out $OUT [--deadline 330]

`--smoke` runs the same code paths on the CPU (fp32, small networks, Triton's interpreter, wall-clock timing, compile
left out) to check this script before it spends device time:

    TRITON_INTERPRET=1 python3 benchmarks/kernels_gpu.py --smoke --out /tmp/k
"""
from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import effkit  # noqa: E402
from effkit.kernels import FusedConvAct, FusedConvFirst, FusedMBConv, fuse_blocks  # noqa: E402
from effkit.kernels import triton_blocks  # noqa: E402
from effkit.kernels.fold import _match, _match_stem  # noqa: E402
from effkit.kernels.layout import three_parts_fit  # noqa: E402

TOL = 2e-2
NET_TOL = 5e-2  # a whole network in bf16 adds each block's rounding: run 52 measured 7.7e-3 (convfirst_net) and 8.6e-3 (mbconv_net);
# the c384 block reading re-laid weights gave 2.2e-1 (benchmarks/fused_layout_check.py, before 1fc18d1)
DEV, DT, RES, WIDTH, MID, BIG = "cuda", torch.bfloat16, 224, 1.0, 64, 256  # --smoke: cpu, fp32, 32 pixels, width 0.5, batches 2 and 3


def tile_variants(name: str, blk: nn.Module, hw: int = 0) -> list[dict]:
    """The tiles tried per block shape, defaults first. ConvFirst (defaults from run 15's search): the exact SiLU at
    the default tiles; narrow blocks the pairs grouped conv beside the dense default, wider pixel tiles, other chunks
    of expanded channels; wide blocks the dense grouped conv, 128 or 64 pixels, other chunks and pipelines. MBConv: the staged kernel (new in run 4; run 4
    tried 64 expanded channels a chunk and one or four programs an SM: slower or the same) at its default frame, with
    the input reloaded each chunk, with 16 expanded channels a chunk, at half and twice the frame; and the recompute
    kernel at its run-3 default. From run 33 the shift kernel comes first where `default_halo` takes it (at `hw`), with
    the other chunk of expanded channels; elsewhere it is tried after the staged default."""
    c, hid = max(blk.body[0][0].in_channels, blk.body[2][0].out_channels), blk.body[1][0].out_channels  # the kernel sizes tiles by the wider side
    stride = blk.body[0][0].stride[0]
    if name == "convfirst_net":  # run 15: the channels as two parts (no padding to a power of two) and the tanh SiLU
        # are new; each shape also tries the exact SiLU at its default tiles, and wider pixel tiles now that the
        # accumulator is a quarter smaller (split_h, slower at every wide block in run 11, is left out)
        c_in = blk.body[0][0].in_channels
        d = triton_blocks.default_config("convfirst", c, hid, stride=stride, c_in=c_in)
        if c <= 64:
            out = [d, {**d, "fast_silu": False}, {**d, "block_p": 128, "num_warps": 8}, {**d, "group_conv": "pairs"}, {**d, "block_h": 64}]
            if c_in == 1 << (c_in - 1).bit_length():  # run 18: a power-of-two input width as one part (c32>48/s2: 32, not 16 + 16)
                out += [{**d, "one_part": True}, {**d, "one_part": True, "group_conv": "pairs"}]
        elif c <= 128:
            out = [d, {**d, "fast_silu": False}, {**d, "block_h": 32}, {**d, "group_conv": "pairs", "block_h": 32}, {**d, "block_p": 64, "num_warps": 4}]
        elif c <= 256:  # c192 is 5 of the network's 12 blocks; 4 warps: two programs an SM if the registers allow. Run 17:
            # 64 pixels on 4 warps (one warpgroup, 196 programs at 14² and batch 64, two an SM, where 128 pixels make 98
            # programs for 132 SMs)
            out = [d, {**d, "fast_silu": False}, {**d, "group_conv": "pairs"}, {**d, "block_h": 32}, {**d, "num_stages": 3},
                   {**d, "block_p": 64, "num_warps": 4, "num_stages": 3}]
        else:  # 3,136 pixels at 7² and batch 64: 49 programs of 64 pixels, so also the expansion split in 2 and 3; run 18: the
            # dense grouped conv (its MACs a² + b² = 5.3x the grouped conv's at 256 + 128, but c192>384/s2's conv is at 192)
            out = [d, {**d, "group_conv": "dense"}, {**d, "group_conv": "dense", "num_stages": 2}, {**d, "group_conv": "dense", "block_h": 32}, {**d, "fast_silu": False}, {**d, "block_p": 64, "block_h": 32, "num_stages": 3}, {**d, "block_p": 64, "num_stages": 2},
                   {**d, "block_p": 64, "block_h": 32, "num_stages": 3, "split_h": 2}, {**d, "block_p": 64, "block_h": 32, "num_stages": 3, "split_h": 3},
                   {**d, "num_stages": 3}]
        # run 20: the SiLU in bf16x2 (half the MUFU instructions), now the default up to 64 channels: the other form after
        # run 24's: the dense grouped conv's taps as a pipelined loop (asynchronous copies into shared memory), at two
        # depths, and a 3·2^k input width as three parts (192 = 64 + 64 + 64: 3 · 64² MACs a tap against 128² + 64²)
        # (run 24: the loop three stages deep beat two at every shape, and the unrolled taps at all but c48>96/s2; run 25:
        # four deep and three parts where they won, now the defaults): the loop at the other depth, the unrolled taps (or
        # the loop where the default unrolls), and the other number of input parts where a width allows three
        loop = {**d, "group_conv": "dense_loop"}
        new = [{**loop, "tap_stages": 7 - d.get("tap_stages", 3)}, {**d, "group_conv": "dense"} if d.get("group_conv") == "dense_loop" else {**loop, "tap_stages": 3}]
        if three_parts_fit(c_in):
            new.append({**d, "three_parts": not d.get("three_parts", False)})
        # run 29: Nsight Compute found the wide kernels latency-bound at one program of 8 warps an SM (tensor pipes 15-23 %
        # busy, issue slots 14-18 %). Tried there and slower: 16 warps at 256 channels of tile (c192 0.0552 against 0.0371
        # ms, c96>192/s2 0.0347 against 0.0241); at 512 the tap loop on three parts (c384 0.0780 against the pairs' 0.0707)
        # and 64-pixel tiles (spills: 0.168). Its source-level sampling put c192's largest stall on the barrier after the
        # hidden loop's weight copies (10 % of samples): the hidden loop a stage deeper (run 29c: won at c192, now its
        # default; lost at c96 and c96>192/s2). Next: on three parts, the first two joined into one operand for the
        # expansion (join_parts: two chained dots a chunk instead of three, one wait and barrier fewer); at stride 1 the
        # taps' gather as tensor-descriptor loads (dense_tma: c48's integer work, a quarter of its samples). Run 30: both
        # lost (join_parts c96 0.0471 against 0.0473 ms, c192 0.0390 against 0.0357; dense_tma c48 0.1010 against 0.0727,
        # c96 0.0580 against 0.0473, c192 0.0465 against 0.0357), kept here first as the last levers tried
        first = [{**d, "join_parts": True}] if d.get("three_parts") else []
        if stride == 1 and d.get("group_conv") == "dense_loop":  # the tap loop's gather as one descriptor load a tap
            first.insert(0, {**d, "group_conv": "dense_tma"})
            if d.get("three_parts"):  # both levers at once (c96, c192)
                first.insert(2, {**d, "group_conv": "dense_tma", "join_parts": True})
        if 128 < c <= 256:
            first += [{**d, "num_stages": 5 - d["num_stages"]}, {**d, "block_h": 32, "num_stages": 4}]
        elif c > 256:
            loop3 = {**d, "group_conv": "dense_loop", "tap_stages": 3, "three_parts": True} if three_parts_fit(c_in) else d
            # after run 30: the 32-pixel tiles' dots are mma.sync (wgmma wants an M of 64; Nsight Compute put 44 % of c384's
            # samples on them, waiting on shared-memory operands); transposed (swap_ab) the 64 expanded channels of a chunk
            # are the M and the pixels the N, so wgmma. An sm_90 compile here (Triton 3.9, benchmarks/compile_sm90.py) of
            # c384 with swap_ab: 323,584 B of shared memory at three stages (over the 232,448), 225,280 at two, 77,824 at one.
            # Run 31: slower at both shapes (c384 0.0788 against 0.0701 ms at two stages), kept first as the last lever tried
            swap = {**d, "swap_ab": True, "block_h": 64, "num_stages": 3}  # run 31's tiles (64 expanded channels: the wgmma's M)
            first += [{**d, "block_h": 64, "num_stages": 3}, swap, {**swap, "num_stages": 2}, {**swap, "num_stages": 1}, {**swap, "block_p": 64, "num_stages": 2},
                      loop3, {**loop3, "block_p": 64, "block_h": 32, "num_stages": 2}, {**loop3, "block_p": 64, "block_h": 32, "num_stages": 2, "split_h": 2}]
        out = out[:1] + first + new + [{**d, "packed_silu": not d.get("packed_silu", False)}] + out[1:]
        return [v for i, v in enumerate(out) if v not in out[:i]]
    d = triton_blocks.default_config("mbconv", c, hid)
    # run 30: the depthwise conv's neighbours from the chunk itself (dw_gather: tl.gather, no scratch; with it the
    # pipeliner may run two stages), from a slot of two halves (dw_dbuf: one barrier a chunk), or the next chunk's
    # weights prefetched (dw_prefetch); run 30c made the prefetch c48's default and the gather c192's. `slot` is the
    # slot, one stage, no prefetch (the default up to run 30), from which the other variants start
    slot = {**{k: v for k, v in d.items() if k not in ("dw_gather", "dw_prefetch")}, "num_stages": 1}
    half = max(16, d["halo_p"] // 2)
    # after run 30d: the channels as two parts (48 = 32 + 16, as ConvFirst's since run 15), on the default and on the
    # slot (run 30f: slower at every width, e.g. c48 0.4531 against 0.3589 ms, c384 0.3603 against 0.2767). After 30f:
    # 4 warps, whose 255 registers a thread let two programs share an SM (8 warps: one), so that one program's chain
    # of waits overlaps the other's; at half the frame (c48: 128 pixels, an sm_90 compile without spills) and at the
    # default frame (run 30g: slower at every width, c48 0.3880 and 0.4747 against 0.3586 ms)
    out = [d, {**d, "halo_p": half, "num_warps": 4}, {**d, "num_warps": 4}, {**d, "two_parts": True}, {**slot, "two_parts": True}, slot,
           {**slot, "dw_prefetch": True}, {**slot, "dw_gather": True}, {**slot, "dw_gather": True, "num_stages": 2},
           {**slot, "dw_gather": True, "dw_prefetch": True}, {**slot, "dw_gather": True, "halo_p": half}, {**slot, "dw_dbuf": True},
           {**slot, "dw_dbuf": True, "halo_p": half}, {**slot, "halo_p": half}, {**slot, "reload_x": True}, {**slot, "block_h": 16},
           {**slot, "halo_p": 2 * d["halo_p"]}, {**slot, "halo_p": half, "num_warps": 4},
           triton_blocks.default_config("mbconv", c, hid, halo="recompute")]
    # a frame over the accumulator cap (triton_blocks.MAX_ACC) is refused by the launcher before it runs: a failed tile,
    # not a crash (run 6: a 65,536-value accumulator hit an illegal memory access, which ends the process's CUDA context)
    sd = triton_blocks.default_config("mbconv", c, hid, halo="shift")
    shift = [sd, {**sd, "block_h": {16: 32, 32: 16}[sd["block_h"]]}]  # run 33b: 16 or 32 a chunk, the other one the runner-up
    out = shift + out if triton_blocks.default_halo(c, blk.body[1][0].kernel_size[0], MID, hw, hw) == "shift" else out[:1] + shift + out[1:]
    return [v for i, v in enumerate(out) if v not in out[:i]]


MBCONV_KERNELS = {"staged": "_mbconv_staged_kernel", "recompute": "_mbconv_kernel", "shift": "_mbconv_shift_kernel"}  # by config["halo"]
BLOCK_KERNELS = ("_convfirst_kernel", *MBCONV_KERNELS.values())  # the fused blocks' kernels; with the stem's, all of effkit.kernels'
SECTIONS = ("correctness", "tiles", "parts", "stem", "blocks", "networks", "profile", "fused_then_compile", "profile_compiled", "batches", "max_autotune",
            "block_max_autotune")
TILE_SHARE = 0.35  # the tile search stops once this share of the deadline is spent


H200_CEILINGS = ROOT / "benchmarks/results/h200/ceilings.json"


def ceilings(path: str | None = None, device: str | None = None) -> tuple[float, float, str]:
    """The bf16 peak (FLOP/s) and DRAM bandwidth (bytes/s) the fused rooflines divide by, and where they came from:
    `path` (an `effkit device --device cuda --refresh --json PATH` file measured idle on this card) or the H200's
    committed ones. A file measured on another card than `device` (the running GPU's name) is refused: a fraction of
    another card's roofline is no measurement of this one."""
    src = Path(path) if path else H200_CEILINGS
    ceil = json.loads(src.read_text())
    if device is not None and ceil.get("name") != device:
        sys.exit(f"ceilings {src} were measured on {ceil.get('name')!r}, not on this {device!r}: measure this card's with "
                 f"'effkit device --device cuda --refresh --json FILE' and pass FILE with --ceilings")
    try:
        label = str(src.relative_to(ROOT))
    except ValueError:
        label = str(src)
    return ceil["peak_flops"]["bf16"], ceil["bandwidth_bytes_per_s"], label


def add_ceilings_option(ap) -> None:
    """The kernel scripts' --ceilings option (read by `ceilings`)."""
    ap.add_argument("--ceilings", default=None, help="an 'effkit device --json' file measured idle on this card (default: the H200's, "
                    "results/h200/ceilings.json; refused on another card)")


AHEAD = True  # graph_time_ms holds the GPU back while the replays are issued (--no-ahead: the old way, for comparison)


def graph_time_ms(fn, x, reps: int = 200, ahead: bool | None = None) -> tuple[float, float]:
    """Median and IQR (ms) of `reps` replays of a CUDA graph of fn(x), each between CUDA events. The GPU first sleeps
    (torch.cuda._sleep) while the CPU issues every event and replay, so the replays run back to back: a replay shorter
    than the CPU's cost of issuing it (event records and the graph launch) otherwise leaves the GPU idle between
    replays, and its event pair measures the issuing, not the kernels (up to run 19, batch-1 blocks and the ablation's
    "neither" sat at 0.015–0.018 ms whatever their size; each run first times a one-element graph both ways, its
    meta's timing_floor_ms). ahead: hold the GPU back (default: AHEAD, the run's --no-ahead)."""
    if DEV == "cpu":  # --smoke: wall clock, a few steps
        t = []
        with torch.no_grad():
            for _ in range(3):
                s = time.perf_counter()
                fn(x)
                t.append(1e3 * (time.perf_counter() - s))
        return statistics.median(t), max(t) - min(t)
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s), torch.no_grad():
        for _ in range(3):
            fn(x)
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.no_grad(), torch.cuda.graph(g):
        fn(x)
    for _ in range(10):
        g.replay()
    ev = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(reps)]
    if (AHEAD if ahead is None else ahead):
        torch.cuda._sleep(int(4e7))  # about 20 ms at 2 GHz: longer than issuing 200 replays takes the CPU
    for a, b in ev:
        a.record()
        g.replay()
        b.record()
    torch.cuda.synchronize()
    t = sorted(a.elapsed_time(b) for a, b in ev)
    q = statistics.quantiles(t, n=4)
    return statistics.median(t), q[2] - q[0]


def randomise_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """BatchNorms with non-trivial statistics (fresh ones are the identity, which would fold trivially)."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.weight.data = 0.5 + torch.rand(m.num_features, generator=g)
            m.bias.data = 0.1 * torch.randn(m.num_features, generator=g)
            m.running_mean = 0.1 * torch.randn(m.num_features, generator=g)
            m.running_var = 0.5 + torch.rand(m.num_features, generator=g)
    return model.eval()


def compiled(model: nn.Module, **kw) -> nn.Module:
    """torch.compile from an empty cache: dynamo keeps 8 compiled versions of a code object and past that runs it eagerly
    with a warning, so the ninth block shape compiled in one process (every block shares _Residual.forward) was timed
    eager under the name compile (runs 11 and 16 at batches 1 and 256, found in run 16)."""
    if DEV == "cpu":
        return model
    torch._dynamo.reset()
    return torch.compile(model, **kw)


STRIDED = True  # the strided, width-changing ConvFirst blocks are fused and measured too (--stride-1-only: not)


def _key(c_in: int, c_out: int, stride: int) -> str:
    """A block's shape: "c48" for a stride-1, equal-width block, "c32>48/s2" for one that strides or changes width."""
    return f"c{c_in}" if stride == 1 and c_in == c_out else f"c{c_in}>{c_out}/s{stride}"


def shape_key(blk: nn.Module) -> str:
    """_key of an unfused block."""
    return _key(blk.body[0][0].in_channels, blk.body[2][0].out_channels, max(m[0].stride[0] for m in blk.body))


def fused_key(m: nn.Module) -> str:
    """_key of a fused module (the same shape as the block it replaced)."""
    if isinstance(m, FusedConvFirst):
        return _key(m.w1.shape[0], m.w3.shape[0], m.stride)
    return _key(m.w1.shape[1], m.w3.shape[0], 1)


def fused_copy(blk: nn.Module, config: dict | None = None) -> nn.Module:
    """The block (or the stem) fused (folded in fp32), cast to the run's dtype, with the kernel tiles `config`."""
    holder = nn.Sequential(copy.deepcopy(blk).float()).eval()
    fuse_blocks(holder, strided=STRIDED)
    holder[0].config = config
    # channels-last as a network holds it: until 1fc18d1 that conversion re-laid c384's weights, and only the networks,
    # converted after fusing, ran them wrong (runs 51-52), so every block is now checked and timed converted too
    return holder.to(DT).to(memory_format=torch.channels_last)


def stem_variants() -> list[dict]:
    """The stem kernel's tiles: output pixels a program and warps (no loop: stages do not matter), the default first."""
    return [{}, {"packed_silu": True}, {"block_p": 128}, {"block_p": 512}, {"block_p": 512, "num_warps": 8}, {"block_p": 1024, "num_warps": 8},
            {"fast_silu": False}]  # run 20: the SiLU in bf16x2


def stem_cost(b: int, stem: nn.Module) -> tuple[int, int]:
    """(FLOPs, compulsory bytes in bf16) of a stem conv → BN → act at batch b and the run's resolution: 2 · output pixels
    · C_out · C_in · k² (3x3, 3 → 32, stride 2 at 224: 2 · 112² · 32 · 27 a picture); input and output once, folded
    weights and bias once."""
    conv = stem[0]
    k, st, pad = conv.kernel_size[0], conv.stride[0], conv.padding[0]
    side = (RES + 2 * pad - k) // st + 1
    flops = 2 * b * side * side * conv.out_channels * conv.in_channels * k * k
    return flops, 2 * (b * conv.in_channels * RES * RES + b * conv.out_channels * side * side + conv.weight.numel() + conv.out_channels)


def input_sizes(net: nn.Module, blocks: list) -> dict:
    """Each block's input height and width in the network at its resolution, from one forward with hooks."""
    sizes, hooks = {}, []
    for path, blk in blocks:
        hooks.append(blk.register_forward_hook(lambda m, i, o, path=path: sizes.__setitem__(path, i[0].shape[-1])))
    with torch.no_grad():
        net(torch.zeros(1, 3, RES, RES, device=DEV))
    for h in hooks:
        h.remove()
    return sizes


def fusable_blocks(net: nn.Module) -> list:
    """The residual blocks `fuse_blocks` fuses in `net` (with STRIDED), as (path, module), in the network's order."""
    return [(p, m) for p, m in net.named_modules() if hasattr(m, "body") and hasattr(m, "shortcut") and _match(m, STRIDED)]


def distinct_shapes(net: nn.Module, blocks: list) -> dict:
    """One (path, block, input size) per distinct block shape (`shape_key`): the first block of each, in order."""
    sizes = input_sizes(net, blocks)
    out = {}
    for path, blk in blocks:
        out.setdefault(shape_key(blk), (path, blk, sizes[path]))
    return out


def block_cost(hw: int, b: int, blk: nn.Module) -> tuple[int, int]:
    """(FLOPs, compulsory bytes in bf16) of one block at input size hw: 2·MACs; input and output once, folded weights
    once. Each conv (the shortcut's too) costs out pixels x out channels x (in channels / groups) x k², its output
    (hw − 1) // stride + 1 pixels a side (padding k // 2): e.g. ConvFirst at stride 1, c channels, hidden 4c: per pixel
    c·8·9 (grouped 3x3) + c·4c (expand) + 4c·c (project)."""
    convs = [m[0] for m in blk.body] + ([blk.shortcut[0]] if blk.shortcut is not None else [])
    macs, side = 0, hw
    for conv in [m[0] for m in blk.body]:  # in order: each conv's output size from the one before
        side = (side - 1) // conv.stride[0] + 1
        macs += b * side * side * conv.out_channels * (conv.in_channels // conv.groups) * conv.kernel_size[0] * conv.kernel_size[1]
    if blk.shortcut is not None:
        conv = blk.shortcut[0]
        macs += b * side * side * conv.out_channels * conv.in_channels
    folded = sum(c.weight.numel() + c.out_channels for c in convs)  # weights, and one bias per conv after folding
    c_in, c_out = blk.body[0][0].in_channels, blk.body[2][0].out_channels
    return 2 * macs, 2 * (b * c_in * hw * hw + b * c_out * side * side + folded)


def sync():
    if DEV == "cuda":
        torch.cuda.synchronize()


def occupancy(n_regs: int, num_warps: int) -> int:
    """Programs per SM that the registers allow (65,536 32-bit registers per SM, 32 threads per warp)."""
    return 65536 // max(1, n_regs * 32 * num_warps)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--deadline", type=float, default=330.0, help="seconds for everything; later sections are skipped")
    ap.add_argument("--smoke", action="store_true", help="the code paths on the CPU (TRITON_INTERPRET=1), fp32, small")
    ap.add_argument("--stride-1-only", action="store_true", help="leave the strided, width-changing ConvFirst blocks unfused (fuse_blocks(strided=False))")
    ap.add_argument("--nets", default="convfirst_net,mbconv_net", help="comma-separated: convfirst_net, mbconv_net (default both)")
    ap.add_argument("--tile-shapes", default="", help="comma-separated block shapes (e.g. c192,c384) the tile search tries; default all")
    ap.add_argument("--batch", type=int, default=0, help="the middle batch (default 64): tiles, blocks, networks and the compiled rows")
    ap.add_argument("--no-ahead", action="store_true", help="time replays as issued, without holding the GPU back first (the way up to run 19)")
    ap.add_argument("--selective-shapes", default="", help="comma-separated block shapes the selective rows fuse (default: those "
                    "whose fused block beat compile's in this run's block rows)")
    ap.add_argument("--tile-first", type=int, default=0, help="try only the first N tiles of each shape (0: all); the defaults come first")
    ap.add_argument("--tile-configs", default="", help="a JSON list of tile configs, each over a shape's default: the tile search "
                    "tries the default, then these, instead of its own list (e.g. '[{\"num_warps\": 16}]')")
    ap.add_argument("--tile-split", action="store_true", help="the ConvFirst tiles: the default with split_h 2, 4 and 8 first (for small "
                    "batches, whose few pixel tiles leave SMs idle)")
    ap.add_argument("--tile-share", type=float, default=TILE_SHARE, help=f"share of --deadline the tile search may take (default {TILE_SHARE})")
    add_ceilings_option(ap)
    ap.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated, from {', '.join(SECTIONS)} (default: all, in that order)")
    a = ap.parse_args()
    want = a.sections.split(",")
    if any(w not in SECTIONS for w in want):
        ap.error(f"--sections {a.sections!r}: each must be one of {', '.join(SECTIONS)}")
    try:
        configs = json.loads(a.tile_configs) if a.tile_configs else []
        if not (isinstance(configs, list) and all(isinstance(c, dict) for c in configs)):
            raise ValueError("not a list of objects")
    except ValueError as e:
        ap.error(f"--tile-configs {a.tile_configs!r} must be a JSON list of tile configs ({e})")
    a.tile_configs = configs
    global DEV, DT, RES, WIDTH, MID, BIG, STRIDED, AHEAD
    STRIDED = not a.stride_1_only
    AHEAD = not a.no_ahead
    if a.smoke:
        DEV, DT, RES, WIDTH, MID, BIG = "cpu", torch.float32, 32, 0.5, 2, 3
    MID = a.batch or MID
    t0 = time.perf_counter()
    left = lambda: a.deadline - (time.perf_counter() - t0)  # noqa: E731
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    peak, bw, ceil_src = ceilings(a.ceilings, torch.cuda.get_device_name() if DEV == "cuda" else None)
    import triton
    res = {"meta": {"torch": torch.__version__, "triton": triton.__version__, "device": torch.cuda.get_device_name() if DEV == "cuda" else "cpu (smoke)", "date": time.strftime("%Y-%m-%d %H:%M:%S"),
                    "peak_bf16_flops": peak, "bandwidth_bytes_per_s": bw, "ceilings": ceil_src + " (measured idle)",
                    "dram_bytes": "not read here (benchmarks/kernels_ncu.py reads them); compulsory bytes given", "tolerance": TOL},
           "correctness": [], "tiles": [], "parts": [], "stem": [], "blocks": [], "networks": [], "profile": [], "profile_compiled": [], "skipped": []}

    def save():
        (out / "kernels_gpu.json").write_text(json.dumps(res, indent=1, default=str))

    if DEV == "cuda":  # the timing floor: a graph of one one-element kernel, replays issued as they come and held back
        one = torch.zeros(1, device=DEV)
        floor = {"ahead" if ahead else "as_issued": graph_time_ms(lambda t: t.add_(1.0), one, ahead=ahead) for ahead in (False, True)}
        res["meta"]["timing_floor_ms"] = {k: {"median": m, "iqr": q} for k, (m, q) in floor.items()}
        print(f"timing floor (one-element graph): as issued {floor['as_issued'][0]:.4f} ms, held back {floor['ahead'][0]:.4f} ms", flush=True)

    def say(msg):
        print(f"[{time.perf_counter() - t0:5.0f} s] {msg}", flush=True)

    if any(n not in ("convfirst_net", "mbconv_net") for n in a.nets.split(",")):
        ap.error(f"--nets {a.nets!r}: each must be convfirst_net or mbconv_net")
    nets = {name: randomise_bn(effkit.build_model(name, width=WIDTH, resolution=RES).model).to(DEV) for name in a.nets.split(",")}
    blocks = {name: fusable_blocks(net) for name, net in nets.items()}
    distinct = {name: distinct_shapes(nets[name], bl) for name, bl in blocks.items()}
    hw_of = {(name, key): hw for name, d in distinct.items() for key, (_, _, hw) in d.items()}  # (net, shape key) -> input size
    shapes = {(name, key): (path, blk) for name, d in distinct.items() for key, (path, blk, _) in d.items()}  # one block a shape

    # 1. correctness on every fused block
    worst = 0.0
    for name, bl in (blocks.items() if "correctness" in want else ()):
        for path, blk in bl:
            c, key = blk.body[0][0].in_channels, shape_key(blk)
            hw = hw_of[(name, key)]
            for b in (1, MID):
                x32 = torch.randn(b, c, hw, hw, device=DEV).to(memory_format=torch.channels_last)
                with torch.no_grad():
                    want32 = blk.float()(x32)
                    want16 = copy.deepcopy(blk).to(DT)(x32.to(DT)).float()
                    try:
                        got = fused_copy(blk)(x32.to(DT)).float()
                    except Exception as e:  # a kernel that does not compile or launch: recorded, the others still checked
                        res["correctness"].append({"net": name, "block": path, "channels": c, "shape": key, "batch": b, "ok": False,
                                                   "error": f"{type(e).__name__}: {str(e).splitlines()[0][:300]}"})
                        say(f"{name} {path} b{b}: FAILED {type(e).__name__}: {str(e).splitlines()[0][:300]}")
                        continue
                scale = want32.abs().max().item() or 1.0
                row = {"net": name, "block": path, "channels": c, "shape": key, "hw": hw, "batch": b,
                       "fused_vs_fp32": (got - want32).abs().max().item() / scale,
                       "unfused_bf16_vs_fp32": (want16 - want32).abs().max().item() / scale,
                       "fused_vs_unfused_bf16": (got - want16).abs().max().item() / scale}
                row["ok"] = row["fused_vs_fp32"] <= TOL
                worst = max(worst, row["fused_vs_fp32"])
                res["correctness"].append(row)
                say(f"{name} {path} {key} {hw}x{hw} b{b}: fused vs fp32 {row['fused_vs_fp32']:.2e} (unfused bf16 vs fp32 "
                    f"{row['unfused_bf16_vs_fp32']:.2e}){'' if row['ok'] else '  OVER TOLERANCE'}")
    res["meta"]["worst_fused_vs_fp32"] = worst
    save()

    # 2. tiles at batch 64
    best: dict = {}
    for (name, key), (path, blk) in (shapes.items() if "tiles" in want else ()):
        if a.tile_shapes and key not in a.tile_shapes.split(","):
            continue
        hw, c = hw_of[(name, key)], blk.body[0][0].in_channels
        x = torch.randn(MID, c, hw, hw, device=DEV, dtype=DT).to(memory_format=torch.channels_last)
        with torch.no_grad():
            ref = blk.float()(x.float())
        scale = ref.abs().max().item() or 1.0
        variants = tile_variants(name, blk, hw)
        if a.tile_configs:  # the default, then each given config over it, instead of the search's list
            # (a config that names another MBConv halo kernel than the default's takes that kernel's defaults instead)
            variants = variants[:1] + [{**(variants[0] if c.get("halo", variants[0].get("halo")) == variants[0].get("halo") else {}), **c}
                                       for c in a.tile_configs]
        if a.tile_split and name == "convfirst_net":  # the default with its expanded channels split 2, 4 and 8 ways, first
            variants = variants[:1] + [{**variants[0], "split_h": k} for k in (2, 4, 8)] + variants[1:]
        for cfg in variants[:a.tile_first or None]:
            if time.perf_counter() - t0 > a.tile_share * a.deadline:
                res["skipped"].append({"what": f"tiles {name} {key} {cfg}", "why": f"{left():.0f} s left"})
                continue
            try:
                fused = fused_copy(blk, cfg)
                with torch.no_grad():  # every tile is checked before it is timed: a wrong kernel's time is not a result
                    err = (fused(x).float() - ref).abs().max().item() / scale
                ms, iqr = graph_time_ms(fused, x, reps=100)
            except Exception as e:  # a tile that does not compile (shared memory, registers) is recorded and skipped
                res["tiles"].append({"net": name, "channels": c, "shape": key, "config": cfg, "error": f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"})
                say(f"tiles {name} {key} {cfg}: FAILED {type(e).__name__}: {str(e).splitlines()[0][:200]}")
                continue
            kname = "_convfirst_kernel" if name == "convfirst_net" else MBCONV_KERNELS[cfg.get("halo", "staged")]
            st = triton_blocks.last_launch.get(kname, {})
            row = {"net": name, "channels": c, "shape": key, "hw": hw, "config": cfg, "ms": ms, "iqr_ms": iqr, "fused_vs_fp32": err, "ok": err <= TOL,
                   "n_regs": st.get("n_regs"), "n_spills": st.get("n_spills"), "shared_bytes": st.get("shared_bytes"), "wgmma": st.get("wgmma"),
                   "mma_sync": st.get("mma_sync"), "launch": st.get("config")}
            if row["n_regs"]:
                row["programs_per_sm_by_registers"] = occupancy(row["n_regs"], cfg["num_warps"])
            res["tiles"].append(row)
            if row["ok"] and ((name, key) not in best or ms < best[(name, key)][1]):
                best[(name, key)] = (cfg, ms)
            say(f"tiles {name} {key} {cfg}: {ms:.4f} ms (IQR {iqr:.4f}), err {err:.1e}{'' if row['ok'] else ' OVER TOLERANCE'}, regs "
                f"{row['n_regs']}, spills {row['n_spills']}, shared {row['shared_bytes']}, wgmma {row['wgmma']}, mma.sync {row['mma_sync']}")
        save()
    res["meta"]["best_tiles"] = {f"{n} {k}": cfg for (n, k), (cfg, _) in best.items()}

    # 2b. the stem (conv → BN → SiLU as one im2col kernel): correctness at batch 1 and 64, its tiles at 64, then eager,
    # compile and fused at 64 (and at 1 and 256 with "batches")
    stems = {name: [(p_, m) for p_, m in net.named_modules() if p_ and _match_stem(m)] for name, net in nets.items()}
    stem_best: dict = {}  # net -> the stem's best correct tiles

    def stem_rows(batches, with_compile, search):
        for name, found in stems.items():
            for path, stem in found:
                for b in batches:
                    if left() < (40 if with_compile else 10):
                        res["skipped"].append({"what": f"stem {name} b{b}", "why": f"{left():.0f} s left"})
                        continue
                    x = torch.randn(b, stem[0].in_channels, RES, RES, device=DEV, dtype=DT).to(memory_format=torch.channels_last)
                    with torch.no_grad():
                        ref = copy.deepcopy(stem).float()(x.float())
                    scale = ref.abs().max().item() or 1.0
                    row = {"net": name, "stem": path, "batch": b}
                    for cfg in (stem_variants() if search else [stem_best.get(name) or {}]):
                        fused = fused_copy(stem, cfg)
                        with torch.no_grad():
                            err = (fused(x).float() - ref).abs().max().item() / scale
                        ms, iqr = graph_time_ms(fused, x)
                        st = triton_blocks.last_launch.get("_conv_act_kernel", {})
                        row.setdefault("tiles", []).append({"config": cfg, "ms": ms, "iqr_ms": iqr, "fused_vs_fp32": err, "ok": err <= TOL,
                                                            "n_regs": st.get("n_regs"), "n_spills": st.get("n_spills"), "wgmma": st.get("wgmma"),
                                                            "mma_sync": st.get("mma_sync")})
                        say(f"stem {name} b{b} {cfg}: {ms:.4f} ms (IQR {iqr:.4f}), err {err:.1e}{'' if err <= TOL else ' OVER TOLERANCE'}, regs {st.get('n_regs')}")
                    ok = [t for t in row["tiles"] if t["ok"]]
                    if ok:
                        t = min(ok, key=lambda t: t["ms"])
                        row.update(config=t["config"], fused_ms=t["ms"], fused_iqr_ms=t["iqr_ms"], fused_vs_fp32=max(t_["fused_vs_fp32"] for t_ in row["tiles"]))
                        if search and b == MID:
                            stem_best[name] = t["config"]
                    eager = copy.deepcopy(stem).to(DT).to(memory_format=torch.channels_last)
                    row["eager_ms"], row["eager_iqr_ms"] = graph_time_ms(eager, x)
                    if with_compile:
                        row["compile_default_ms"], row["compile_default_iqr_ms"] = graph_time_ms(compiled(copy.deepcopy(eager)), x)
                    flops, bytes_ = stem_cost(b, stem)
                    roof_s = max(flops / peak, bytes_ / bw)
                    row.update(flops=flops, compulsory_bytes=bytes_, fused_roofline_ms=1e3 * roof_s,
                               fraction_of_fused_roofline=1e3 * roof_s / row["fused_ms"] if row.get("fused_ms") else None)
                    res["stem"].append(row)
                    say(f"stem {name} b{b}: eager {row['eager_ms']:.4f}, compile {row.get('compile_default_ms', float('nan')):.4f}, fused "
                        f"{row.get('fused_ms', float('nan')):.4f} ms; roofline {1e3 * roof_s:.4f} ms")
                    save()

    def tiles_for(name, key):
        return best.get((name, key), (None, 0))[0]

    def parts_rows():
        """What each part of the ConvFirst kernel costs, at batch 64 with the best tiles: the kernel timed whole (parts
        3), without its expansion (1: the grouped conv alone), without its grouped conv (2: the expansion of the input's
        centre pixel), and with neither (0: loads, biases, residual and store). Stride-1 blocks only."""
        for (name, key), (path, blk) in shapes.items():
            if name != "convfirst_net" or "/" in key:
                continue
            hw, c = hw_of[(name, key)], blk.body[0][0].in_channels
            x = torch.randn(MID, c, hw, hw, device=DEV, dtype=DT).to(memory_format=torch.channels_last)
            # the ablations hold the input as the output's two parts: best tiles with three input parts are timed on two
            # (run 24 refused c192's three parts here and lost the rows), and the row says so
            chosen = tiles_for(name, key)
            tiles = {**(chosen or {}), "three_parts": False}
            dropped = (chosen or triton_blocks.default_config("convfirst", c, 4 * c, c_in=c)).get("three_parts", False)
            row = {"net": name, "shape": key, "hw": hw, "batch": MID, "tiles": tiles, "three_parts_dropped": dropped}
            for parts, what in ((3, "whole_ms"), (1, "grouped_conv_only_ms"), (2, "expansion_only_ms"), (0, "neither_ms")):
                if left() < 10:
                    res["skipped"].append({"what": f"parts {key} {parts}", "why": f"{left():.0f} s left"})
                    break
                row[what], row[what.replace("_ms", "_iqr_ms")] = graph_time_ms(fused_copy(blk, {**tiles, "parts": parts}), x)
            res["parts"].append(row)
            say(f"parts {name} {key}: " + ", ".join(f"{k} {v:.4f}" for k, v in row.items() if k.endswith("_ms") and "iqr" not in k))
            save()

    def block_rows(batches, with_compile):
        for (name, key), (path, blk) in shapes.items():
            hw, c = hw_of[(name, key)], blk.body[0][0].in_channels
            for b in batches:
                need = 60 if with_compile else 10
                if left() < need:
                    res["skipped"].append({"what": f"block {name} {key} b{b}", "why": f"{left():.0f} s left"})
                    continue
                x = torch.randn(b, c, hw, hw, device=DEV, dtype=DT).to(memory_format=torch.channels_last)
                eager = copy.deepcopy(blk).to(DT).to(memory_format=torch.channels_last)
                row = {"net": name, "block": path, "channels": c, "shape": key, "hw": hw, "batch": b, "tiles": tiles_for(name, key)}
                row["eager_ms"], row["eager_iqr_ms"] = graph_time_ms(eager, x)
                if with_compile:
                    row["compile_default_ms"], row["compile_default_iqr_ms"] = graph_time_ms(compiled(copy.deepcopy(eager)), x)
                row["fused_ms"], row["fused_iqr_ms"] = graph_time_ms(fused_copy(blk, tiles_for(name, key)), x)
                flops, bytes_ = block_cost(hw, b, blk)
                roof_s = max(flops / peak, bytes_ / bw)
                row.update(flops=flops, compulsory_bytes=bytes_, bound="compute" if flops / peak > bytes_ / bw else "memory",
                           fused_roofline_ms=1e3 * roof_s, fraction_of_fused_roofline=1e3 * roof_s / row["fused_ms"])
                res["blocks"].append(row)
                say(f"block {name} {key} {hw}x{hw} b{b}: eager {row['eager_ms']:.4f} (IQR {row['eager_iqr_ms']:.4f}), compile "
                    f"{row.get('compile_default_ms', float('nan')):.4f}, fused {row['fused_ms']:.4f} (IQR {row['fused_iqr_ms']:.4f}) ms; "
                    f"roofline {1e3 * roof_s:.4f} ms ({row['fraction_of_fused_roofline']:.0%}, {row['bound']}-bound)")
                save()

    def fused_net(name, select=None, stem=True):
        net = copy.deepcopy(nets[name]).float()
        fuse_blocks(net, select=select, strided=STRIDED, stem=stem)
        for m in net.modules():
            if isinstance(m, (FusedConvFirst, FusedMBConv)):
                m.config = tiles_for(name, fused_key(m))
            elif isinstance(m, FusedConvAct):
                m.config = stem_best.get(name)
        return net.to(DT).to(memory_format=torch.channels_last)

    def net_rows(batches, with_compile):
        for name in nets:
            for b in batches:
                if left() < (90 if with_compile else 10):
                    res["skipped"].append({"what": f"network {name} b{b}", "why": f"{left():.0f} s left"})
                    continue
                eager = copy.deepcopy(nets[name]).to(DT).to(memory_format=torch.channels_last)
                x = torch.randn(b, 3, RES, RES, device=DEV, dtype=DT).to(memory_format=torch.channels_last)
                row = {"net": name, "batch": b}
                row["eager_ms"], row["eager_iqr_ms"] = graph_time_ms(eager, x)
                if with_compile:
                    t = time.perf_counter()
                    row["compile_default_ms"], row["compile_default_iqr_ms"] = graph_time_ms(compiled(copy.deepcopy(eager)), x)
                    row["compile_default_build_s"] = time.perf_counter() - t
                fnet = fused_net(name)
                with torch.no_grad():  # the whole fused network against the unfused one in fp32, as it is timed (channels-last)
                    want = copy.deepcopy(nets[name]).float().to(memory_format=torch.channels_last)(x.float())
                    row["fused_vs_fp32"] = ((fnet(x).float() - want).abs().max() / want.abs().max().clamp_min(1e-30)).item()
                row["fused_ok"] = row["fused_vs_fp32"] <= NET_TOL
                row["fused_ms"], row["fused_iqr_ms"] = graph_time_ms(fnet, x)  # the blocks and the stem
                row["fused_blocks_only_ms"], row["fused_blocks_only_iqr_ms"] = graph_time_ms(fused_net(name, stem=False), x)
                if with_compile:
                    row["fused_speedup_over_compile_default"] = row["compile_default_ms"] / row["fused_ms"]
                res["networks"].append(row)
                say(f"network {name} b{b}: eager {row['eager_ms']:.3f} (IQR {row['eager_iqr_ms']:.3f}), compile "
                    f"{row.get('compile_default_ms', float('nan')):.3f}, fused {row['fused_ms']:.3f} (IQR {row['fused_iqr_ms']:.3f}; outputs "
                    f"{row['fused_vs_fp32']:.1e} from fp32{'' if row['fused_ok'] else ', OVER TOLERANCE'}), blocks only "
                    f"{row['fused_blocks_only_ms']:.3f} (IQR {row['fused_blocks_only_iqr_ms']:.3f}) ms")
                save()

    def kernel_table(model, x, steps=5):
        """ms a step of each kernel over `steps` forwards, from torch.profiler (kernels only)."""
        from torch.profiler import ProfilerActivity, profile
        with torch.no_grad():
            for _ in range(3):
                model(x)
            sync()
            with profile(activities=[ProfilerActivity.CUDA if DEV == "cuda" else ProfilerActivity.CPU]) as prof:
                for _ in range(steps):
                    model(x)
                sync()
        kern = {}
        for e in prof.key_averages():
            if str(e.device_type).endswith("CUDA"):  # kernels only: a CPU op's device time would count them twice
                kern[e.key] = kern.get(e.key, 0.0) + (getattr(e, "self_device_time_total", 0.0) or e.device_time_total) / steps / 1e3
        return kern

    def profile_fused(b=None):
        b = b or MID
        for name in nets:
            if left() < 15:
                res["skipped"].append({"what": f"profile {name}", "why": f"{left():.0f} s left"})
                continue
            net = fused_net(name)
            kern = kernel_table(net, torch.randn(b, 3, RES, RES, device=DEV, dtype=DT).to(memory_format=torch.channels_last))
            fused_ms = sum(v for k, v in kern.items() if any(n in k for n in BLOCK_KERNELS))
            total = sum(kern.values())
            top = sorted(kern.items(), key=lambda kv: -kv[1])[:12]
            res["profile"].append({"net": name, "batch": b, "kernel_ms_total": total, "fused_kernels_ms": fused_ms,
                                   "rest_ms": total - fused_ms, "top": top})
            nf = sum(isinstance(m, (FusedConvFirst, FusedMBConv)) for m in net.modules())
            res["profile"][-1]["fused_blocks"] = nf
            say(f"profile {name} b{b}: kernels {total:.3f} ms a step, of which the {nf} fused blocks {fused_ms:.3f} ms, the rest {total - fused_ms:.3f} ms")
            save()

    def profile_compiled():
        """Where a step's kernel time goes under torch.compile: the unfused network compiled, and every block and the
        stem fused with the rest compiled (batch 64): the fused kernels against the rest, the rest's largest kernels."""
        ours = (*BLOCK_KERNELS, "_conv_act_kernel")
        for name in nets:
            x = torch.randn(MID, 3, RES, RES, device=DEV, dtype=DT).to(memory_format=torch.channels_last)
            for label, make in (("compile", lambda: compiled(copy.deepcopy(nets[name]).to(DT).to(memory_format=torch.channels_last))),
                                ("fused_then_compile", lambda: compiled(fused_net(name)))):
                if left() < 60:
                    res["skipped"].append({"what": f"profile_compiled {name} {label}", "why": f"{left():.0f} s left"})
                    continue
                kern = kernel_table(make(), x)
                mine = sum(v for k, v in kern.items() if any(o in k for o in ours))
                total = sum(kern.values())
                res["profile_compiled"].append({"net": name, "batch": MID, "model": label, "kernel_ms_total": total, "fused_kernels_ms": mine,
                                                "rest_ms": total - mine, "top": sorted(kern.items(), key=lambda kv: -kv[1])[:15]})
                say(f"profile_compiled {name} {label}: kernels {total:.3f} ms a step, fused kernels {mine:.3f}, the rest {total - mine:.3f}; top: "
                    + "; ".join(f"{k[:60]} {v:.3f}" for k, v in sorted(kern.items(), key=lambda kv: -kv[1])[:6]))
                save()

    def block_autotune():
        """compile max-autotune-no-cudagraphs per block shape at batch 64, beside that shape's batch-64 row (made here,
        eager and fused, if this run has none)."""
        for (name, key), (path, blk) in shapes.items():
            if left() < 90:
                res["skipped"].append({"what": f"block max-autotune {name} {key}", "why": f"{left():.0f} s left, 90 s wanted"})
                continue
            hw, c = hw_of[(name, key)], blk.body[0][0].in_channels
            x = torch.randn(MID, c, hw, hw, device=DEV, dtype=DT).to(memory_format=torch.channels_last)
            eager = copy.deepcopy(blk).to(DT).to(memory_format=torch.channels_last)
            row = next((r for r in res["blocks"] if r["net"] == name and r.get("shape") == key and r["batch"] == MID), None)
            if row is None:
                row = {"net": name, "block": path, "channels": c, "shape": key, "hw": hw, "batch": MID, "tiles": tiles_for(name, key)}
                row["eager_ms"], row["eager_iqr_ms"] = graph_time_ms(eager, x)
                row["fused_ms"], row["fused_iqr_ms"] = graph_time_ms(fused_copy(blk, tiles_for(name, key)), x)
                res["blocks"].append(row)
            try:
                row["compile_max_autotune_ms"], row["compile_max_autotune_iqr_ms"] = graph_time_ms(
                    compiled(copy.deepcopy(eager), mode="max-autotune-no-cudagraphs"), x)
                say(f"block {name} {key} b{MID} compile max-autotune {row['compile_max_autotune_ms']:.4f} ms "
                    f"(IQR {row['compile_max_autotune_iqr_ms']:.4f}); fused {row['fused_ms']:.4f}")
            except Exception as e:
                row["compile_max_autotune_error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
            save()

    def guarded(fn, *args, **kw):  # a section that breaks is recorded; the later ones still run
        try:
            fn(*args, **kw)
        except Exception as e:
            res["skipped"].append({"what": fn.__name__, "why": f"{type(e).__name__}: {str(e).splitlines()[0][:300]}"})
            say(f"{fn.__name__}: FAILED {type(e).__name__}: {str(e).splitlines()[0][:300]}")
            save()

    def slow_compiles(whats):
        for name in nets:
            x = torch.randn(MID, 3, RES, RES, device=DEV, dtype=DT).to(memory_format=torch.channels_last)
            row = next((r for r in res["networks"] if r["net"] == name and r["batch"] == MID), None)
            if row is None:  # this run did not time the network: eager and fused now, beside the slow compile
                row = {"net": name, "batch": MID}
                row["eager_ms"], row["eager_iqr_ms"] = graph_time_ms(copy.deepcopy(nets[name]).to(DT).to(memory_format=torch.channels_last), x)
                row["compile_default_ms"], row["compile_default_iqr_ms"] = graph_time_ms(compiled(copy.deepcopy(nets[name]).to(DT).to(memory_format=torch.channels_last)), x)
                row["fused_ms"], row["fused_iqr_ms"] = graph_time_ms(fused_net(name), x)
                res["networks"].append(row)
            for what in whats:
                need = 150 if what == "compile_max_autotune_ms" else 40
                if left() < need:
                    res["skipped"].append({"what": f"{what} {name} b{MID}", "why": f"{left():.0f} s left, {need} s wanted"})
                    continue
                stem = "blocks_only" not in what  # the *_blocks_only_ms variants leave the stem to compile
                if what.startswith("selective_fused_then_compile"):  # fuse only the shapes whose fused block beat compile's block
                    faster = sorted(a.selective_shapes.split(",") if a.selective_shapes else
                                    {r["shape"] for r in res["blocks"] if r["net"] == name and r["batch"] == MID
                                     and r.get("compile_default_ms") and r["fused_ms"] < r["compile_default_ms"]})
                    row["selective_fused_shapes"] = faster
                    if not faster:
                        continue
                try:
                    model = (compiled(fused_net(name, stem=stem)) if what.startswith("fused_then_compile") else
                             compiled(fused_net(name, select=lambda p, blk, kind: shape_key(blk) in faster, stem=stem))
                             if what.startswith("selective_fused_then_compile") else
                             compiled(copy.deepcopy(nets[name]).to(DT).to(memory_format=torch.channels_last), mode="max-autotune-no-cudagraphs"))
                    row[what], row[what.replace("_ms", "_iqr_ms")] = graph_time_ms(model, x)
                    say(f"network {name} b{MID} {what}: {row[what]:.3f} ms")
                except Exception as e:
                    row[what.replace("_ms", "_error")] = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
                    say(f"network {name} b{MID} {what}: FAILED {row[what.replace('_ms', '_error')]}")
                save()

    if "stem" in want:
        guarded(stem_rows, [MID], with_compile=True, search=True)
    if "parts" in want:
        guarded(parts_rows)
    if "blocks" in want:
        guarded(block_rows, [MID], with_compile=True)
    if "networks" in want:
        guarded(net_rows, [MID], with_compile=True)
    if "profile" in want:
        guarded(profile_fused)
    if "fused_then_compile" in want:  # the rest of the network compiled around the fused kernels: all of them, then only
        # those whose block ran faster fused than compiled in this run's block timings
        guarded(slow_compiles, ["fused_then_compile_ms", "selective_fused_then_compile_ms", "fused_then_compile_blocks_only_ms",
                                "selective_fused_then_compile_blocks_only_ms"])
    if "profile_compiled" in want:
        guarded(profile_compiled)
    if "batches" in want:  # compile too (a few seconds a block, about 15 a network): eager, compile and fused at every batch
        guarded(stem_rows, [1, BIG], with_compile=True, search=False)
        guarded(block_rows, [1, BIG], with_compile=True)
        guarded(net_rows, [1, BIG], with_compile=True)
    if "max_autotune" in want:
        guarded(slow_compiles, ["compile_max_autotune_ms"])  # minutes each: last
        for row in res["networks"]:
            if row.get("compile_max_autotune_ms") and row.get("fused_ms"):
                best_compile = min(v for k, v in row.items() if k in ("compile_default_ms", "compile_max_autotune_ms"))
                row["fused_speedup_over_best_compile"] = best_compile / row["fused_ms"]
    if "block_max_autotune" in want:  # about a minute a block shape
        guarded(block_autotune)
    res["meta"]["wall_s"] = time.perf_counter() - t0
    save()
    say("done")


if __name__ == "__main__":
    main()

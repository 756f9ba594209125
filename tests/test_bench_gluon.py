"""benchmarks/gluon_ws_chain.py's reading of its clock stamps on the CPU (the kernels themselves run only on the GPU
machine). Hand-built stamps: two programs of two consumers one after the other on multiprocessor 0, one on 1."""
import os

os.environ.setdefault("TRITON_INTERPRET", "1")  # as in test_kernels.py: set before Triton is first imported

import pytest  # noqa: E402

pytest.importorskip("triton")
torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def ws(load_bench):
    return load_bench("gluon_ws_chain")


def row(c0, c1, c2, c3, c4, sm, g0):
    """One consumer: clock64 at start, x in, first chunk in, loop done, stored; smid; globaltimer at start and end. Every
    consumer here spans 2,000 cycles in 1,000 ns: a 2 GHz clock."""
    return [c0, c1, c2, c3, c4, sm, g0, g0 + (c4 - c0) // 2]


def test_stamp_summary_phases_gaps_and_clock(ws):
    st = torch.tensor([
        row(0, 400, 500, 1700, 2000, 0, 10_000), row(0, 400, 500, 1700, 2000, 0, 10_000),  # program 0 on SM 0
        row(2600, 3000, 3100, 4300, 4600, 0, 11_300), row(2600, 3000, 3100, 4300, 4600, 0, 11_300),  # program 1: 600 cycles later
        row(50, 450, 550, 1750, 2050, 1, 10_025), row(50, 450, 550, 1750, 2050, 1, 10_025),  # program 2, alone on SM 1
    ], dtype=torch.int64)
    s = ws.stamp_summary(st, 2)
    assert s["clock_ghz"] == pytest.approx(2.0)
    # 400 cycles at 2 GHz = 0.2 µs; 100 -> 0.05; 1,200 -> 0.6; 300 -> 0.15; 2,000 -> 1.0
    for k, us in (("x_wait", 0.2), ("first_chunk_wait", 0.05), ("loop", 0.6), ("epilogue", 0.15), ("consumer", 1.0)):
        assert s[k]["median_us"] == pytest.approx(us), k
        assert s[k]["n"] == 6
    # the only gap on one multiprocessor: program 1 starts at 2,600, program 0 ended at 2,000: 600 cycles, 0.3 µs
    assert s["gap_between_programs"]["n"] == 1
    assert s["gap_between_programs"]["median_us"] == pytest.approx(0.3)
    assert s["programs_per_sm_max"] == 2
    assert s["kernel_span_us"] == pytest.approx((11_300 + 1000 - 10_000) / 1e3)  # first start to last end, globaltimer ns


def test_probe_counts_its_flops(load_bench):
    probe = load_bench("wgmma_probe")
    # one warpgroup, N 128, K 64, one program on each of 132 SMs: 2 · 64 · 128 · 64 · 132 = 138,412,032
    assert probe.flops_per_iter({"n": 128, "k": 64, "nwg": 1, "ctas": 1}, 132) == 138_412_032
    # the chain, two warpgroups (m128), N 128, K 128, two programs an SM: 2 · 2 · 128 · 128 · 128 · 264 = 2,214,592,512
    assert probe.flops_per_iter({"chain": True, "n": 128, "k": 128, "nwg": 2, "ctas": 2}, 132) == 2_214_592_512


def test_only_the_weightless_ablations_repeat(ws, load_bench):
    mlp = load_bench("mlp_ceiling")
    d = mlp.make(128, 64, "cpu", torch.bfloat16)
    with pytest.raises(ValueError, match=r"repeat 4: only the noload and mma ablations"):
        ws.fused(d, {"block_h": 64, "stages": 2, "mode": "plain", "repeat": 4})


def test_an_unknown_mode_is_one_error_naming_the_choices(ws, monkeypatch, capsys):
    monkeypatch.setattr("sys.argv", ["gluon_ws_chain.py", "--compile-only", "--modes", "plain,fast"])
    with pytest.raises(SystemExit) as e:
        ws.main()
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "--modes 'plain,fast': each must be one of plain, lag, pipe" in err


def test_each_mode_picks_its_kernel_and_constants(ws):
    # the chain kernel's MODE is the name's place in MODES, and its branches are written against these numbers:
    # 8 epi_stamped, 9 mma_epi_stamped, 10 epi (the coalesced epilogue without the stamps)
    assert [ws.MODES.index(m) for m in ("epi_stamped", "mma_epi_stamped", "epi")] == [8, 9, 10]
    cx = ws.constexprs(128, {"block_h": 64, "stages": 2, "mode": "epi"})
    assert (cx["MODE"], cx["NCONS"], cx["HID"]) == (10, 2, 512)  # 4 x 128 hidden channels
    assert ws.kernel({"mode": "epi"}) is ws._ws_chain_kernel
    for mode, split, epi in (("persist", False, False), ("split", True, False), ("persist_epi", False, True), ("split_epi", True, True)):
        cx = ws.constexprs(128, {"block_h": 64, "stages": 2, "mode": mode})
        assert (cx["SPLIT"], cx["FAST_EPI"]) == (split, epi), mode
        assert "MODE" not in cx and ws.kernel({"mode": mode}) is ws._ws_persist_kernel
    # split keeps a ring a consumer: 2 x (2 x 64 x 128 x tiles + 2 rings x 2 slots x 2 x 128 x 64) + 8 x (2 + 2 x 2 x 2)
    #   = 2 x (16,384 + 65,536) + 80 = 163,920 bytes
    assert ws.smem_bytes(128, {"block_h": 64, "stages": 2, "mode": "split_epi"}) == 163_920


def test_persist_stamp_summary_totals_and_rest(ws):
    # two consumers at 2 cycles a ns: consumer 0 from cycle 1000 to 9000 (8000 cycles = 4 µs) over globaltimer 0..4000 ns,
    # waiting 400 cycles for x, 5000 in loops, 1600 in epilogues: rest 8000 - 7000 = 1000 cycles = 0.5 µs;
    # consumer 1 from 1000 to 11,000 (5 µs, globaltimer 0..5000), 600 + 6000 + 2000 = 8600: rest 1400 cycles = 0.7 µs
    st = torch.tensor([[1000, 400, 5000, 1600, 9000, 0, 0, 4000],
                       [1000, 600, 6000, 2000, 11_000, 1, 0, 5000]], dtype=torch.int64)
    s = ws.persist_stamp_summary(st)
    assert s["clock_ghz"] == pytest.approx(2.0)
    # torch's median of an even count is the lower middle value: of 2.5 and 3.0 µs of loops, 2.5
    assert s["loop_total"]["median_us"] == pytest.approx(5000 / 2 / 1e3)
    assert s["loop_total"]["iqr_us"] == pytest.approx(0.25)  # quantiles interpolate: 2.875 - 2.625
    assert s["epilogue_total"]["median_us"] == pytest.approx(1600 / 2 / 1e3)
    assert s["rest"]["median_us"] == pytest.approx(0.5)
    assert s["consumer"]["median_us"] == pytest.approx(4.0)
    assert s["kernel_span_us"] == pytest.approx(5.0)  # first start to last end, globaltimer ns
    cx = ws.constexprs(128, {"block_h": 128, "stages": 2, "mode": "persist_epi_stamped"})
    assert (cx["SPLIT"], cx["FAST_EPI"], cx["STAMP"]) == (False, True, True)
    assert ws.constexprs(128, {"block_h": 128, "stages": 2, "mode": "persist_epi"})["STAMP"] is False


def test_block_weights_layout_and_padding(load_bench):
    """gluon_block.weights lays out the folded ConvFirst block for the kernel: the grouped conv computed from wf as the
    kernel does (for each tap and input channel ci of a group g, out[8g + co] += wf[tap, ci, 8g + co]·x[8g + ci] at the shifted pixel)
    equals PyTorch's grouped conv, and so does the tensor-core conv's from its block-diagonal [16, 16] tiles (wb); C = 48 is padded to 64 with zeros past it (6 of 8 groups real), and W2ᵀ, W3ᵀ are
    the transposes with zero rows / columns past 48."""
    import torch.nn.functional as F

    gb = load_bench("gluon_block")
    g = torch.Generator().manual_seed(0)
    c, hid = 48, 192
    w1, b1 = torch.randn(c, 8, 3, 3, generator=g), torch.randn(c, generator=g)
    w2, b2, w3, b3 = torch.randn(hid, c, generator=g), torch.randn(hid, generator=g), torch.randn(c, hid, generator=g), torch.randn(c, generator=g)
    wt = gb.weights(w1, b1, w2, b2, w3, b3)
    assert (wt["c"], wt["cp"]) == (48, 64) and wt["wf"].shape == (9, 8, 64) and wt["wf"].dtype == torch.float32
    assert wt["wf"][:, :, 48:].abs().sum() == 0 and wt["b1"][48:].abs().sum() == 0 and wt["b3"][48:].abs().sum() == 0
    assert torch.equal(wt["w2t"][:48], w2.t()) and wt["w2t"][48:].abs().sum() == 0
    assert torch.equal(wt["w3t"][:, :48], w3.t()) and wt["w3t"][:, 48:].abs().sum() == 0
    x = torch.randn(2, c, 5, 6, generator=g)
    xp = F.pad(x, (1, 1, 1, 1))  # the kernel's masks: a neighbour off the image reads 0
    y = torch.zeros(2, 64, 5, 6)
    for tap in range(9):
        dy, dx = tap // 3, tap % 3
        xs = F.pad(xp[:, :, dy:dy + 5, dx:dx + 6], (0, 0, 0, 0, 0, 16)).reshape(2, 8, 8, 5, 6)  # [n, g, ci, h, w], padded groups 0
        wk = wt["wf"][tap].reshape(8, 8, 8)  # [ci, g, co]
        y += torch.einsum("igo,ngihw->ngohw", wk, xs).reshape(2, 64, 5, 6)
    y += wt["b1"][None, :, None, None]
    ref = F.conv2d(x, w1, b1, padding=1, groups=c // 8)
    assert torch.allclose(y[:, :48], ref, atol=1e-4) and y[:, 48:].abs().sum() == 0
    # the tensor-core conv's tiles: for slice j (channels 16j..16j+15), y[16j + n] += Σ_k x[16j + k]·wb[tap, j, k, n]
    wb = wt["wb"].reshape(9, 4, 16, 16)
    assert wb.dtype == torch.float32  # w2's dtype (fp32 here)
    assert wb[:, :, :8, 8:].abs().sum() == 0 and wb[:, :, 8:, :8].abs().sum() == 0  # block-diagonal: groups never mix
    assert wb[:, 3].abs().sum() == 0  # slice 3 is channels 48-63: padding
    y2 = torch.zeros(2, 64, 5, 6)
    for tap in range(9):
        dy, dx = tap // 3, tap % 3
        xs = F.pad(xp[:, :, dy:dy + 5, dx:dx + 6], (0, 0, 0, 0, 0, 16)).reshape(2, 4, 16, 5, 6)  # [n, j, k, h, w]
        y2 += torch.einsum("jko,njkhw->njohw", wb[tap], xs).reshape(2, 64, 5, 6)
    y2 += wt["b1"][None, :, None, None]
    assert torch.allclose(y2[:, :48], ref, atol=1e-4) and y2[:, 48:].abs().sum() == 0
    with pytest.raises(ValueError, match="group width 8"):
        gb.weights(torch.randn(c, 16, 3, 3), b1, w2, b2, w3, b3)


def test_the_interleaved_conv_mode_doubles_y1_and_keeps_tcts_loaders(load_bench):
    """tci (the next tile's conv spread over this tile's chain) takes tct's kernel and loaders with ILV set, and a
    second y1 buffer a consumer: at 128 channels, block_h 64, 2 weight slots, 2 input slot pairs, in bf16 elements:
    x tiles and scratch 3·64·128 = 24,576; the second y1 buffers 2·64·128 = 16,384; conv tiles 9·128·16 = 18,432;
    input slots 2·2·64·64 = 16,384; weight ring 2·2·128·64 = 32,768: 108,544 elements, 217,088 bytes, and 8·5 bytes
    of barriers: 217,128 (the sm_90 compile here reports 217,168 B of shared memory for it: 40 more, as for tct's
    184,360 against 184,400). Only that tile fits 227 KB: 4 slot pairs (+16,384 elements), 3 weight slots (+16,384)
    or block_h 128 (+32,768) do not."""
    gb = load_bench("gluon_block")
    cfg = {"block_h": 64, "stages": 2, "mode": "tci", "nbx": 2}
    assert gb.smem_bytes(128, cfg) == 217_128
    assert gb.smem_bytes(128, {**cfg, "mode": "tct"}) == 217_128 - 2 * 16_384
    assert gb.tiles(128, ("tci",)) == [cfg]
    cx = gb.constexprs(128, 128, 512, cfg, 28)
    assert cx["ILV"] is True and cx["NBX"] == 2 and cx["LAG"] is False and cx["ABL"] == 0 and cx["STAMP"] is False
    assert gb.constexprs(128, 128, 512, {**cfg, "mode": "tci_stamped"}, 28)["STAMP"] is True
    assert gb.constexprs(128, 128, 512, {**cfg, "mode": "tct"}, 28)["ILV"] is False
    assert gb.kernel(cfg) is gb._block_tc_kernel and "tci" in gb.MODES and "tci" not in gb.ABLATIONS


def test_probe_flags_a_rate_above_the_ceiling(load_bench):
    """wgmma_probe's line for a rate above the card's ceiling carries the flag; at or below it, none. 0.5 ms for a
    launch of 351.85 GFLOP is 703.7 TFLOP/s: 100 % of the H100's ceiling; 0.383 ms (919 TFLOP/s) is 130.6 %."""
    probe = load_bench("wgmma_probe")
    at = probe.rate_line({"tflops": 703.7, "ms": 0.5, "iqr_ms": 0.001, "of_peak": 1.0})
    above = probe.rate_line({"tflops": 919.0, "ms": 0.383, "iqr_ms": 0.001, "of_peak": 919.0 / 703.7})
    assert "100 % of the ceiling" in at and "⚠" not in at
    assert "131 % of the ceiling ⚠ above the ceiling" in above


def test_the_conv_partition_modes_fit_and_count_their_shared_memory(load_bench):
    """cw and cwu (the grouped conv in a warp partition of its own) at 128 channels, block_h 64, 2 weight slots, 2 y1
    buffers, in bytes: the y1 ring 2 buffers x 2 halves x 64 x 128 x 2 = 65,536 and one [64, 128] bf16 tile of scratch
    16,384; the conv's fp32 weights 72 x 128 x 4 = 36,864; the weight ring 2 x 2 x 128 x 64 x 2 = 65,536; barriers
    8 x (2 x 2 + 3 x 2) = 80: 184,400 (the sm_90 compile here reports 184,412). 3 y1 buffers add 32,768 and 3 barriers
    of 8 bytes (217,192);
    block_h 128 doubles the ring (249,936: over 232,448), so no block_h 128 tile is listed; 256 channels (fp32 weights
    73,728 B) are not offered."""
    gb = load_bench("gluon_block")
    cfg = {"block_h": 64, "stages": 2, "mode": "cwu", "nyb": 2, "rc": 4}
    assert gb.smem_bytes(128, cfg) == 184_400
    assert gb.smem_bytes(128, {**cfg, "nyb": 3}) == 184_400 + 32_768 + 24
    assert gb.smem_bytes(128, {**cfg, "block_h": 128}) == 249_936
    listed = gb.tiles(128, ("cwu",))
    assert cfg in listed and all(t["block_h"] == 64 for t in listed)
    assert gb.tiles(256, ("cwu",)) == []
    cx = gb.constexprs(128, 128, 512, cfg, 28)
    assert (cx["REGS"], cx["CREGS"], cx["U"], cx["RC"]) == (152, 184, True, 4)
    # every partition's registers within the file: the first consumer takes what the others leave of 512 a thread
    assert 512 - 24 - cx["REGS"] - cx["CREGS"] == 152
    assert gb.kernel(cfg) is gb._block_cw_kernel

"""benchmarks/kernels_ncu.py's logic on the CPU: reading ncu's raw CSV page, splitting its kernels into items by the
marker launches, and the unfused block's layer bytes (hand arithmetic). ncu itself runs only on the GPU machine."""
import json
import os

os.environ.setdefault("TRITON_INTERPRET", "1")  # as in test_kernels.py: Triton's jit decides when Triton is first imported
# whether to interpret, and this file is collected first (imported here without it, Triton's own jit functions, tl.zeros
# among them, broke every interpreter test after this file)

import pytest  # noqa: E402

pytest.importorskip("triton")


@pytest.fixture(scope="module")
def ncu_mod(load_bench):
    """The script as a module (it imports benchmarks/kernels_gpu.py from its folder)."""
    return load_bench("kernels_ncu")


HEAD = ('"ID","Process ID","Process Name","Host Name","Kernel Name","Context","Stream","Block Size","Grid Size","Device","CC",'
        '"dram__bytes_read.sum","lts__t_sectors_op_write.sum","launch__registers_per_thread",'
        '"smsp__average_warps_issue_stalled_long_scoreboard_per_issue_active.ratio","smsp__average_warps_issue_stalled_wait_per_issue_active.ratio",'
        '"sm__pipe_tensor_op_hmma_cycles_active.avg.pct_of_peak_sustained_active"')
UNITS = '"","","","","","","","","","","","byte","sector","register/thread","ratio","ratio","%"'


def row(i, name, dram, wsec, regs, ls, wait, tensor):
    return f'"{i}","1","python3","h","{name}","1","7","(128, 1, 1)","(98, 1, 1)","0","9.0","{dram}","{wsec}","{regs}","{ls}","{wait}","{tensor}"'


def raw(*rows):
    return "\n".join(["==PROF== Connected to process 1 (python3)", HEAD, UNITS, *rows]) + "\n"


def test_parse_and_split_by_markers(ncu_mod):
    m = ncu_mod.MARKER
    text = raw(row(0, m, 0, 1, 16, 0, 0, 0),
               row(1, "_convfirst_kernel", "18,432,000", "600,000", 254, "3.25", "1.5", "41.2"),
               row(2, m, 0, 1, 16, 0, 0, 0),
               row(3, m, 0, 1, 16, 0, 0, 0),
               row(4, "triton_poi_fused_add_0", "1,000", "10", 32, "0.5", "2.5", "0"),
               row(5, "triton_per_fused_1", "2,000", "20", 40, "0.1", "0.2", "0"),
               row(6, m, 0, 1, 16, 0, 0, 0))
    rows, units = ncu_mod.parse_raw(text)
    assert units["dram__bytes_read.sum"] == "byte"
    assert [r["ID"] for r in rows] == list(range(7))
    items = ncu_mod.split_items(rows, ["fused", "compile"])
    assert [r["Kernel Name"] for r in items["fused"]] == ["_convfirst_kernel"]
    assert [r["ID"] for r in items["compile"]] == [4, 5]
    k = ncu_mod.kernel_summary(items["fused"][0])
    assert k["dram_read_bytes"] == 18_432_000  # the thousands separator dropped
    assert k["l2_write_bytes"] == 32 * 600_000  # 32-byte sectors
    assert k["registers"] == 254
    assert list(k["top_stalls"]) == ["long_scoreboard", "wait"]  # the larger first
    assert k["tensor_pipes_pct"] == {"pipe_tensor_op_hmma_cycles_active": 41.2}
    tot = ncu_mod.item_totals([ncu_mod.kernel_summary(r) for r in items["compile"]])
    assert tot == {"kernels": 2, "dram_read_bytes": 3000, "l2_write_bytes": 32 * 30}


def test_split_refuses_what_does_not_match(ncu_mod):
    m = ncu_mod.MARKER
    rows, _ = ncu_mod.parse_raw(raw(row(0, "stray_kernel", 0, 0, 1, 0, 0, 0), row(1, m, 0, 0, 1, 0, 0, 0), row(2, m, 0, 0, 1, 0, 0, 0)))
    with pytest.raises(ValueError, match="outside an item"):
        ncu_mod.split_items(rows, ["a"])
    rows, _ = ncu_mod.parse_raw(raw(row(0, m, 0, 0, 1, 0, 0, 0), row(1, "k", 0, 0, 1, 0, 0, 0), row(2, m, 0, 0, 1, 0, 0, 0)))
    with pytest.raises(ValueError, match="manifest has 2"):
        ncu_mod.split_items(rows, ["a", "b"])
    with pytest.raises(ValueError, match="no header"):
        ncu_mod.parse_raw("==PROF== nothing profiled\n")


def test_unfused_layer_bytes_by_hand(ncu_mod):
    import effkit
    net = effkit.build_model("convfirst_net").model
    blk = next(m for m in net.modules() if hasattr(m, "body") and hasattr(m, "shortcut") and m.shortcut is None
               and m.body[0][0].in_channels == 48)
    # batch 64 at 56x56 (c48's input in the network at 224): the grouped conv reads 48 and writes 48 channels, the
    # expansion reads 48 and writes 192, the projection reads 192 and writes 48, the residual add reads 48 + 48 and
    # writes 48: 720 channels x 3136 pixels x 64 x 2 bytes = 289,013,760; folded weights and biases, 2 bytes each:
    # grouped 48·8·9 + 48, expand 192·48 + 192, project 48·192 + 48 = 22,176 values = 44,352 bytes
    assert ncu_mod.unfused_bytes(56, 64, blk) == 289_013_760 + 44_352


def test_source_stalls_by_opcode_and_reason(ncu_mod):
    head = ('"Address","Source","Warp Stall Sampling (All Samples)","Warp Stall Sampling (Not-issued Samples)","stall_barrier",'
            '"stall_long_sb","stall_barrier (Not Issued)"')
    text = "\n".join([
        '"Kernel Name","_convfirst_kernel",', head,
        '"0x10","      BAR.SYNC.DEFER_BLOCKING 0x0","60","60","","58","999"',
        '"0x20","@!PT  LDS RZ, [RZ]","20","20","20","",""',
        '"0x30","      WARPGROUP.DEPBAR.LE gsb0, 0x0","15","14","15","",""',
        '"0x40","      WARPGROUP.ARRIVE","5","5","","",""',
        '"Kernel Name","_mbconv_staged_kernel",', head,
        '"0x10","      LDG.E.128 R4, desc[UR4][R2.64]","3","3","3","",""',
        '"0x20","@P1   LDG.E R5, desc[UR4][R6.64]","1","1","","1",""'])
    k1, k2 = ncu_mod.source_stalls(text)
    assert (k1["kernel"], k1["samples"], k2["samples"]) == ("_convfirst_kernel", 100, 4)
    # 60 + 20 + 15 + 5 = 100 samples: BAR 60 %, LDS 20 % (its predicate dropped), the two WARPGROUP forms 20 % together
    assert k1["opcode_pct"] == {"BAR": 60.0, "LDS": 20.0, "WARPGROUP": 20.0}
    # the (Not Issued) column is not added to the reasons
    assert k1["opcode_stall_pct"] == {"BAR long_sb": 58.0, "LDS barrier": 20.0, "WARPGROUP barrier": 15.0}
    assert k2["opcode_pct"] == {"LDG": 100.0} and k2["opcode_stall_pct"] == {"LDG barrier": 75.0, "LDG long_sb": 25.0}


def test_the_bytes_l2_sent_to_the_sms_are_kept_beside_its_lookups(ncu_mod):
    # run 31c's calibration (benchmarks/l2_check.py): 98 programs each reading the same 2,359,296 B once; the SMs got
    # 98 × 2,359,296 = 231,211,008 B from L2, which counted 2,081,700 sector lookups (66.6 MB): both kept, neither for the other
    r = {"Kernel Name": "_read_all", "l1tex__m_xbar2l1tex_read_bytes.sum": 231_211_008, "lts__t_sectors_op_read.sum": 2_081_700}
    k = ncu_mod.kernel_summary(r)
    assert k["l2_to_sm_bytes"] == 231_211_008 and k["l2_read_bytes"] == 32 * 2_081_700
    tot = ncu_mod.item_totals([k, ncu_mod.kernel_summary({**r, "l1tex__m_xbar2l1tex_read_bytes.sum": 2_359_296})])
    assert tot["l2_to_sm_bytes"] == 231_211_008 + 2_359_296


def test_chain_ncu_profiles_each_modes_fastest_checked_tile(tmp_path, load_bench):
    """chain_ncu.py profiles, a width, the fastest timed tile of each warp-specialised mode and consumer count from
    gluon_ws_chain.py's JSON; never an ablation (wrong output by design) nor a tile left untimed (wrong or failed)."""
    mod = load_bench("chain_ncu")
    tiles = [{"block_h": 64, "stages": 2, "mode": "plain", "ms": 0.043},
             {"block_h": 128, "stages": 2, "mode": "plain", "ms": 0.040},
             {"block_h": 64, "stages": 2, "mode": "plain", "ncons": 3, "ms": 0.038},
             {"block_h": 64, "stages": 3, "mode": "pipe", "ms": 0.044},
             {"block_h": 128, "stages": 2, "mode": "mma", "ms": 0.035, "ablation": True},
             {"block_h": 32, "stages": 2, "mode": "lag", "error": 0.5},
             {"block_h": 32, "stages": 3, "mode": "lag", "failed": "CompilationError"}]
    path = tmp_path / "ws.json"
    path.write_text(json.dumps({"shapes": [{"width": 128, "tiles": tiles}]}))
    got = mod.ws_best(str(path), 128)
    assert sorted(got, key=str) == sorted([{"block_h": 128, "stages": 2, "mode": "plain"},
                                           {"block_h": 64, "stages": 2, "mode": "plain", "ncons": 3},
                                           {"block_h": 64, "stages": 3, "mode": "pipe"}], key=str)
    assert mod.ws_best(str(path), 64) == [mod.WS_DEFAULT]  # a width the sweep did not run
    assert mod.ws_best(None, 128) == [mod.WS_DEFAULT]


def test_ceilings_refused_on_another_card(load_bench, tmp_path):
    """A fused roofline divides by the ceilings of the card it runs on: the H200's committed file is accepted on an
    H200 and refused, with a message naming both cards, on an H100; a file measured on the H100 is accepted there."""
    kg = load_bench("kernels_gpu")
    peak, bw, src = kg.ceilings(None, "NVIDIA H200")
    assert round(peak / 1e12, 1) == 803.8 and round(bw / 1e12, 2) == 4.24  # results/h200/ceilings.json, as every run quotes
    assert src == "benchmarks/results/h200/ceilings.json"
    with pytest.raises(SystemExit, match="'NVIDIA H200', not on this 'NVIDIA H100 80GB HBM3'"):
        kg.ceilings(None, "NVIDIA H100 80GB HBM3")
    f = tmp_path / "h100.json"
    f.write_text(json.dumps({"name": "NVIDIA H100 80GB HBM3", "peak_flops": {"bf16": 7.0e14}, "bandwidth_bytes_per_s": 3.0e12}))
    assert kg.ceilings(str(f), "NVIDIA H100 80GB HBM3") == (7.0e14, 3.0e12, str(f))

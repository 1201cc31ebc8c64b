"""bench/kernel_report.py (static report of the compiled Triton kernels) and the launch list it
is built on (bench.triton_variants)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
REPORT = ["-m", "bench.kernel_report"]

from bench import kernel_report

# compiles kernels for sm_90 (make test-slow)
pytestmark = pytest.mark.slow

H200 = kernel_report.ARCH[90]


def _env(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["TRITON_CACHE_DIR"] = str(tmp_path / "triton")  # a real compile, not Triton's cache
    return env


def test_report_compiles_and_counts(tmp_path):
    """One small case for sm_90: every launch compiles, its facts are sane and kept on disk."""
    out = tmp_path / "rows.json"
    r = subprocess.run([sys.executable, *REPORT, "--frames", "27", "--dtypes", "bf16",
                        "--layouts", "head_major", "--keep", str(tmp_path / "keep"),
                        "--json", str(out), "-j", "2"],
                       cwd=ROOT, env=_env(tmp_path), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "not GPU timings" in r.stdout and "op T=27 bf16 head_major" in r.stdout
    rows = json.loads(out.read_text())
    names = [row["kernel"] for row in rows]
    assert {"spatial_fwd_kernel", "temporal_fwd_kernel", "spatial_bwd_kernel"} <= set(names)
    assert {row["phase"] for row in rows} == {"fwd", "bwd"}
    clock, sms = H200["clock_hz"], H200["sms"]
    for row in rows:
        for key in kernel_report.REQUIRED_KEYS:
            assert key in row, (row["kernel"], key)
        assert row["error"] is None
        assert (row["frames"], row["dtype"], row["arch"], row["layout"]) == (27, "bf16", 90, "head_major")
        assert 0 < row["regs"] <= 255
        assert row["spill_bytes"] >= 0 and row["smem_bytes"] >= 1024
        assert row["num_warps"] in (1, 2, 4, 8, 16) and row["num_stages"] >= 1
        assert row["mma"] in ("wgmma", "mma.sync", "none")
        cubin = Path(row["cubin"])
        assert cubin.is_file() and cubin.read_bytes()[:4] == b"\x7fELF"
        assert str(cubin).startswith(str(tmp_path / "keep"))
        assert row["programs"] == int(torch.tensor(row["grid"]).prod())
        assert 1 <= row["programs_per_sm"] <= 32 and row["warps_per_sm"] <= 64
        assert row["waves"] == pytest.approx(row["programs"] / (row["programs_per_sm"] * sms))
        assert row["roofline_floor_us"] > 0 and row["issue_floor_us"] > 0
        # the roofline is at least the kernel's compulsory bytes over the bandwidth
        assert row["roofline_floor_us"] >= row["bytes"] / H200["hbm_bps"] * 1e6 * 0.999
        sass = row["sass"]
        static, executed = sass["static"]["total"], sass["executed_per_warp"]["total"]
        assert static > 50
        # loop bodies count once per trip: a kernel whose loops run more than once executes
        # more instructions than it holds
        loop_body = sass["hot_loop"]["total"] if sass["loops"] else 0
        if sass["loops"] and min(row["loop_trips_mean"]) > 1.5:
            assert executed > static
            assert executed >= loop_body * min(row["loop_trips_mean"]) * 0.99
        # every source loop found, except tap loops the compiler unrolled completely
        assert len(sass["loops"]) in (len(row["loop_trips"]),
                                      len(row["loop_trips"]) - len(row["unrollable"])), sass["note"]
        assert sass["note"] is None
        # the issue floor cannot be below all warp-instructions spread evenly over every scheduler
        even = row["programs"] * row["num_warps"] * executed / (sms * 4 * clock) * 1e6
        assert row["issue_floor_us"] >= even * 0.999
    attention = [row for row in rows if row["computed_scores"]]
    assert attention and all(row["mma"] != "none" and row["sass"]["static"].get("MUFU.EX2")
                             for row in attention)
    # padding: 17 joints live in 32-slot tiles, so real < computed spatial scores
    sp = next(row for row in rows if row["kernel"] == "spatial_fwd_kernel")
    assert sp["real_scores"] == 42 * 8 * 27 * 17 * 17 < sp["computed_scores"]
    assert sp["exps"] >= sp["real_scores"]

    # a rerun takes every kernel from the kept folder instead of compiling again
    r2 = subprocess.run([sys.executable, *REPORT, "--frames", "27", "--dtypes", "bf16",
                         "--layouts", "head_major", "--keep", str(tmp_path / "keep"), "-j", "1"],
                        cwd=ROOT, env=_env(tmp_path), capture_output=True, text=True, timeout=120)
    assert r2.returncode == 0 and " 0 to compile" in r2.stdout, r2.stdout[-2000:] + r2.stderr[-2000:]


def test_report_refuses_the_interpreter(tmp_path):
    env = dict(_env(tmp_path), TRITON_INTERPRET="1")
    r = subprocess.run([sys.executable, *REPORT, "--frames", "27"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert "TRITON_INTERPRET" in r.stderr


def test_sass_loops_and_counts():
    """Loop detection, trip multiplication and the skipped zero-trip path on a small listing."""
    sass = """
        /*0000*/                   LDG.E.128 R4, desc[UR4][R2.64] ;
        /*0010*/               @P0 BRA `(.L_x_0) ;
.L_x_1:
        /*0020*/                   MUFU.EX2 R5, R5 ;
        /*0030*/                   HGMMA.64x128x16.F32.BF16 R24, gdesc[UR8], RZ, !UPT, gsb0 ;
        /*0040*/                   LDG.E.U16 R6, desc[UR4][R2.64] ;
        /*0050*/              @!P1 BRA `(.L_x_1) ;
        /*0060*/                   BRA `(.L_x_2) ;
.L_x_0:
        /*0070*/                   STL [R1], R5 ;
.L_x_2:
        /*0080*/                   EXIT ;
.L_x_3:
        /*0090*/                   BRA `(.L_x_3);
        /*00a0*/                   NOP;
"""
    a = kernel_report.analyse_sass(sass, (5,))
    assert [lp["trips"] for lp in a["loops"]] == [5] and a["note"] is None
    assert a["static"]["total"] == 9 and a["static"]["STL"] == 1
    assert a["loop"]["total"] == 4 and a["loop"]["LDG.16"] == 1
    ex = a["executed"]
    assert ex["MUFU.EX2"] == 5 and ex["HGMMA"] == 5 and ex["LDG.128"] == 1
    assert ex.get("STL", 0) == 0       # only runs when the loop is skipped
    assert ex["total"] == 1 + 1 + 4 * 5 + 1 + 1
    assert a["mma_exec"] == {"HGMMA/bf16": 5 * 2 * 64 * 128 * 16}
    assert "loops" in kernel_report.analyse_sass(sass, (5, 7))["note"]
    # a loop the compiler may unroll (the conv's taps) is dropped only when it is missing
    b = kernel_report.analyse_sass(sass, (5, 9), unrollable=(1,))
    assert [lp["trips"] for lp in b["loops"]] == [5] and b["note"] is None
    assert b["executed"]["total"] == ex["total"]
    assert "loops" in kernel_report.analyse_sass(sass, (5, 9, 3), unrollable=(1,))["note"]


def test_occupancy_model():
    # 255 registers: 8192 per warp, 8 warps per SM -> two 4-warp programs
    assert kernel_report.occupancy(255, 17 * 1024, 4, H200)["programs_per_sm"] == 2
    # 128 registers, 4 warps: 16 warps by registers -> 4 programs; 100 KB of shared -> 2
    occ = kernel_report.occupancy(128, 100 * 1024, 4, H200)
    assert occ["programs_per_sm"] == 2 and occ["limit"] == "smem" and occ["warps_per_sm"] == 8
    assert kernel_report.occupancy(32, 1024, 1, H200)["programs_per_sm"] == 32   # block limit
    assert kernel_report.occupancy(32, 228 * 1024, 4, H200)["programs_per_sm"] == 0  # too big


def _record_launcher(B, T, J, H, dh, dtype, head_major, has_spe):
    """The launcher's launches, recorded independently of triton_variants."""
    import stcformer.ops.backends.triton as tb
    calls = []

    class Rec:
        def __init__(self, k):
            self.k = k

        def __getitem__(self, grid):
            return lambda *args, **kw: calls.append((self.k.fn.__name__, tuple(grid), args, kw))

    C = 2 * H * dh
    m = dict(device="meta")
    qkv = torch.empty(B, T, J, 3 * C, dtype=dtype, **m)
    w_s, w_t = torch.empty(C // 2, 1, 3, 3, **m), torch.empty(C // 2, 1, 3, 3, **m)
    b_s, b_t = torch.empty(C // 2, **m), torch.empty(C // 2, **m)
    spe_s = torch.empty(J, dh, **m) if has_spe else None
    spe_t = torch.empty(J, dh, **m) if has_spe else None
    saved, tb.wrap_triton = tb.wrap_triton, Rec
    try:
        out, ls, lt = tb.stc_attention_triton_fwd._init_fn(qkv, w_s, b_s, w_t, b_t, spe_s, spe_t, H,
                                                           0.1, head_major)
        tb.stc_attention_triton_bwd._init_fn(torch.empty_like(out), qkv, w_s, b_s, w_t, b_t, spe_s,
                                             spe_t, out, ls, lt, H, 0.1, head_major)
    finally:
        tb.wrap_triton = saved
    return calls


@pytest.fixture
def gpu_profile():
    """The GPU profile of Config, as a process without TRITON_INTERPRET=1 reads it."""
    from stcformer import settings

    with settings.override(triton_interpret=False):
        yield


@pytest.mark.parametrize("T,dtype,head_major,has_spe", [(27, torch.bfloat16, True, True),
                                                         (243, torch.float32, False, False),
                                                         (300, torch.bfloat16, True, False)])
def test_launches_match_the_launcher(T, dtype, head_major, has_spe, gpu_profile):
    """triton_variants.launches lists the launcher's kernels, grids, arguments and options."""
    from bench.triton_variants import TensorArg, launches

    def norm(a):
        if isinstance(a, (torch.Tensor, TensorArg)):
            return (str(a.dtype), tuple(a.shape), tuple(a.stride()))
        return a if not isinstance(a, float) else round(a, 12)

    got = [(lc.name, lc.grid, tuple(map(norm, lc.args)), dict(lc.constexprs, **lc.options()))
           for lc in launches(42, T, 17, 8, 16, dtype, head_major, has_spe=has_spe)]
    want = [(n, g, tuple(map(norm, a)), kw) for n, g, a, kw in
            _record_launcher(42, T, 17, 8, 16, dtype, head_major, has_spe)]
    # scale is the module's (half)^-1/2 in launches and 0.1 here: compare everything else
    strip = lambda rows: [(n, g, tuple(x for x in a if not isinstance(x, float)), kw)  # noqa: E731
                          for n, g, a, kw in rows]
    assert strip(got) == strip(want)
    for lc in launches(42, T, 17, 8, 16, dtype, head_major, has_spe=has_spe):
        assert lc.bytes > 0 and len(lc.loops) == len(lc.loops_mean)
        if lc.scores:
            assert lc.scores >= lc.real_scores > 0

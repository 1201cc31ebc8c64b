"""bench/gpu_bench.py's per-kernel profile beside bench/kernel_report.py's static rows, its
Markdown table (bench/render.py) and bench/gpu_suite.sh, without a GPU."""
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"

from bench import gpu_bench, render

# runs the GPU suite's programs end to end without a GPU (make test-slow)
pytestmark = pytest.mark.slow


def _env():
    return {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}


def _row(kernel, phase="fwd", roof=2.0, issue=5.0, regs=64, spill=0, warps=16, T=27, dtype="bf16",
         bound="memory", nbytes=4_800_000, exp_us=0.5, mma_us=0.1, error=None):
    return dict(kernel=kernel, phase=phase, frames=T, dtype=dtype, layout="head_major", batch=42, joints=17,
                channels=256, heads=8, arch=90, gpu="H200", error=error, roofline_floor_us=roof,
                issue_floor_us=issue, regs=regs, spill_bytes=spill, warps_per_sm=warps, roofline_bound=bound,
                bytes=nbytes, memory_floor_us=nbytes / 4.8e12 * 1e6, exp_floor_us=exp_us, mma_floor_us=mma_us)


def test_join_hand_written_rows():
    rows = [_row("conv_weight_kernel", roof=0.5, issue=1.0, regs=32, warps=64),
            _row("spatial_fwd_kernel", roof=4.0, issue=12.0, regs=168, warps=12),
            _row("temporal_bwd_row_kernel", "bwd", roof=7.0, issue=18.0, regs=122, spill=8),
            _row("temporal_bwd_kernel", "bwd", roof=3.0, issue=6.0, regs=96),
            _row("conv_weight_kernel", "bwd", roof=0.5, issue=1.0, regs=40, warps=64),
            _row("conv_grad_kernel", "bwd", error="CompilationError: boom")]
    measured = [("conv_weight_kernel", 4.0, 2.0),
                ("spatial_fwd_kernel_0d1d2d3", 40.0, 1.0),   # a name mangled with the signature
                ("temporal_bwd_row_kernel", 70.0, 1.0),      # not temporal_bwd_kernel's
                ("conv_grad_kernel", 9.0, 1.0),
                ("void at::native::vectorized_elementwise_kernel<4>", 5.0, 3.0),
                ("Memset (Device)", 1.0, 1.0)]
    ks, tot = gpu_bench.join_profile(measured, rows, copy_bw=4.0e12)
    by = {k["kernel"]: k for k in ks}
    assert [k["kernel"] for k in ks] == ["conv_weight_kernel", "spatial_fwd_kernel", "temporal_bwd_row_kernel",
                                         "temporal_bwd_kernel", "conv_grad_kernel"]
    cw = by["conv_weight_kernel"]   # launched in the forward and in the backward: floors summed
    assert (cw["us"], cw["launches"], cw["report_launches"]) == (4.0, 2.0, 2)
    assert cw["roofline_floor_us"] == 1.0 and cw["issue_floor_us"] == 2.0 and cw["roofline_frac"] == 0.25
    assert cw["regs"] == [32, 40] and cw["warps_per_sm"] == [64]
    sp = by["spatial_fwd_kernel"]
    assert sp["us"] == 40.0 and sp["roofline_frac"] == pytest.approx(0.1)
    # at the copy bandwidth the memory term is 4.8 MB / 4 TB/s = 1.2 us > 0.5 exp, 0.1 MMA
    assert sp["copy_bw_floor_us"] == pytest.approx(1.2) and sp["roofline_frac_copy_bw"] == pytest.approx(0.03)
    row = by["temporal_bwd_row_kernel"]
    assert row["us"] == 70.0 and row["roofline_frac"] == pytest.approx(0.1) and row["spill_bytes"] == [8]
    tb = by["temporal_bwd_kernel"]  # in the report, not in the profile: no measured figure
    assert tb["us"] is None and tb["roofline_frac"] is None and tb["roofline_floor_us"] == 3.0
    cg = by["conv_grad_kernel"]     # measured, but its compile failed: no floor, no fraction
    assert cg["us"] == 9.0 and cg["roofline_floor_us"] is None and cg["roofline_frac"] is None
    assert "boom" in cg["error"]
    assert tot["report_kernels_us"] == 123.0 and tot["other_us"] == 6.0 and tot["other_kernels"] == 2
    assert "roofline_floor_us" not in tot and "roofline_frac" not in tot  # a failed launch: no sums

    # every kernel measured and compiled: the op's totals and their fraction
    ok = [r for r in rows if not r["error"]]
    ks, tot = gpu_bench.join_profile([(n, 10.0) for n in dict.fromkeys(r["kernel"] for r in ok)], ok)
    assert tot["roofline_floor_us"] == pytest.approx(15.0) and tot["issue_floor_us"] == pytest.approx(38.0)
    assert tot["report_kernels_us"] == 40.0 and tot["roofline_frac"] == pytest.approx(15.0 / 40.0)
    assert all(k["launches"] is None for k in ks)  # (name, us) pairs carry no launch counts


def test_join_takes_the_longest_matching_name():
    """A name that is another's prefix (here with the "_" that mangled names add) is not taken
    for the longer one."""
    rows = [_row("attn_kernel", roof=1.0), _row("attn_kernel_tail", roof=2.0)]
    ks, _ = gpu_bench.join_profile([("attn_kernel_tail", 20.0, 1.0), ("attn_kernel_0d1d", 5.0, 1.0)], rows)
    assert [(k["kernel"], k["us"], k["roofline_frac"]) for k in ks] == [("attn_kernel", 5.0, 0.2),
                                                                      ("attn_kernel_tail", 20.0, 0.1)]


def _table_lines(text):
    return [ln for ln in text.splitlines() if ln.startswith("| ") and not ln.startswith("| ---")]


def test_kernel_table_columns_and_fractions():
    rows = [_row("spatial_fwd_kernel", roof=4.0, issue=12.0, regs=168, warps=12),
            _row("conv_weight_kernel", roof=0.5, issue=1.0, regs=32, warps=64),
            _row("conv_weight_kernel", "bwd", roof=0.5, issue=1.0, regs=32, warps=64)]
    ks, tot = gpu_bench.join_profile([("spatial_fwd_kernel", 40.0, 1.0), ("conv_weight_kernel", 4.0, 1.0),
                                      ("aten_kernel", 2.0, 1.0)], rows, copy_bw=4.0e12)
    rec = dict(section="profile", case="bf16 T=27 B=42", variant="triton", status="ok", kernels=ks,
               totals=tot, static=gpu_bench.static_label(rows, "kernel_report.json"), copy_TB_s=4.0)
    text = render.kernel_table([rec])
    lines = _table_lines(text)
    assert lines[0] == "| " + " | ".join(render.KERNEL_COLUMNS) + " |"
    cols = {c: i for i, c in enumerate(render.KERNEL_COLUMNS)}
    for c in ("measured us", "roofline floor us (est.)", "issue floor us (est.)", "fraction of roofline",
              "regs", "spill B", "warps/SM"):
        assert c in cols
    cells = {ln.split(" | ")[1]: [c.strip() for c in ln.strip("| ").split(" | ")] for ln in lines[1:]}
    sp = cells["spatial_fwd_kernel"]
    assert len(sp) == len(render.KERNEL_COLUMNS)
    assert (sp[cols["measured us"]], sp[cols["roofline floor us (est.)"]], sp[cols["issue floor us (est.)"]],
            sp[cols["fraction of roofline"]], sp[cols["regs"]], sp[cols["warps/SM"]]) == \
        ("40.0", "4.00", "12.0", "0.100", "168", "12")
    cw = cells["conv_weight_kernel"]  # measured once, launched twice by the report: said so
    assert cw[cols["launches"]] == "1 (report: 2)" and cw[cols["fraction of roofline"]] == "0.250"
    total = cells["all of the report's kernels"]
    assert total[cols["measured us"]] == "44.0" and total[cols["fraction of roofline"]] == f"{5.0 / 44.0:.3f}"
    assert cells["other GPU kernels (1 names)"][cols["measured us"]] == "2.00"
    assert "static estimates" in text and "at 4.80 TB/s" in text and "H200" in text

    # a row of measured times only (no report): static cells empty, never invented
    alone = dict(rec, kernels=[dict(kernel="spatial_fwd_kernel", us=40.0, launches=1.0)], totals=None,
                 static="no static figures: kernel_report.json not found")
    lines = _table_lines(render.kernel_table([alone]))
    sp = [c.strip() for c in lines[1].strip("| ").split(" | ")]
    assert sp[cols["measured us"]] == "40.0" and sp[cols["roofline floor us (est.)"]] == "-"
    assert sp[cols["fraction of roofline"]] == "-"


def test_render_run_puts_the_table_under_the_profile_section(tmp_path):
    rows = [_row("spatial_fwd_kernel", roof=4.0)]
    ks, tot = gpu_bench.join_profile([("spatial_fwd_kernel", 40.0, 1.0)], rows)
    meta = dict(machine="NVIDIA H200 (2026-12-02), torch 2.13, triton 3.9", date="2026-12-02 17:00",
                torch="2.13", triton="3.9", device="cuda", command="python -m bench.gpu_bench --out x")
    data = dict(meta=meta, rows=[
        dict(section="op", case="fwd+bwd bf16 T=27 B=42", variant="triton", status="ok", ms=1.0),
        dict(section="profile", case="bf16 T=27 B=42", variant="triton", status="ok", kernels=ks, totals=tot,
             static="static estimates", gpu_us_per_call=41.0),
        # a file of the older format: {name: {us, floor_us, roofline_frac}}
        dict(section="profile", case="bf16 T=243 B=42", variant="triton", status="ok",
             kernels={"temporal_fwd_kernel": dict(us=579.4, floor_us=91.0, roofline_frac=0.157),
                      "all_gpu_us_per_call": 3000.0})])
    path = tmp_path / "gpu_bench.json"
    path.write_text(json.dumps(data))
    text = render.render([path])
    assert text.startswith("### NVIDIA H200 (2026-12-02)") and "`python -m bench.gpu_bench --out x`" in text
    prof = text[text.index("profile:"):]
    assert "| " + " | ".join(render.KERNEL_COLUMNS) + " |" in prof
    assert "| bf16 T=27 B=42 | spatial_fwd_kernel | 1 | 40.0 | 4.00 |" in prof
    assert "| bf16 T=243 B=42 | temporal_fwd_kernel | - | 579.4 | 91.0 | - | 0.157 |" in prof
    assert "kernels" not in prof.split("Per kernel")[0]  # the list is not dumped into the notes
    md = tmp_path / "RESULTS.md"
    md.write_text("# Benchmark results\n\nintro\n\n## Older\n\ntext\n")
    assert render.main([str(path), "--write", str(md)]) == 0
    out = md.read_text()
    assert out.index(render.BEGIN) < out.index("spatial_fwd_kernel") < out.index(render.END) < out.index("## Older")


@pytest.fixture(scope="module")
def report_json(tmp_path_factory):
    """A real report of T=27 bf16 head_major for sm_90 (the kept compiles make reruns quick)."""
    out = tmp_path_factory.mktemp("report") / "kernel_report.json"
    r = subprocess.run([sys.executable, "-m", "bench.kernel_report", "--frames", "27", "--dtypes", "bf16",
                        "--layouts", "head_major", "--json", str(out), "-j", "2"],
                       cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return out


def test_join_with_the_real_report(report_json, monkeypatch):
    """Kernels matched by name, whatever kernels the launcher has now; stale rows refused."""
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)  # the launcher's GPU profile
    rows = json.loads(report_json.read_text())
    got, notes = gpu_bench.static_rows(str(report_json), [(27, "bf16"), (243, "bf16")], 42, 132, None, False)
    assert list(got) == [(27, "bf16")] and "no rows" in notes[(243, "bf16")]
    case, label = got[(27, "bf16")]
    assert case == rows and "sm_90 as an H200 at 4.80 TB/s" in label
    names = list(dict.fromkeys(r["kernel"] for r in rows))
    floors = {n: sum(r["roofline_floor_us"] for r in rows if r["kernel"] == n) for n in names}
    measured = [(n, 10 * floors[n], float(sum(r["kernel"] == n for r in rows))) for n in names]
    ks, tot = gpu_bench.join_profile(measured + [("void at::native::fill_kernel", 3.0, 1.0)], rows)
    assert [k["kernel"] for k in ks] == names
    assert all(k["roofline_frac"] == pytest.approx(0.1, abs=1e-3) for k in ks)
    assert tot["roofline_frac"] == pytest.approx(0.1, abs=1e-3) and tot["other_kernels"] == 1
    text = render.kernel_table([dict(case="bf16 T=27 B=42", kernels=ks, totals=tot, static=label)])
    for n in names:
        assert f"| bf16 T=27 B=42 | {n} |" in text

    # rows of another launcher (a constexpr or a grid changed, a kernel gone) are stale
    for change in ("grid", "constexprs", "drop"):
        stale = json.loads(report_json.read_text())
        if change == "grid":
            stale[1]["grid"] = [stale[1]["grid"][0] + 1]
        elif change == "constexprs":
            stale[1]["constexprs"] = dict(stale[1]["constexprs"], NOT_A_CONSTEXPR=1)
        else:
            stale.pop()
        path = report_json.with_name(f"stale_{change}.json")
        path.write_text(json.dumps(stale))
        got, notes = gpu_bench.static_rows(str(path), [(27, "bf16")], 42, 132, None, False)
        assert not got and "not the launcher's" in notes[(27, "bf16")], change
    # another SM count: the persistent grids differ from the report's (made for 132 SMs)
    got, notes = gpu_bench.static_rows(str(report_json), [(27, "bf16")], 42, 114, None, False)
    assert not got and "not the launcher's" in notes[(27, "bf16")]


def test_section_profile_without_a_gpu(report_json, monkeypatch, tmp_path):
    """The profile section end to end with the profiler faked: rows, notes and the rendered run."""
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    rows = json.loads(report_json.read_text())
    names = list(dict.fromkeys(r["kernel"] for r in rows))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "NVIDIA H200")
    monkeypatch.setattr(torch.cuda, "get_device_properties",
                        lambda *a: type("P", (), {"multi_processor_count": 132})())
    monkeypatch.setattr(gpu_bench, "profile_kernels",
                        lambda B, T, dtype: ([(n, 50.0, 1.0) for n in names] + [("aten_fill", 2.0, 1.0)], 999.0))
    bench = gpu_bench.Bench("cpu", 600, smoke=True)
    gpu_bench.section_profile(bench, 42, [27, 81, 243], ["bf16"], 4.0e12, str(report_json), compile_missing=False)
    r27, r243 = bench.rows
    assert (r27["case"], r27["status"], r243["case"]) == ("bf16 T=27 B=42", "ok", "bf16 T=243 B=42")
    assert [k["kernel"] for k in r27["kernels"]] == names and r27["gpu_us_per_call"] == 999.0
    assert all(k["us"] == 50.0 and k["roofline_frac"] > 0 for k in r27["kernels"])
    # T=243 is not in the report and nothing is compiled here: measured times alone, with why
    assert r243["static"].startswith("no static figures") and "no rows" in r243["static"]
    assert all("roofline_floor_us" not in k for k in r243["kernels"])
    text = render.render_run(dict(meta=bench.meta, rows=bench.rows))
    assert text.count("| " + " | ".join(render.KERNEL_COLUMNS) + " |") == 1
    assert "| bf16 T=243 B=42 | aten_fill |" in text
    # --kernel-report none: measured times alone, saying so
    gpu_bench.section_profile(bench, 42, [27], ["bf16"], None, None, compile_missing=True)
    assert bench.rows[-1]["static"] == "no static figures: no kernel report (--kernel-report none)"
    assert [k["kernel"] for k in bench.rows[-1]["kernels"]][:len(names)] == names


def test_missing_cases_are_compiled_in_process(report_json, tmp_path):
    """No report file: the bench runs the report itself for the profiled case, for the card's SM
    count (114 here: the persistent grids differ from the 132-SM report's)."""
    code = ("import json, torch; from bench import gpu_bench as g, kernel_report\n"
            "from bench.triton_variants import launches\n"
            f"got, notes = g.static_rows({str(tmp_path / 'absent.json')!r}, [(27, 'bf16')], 42, 114, None, True,"
            f" workdir={str(tmp_path)!r})\n"
            "rows, label = got[(27, 'bf16')]\n"
            "stale = g.stale_reason(rows, launches(42, 27, 17, 8, 16, torch.bfloat16, True, sm_count=114))\n"
            "assert kernel_report.ARCH[90]['sms'] == 132\n"
            "print(json.dumps(dict(rows=rows, label=label, stale=stale, notes={str(k): v for k, v in notes.items()})))")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=_env(), capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    res = json.loads(r.stdout.splitlines()[-1])
    assert "compiled in this run" in res["label"] and "absent.json not found" in res["label"]
    assert res["stale"] is None and not res["notes"]
    assert all(x["error"] is None and x["roofline_floor_us"] > 0 for x in res["rows"])
    assert [x["kernel"] for x in res["rows"]] == [x["kernel"] for x in json.loads(report_json.read_text())]
    assert "python -m bench.kernel_report --json" in r.stdout
    assert "not GPU timings" in (tmp_path / "kernel_report_bench.log").read_text()


def test_bench_cli_without_cuda():
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    h = subprocess.run([sys.executable, "-m", "bench.gpu_bench", "--help"], cwd=ROOT, capture_output=True, text=True,
                       timeout=120)
    assert h.returncode == 0 and "--kernel-report" in h.stdout and "--profile-dtypes" in h.stdout
    r = subprocess.run([sys.executable, "-m", "bench.gpu_bench"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stdout == "" and r.stderr.strip().splitlines() == [
        "gpu_bench.py: no CUDA device (use --cpu-smoke for a CPU dry run)"]
    a = subprocess.run([sys.executable, "-m", "bench.gpu_bench", "--kernel-report-args", "--frames", "27,81,243"],
                       cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert a.returncode == 0
    assert a.stdout.split() == ["--frames", "27,243", "--dtypes", "bf16,fp32", "--layouts", "head_major",
                                "--batch", "42"]
    assert gpu_bench.kernel_report_args([81], ["bf16"], 42, "NVIDIA H100 80GB HBM3").endswith(
        "--frames 81 --dtypes bf16 --layouts head_major --batch 42 --hbm-tbs 3.35")
    assert gpu_bench.profile_cases([27, 81, 243], ["bf16", "fp32"]) == [
        (27, "bf16"), (243, "bf16"), (27, "fp32"), (243, "fp32")]


def test_suite_syntax_and_budget_comment():
    suite = BENCH / "gpu_suite.sh"
    r = subprocess.run(["bash", "-n", str(suite)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    text = suite.read_text()
    assert "-m bench.kernel_report --json \"$LOG/kernel_report.json\"" in text and "SUITE_SKIP_REPORT" in text
    # the phases' limits in the header add up to less than 8 minutes
    budget = int(re.search(r"SUITE_BUDGET_S:-(\d+)", text).group(1))
    install = int(re.search(r"min (\d+) \"\$\(left\)\"", text).group(1))
    checks = int(re.search(r"SUITE_CHECKS_S:-(\d+)", text).group(1))
    assert install + checks + 60 + 35 <= budget < 480


def _suite(tmp_path, **knobs):
    env = dict(_env(), OUT=str(tmp_path), PYTHON=sys.executable, SUITE_SKIP_INSTALL="1", SUITE_SKIP_TESTS="1",
               SUITE_SKIP_TRAIN="1", SUITE_BUDGET_S="200", **knobs)
    r = subprocess.run(["bash", str(BENCH / "gpu_suite.sh")], env=env, capture_output=True, text=True, timeout=400)
    return r, (tmp_path / "suite.log").read_text()


def test_suite_runs_to_the_end_without_a_gpu(report_json, tmp_path):
    """All but the report and the bench skipped: the report is written beside the logs for the
    profiled cases, the bench says its one line, the suite ends within its budget."""
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    t0 = time.time()
    r, log = _suite(tmp_path / "a", SUITE_BENCH_ARGS="--frames 27 --profile-dtypes bf16")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "gpu_bench.py: no CUDA device" in log and "suite: " in log
    budget = int(re.search(r"bench \(budget (\d+) s\): rc=2", log).group(1))
    assert 60 <= budget <= 200 - 35
    # the report of the cases the bench profiles (T=27 bf16 here), as the CLI writes it
    n = len(json.loads(report_json.read_text()))
    assert f"kernel report (static estimates): rc=0, {n} launches" in log, log
    rows = json.loads((tmp_path / "a" / "kernel_report.json").read_text())
    assert {(r["frames"], r["dtype"], r["layout"], r["batch"], r["error"]) for r in rows} == {
        (27, "bf16", "head_major", 42, None)}
    assert [r["kernel"] for r in rows] == [r["kernel"] for r in json.loads(report_json.read_text())]
    assert time.time() - t0 < 300

    r, log = _suite(tmp_path / "b", SUITE_SKIP_REPORT="1")
    assert r.returncode == 1 and "kernel report" not in log and not (tmp_path / "b" / "kernel_report.json").exists()
    assert "bench (budget" in log

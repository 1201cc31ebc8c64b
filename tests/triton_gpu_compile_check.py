"""Compile every Triton kernel variant of the triton backend for a GPU target, without a GPU.

Run as a script in a process WITHOUT TRITON_INTERPRET (the interpreter replaces triton.jit):

    python tests/triton_gpu_compile_check.py --targets 90,80 [--set ci|full]

``triton.compile(ASTSource(...), target=GPUTarget("cuda", cc, 32))`` runs the whole GPU pipeline
(TTIR -> TTGIR -> LLVM -> PTX -> cubin via the bundled ptxas), so it catches what the interpreter
cannot: illegal dot shapes, unsupported dtype mixes, shared-memory overflows. Prints one line per
variant (with its shared memory) and exits 1 if any variant fails.
"""
from __future__ import annotations

import argparse
import os
import re
import sys
import time

# (target compute capabilities, dtypes, [(T, J, dh), ...], HAS_SPE values, head_major values)
# per set. ci: the model's shape (T=243, J=17, dh=16: whole-row temporal backward, 8 x 32 and
# 4 x 32 spatial tiles) in every dtype for sm_90 in the head-major layout the model uses on a
# GPU, the official layout in bf16; the corner cases (T=1 with dh=4 padded to 16; T=300: the
# streaming temporal backward) in 16-bit (a 16-bit dot needs K, N >= 16), sm_80 (mma.sync) too.
# Run beside each other in two processes this takes about a minute on 2 CPU cores.
SETS = {
    "ci": [((90,), ("fp32", "fp16", "bf16"), ((243, 17, 16),), (True,), (True,)),
           ((90,), ("bf16",), ((243, 17, 16),), (True,), (False,)),
           ((90,), ("fp16",), ((1, 17, 4), (300, 16, 16)), (True,), (True,)),
           ((80,), ("bf16",), ((243, 17, 16), (1, 17, 4)), (True,), (True,)),
           ((80,), ("fp16",), ((81, 16, 32),), (True,), (False,))],
    "full": [((90, 80), ("fp32", "fp16", "bf16"),
              ((1, 17, 4), (2, 16, 4), (3, 16, 16), (27, 17, 16), (243, 17, 16), (81, 16, 32),
               (1000, 17, 4), (9, 32, 64), (300, 64, 16)), (False, True), (True, False))],
}


def aligned_attrs(kernel) -> dict:
    """What Triton's launcher specialises at run time for our tensors: 16-byte aligned pointers
    and strides divisible by 16 (C = 256: every row stride is), so the PTX matches a real run."""
    return {(i,): [["tt.divisibility", 16]] for i, name in enumerate(kernel.arg_names)
            if name.endswith("_ptr") or name.startswith("s_")}


def _signature(kernel, x: str, p: str) -> dict:
    """Triton signature of one of our kernels: *_ptr args get x (activations) or p (params)."""
    sig = {}
    for name in kernel.arg_names:
        if name.endswith("_ptr"):
            if name in ("w_ptr", "b_ptr", "spe_ptr"):
                sig[name] = "*" + p
            elif name in ("lse_ptr", "delta_ptr", "pw_ptr", "pj_ptr"):
                sig[name] = "*fp32"
            else:
                sig[name] = "*" + x
        elif name in ("T", "J", "NSPLIT") or name.startswith("s_"):
            sig[name] = "i32"
        elif name == "scale":
            sig[name] = "fp32"
        else:
            sig[name] = "constexpr"
    return sig


def kernel_variants(dtypes, shapes=((1, 17, 4), (3, 16, 16), (243, 17, 16), (27, 17, 32)),
                    profile: str = "gpu", spe=(False, True), layouts=(True, False)):
    """Every distinct (kernel, signature, constexprs, num_warps) the launcher picks for these
    dtypes, (T, J, dh) shapes and layouts (head_major True / False), for ``triton.compile``
    against a GPU target without a GPU (below). Parameters
    (w, b, spe) are float32 (the autocast case) except for the first shape, where they share
    the activations' dtype. ``spe``: the HAS_SPE values to build (False only drops a load).
    A T above MAX_ROW_T adds the streaming temporal backward.
    """
    import torch
    from stcformer.backends.triton import Config, _layout
    from stcformer.kernels.spatial import spatial_bwd_kernel, spatial_fwd_kernel
    from stcformer.kernels.temporal import (temporal_bwd_delta_kernel, temporal_bwd_kernel,
                                            temporal_bwd_row_kernel, temporal_fwd_kernel)

    seen = set()
    variants = []

    def add(kernel, x, p, const, num_warps):
        key = (kernel.fn.__name__, x, p, tuple(sorted(const.items())), num_warps)
        if key not in seen:
            seen.add(key)
            variants.append((kernel, _signature(kernel, x, p), dict(const), num_warps))

    for dt in dtypes:
        x = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}[dt]
        for i, (T, J, dh) in enumerate(shapes):
            cfg = Config(42, T, J, 8, dh, dt, profile=profile)
            p = x if i == 0 else "fp32"
            for hm in layouts:
                common = dict(H=8, DH=dh, DHP=cfg.DHP, **_layout(hm, dh))
                dot = dict(common, DOT_PREC=cfg.DOT_PREC)
                for has_spe in spe:
                    add(spatial_fwd_kernel, x, p, dict(dot, JP=cfg.JP, FRAMES=cfg.FRAMES,
                                                       HAS_SPE=has_spe), cfg.warps_s)
                    add(temporal_fwd_kernel, x, p, dict(dot, NB=cfg.NB, BLOCK_M=cfg.BLOCK_M, BLOCK_N=cfg.BLOCK_N,
                                                        HAS_SPE=has_spe), cfg.warps_fwd_t)
                    if not cfg.row_bwd:
                        add(temporal_bwd_delta_kernel, x, p, dict(common, NB=cfg.NB, BLOCK=cfg.STREAM,
                                                                  HAS_SPE=has_spe), 4)
                add(spatial_bwd_kernel, x, p, dict(dot, JP=cfg.JP, FRAMES=cfg.FRAMES_BWD), cfg.warps_s)
                if cfg.row_bwd:
                    add(temporal_bwd_row_kernel, x, p, dict(dot, NB=cfg.NB, BLOCK_M=cfg.BLOCK_M_BWD,
                                                            BLOCK_N=cfg.BLOCK_N), cfg.warps_bwd_t)
                else:
                    add(temporal_bwd_kernel, x, p, dict(dot, NB=cfg.NB, BLOCK=cfg.STREAM), 4)
    return variants


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--targets", default="90,80",
                    help="comma-separated compute capabilities (only those in the set are built)")
    ap.add_argument("--set", choices=("ci", "full"), default="ci",
                    help="ci: the model's shapes and the corner cases; full: more shapes")
    args = ap.parse_args(argv)
    if os.environ.get("TRITON_INTERPRET") == "1":
        print("unset TRITON_INTERPRET: the interpreter replaces triton.jit", file=sys.stderr)
        return 2
    os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")  # silence a triton 3.9 warning

    import torch
    import triton
    from triton.backends.compiler import GPUTarget

    dt = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
    wanted = {int(c) for c in args.targets.split(",")}
    failures = count = 0
    t0 = time.time()
    for targets, dtypes, shapes, spe, layouts in SETS[args.set]:
        variants = kernel_variants(dtypes=[dt[d] for d in dtypes], shapes=shapes, spe=spe,
                                      layouts=layouts)
        for cc in sorted(wanted.intersection(targets), reverse=True):
            target = GPUTarget("cuda", cc, 32)
            for kernel, signature, constexprs, num_warps in variants:
                count += 1
                name = (f"sm_{cc} {kernel.fn.__name__} {signature['qkv_ptr']}/{signature['w_ptr']} "
                        f"{constexprs} warps={num_warps}")
                try:
                    src = triton.compiler.ASTSource(fn=kernel, signature=signature, constexprs=constexprs,
                                                    attrs=aligned_attrs(kernel))
                    k = triton.compile(src, target=target, options={"num_warps": num_warps})
                    assert k.asm.get("cubin"), "no cubin"
                    vec = len(re.findall(r"ld\.global\.v[24]", k.asm["ptx"]))
                    # head-major q/k/v rows are contiguous: they must load as 8/16-byte vectors
                    assert constexprs.get("SD") != 1 or constexprs["DH"] < 8 or vec > 0, "head-major loads are not vectorised"
                    print(f"ok   {name} shared={k.metadata.shared} vector_loads={vec}", flush=True)
                except Exception as exc:  # report every failure, then fail once
                    failures += 1
                    msg = " ".join(str(exc).split())[:600]
                    print(f"FAIL {name}: {type(exc).__name__}: {msg}", flush=True)
    print(f"{count} kernel builds for sm_{sorted(wanted)}, {failures} failed, {time.time() - t0:.0f}s",
          flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

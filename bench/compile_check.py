"""Compile every Triton kernel variant of the triton backend for a GPU target, without a GPU.

Run from the repository root in a process WITHOUT TRITON_INTERPRET (the interpreter replaces triton.jit):

    python -m bench.compile_check --targets 90,80 [--set ci|full]

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


def kernel_variants(dtypes, shapes=((1, 17, 4), (3, 16, 16), (243, 17, 16), (27, 17, 32)),
                    profile: str = "gpu", spe=(False, True), layouts=(True, False), arch: int = 90):
    """Every distinct launch (kernel, signature, constexprs, attributes, num_warps) the launcher
    makes for these dtypes, (T, J, dh) shapes, HAS_SPE values and layouts (head_major True /
    False), from ``bench.triton_variants.launches`` (B = 42, 8 heads). Parameters
    (w, b, spe) are float32 (the autocast case) except for the first shape, where they share
    the activations' dtype. A T above MAX_ROW_T adds the streaming temporal backward.
    Returns [(launch, compile_spec)] with ``compile_spec`` bound for ``arch``.
    """
    import torch
    from bench.triton_variants import launches

    seen, variants = set(), []
    for dt in dtypes:
        for i, (T, J, dh) in enumerate(shapes):
            for hm in layouts:
                for has_spe in spe:
                    for launch in launches(42, T, J, 8, dh, dt, hm, has_spe=has_spe,
                                           param_dtype=None if i == 0 else torch.float32,
                                           profile=profile):
                        spec = launch.compile_spec(arch)
                        key = (launch.name, repr(spec))
                        if key not in seen:
                            seen.add(key)
                            variants.append((launch, spec))
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
        for cc in sorted(wanted.intersection(targets), reverse=True):
            target = GPUTarget("cuda", cc, 32)
            for launch, (signature, constexprs, attrs, options) in kernel_variants(
                    dtypes=[dt[d] for d in dtypes], shapes=shapes, spe=spe, layouts=layouts, arch=cc):
                count += 1
                ptrs = "/".join(v for v in signature.values() if v.startswith("*"))
                name = f"sm_{cc} {launch.name} {ptrs} {launch.constexprs} warps={launch.num_warps}"
                try:
                    src = triton.compiler.ASTSource(fn=launch.kernel, signature=signature,
                                                    constexprs=constexprs, attrs=attrs)
                    k = triton.compile(src, target=target, options=options)
                    assert k.asm.get("cubin"), "no cubin"
                    vec = len(re.findall(r"ld\.global\.v[24]", k.asm["ptx"]))
                    # head-major q/k/v rows are contiguous: they must load as 8/16-byte vectors
                    c = launch.constexprs
                    assert c.get("SD") != 1 or c.get("DH", 0) < 8 or vec > 0, "head-major loads are not vectorised"
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

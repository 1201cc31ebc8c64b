import os

if os.environ.get("STCFORMER_GPU_TESTS") != "1":
    os.environ.setdefault("TRITON_INTERPRET", "1")

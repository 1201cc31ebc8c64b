"""bench/harness.tensor_peak_bytes: the live-tensor peak the memory tables report."""
import torch

from bench import harness


def test_tensor_peak_counts_live_tensors_only():
    mib = 2 ** 20

    def two_at_once():
        a = torch.empty(4 * mib, dtype=torch.uint8)
        b = torch.empty(2 * mib, dtype=torch.uint8)
        del a, b
        torch.empty(3 * mib, dtype=torch.uint8)  # freed at once: below the peak

    peak = harness.tensor_peak_bytes(two_at_once)
    assert peak is not None
    assert 6 * mib <= peak < 6 * mib + mib // 4

"""ssl_lab.benchmark: the precision it reports is the one the loop ran in."""
import torch

from ssl_lab import benchmark
from ssl_lab.ssl.train import native_bf16


def test_ran_in_reports_what_the_loop_recorded():
    run = dict(art=dict(precision="float32"), cfg=dict(amp=True))
    assert benchmark.ran_in(run, "cpu") == "float32"      # amp asked for, the loop ran fp32


def test_ran_in_without_a_record_follows_amp_and_the_device():
    assert benchmark.ran_in(dict(art={}, cfg={}), "cpu") == "float32"
    expected = "bf16 autocast" if native_bf16("cpu") else "float32"
    assert benchmark.ran_in(dict(art={}, cfg=dict(amp=True)), "cpu") == expected
    assert benchmark.ran_in(dict(art={}, cfg=dict(amp="always")), "cpu") == "bf16 autocast"


def test_matmul_rate_counts_two_n_cubed_flops_per_product():
    rate = benchmark.matmul_rate(torch.float32, n=64, repeats=2)
    assert 1e6 < rate < 1e14

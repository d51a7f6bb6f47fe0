"""Benchmark script: structure of its result on a tiny random generator (times never asserted)."""
import json

import pytest
import torch

from promptgan.models.eval import benchmark as bm
from promptgan.models.gan import Generator, GeneratorConfig


@pytest.fixture(scope="module")
def result():
    torch.manual_seed(0)
    g = Generator(GeneratorConfig(resolution=64, ngf=4)).eval().requires_grad_(False)
    return bm.run_benchmark(g, resolutions=[64, 32], batches=[1, 2], dtypes=["fp32"],
                            compile_modes=(False,), repeat=1, matmul_n=128, matmul_reps=1,
                            text=False, log=lambda s: None)


def test_result_structure(result):
    assert result["matmul"]["fp32_gflops"] > 0 and result["matmul"]["bf16_gflops"] > 0
    assert result["model"]["config"]["ngf"] == 4 and result["model"]["random"]
    assert set(result["machine"]) >= {"cpu", "torch", "torch_threads"}
    rows = result["generation"]
    assert len(rows) == 4 and not [r for r in rows if "error" in r]
    assert {(r["resolution"], r["batch"]) for r in rows} == {(64, 1), (64, 2), (32, 1), (32, 2)}
    for r in rows:
        for key in ("images_per_s", "ms_per_image", "gflop_per_image", "gflops",
                    "fraction_of_fp32_matmul", "fraction_of_bf16_matmul", "peak_rss_mb",
                    "params", "first_call_s", "matmul_fp32_interleaved_gflops",
                    "fraction_of_interleaved_fp32_matmul"):
            assert r[key] > 0, (key, r)
        assert r["mode"] == "eager" and r["compile_warmup_s"] is None and r["reps"] == 1
        assert r["fraction_of_interleaved_fp32_matmul"] == pytest.approx(
            r["gflops"] / r["matmul_fp32_interleaved_gflops"])
        assert r["output_shape"] == [r["batch"], 3, r["resolution"], r["resolution"]]
        assert r["weights"].startswith("random")
    # FLOPs grow with resolution; the same configuration at batch 1 and 2 counts the same per image
    per_res = {r["resolution"]: r["gflop_per_image"] for r in rows}
    assert per_res[64] > per_res[32]
    json.dumps(result)  # JSON-able as written by --json


def test_markdown_table(result):
    text = bm.markdown(result)
    assert "| res | batch | dtype | mode |" in text and text.count("| eager |") == 4
    assert "GFLOP/s" in text and "Peak RSS" in text


def test_caller_generator_untouched_and_bf16_runs():
    g = Generator(GeneratorConfig(resolution=32, ngf=4)).eval()
    spec = {"base_config": {**g.cfg.__dict__}, "model_path": None, "resolution": 32, "batch": 2,
            "dtype": "bf16", "compiled": False, "repeat": 1}
    r = bm.run_one(spec, g, fp32_rate=1.0)
    assert r["output_dtype"] == "bfloat16" and r["images_per_s"] > 0
    assert not g.blocks[0].conv1.weight.is_contiguous(memory_format=torch.channels_last)


def test_interleaved_yardstick_is_timed_between_the_calls(monkeypatch):
    """With matmul_n the yardstick runs after calls 1, 5, 9, ... and at least three times; its
    rate is the median of its own calls."""
    g = Generator(GeneratorConfig(resolution=32, ngf=4)).eval()
    order = []
    real_call = bm.InterleavedMatmul.time_one
    monkeypatch.setattr(bm.InterleavedMatmul, "time_one",
                        lambda self: (order.append("mm"), real_call(self))[1])
    real_forward = Generator.forward
    monkeypatch.setattr(Generator, "forward",
                        lambda self, *a, **k: (order.append("g"), real_forward(self, *a, **k))[1])
    r = bm.time_generator(g, 2, repeat=6, matmul_n=64)
    # two warm-up calls, then six timed ones with the yardstick after the first and the fifth,
    # and a third yardstick call after the last
    assert order == ["g", "g", "g", "mm", "g", "g", "g", "g", "mm", "g", "mm"]
    assert r["reps"] == 6 and r["matmul_fp32_interleaved_gflops"] > 0
    assert bm.time_generator(g, 2, repeat=1)["matmul_fp32_interleaved_gflops"] is None


def test_bad_dtype_is_a_clear_error():
    g = Generator(GeneratorConfig(resolution=32, ngf=4)).eval()
    with pytest.raises(ValueError, match="dtype 'fp8' not supported"):
        bm.time_generator(g, 1, "fp8")


def test_benchmark_threads_measures_quiet_and_beside_its_own_competitor(monkeypatch):
    """benchmark-threads on a tiny job: every thread count quiet and busy, the policy's pick,
    the slow-down ratios and the same-run matmul share (times reported, never asserted)."""
    from promptgan.models.eval import benchmark_threads as bt

    x = torch.rand(64, 64)
    monkeypatch.setattr(bt, "jobs", lambda: [("tiny matmul", 2 * 64 ** 3, lambda: x @ x)])
    monkeypatch.setattr(bt, "matmul_rate", lambda dtype: 10.0)
    rows, matmul = bt.measure(0.01, [1])
    assert matmul == {"quiet": 10.0, "busy": 10.0}
    [row] = rows
    assert set(row["ms"]) == {"quiet_1", "quiet_policy", "busy_1", "busy_policy"}
    assert row["policy"]["quiet"] >= 1 and row["policy"]["busy"] >= 1
    assert row["policy_busy_over_quiet"] > 0 and row["quiet_percent_of_matmul"] > 0
    assert "| tiny matmul |" in bt.markdown(rows, [1])


def test_the_matmul_rate_shrinks_its_size_to_fit_the_time_budget():
    """A dtype the CPU runs slowly (bf16 without native support: under 1 GFLOP/s) is timed at a
    smaller size instead of for minutes; a generous budget keeps the size asked for."""
    from promptgan.models.eval.benchmark import matmul_size
    assert matmul_size(torch.float32, 2048, 3, budget_s=1e-9) == 256
    assert matmul_size(torch.float32, 1024, 3, budget_s=1e9) == 1024
    assert matmul_size(torch.float32, 128, 3, budget_s=1e-9) == 128

"""The CPU fast path: bf16 autocast for Enhance only where the CPU has native bf16 and a
measurement shows it faster, outputs within a stated tolerance of float32, and a switch."""
import torch

from promptgan.models import fast_paths
from promptgan.models.checkpoint import WEIGHTS_DIR
from promptgan.models.enhance.network import Enhancer, EnhancerConfig
from promptgan.nodes import enhance_nodes


def test_float32_unless_the_cpu_has_native_bf16_and_it_pays(monkeypatch):
    monkeypatch.delenv(fast_paths.ENV_FP32, raising=False)     # conftest pins float32
    net = Enhancer(EnhancerConfig(channels=8, n_convs=2)).eval()
    cpu = torch.device("cpu")
    monkeypatch.setattr(fast_paths, "cpu_has_native_bf16", lambda: False)
    assert fast_paths.enhance_autocast(net, cpu) is None
    monkeypatch.setattr(fast_paths, "cpu_has_native_bf16", lambda: True)
    monkeypatch.setattr(fast_paths, "bf16_pays", lambda net: False)
    assert fast_paths.enhance_autocast(net, cpu) is None
    monkeypatch.setattr(fast_paths, "bf16_pays", lambda net: True)
    assert fast_paths.enhance_autocast(net, cpu) is torch.bfloat16
    assert fast_paths.enhance_autocast(net, torch.device("cuda")) is torch.float16
    monkeypatch.setenv(fast_paths.ENV_FP32, "1")       # the switch: float32 everywhere
    assert fast_paths.enhance_autocast(net, cpu) is None
    assert fast_paths.enhance_autocast(net, torch.device("cuda")) is None


def test_the_measurement_runs_once_per_network_configuration(monkeypatch):
    calls = []
    times = iter([1.0, 0.5, 1.0, 0.95])                  # fp32, bf16 for each configuration

    def fake_best(fn, reps=3):
        fn()
        calls.append(1)
        return next(times)

    monkeypatch.setattr(fast_paths, "best_seconds", fake_best)
    monkeypatch.setattr(fast_paths, "_measured", {})
    a = Enhancer(EnhancerConfig(channels=8, n_convs=2)).eval()
    b = Enhancer(EnhancerConfig(channels=8, n_convs=3)).eval()
    assert fast_paths.bf16_pays(a) and fast_paths.bf16_pays(a)      # 2x faster, measured once
    assert not fast_paths.bf16_pays(b)                               # 1.05x: not worth it
    assert len(calls) == 4


def test_enhance_under_bf16_stays_within_two_levels_of_float32(monkeypatch):
    """The shipped enhancer through the node, bf16 autocast forced on against float32 (bf16 is
    emulated on CPUs without it: slow, but the same arithmetic)."""
    name = "enhance_x4 (bundled)"
    assert (WEIGHTS_DIR / "enhance_x4.safetensors").is_file()
    image = torch.rand(1, 48, 40, 3, generator=torch.Generator().manual_seed(0))
    monkeypatch.setattr(enhance_nodes, "enhance_autocast", lambda net, device: None)
    fp32 = enhance_nodes.PromptGAN_Enhance().enhance(image, enhance_nodes.load_model(name), "", 256, 1.0)[0]
    monkeypatch.setattr(enhance_nodes, "enhance_autocast", lambda net, device: torch.bfloat16)
    bf16 = enhance_nodes.PromptGAN_Enhance().enhance(image, enhance_nodes.load_model(name), "", 256, 1.0)[0]
    assert fp32.shape == bf16.shape == (1, 192, 160, 3)
    assert (fp32 - bf16).abs().max() * 255 <= 2.0
    assert not torch.equal(fp32, bf16)                  # the bf16 path really ran

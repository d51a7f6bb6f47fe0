"""The per-call thread policy: small jobs on one thread, the caller's setting restored, the same
images whatever the thread count."""
import pytest
import torch

from promptgan.models import generate as gen
from promptgan.models import threads


def test_a_busy_core_takes_a_thread_away(monkeypatch):
    """Beside a process that keeps one core busy the call gets one thread fewer (never under
    one, never over torch's count); PROMPTGAN_THREADS fixes the count."""
    monkeypatch.delenv(threads.ENV_THREADS, raising=False)
    monkeypatch.setattr(threads, "available_cores", lambda: 2)
    with threads.intra_op_threads(2):
        monkeypatch.setattr(threads, "busy_cores", lambda: 0)
        assert threads.threads_for_call() == 2
        monkeypatch.setattr(threads, "busy_cores", lambda: 1)
        assert threads.threads_for_call() == 1
        monkeypatch.setattr(threads, "busy_cores", lambda: 5)
        assert threads.threads_for_call() == 1
    with threads.intra_op_threads(1):
        monkeypatch.setattr(threads, "busy_cores", lambda: 0)
        assert threads.threads_for_call() == 1
    monkeypatch.setenv(threads.ENV_THREADS, "3")
    assert threads.threads_for_call() == 3


def test_a_long_job_following_the_load_gets_the_free_cores_up_to_its_count(monkeypatch):
    """``train-gan --follow-load``: --threads (0: every core) less the busy cores, at least
    one, whatever torch is set to now (the job lowers it and must raise it again)."""
    monkeypatch.setattr(threads, "available_cores", lambda: 4)
    with threads.intra_op_threads(1):
        for busy, most, want in ((0, 2, 2), (1, 2, 2), (3, 2, 1), (9, 2, 1), (1, 0, 3), (0, 0, 4)):
            monkeypatch.setattr(threads, "busy_cores", lambda b=busy: b)
            assert threads.threads_beside_load(most) == want, (busy, most)


def test_busy_cores_sees_a_real_competing_process():
    import subprocess
    import sys
    import time

    if threads._running_tasks_elsewhere() is None:
        pytest.skip("no /proc here")
    spin = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)
        assert threads.busy_cores() >= 1
    finally:
        spin.kill()
        spin.wait()


def test_the_callers_setting_is_restored_even_on_error():
    before = torch.get_num_threads()
    with threads.intra_op_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with pytest.raises(RuntimeError), threads.intra_op_threads(1):
        raise RuntimeError("boom")
    assert torch.get_num_threads() == before


def test_same_images_on_one_and_on_all_threads():
    from promptgan.models import gan
    from promptgan.models.text_encoder import TextEmbeds

    torch.manual_seed(0)
    g = gan.Generator(gan.GeneratorConfig(resolution=32, ngf=4, nz=8, text_dim=6, cond_dim=4)).eval()
    model = gan.GANModel(g, None, "toy", "toy.safetensors")
    s = torch.nn.functional.normalize(torch.randn(2, 6), dim=1)
    lat = gen.make_latent(model, TextEmbeds(s, s[:, None], torch.ones(2, 1, dtype=torch.bool),
                                            "toy", ["a", "b"]), 0, 3)
    with threads.intra_op_threads(1):
        one = gen.generate(model, lat)
    with threads.intra_op_threads(max(2, torch.get_num_threads())):
        many = gen.generate(model, lat)
    assert (one - many).abs().max() < 1e-5     # kernels may sum in another order


def test_generate_node_leaves_the_thread_setting_as_it_was():
    from promptgan.nodes.gan_nodes import PromptGAN_GANGenerate, load_model_cached
    from promptgan.nodes.text_nodes import MODEL_CHOICE, PromptGAN_TextEncode

    model = load_model_cached("promptgan_default (bundled)")
    (emb,) = PromptGAN_TextEncode().encode("a red flower", MODEL_CHOICE, model=model)
    before = torch.get_num_threads()
    PromptGAN_GANGenerate().generate(model, emb, 0, 1, 1.0)
    assert torch.get_num_threads() == before

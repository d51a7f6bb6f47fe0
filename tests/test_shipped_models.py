"""The weights that ship with the pack: they load, they are what the README says, and the
default model follows its prompts well above chance (a broken model fails here)."""
import numpy as np
import pytest
import torch
from promptgan.models import evaluate as ev
from promptgan.models.data import procedural as P
from promptgan.models.gan import load_gan
from promptgan.models.text_encoder import DEFAULT_ENCODER_ID, encode_prompts
from promptgan.nodes.runtime import BUNDLED_WEIGHTS_DIR

DEFAULT_MODEL = BUNDLED_WEIGHTS_DIR / "promptgan_default.safetensors"

# Floors well under the evaluator's figures in the README (which use 200 held-out prompts), far
# above chance: they catch a broken or text-blind model, not small regressions.
FLOOR_DOMAIN = 0.9           # flower vs landscape read from the image
FLOOR_MEAN_ATTRIBUTE = None  # set from the evaluator once the default model is final
CHANCE_MEAN_ATTRIBUTE = float(np.mean([1 / n for name, n in P.LABEL_HEADS if name != "domain"]))


@pytest.fixture(scope="module")
def model():
    return load_gan(DEFAULT_MODEL)


@pytest.fixture(scope="module")
def classifier():
    return ev.load_classifier()


def test_default_model_metadata(model):
    assert model.encoder_id == DEFAULT_ENCODER_ID
    assert model.resolution == 64 and model.discriminator is not None
    assert model.provenance["step"] > 0 and model.provenance["commands"][0]["command"]
    assert all(t.dtype == torch.float16 for t in
               __import__("safetensors.torch").torch.load_file(str(DEFAULT_MODEL)).values()
               if t.is_floating_point())


def test_classifier_reads_real_renders(classifier):
    prompts = P.heldout_prompts(20, seed=99)
    real = ev.real_renders(prompts, 64, seed=5)
    acc = ev.evaluate_images(real, prompts, classifier)
    assert acc["mean_accuracy"] >= 0.9, acc


def test_default_model_follows_prompts(model, classifier):
    prompts = P.heldout_prompts(20, seed=4321)
    s = encode_prompts([p["prompt"] for p in prompts]).sentence
    images = ev.generate(model, s, list(range(len(prompts))))
    acc = ev.evaluate_images(images, prompts, classifier)
    assert acc["accuracy"]["domain"] >= FLOOR_DOMAIN, acc
    floor = FLOOR_MEAN_ATTRIBUTE or CHANCE_MEAN_ATTRIBUTE + 0.1
    assert acc["mean_accuracy"] >= floor, acc


def test_same_seed_same_image(model):
    s = encode_prompts(["a red flower with five round petals on green grass"]).sentence
    a = ev.generate(model, s, [3])
    b = ev.generate(model, s.repeat(4, 1), [1, 2, 3, 4])[2:3]
    assert torch.allclose(a, b, atol=1e-5)

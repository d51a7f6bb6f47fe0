"""The vocabulary a model records and GANGenerate's report of the prompt words it never saw."""
import torch
from PIL import Image

from promptgan.models import gan
from promptgan.models.checkpoint import WEIGHTS_DIR
from promptgan.models.text_encoder import encode_prompts
from promptgan.models.train.gan import main as train_gan
from promptgan.models.vocabulary import report, unknown_words, vocabulary_of, words_of
from promptgan.nodes.gan_nodes import PromptGAN_GANGenerate


def test_words_and_unknown_words():
    assert words_of("Snowy mountains, at NIGHT! it's pale-blue") == [
        "snowy", "mountains", "at", "night", "it's", "pale-blue"]
    vocab = vocabulary_of(["a red flower with five petals", "a red flower on grass"])
    assert vocab == sorted(set(vocab)) and "red" in vocab and "grass" in vocab
    # function words are never reported, unknown content words once each, in order
    assert unknown_words("the cerulean flower with cerulean and teal petals", vocab) == [
        "cerulean", "teal"]
    assert report(["a red flower", "a teal flower"], vocab) == ["", "teal: unknown to this model"]
    assert report(["a teal flower"], None) == [""]      # a file without a vocabulary: no guess
    assert unknown_words("a red-flower and a pale-red one", vocab) == ["pale-red"]


def test_a_trained_model_records_its_captions_words_and_generate_reports_the_rest(tmp_path):
    data = tmp_path / "imgs"
    data.mkdir()
    for i in range(3):
        Image.new("RGB", (32, 32), (200, 40 * i, 30)).save(data / f"im{i}.png")
        (data / f"im{i}.txt").write_text(f"a red square number {i}\n")
    assert train_gan(["--data", f"folder:{data}", "--out", str(tmp_path / "run"), "--resolution", "32",
                      "--ngf", "4", "--ndf", "4", "--batch", "2", "--steps", "1", "--threads", "1"]) == 0
    model = gan.load_gan(tmp_path / "run" / "model.safetensors")
    assert model.vocabulary == ["a", "number", "red", "square"]
    embeds = encode_prompts(["a red square", "a cerulean square with stripes"])
    images, latent, unknown = PromptGAN_GANGenerate().generate(model, embeds, 0, 1, 1.0)
    assert images.shape == (2, 32, 32, 3)
    assert unknown == "prompt 2: cerulean, stripes: unknown to this model"


def test_the_shipped_model_knows_its_caption_words_and_names_new_ones():
    model = gan.load_gan(WEIGHTS_DIR / "promptgan_default.safetensors")
    assert model.vocabulary and {"flower", "petals", "mountains", "snowy"} <= set(model.vocabulary)
    embeds = encode_prompts(["a red flower with five round petals on green grass",
                             "a cerulean flower with teal petals"])
    with torch.no_grad():
        _, _, unknown = PromptGAN_GANGenerate().generate(model, embeds, 0, 1, 1.0)
    assert unknown == "prompt 2: cerulean, teal: unknown to this model"

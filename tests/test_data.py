"""Procedural captioned data and the captioned image-folder loader."""
import logging
import re

import numpy as np
import pytest
from PIL import Image

from promptgan.models.data import captions, folder, procedural
from promptgan.models.data.procedural import ATTRIBUTES, DOMAINS, LABEL_HEADS


def _attrs(domain, **override):
    base = {name: values[0] for name, values in ATTRIBUTES[domain].items()}
    if domain == "landscape":
        base.update(time_of_day="day", sky_object="sun", mountains="snowy", water="lake",
                    trees="few", season="summer")
    base.update(override)
    return base


# ---------------------------------------------------------------- rendering

@pytest.mark.parametrize("size", [32, 48, 64, 128])
@pytest.mark.parametrize("domain", DOMAINS)
def test_render_shape_dtype(domain, size):
    rng = np.random.default_rng(0)
    attrs = procedural.sample_attributes(domain, rng)
    img = procedural.render(domain, attrs, size, rng)
    assert img.shape == (size, size, 3) and img.dtype == np.uint8
    assert img.std() > 5  # not a blank image


def test_render_deterministic_and_layout_independent_of_attrs():
    a = procedural.render("flower", _attrs("flower"), 64, np.random.default_rng(5))
    b = procedural.render("flower", _attrs("flower"), 64, np.random.default_rng(5))
    assert a.tobytes() == b.tobytes()
    # rng consumption does not depend on the attributes: the generator ends in the same state
    r1, r2 = np.random.default_rng(9), np.random.default_rng(9)
    procedural.render("landscape", _attrs("landscape"), 32, r1)
    procedural.render("landscape", _attrs("landscape", trees="forest", water="none",
                                          time_of_day="night", sky_object="moon"), 32, r2)
    assert r1.random() == r2.random()


def _flower_region_mean(img):
    s = img.shape[0]
    return img[s // 4: 3 * s // 4, s // 4: 3 * s // 4].reshape(-1, 3).astype(float).mean(0)


def test_attributes_visibly_matter():
    def flower(**kw):
        return procedural.render("flower", _attrs("flower", size="large", **kw), 64,
                                 np.random.default_rng(11))

    red = _flower_region_mean(flower(petal_colour="red"))
    blue = _flower_region_mean(flower(petal_colour="blue"))
    assert np.abs(red - blue).sum() > 120, (red, blue)
    # background: compare the corners
    grass, sky = flower(background="grass"), flower(background="sky")
    assert np.abs(grass[:8, :8].astype(float).mean((0, 1))
                  - sky[:8, :8].astype(float).mean((0, 1))).sum() > 100
    # petal count and shape change the picture even with the same colour
    assert np.abs(flower(petal_count="4").astype(int) - flower(petal_count="8")).mean() > 8
    assert np.abs(flower(petal_shape="round").astype(int)
                  - flower(petal_shape="pointed")).mean() > 4

    def land(**kw):
        return procedural.render("landscape", _attrs("landscape", **kw), 64,
                                 np.random.default_rng(3)).astype(float)

    day, night = land(), land(time_of_day="night", sky_object="moon")
    assert day[:16].mean() - night[:16].mean() > 80  # the sky
    summer, winter = land(), land(season="winter")
    assert winter[-12:].mean() - summer[-12:].mean() > 60  # the ground
    assert np.abs(land(mountains="none") - land(mountains="snowy")).mean() > 3
    assert np.abs(land(trees="none") - land(trees="forest")).mean() > 3
    assert np.abs(land(water="none") - land(water="lake")).mean() > 2


def test_render_rejects_bad_attrs():
    with pytest.raises(ValueError, match="petal_colour"):
        procedural.render("flower", _attrs("flower", petal_colour="teal"), 64,
                          np.random.default_rng(0))
    with pytest.raises(ValueError, match="domain"):
        procedural.render("car", {}, 64, np.random.default_rng(0))


# ---------------------------------------------------------------- held-out rule

@pytest.mark.parametrize("domain", DOMAINS)
def test_heldout_rule(domain):
    rng = np.random.default_rng(1)
    train = [procedural.sample_attributes(domain, rng, "train") for _ in range(2000)]
    assert not any(procedural.is_heldout_combination(domain, a) for a in train)
    for name, values in ATTRIBUTES[domain].items():
        assert {a[name] for a in train} == set(values), name
    held = [procedural.sample_attributes(domain, rng, "heldout") for _ in range(200)]
    assert all(procedural.is_heldout_combination(domain, a) for a in held)
    assert all(procedural.is_valid_combination(domain, a) for a in train + held)
    anyw = [procedural.sample_attributes(domain, rng, "any") for _ in range(3000)]
    frac = np.mean([procedural.is_heldout_combination(domain, a) for a in anyw])
    assert 0.08 < frac < 0.17, frac


def test_no_sun_at_night():
    rng = np.random.default_rng(2)
    for _ in range(500):
        a = procedural.sample_attributes("landscape", rng, "any")
        assert not (a["time_of_day"] == "night" and a["sky_object"] == "sun")


# ---------------------------------------------------------------- captions

_WORD = re.compile(r"[a-z0-9'-]+")


def _words(text):
    return set(_WORD.findall(text.lower()))


def test_heldout_prompts_never_produced_by_train_captions():
    prompts = procedural.heldout_prompts(n_per_domain=40)
    assert len(prompts) == 80
    again = procedural.heldout_prompts(n_per_domain=40)
    assert [(p["domain"], p["attrs"], p["prompt"]) for p in prompts] == \
        [(p["domain"], p["attrs"], p["prompt"]) for p in again]
    assert [p["domain"] for p in prompts] == ["flower"] * 40 + ["landscape"] * 40
    assert all((p["labels"] == procedural.labels_vector(p["domain"], p["attrs"])).all()
               for p in prompts)
    rng = np.random.default_rng(0)
    train_vocab = set()
    for domain in DOMAINS:
        for _ in range(3000):
            a = procedural.sample_attributes(domain, rng, "any")
            train_vocab |= _words(procedural.make_caption(domain, a, rng))
    for p in prompts:
        assert procedural.is_heldout_combination(p["domain"], p["attrs"])
        assert _words(p["prompt"]) - train_vocab, p["prompt"]  # a word training never uses
    for p in (prompts[0], prompts[1], prompts[40], prompts[41]):  # the literal check
        train = {procedural.make_caption(p["domain"], p["attrs"], rng) for _ in range(5000)}
        assert p["prompt"] not in train


def test_phrase_tables_cover_values_and_are_disjoint():
    def flat(table):
        out = set()
        for v in table.values():
            out |= flat(v) if isinstance(v, dict) else set(v)
        return out

    pairs = ((captions.FLOWER_TRAIN, captions.FLOWER_HELDOUT, "flower"),
             (captions.LANDSCAPE_TRAIN, captions.LANDSCAPE_HELDOUT, "landscape"))
    for train, held, domain in pairs:
        for name, values in ATTRIBUTES[domain].items():
            assert set(train[name]) == set(values) == set(held[name]), name
            assert not flat(train[name]) & flat(held[name]), name


@pytest.mark.parametrize("domain", DOMAINS)
def test_train_captions_mention_attributes_often(domain):
    rng = np.random.default_rng(4)
    counts = dict.fromkeys(ATTRIBUTES[domain], 0)
    texts = set()
    n = 600
    for _ in range(n):
        a = procedural.sample_attributes(domain, rng)
        seen = set()
        texts.add(captions.compose_caption(domain, a, rng, "train", mentioned=seen))
        for k in seen:
            counts[k] += 1
    for k, c in counts.items():
        assert c / n >= 0.8, (k, c / n)
    assert len(texts) > 0.9 * n  # varied
    # held-out captions mention everything: each value's held-out phrase is in the caption
    for _ in range(50):
        a = procedural.sample_attributes(domain, rng, "heldout")
        text = procedural.make_caption(domain, a, rng, "heldout").lower()
        table = captions.FLOWER_HELDOUT if domain == "flower" else captions.LANDSCAPE_HELDOUT
        for name, value in a.items():
            phrases = table[name][value]
            phrases = [p for v in phrases.values() for p in v] if isinstance(phrases, dict) \
                else phrases
            assert any(p.lower() in text for p in phrases), (name, value, text)


# ---------------------------------------------------------------- labels and data sets

def test_label_heads_and_round_trip():
    assert LABEL_HEADS[0] == ("domain", 2)
    assert len(LABEL_HEADS) == 1 + sum(len(v) for v in ATTRIBUTES.values())
    rng = np.random.default_rng(6)
    for domain in DOMAINS:
        for _ in range(50):
            a = procedural.sample_attributes(domain, rng, "any")
            v = procedural.labels_vector(domain, a)
            assert v.dtype == np.int64 and v.shape == (len(LABEL_HEADS),)
            assert v[0] == DOMAINS.index(domain)
            for value, (head, n) in zip(v[1:], LABEL_HEADS[1:]):
                if head.startswith(domain + "."):
                    assert 0 <= value < n
                else:
                    assert value == -1
            assert procedural.labels_to_attributes(v) == (domain, a)


def test_make_dataset_arrays():
    d = procedural.make_dataset_arrays(10, 32, seed=7, captions_per_image=3)
    assert d["images"].shape == (10, 32, 32, 3) and d["images"].dtype == np.uint8
    assert d["labels"].shape == (10, len(LABEL_HEADS)) and d["labels"].dtype == np.int64
    assert d["domain"].tolist() == [0, 1] * 5
    assert len(d["captions"]) == 10 and all(len(c) == 3 for c in d["captions"])
    for i in range(10):
        dom = DOMAINS[d["domain"][i]]
        assert (d["labels"][i] == procedural.labels_vector(dom, d["attrs"][i])).all()
    again = procedural.make_dataset_arrays(10, 32, seed=7, captions_per_image=3, workers=2)
    assert again["images"].tobytes() == d["images"].tobytes()
    assert again["captions"] == d["captions"] and again["attrs"] == d["attrs"]
    other = procedural.make_dataset_arrays(4, 32, seed=8)
    assert other["images"].tobytes() != d["images"][:4].tobytes()
    # image i depends only on (seed, i)
    assert (procedural.make_dataset_arrays(3, 32, seed=7, captions_per_image=3)["images"]
            == d["images"][:3]).all()
    held = procedural.make_dataset_arrays(6, 32, seed=1, domains=("landscape",), split="heldout")
    assert held["domain"].tolist() == [1] * 6
    assert all(procedural.is_heldout_combination("landscape", a) for a in held["attrs"])


# ---------------------------------------------------------------- image folders

def _write(path, text):
    path.write_text(text, encoding="utf-8")


def test_load_image_folder(tmp_path, caplog):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (40, 60, 3), dtype=np.uint8)).save(tmp_path / "good.png")
    _write(tmp_path / "good.txt", "a red flower\n\n  on grass  \n")
    sub = tmp_path / "sub"
    sub.mkdir()
    rgba = np.zeros((20, 20, 4), dtype=np.uint8)
    rgba[..., 0] = 255
    rgba[:, :10, 3] = 255  # left half opaque red, right half transparent
    Image.fromarray(rgba, "RGBA").save(sub / "alpha.png")
    _write(sub / "alpha.txt", "half red")
    Image.fromarray(np.full((30, 30), 128, dtype=np.uint8), "L").save(sub / "grey.jpg")
    _write(sub / "grey.txt", "grey")
    Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(tmp_path / "nocap.webp")
    Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(tmp_path / "emptycap.bmp")
    _write(tmp_path / "emptycap.txt", "\n  \n")
    (tmp_path / "broken.jpeg").write_bytes(b"not an image at all")
    _write(tmp_path / "broken.txt", "broken")
    _write(tmp_path / "notes.md", "ignored")

    with caplog.at_level(logging.WARNING):
        out = folder.load_image_folder(tmp_path, 16)
    assert out["images"].shape == (3, 16, 16, 3) and out["images"].dtype == np.uint8
    by_name = dict(zip(out["paths"], range(3)))
    assert set(by_name) == {"good.png", "sub/alpha.png", "sub/grey.jpg"}
    assert out["captions"][by_name["good.png"]] == ["a red flower", "on grass"]
    assert out["skipped"]["missing_caption"] == ["emptycap.bmp", "nocap.webp"]
    assert out["skipped"]["unreadable"] == ["broken.jpeg"]
    alpha = out["images"][by_name["sub/alpha.png"]].astype(int)
    assert (alpha[:, :6] == [255, 0, 0]).all()  # opaque red stays red
    assert (alpha[:, -6:] == 255).all()  # transparent becomes white
    assert np.abs(out["images"][by_name["sub/grey.jpg"]].astype(int) - 128).max() <= 3
    log = caplog.text
    assert "nocap.webp" in log and "emptycap.bmp" in log and "broken.jpeg" in log


def test_load_image_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        folder.load_image_folder(tmp_path / "nowhere", 32)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="empty.*found 0 image files"):
        folder.load_image_folder(empty, 32)
    Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(empty / "a.png")
    with pytest.raises(ValueError, match="1 without a caption"):
        folder.load_image_folder(empty, 32, log=logging.getLogger("test"))

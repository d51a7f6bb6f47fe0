"""Named colours: the lexicon, the per-token colour channel, the renderer's exact colours, the
generator's colour reader and the evaluation's colour reader."""
import gzip
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from promptgan.models import colour_lexicon as lex
from promptgan.models import gan
from promptgan.models.colour_words import MAX_COLOUR_WORDS, colour_words
from promptgan.models.data import colour_names, procedural
from promptgan.models.eval import colours as colour_eval
from promptgan.models.generate import generate, make_latent
from promptgan.models.text_encoder import encode_prompts
from promptgan.models.vocabulary import report


def test_the_shipped_lexicon_holds_the_four_sources_and_a_fixed_held_out_share():
    table = lex.lexicon()
    sources = {}
    for _, source in table.values():
        sources[source] = sources.get(source, 0) + 1
    assert sources["xkcd"] > 900 and sources["css4"] > 90 and sources["color-name-list"] > 30_000
    assert table["red"] == (tuple(int(v) for v in procedural.PETAL_PALETTE["red"].reshape(3)),
                            "basic")
    assert table["burgundy"] == ((97, 0, 35), "xkcd")        # XKCD wins over later sources
    assert lex.TABLE_PATH.with_name("LICENSE-color-name-list.txt").read_text().startswith("MIT")
    with gzip.open(lex.TABLE_PATH, "rt") as f:               # normalised keys, one per line
        assert all(lex.normalise(line.split("\t")[0]) == line.split("\t")[0] for line in f)
    share = np.mean([lex.is_heldout_name(k) for k in table])
    assert 0.14 < share < 0.16
    assert not lex.is_heldout_name("red")                    # basic words are never held out
    assert lex.is_heldout_name("Cerulean") == lex.is_heldout_name("cerulean")


def test_find_colours_takes_the_longest_name_hex_codes_and_skips_words_that_are_things():
    spans = lex.find_colours("A Sky-Blue flower, a #8A2BE2 centre, on dusty rose; grass at night")
    assert [(s.name, s.source) for s in spans] == [
        ("sky blue", "xkcd"), ("#8a2be2", "hex"), ("dusty rose", "xkcd")]
    assert spans[1].rgb == (138, 43, 226)
    prompt = "petals of #abc"
    assert lex.find_colours(prompt)[0].rgb == (170, 187, 204)
    assert prompt[slice(*(lambda s: (s.start, s.end))(lex.find_colours(prompt)[0]))] == "#abc"
    assert lex.find_colours("a 5-petal flower on the grass under the sky") == []
    # names made only of words that name other things are not colours in a caption's scene
    assert lex.find_colours("bare mountains, still water, under a night sky at the end of the "
                            "day") == []
    assert lex.phrase_colour("silvery white") == lex.lexicon()["white"][0]


def test_srgb_to_lab_matches_known_values():
    np.testing.assert_allclose(lex.srgb_to_lab([255, 255, 255]), [100, 0, 0], atol=0.01)
    np.testing.assert_allclose(lex.srgb_to_lab([0, 0, 0]), [0, 0, 0], atol=0.01)
    np.testing.assert_allclose(lex.srgb_to_lab([255, 0, 0]), [53.24, 80.09, 67.20], atol=0.05)


def test_every_token_of_a_colour_phrase_carries_its_lab_and_the_words_keep_prompt_order():
    e = encode_prompts(["navy petals on a dusty rose background", "a flower on grass"])
    flags = e.colours[..., 3]
    assert flags[1].sum() == 0
    words = e.colour_words()
    assert words.shape == (2, MAX_COLOUR_WORDS, e.dim + 4)
    lab_navy = torch.tensor(lex.colour_code(lex.lexicon()["navy"][0]))
    lab_rose = torch.tensor(lex.colour_code(lex.lexicon()["dusty rose"][0]))
    n = int(flags[0].sum())
    assert n == 3                                          # navy, dusty, rose
    torch.testing.assert_close(words[0, 0, -4:], lab_navy)
    torch.testing.assert_close(words[0, 1, -4:], lab_rose)
    torch.testing.assert_close(words[0, 2, -4:], lab_rose)
    assert words[0, n:].abs().sum() == 0 and words[1].abs().sum() == 0
    # the hidden state of each colour token, in prompt order
    t = torch.nonzero(flags[0]).flatten()
    torch.testing.assert_close(words[0, :n, :-4], e.tokens[0, t])
    many = colour_words(e.tokens, e.colours, e.mask, max_words=2)
    assert many.shape[1] == 2


def test_named_colours_are_drawn_exactly_and_named_in_every_caption():
    rng = np.random.default_rng(0)
    found = 0
    for i in range(40):
        attrs = colour_names.add_named_colours(procedural.sample_attributes("flower", rng), rng)
        assert not procedural.is_heldout_combination("flower", attrs)
        caption = procedural.make_caption("flower", attrs, np.random.default_rng(i))
        for part in ("petal", "centre", "background"):
            if f"{part}_phrase" in attrs:
                found += 1
                phrase = attrs[f"{part}_phrase"]
                assert phrase in caption or part == "centre"      # a centre may go unsaid
                assert (not lex.is_heldout_name(phrase)
                        or lex.normalise(phrase) in colour_names.caption_table_names())
                named = lex.phrase_colour(phrase)     # None: a synonym the lexicon lacks
                if named is not None:
                    assert named == attrs[f"{part}_rgb"]
    assert found > 60
    # the reader of the evaluation reads a render's named colours back closely
    attrs = dict(procedural.sample_attributes("flower", np.random.default_rng(3)), size="large",
                 petal_rgb=(97, 0, 35), centre_rgb=(250, 250, 240), background_rgb=(30, 160, 200))
    img = procedural.render("flower", attrs, 64, np.random.default_rng(5))
    read = colour_eval.read_flower_colours(img)
    for part in ("petal", "centre", "background"):
        de = colour_eval.ciede2000(lex.srgb_to_lab(attrs[f"{part}_rgb"]), lex.srgb_to_lab(read[part]))
        assert de < 8, (part, de, read[part])
    labels = procedural.labels_vector("flower", dict(attrs, unlabelled=("petal_colour",)))
    assert labels[1 + 0] == -1 and labels[2] >= 0


def test_landscape_skies_lakes_and_ground_take_named_colours_and_their_captions_say_so():
    seen = set()
    for i in range(30):
        rng = np.random.default_rng([i, 1])
        plain = procedural.sample_attributes("landscape", np.random.default_rng(i))
        attrs = colour_names.add_named_colours_to_flowers("landscape", plain, rng)
        caption = procedural.make_caption("landscape", attrs, np.random.default_rng(i))
        targets, mask = colour_names.part_targets("landscape", attrs, caption)
        for k, part in enumerate(colour_names.LANDSCAPE_PARTS):
            phrase = attrs.get(f"{part}_phrase")
            assert (phrase is not None) == bool(mask[k])
            if phrase is not None:
                seen.add(part)
                assert phrase in caption and not lex.is_heldout_name(phrase)
                assert any(caption[s.start:s.end] == phrase for s in lex.find_colours(caption))
                np.testing.assert_allclose(targets[k], lex.colour_code(attrs[f"{part}_rgb"]))
        if part == "water" and "water_phrase" in attrs:
            assert attrs["water"] == "lake"
        if not any(f"{p}_phrase" in attrs for p in colour_names.LANDSCAPE_PARTS):
            # a landscape without named colours keeps the caption it had
            assert caption == procedural.make_caption("landscape", plain, np.random.default_rng(i))
    assert seen == {"sky", "water", "ground"}
    # drawn as named: the evaluation reads them back; the rest of the picture keeps its layout
    attrs = dict(procedural.sample_attributes("landscape", np.random.default_rng(4)),
                 time_of_day="night", water="lake")
    named = dict(attrs, sky_rgb=(255, 105, 180), water_rgb=(0, 128, 128), ground_rgb=(128, 0, 32))
    before = procedural.render("landscape", attrs, 64, np.random.default_rng(5))
    after = procedural.render("landscape", named, 64, np.random.default_rng(5))
    read = colour_eval.read_landscape_colours(after)
    for part in ("sky", "ground"):
        de = colour_eval.ciede2000(lex.srgb_to_lab(named[f"{part}_rgb"]), lex.srgb_to_lab(read[part]))
        assert de < 10, (part, de, read[part])
    assert not np.array_equal(before, after)
    assert (np.abs(after.astype(int) - (0, 128, 128)).sum(-1) < 40).sum() > 20     # the lake


def test_the_colour_reader_starts_at_zero_and_old_files_load_without_it(tmp_path):
    torch.manual_seed(0)
    base = gan.Generator(gan.GeneratorConfig(resolution=32, ngf=4))
    with torch.no_grad():       # FiLM starts as the identity: give the condition some effect
        for p in base.parameters():
            p.add_(0.1 * torch.randn_like(p))
    with_reader = gan.Generator(gan.GeneratorConfig(resolution=32, ngf=4, colour_queries=4))
    missing, unexpected = with_reader.load_state_dict(base.state_dict(), strict=False)
    assert all(k.startswith("colour_reader.") for k in missing) and not unexpected
    e = encode_prompts(["burgundy petals on black", "a flower"])
    z = torch.randn(2, 100)
    with torch.no_grad():
        torch.testing.assert_close(with_reader(z, e.sentence, e.colour_words()), base(z, e.sentence))
    # once trained, the reader moves the picture; the sentence-only call still runs
    with torch.no_grad():
        with_reader.colour_reader.out[-1].weight.normal_()
        assert (with_reader(z, e.sentence, e.colour_words()) - base(z, e.sentence)).abs().max() > 1e-3
        with_reader(z, e.sentence)
    path = tmp_path / "old.safetensors"
    gan.save_gan(path, base, None, encoder_id="x", provenance={})
    old = gan.load_gan(path)
    assert not old.reads_colour_names and old.generator.cfg.colour_queries == 0
    path2 = tmp_path / "new.safetensors"
    gan.save_gan(path2, with_reader, None, encoder_id=old.encoder_id, provenance={})
    new = gan.load_gan(path2)
    assert new.reads_colour_names
    new.encoder_id = e.encoder_id
    latent = make_latent(new, e, seed=3, per_prompt=2)
    assert latent.words.shape == (4, MAX_COLOUR_WORDS, 388)
    one = generate(new, latent)
    two = generate(new, make_latent(new, e.select([0]), seed=3, per_prompt=2))
    torch.testing.assert_close(one[:2], two)                 # same seed, same image, any batch


def test_the_palette_head_starts_at_zero_and_paints_the_lexicons_exact_colour(tmp_path):
    from promptgan.models.colour_words import lab_to_unit_rgb
    rgb = np.random.default_rng(0).integers(0, 256, (200, 3))
    back = lab_to_unit_rgb(torch.tensor(lex.srgb_to_lab(rgb))).numpy() * 255
    assert np.abs(back - rgb).max() < 0.01                    # the inverse of srgb_to_lab
    torch.manual_seed(0)
    reader = gan.Generator(gan.GeneratorConfig(resolution=32, ngf=4, colour_queries=4))
    with torch.no_grad():
        for p in reader.parameters():
            p.add_(0.1 * torch.randn_like(p))
    painted = gan.Generator(gan.GeneratorConfig(resolution=32, ngf=4, colour_queries=4,
                                                palette=True))
    missing, unexpected = painted.load_state_dict(reader.state_dict(), strict=False)
    assert all(k.startswith("palette.") for k in missing) and not unexpected
    e = encode_prompts(["a flower with burgundy petals on black", "a flower"])
    z = torch.randn(2, 100)
    with torch.no_grad():
        torch.testing.assert_close(painted(z, e.sentence, e.colour_words()),
                                   reader(z, e.sentence, e.colour_words()))
        # a gate of 1 on a query that found a colour paints that colour, unshaded, exactly
        for net in (reader, painted):
            net.colour_reader.none_logit.fill_(-30.0)
        painted.palette.gate.bias[2] = 1.0
        out = painted(z, e.sentence, e.colour_words())
        pooled = painted.colour_reader.pooled(e.colour_words())[0, 2]
        want = lab_to_unit_rgb(pooled[:3] * 100 / pooled[3]) * 2 - 1
        torch.testing.assert_close(out[0], want[:, None, None].expand(-1, 32, 32), atol=1e-5,
                                   rtol=0)
        # the second prompt names no colour: nothing is painted
        torch.testing.assert_close(out[1], reader(z, e.sentence, e.colour_words())[1])
    with pytest.raises(ValueError, match="colour reader"):
        gan.GeneratorConfig(palette=True)
    path = tmp_path / "palette.safetensors"
    gan.save_gan(path, painted, None, encoder_id=e.encoder_id, provenance={}, dtype=torch.float32)
    loaded = gan.load_gan(path)
    assert loaded.generator.palette is not None
    with torch.no_grad():
        torch.testing.assert_close(loaded.generator(z, e.sentence, e.colour_words()), out)


def test_refine_and_its_evaluation_draw_with_the_new_prompts_colour_words(tmp_path):
    from promptgan.models import refine
    from promptgan.models.eval import refine as refine_eval
    torch.manual_seed(1)
    G = gan.Generator(gan.GeneratorConfig(resolution=32, ngf=4, colour_queries=4))
    D = gan.Discriminator(gan.DiscriminatorConfig(resolution=32, ndf=4))
    with torch.no_grad():
        for p in G.parameters():
            p.add_(0.1 * torch.randn_like(p))
    path = tmp_path / "reader.safetensors"
    old, new = ["a flower with red petals"], ["a flower with burgundy petals, on cream"]
    gan.save_gan(path, G, D, encoder_id=encode_prompts(old).encoder_id, provenance={})
    model = gan.load_gan(path)
    s_old, w_old = refine_eval._encode(old)
    s_new, w_new = refine_eval._encode(new)
    lat = refine_eval._latent(model, s_old, w_old, old, [5])
    torch.testing.assert_close(lat.words, w_old)
    swapped, moved = refine.edit(model, lat, s_new, 1.0, preserve=0.0, new_words=w_new)
    torch.testing.assert_close(moved.words, w_new)
    want = generate(model, refine_eval._latent(model, s_new, w_new, new, [5]))
    torch.testing.assert_close(swapped, want)
    without = generate(model, refine_eval.GANLatent(lat.z, s_new, new, [5], lat.encoder_id,
                                                    lat.model_id))
    assert (without - want).abs().max() > 1e-3          # the words change the picture


def test_edits_to_named_colours_ask_for_held_out_names_of_another_colour():
    for pair in colour_eval.named_edit_pairs(20):
        name = pair["new_attrs"]["petal_phrase"]
        assert lex.is_heldout_name(name) and name in pair["new_prompt"].lower()
        assert pair["new_attrs"]["petal_colour"] != pair["attrs"]["petal_colour"]
        assert "petal_phrase" not in pair["attrs"]


def test_a_colour_reading_model_counts_lexicon_colours_as_known():
    vocab = ["a", "flower", "petals", "red"]
    assert report(["a flower with cerulean petals"], vocab) == [
        "cerulean: unknown to this model"]
    assert report(["a flower with cerulean petals", "a flower with glorp petals"], vocab,
                  reads_colour_names=True) == ["", "glorp: unknown to this model"]


@pytest.mark.parametrize("split", ["train", "heldout"])
def test_lexicon_names_of_a_split_never_cross(split):
    names = colour_names.names_by_source(split)
    for rows in names.values():
        assert all(lex.is_heldout_name(n) == (split == "heldout") for n, _ in rows[:500])
    if split == "heldout":      # no evaluation name is a word the training captions use
        taught = colour_names.caption_table_names()
        assert "crimson" in taught and lex.is_heldout_name("crimson")
        assert not taught & {n for rows in names.values() for n, _ in rows}


def test_styles_keep_the_layout_and_are_named_in_captions():
    from promptgan.models.data import styles

    rng = np.random.default_rng(1)
    attrs = procedural.sample_attributes("flower", rng)
    plain = procedural.render("flower", attrs, 64, np.random.default_rng(7))
    seen = set()
    for style in styles.STYLES[1:]:
        img = procedural.render("flower", dict(attrs, style=style), 64, np.random.default_rng(7))
        assert img.shape == plain.shape and img.dtype == np.uint8
        assert np.abs(img.astype(int) - plain).mean() > 3, style       # it looks different
        caption = procedural.make_caption("flower", dict(attrs, style=style),
                                          np.random.default_rng(2))
        assert any(p in caption for p in styles.STYLE_TRAIN[style]), caption
        held = procedural.make_caption("flower", dict(attrs, style=style),
                                       np.random.default_rng(2), "heldout")
        assert any(p in held for p in styles.STYLE_HELDOUT[style]), held
        seen.add(style)
    pencil = procedural.render("flower", dict(attrs, style="pencil"), 64, np.random.default_rng(7))
    assert np.ptp(pencil.astype(int), axis=-1).max() == 0               # no colour
    # the plain style draws nothing more: old data sets are unchanged
    assert procedural.make_caption("flower", attrs, np.random.default_rng(2)) == \
        procedural.make_caption("flower", dict(attrs, style="plain"), np.random.default_rng(2))
    with pytest.raises(ValueError, match="unknown style"):
        styles.apply_style(plain, "cubist", rng)
    train_words = {w for ps in styles.STYLE_TRAIN.values() for p in ps for w in p.split()}
    for ps in styles.STYLE_HELDOUT.values():                  # held-out phrases are new
        assert all(p not in q for p in ps for qs in styles.STYLE_TRAIN.values() for q in qs)
    assert "pixel" in train_words


def test_the_readers_targets_follow_what_each_caption_says():
    attrs = dict(procedural.sample_attributes("flower", np.random.default_rng(0)),
                 petal_rgb=(97, 0, 35), petal_phrase="burgundy", centre_rgb=(250, 250, 240),
                 centre_phrase="tan")
    targets, mask = colour_names.part_targets("flower", attrs, "A burgundy flower standing on grass")
    np.testing.assert_allclose(targets[0], lex.colour_code((97, 0, 35)))
    assert mask.tolist() == [1, 1, 0]              # centre unsaid ("standing" is not "tan")
    assert targets[1].tolist() == [0, 0, 0, 0]
    assert colour_names.part_targets("landscape", {}, "a red sunset")[1].sum() == 0
    sky = colour_names.part_targets("landscape", {"sky_phrase": "teal", "sky_rgb": (0, 128, 128)},
                                    "a teal sky over a lake")
    assert sky[1].tolist() == [1, 0, 0]
    # the binding term is zero when the reader finds exactly the named colours
    from promptgan.models.train.gan import binding_loss

    g = gan.Generator(gan.GeneratorConfig(resolution=32, ngf=4, colour_queries=4))
    e = encode_prompts(["burgundy petals"])
    pooled = g.colour_reader.pooled(e.colour_words())
    assert binding_loss(g, e.colour_words(), pooled[:, :3].detach(), torch.ones(1, 3)) == 0
    assert binding_loss(g, e.colour_words(), pooled[:, :3].detach() + 1, torch.ones(1, 3)) > 0


def test_the_background_term_is_near_zero_on_a_real_render_of_its_caption_and_ignores_others():
    from promptgan.models.train.gan import background_loss

    rng = np.random.default_rng(5)
    attrs = procedural.sample_attributes("flower", rng, "any")
    attrs.update(size="large", background_rgb=(200, 40, 90), background_phrase="raspberry")
    caption = "a flower on a raspberry background"
    targets, mask = (torch.from_numpy(t)[None] for t in
                     colour_names.part_targets("flower", attrs, caption))
    real = procedural.render("flower", attrs, 64, rng)                 # uint8 [64, 64, 3]
    x = torch.from_numpy(real).permute(2, 0, 1)[None].float() / 127.5 - 1
    flower = torch.tensor([True])
    # a large flower may reach the border: the closest 80% of its pixels are the render's grain
    # (2.5%) and the named colour's jitter
    assert background_loss(x, targets, mask, flower) < 0.06      # about 8 of 255 levels
    wrong = background_loss(x.flip(1), targets, mask, flower)          # RGB reversed: blue-ish
    assert wrong > 0.3
    # a landscape, or a caption that does not name its background, teaches nothing
    assert background_loss(x.flip(1), targets, mask, torch.tensor([False])) == 0
    assert background_loss(x.flip(1), targets, mask * torch.tensor([1.0, 1.0, 0.0]), flower) == 0


def test_the_centre_term_finds_the_middle_of_real_renders_and_reads_their_centre_colour():
    from promptgan.models.train.gan import centre_loss, flower_middle

    rng = np.random.default_rng(11)
    images, targets, masks = [], [], []
    for size in ("large", "small", "large"):
        attrs = procedural.sample_attributes("flower", rng, "any")
        attrs.update(size=size, centre_rgb=(240, 200, 20), centre_phrase="sunflower yellow")
        caption = "a flower with a sunflower yellow centre"
        t, m = colour_names.part_targets("flower", attrs, caption)
        real = procedural.render("flower", attrs, 64, rng)                  # uint8 [64, 64, 3]
        images.append(torch.from_numpy(real).permute(2, 0, 1).float() / 127.5 - 1)
        targets.append(torch.from_numpy(t))
        masks.append(torch.from_numpy(m))
    x, targets, mask = torch.stack(images), torch.stack(targets), torch.stack(masks)
    disc = flower_middle(x)
    assert disc.shape == (3, 64, 64) and bool((disc.sum((1, 2)) >= 7).all())
    centre = torch.tensor([240, 200, 20]) / 127.5 - 1                    # every disc pixel is
    near = (x - centre[None, :, None, None]).abs().mean(1) < 0.25        # the centre's colour,
    assert bool(near[disc].all())                                        # shaded by its dots
    flower = torch.ones(3, dtype=torch.bool)
    assert centre_loss(x, targets, mask, flower) < 0.1
    assert centre_loss(x.flip(1), targets, mask, flower) > 0.4          # RGB reversed
    assert centre_loss(x.flip(1), targets, mask, torch.zeros(3, dtype=torch.bool)) == 0
    unnamed = mask * torch.tensor([1.0, 0.0, 1.0])
    assert centre_loss(x.flip(1), targets, unnamed, flower) == 0


def test_the_pixel_art_term_is_zero_on_pixel_art_renders_and_only_counts_pixel_art():
    from promptgan.models.data.styles import STYLES, apply_style
    from promptgan.models.train.gan import CaptionedImages, pixel_art_loss

    rng = np.random.default_rng(5)
    attrs = procedural.sample_attributes("flower", rng, "any")
    plain = procedural.render("flower", attrs, 64, rng)                    # uint8 [64, 64, 3]
    pixel = apply_style(plain, "pixel", rng)
    x = torch.stack([torch.from_numpy(np.array(a)).permute(2, 0, 1).float() / 127.5 - 1
                     for a in (pixel, plain)])
    assert pixel_art_loss(x[:1], torch.tensor([True])) < 1e-6              # blocks are flat
    assert pixel_art_loss(x[1:], torch.tensor([True])) > 0.01              # a render is not
    assert pixel_art_loss(x[1:], torch.tensor([False])) == 0               # not asked for
    x.requires_grad_(True)
    pixel_art_loss(x, torch.tensor([False, True])).backward()
    assert x.grad[0].abs().sum() == 0 and x.grad[1].abs().sum() > 0
    # the training data hands each image's style to the term
    data = CaptionedImages(np.stack([pixel, plain]), [["pixel art of a flower"], ["a flower"]],
                           torch.zeros(2, 384), None, "minilm", torch.zeros(2, 1, 388),
                           [dict(attrs, style="pixel"), dict(attrs)])
    assert data.style_index.tolist() == [STYLES.index("pixel"), STYLES.index("plain")]
    *_, style = data.batch(4, torch.Generator().manual_seed(0))
    assert style.shape == (4,)


def test_the_flat_fill_term_is_small_on_flat_renders_and_only_counts_flat_pictures():
    from promptgan.models.data.styles import apply_style
    from promptgan.models.train.gan import flat_fill_loss

    rng = np.random.default_rng(6)
    flats, plains = [], []
    for domain in ("flower", "landscape", "flower"):
        attrs = procedural.sample_attributes(domain, rng, "any")
        plain = procedural.render(domain, attrs, 64, rng)
        for out, image in ((plains, plain), (flats, apply_style(plain, "flat", rng))):
            out.append(torch.from_numpy(np.array(image)).permute(2, 0, 1).float() / 127.5 - 1)
    yes = torch.ones(3, dtype=torch.bool)
    flat, plain = flat_fill_loss(torch.stack(flats), yes), flat_fill_loss(torch.stack(plains), yes)
    assert flat < 0.02 and plain > 2 * flat, (float(flat), float(plain))
    assert flat_fill_loss(torch.stack(plains), ~yes) == 0
    x = torch.stack(plains).requires_grad_(True)
    flat_fill_loss(x, torch.tensor([False, True, False])).backward()
    assert x.grad[0].abs().sum() == 0 and x.grad[1].abs().sum() > 0


def test_the_shipped_style_reader_reads_every_style_of_new_renders():
    from promptgan.models.checkpoint import WEIGHTS_DIR
    from promptgan.models.eval import styles as style_eval
    from promptgan.models.eval.gan import CLASSIFIER_PATH, classifier_accuracy

    net = style_eval.load_style_classifier()
    images, labels = style_eval.style_renders(60, seed=2024, split="any")
    # every style on both domains (render i is of domain i % 2), so the reader cannot read
    # the domain instead of the style
    assert {(i % 2, int(k)) for i, k in enumerate(labels[:, 0])} == {
        (d, k) for d in (0, 1) for k in range(len(style_eval.styles.STYLES))}
    assert classifier_accuracy(net, images, labels)["style"] >= 0.95
    # the shipped generator draws only the plain style: its flowers and landscapes read plain
    model = gan.load_gan(WEIGHTS_DIR / "promptgan_default.safetensors")
    plain = [p for p in style_eval.style_prompts(10, "train") if p["style"] == 0]
    e = encode_prompts([p["prompt"] for p in plain])
    drawn = style_eval.draw(model, e.sentence, list(range(len(plain))))
    assert (net.predict(drawn)[:, 0] == 0).float().mean() >= 0.9
    with pytest.raises(ValueError, match="not the styles"):
        style_eval.load_style_classifier(CLASSIFIER_PATH)


def test_evaluate_styles_says_what_each_asked_style_is_read_as():
    from promptgan.models.checkpoint import WEIGHTS_DIR
    from promptgan.models.eval import styles as style_eval

    model = gan.load_gan(WEIGHTS_DIR / "promptgan_default.safetensors")
    result = style_eval.evaluate(model, style_eval.load_style_classifier(), per_style=4)
    for wording in ("train", "heldout"):
        for asked, read in result["read_as"][wording].items():
            assert abs(sum(read.values()) - 1) < 0.01, (asked, read)
            assert read.get(asked, 0.0) == result[wording][asked]


def test_evaluate_colours_reads_what_the_colour_reader_finds_before_drawing():
    """reader_errors: a prompt naming one colour, read by a reader that never chooses "none",
    is read as exactly that colour, whatever the attention; a model without a reader has none."""
    torch.manual_seed(2)
    G = gan.Generator(gan.GeneratorConfig(resolution=32, ngf=4, colour_queries=4))
    with torch.no_grad():
        G.colour_reader.none_logit.fill_(-30.0)
    model = SimpleNamespace(generator=G)
    rgb = lex.lexicon()["burgundy"][0]
    prompts = [{"prompt": "a flower with burgundy petals", "attrs": {"petal_rgb": rgb}}]
    err = colour_eval.reader_errors(model, prompts, parts=("petal",))
    de, right = err["petal"]
    assert de.shape == (1,) and de[0] < 0.5 and right.all(), err
    plain = SimpleNamespace(generator=gan.Generator(gan.GeneratorConfig(resolution=32, ngf=4)))
    assert colour_eval.reader_errors(plain, prompts) == {}

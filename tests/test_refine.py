"""Refine: discriminator gradient flow, editing, inversion, the Refine node (tiny configs, CPU)."""
import logging

import pytest
import torch

from promptgan.models import gan
from promptgan.models import generate as gen
from promptgan.models import invert as inv
from promptgan.models import refine as ref
from promptgan.models.checkpoint import CheckpointError
from promptgan.models.text_encoder import TextEmbeds
from promptgan.models.train.inverter import train_inverter
from promptgan.nodes import refine_nodes, runtime

torch.set_num_threads(1)
RES, NZ, TD = 32, 8, 6


def tiny_model(seed=0, path="toy.safetensors", encoder="toy-encoder", nz=NZ):
    torch.manual_seed(seed)
    g = gan.Generator(gan.GeneratorConfig(resolution=RES, ngf=4, nz=nz, text_dim=TD, cond_dim=4))
    d = gan.Discriminator(gan.DiscriminatorConfig(resolution=RES, ndf=4, text_dim=TD))
    for p in d.parameters():        # a random D whose score depends on the image at all
        p.data.normal_(0, 0.3) if p.dim() > 1 else p.data.zero_()
    for blk in d.blocks:
        blk.gamma.data.fill_(1.0)
    for m in g.modules():            # FiLM starts as the identity: make the text matter
        if isinstance(m, gan.Affine):
            m.gamma[-1].weight.data.normal_(0, 0.3)
            m.beta[-1].weight.data.normal_(0, 0.3)
    g.eval().requires_grad_(False)   # as load_gan leaves them
    d.eval().requires_grad_(False)
    return gan.GANModel(g, d, encoder, path)


def embeds(n, seed=0, encoder="toy-encoder", dim=TD):
    s = torch.randn(n, dim, generator=torch.Generator().manual_seed(seed))
    s = torch.nn.functional.normalize(s, dim=1)
    return TextEmbeds(s, s[:, None], torch.ones(n, 1, dtype=torch.bool), encoder,
                      [f"p{i}" for i in range(n)])


@pytest.fixture(scope="module")
def model():
    return tiny_model()


def weights(model):
    return {k: v.clone() for k, v in list(model.generator.state_dict().items())
            + [("d." + k, v) for k, v in model.discriminator.state_dict().items()]}


def same_weights(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ------------------------------------------------------------------ models/refine

def test_refine_shapes_determinism_and_input_untouched(model):
    lat = gen.make_latent(model, embeds(2), seed=3, per_prompt=2)
    z_before = lat.z.clone()
    a = ref.refine_latent(model, lat, steps=4, seed=1)
    b = ref.refine_latent(model, lat, steps=4, seed=1)
    c = ref.refine_latent(model, lat, steps=4, seed=2)
    assert a.z.shape == lat.z.shape and a.sentence.shape == lat.sentence.shape
    assert torch.equal(a.z, b.z) and not torch.equal(a.z, c.z)
    assert torch.equal(lat.z, z_before) and not torch.equal(a.z, lat.z)
    # z stays on its starting shell; the result does not depend on the chunk size
    assert torch.allclose(a.z.norm(dim=1), lat.z.norm(dim=1), atol=1e-4)
    assert torch.allclose(ref.refine_latent(model, lat, steps=4, seed=1, chunk=3).z, a.z, atol=1e-4)
    assert torch.equal(ref.refine_latent(model, lat, steps=0).z, lat.z)


def test_refine_raises_discriminator_score(model):
    lat = gen.make_latent(model, embeds(8, seed=4), seed=0, per_prompt=1)
    before = ref.discriminator_scores(model, gen.generate(model, lat), lat.sentence)
    out = ref.refine_latent(model, lat, steps=10)
    after = ref.discriminator_scores(model, gen.generate(model, out), out.sentence)
    assert after.mean() > before.mean()
    assert (after > before).float().mean() >= 0.75


def test_mix_sentences_endpoints_and_sphere():
    a, b = embeds(3, seed=1).sentence, embeds(3, seed=2).sentence
    assert torch.equal(ref.mix_sentences(a, b, 0.0), a)
    assert torch.equal(ref.mix_sentences(a, b, 1.0), b)
    mid = ref.mix_sentences(a, b, 0.5)
    assert torch.allclose(mid.norm(dim=1), torch.ones(3), atol=1e-5)
    assert torch.allclose((mid * a).sum(1), (mid * b).sum(1), atol=1e-5)
    assert torch.allclose(ref.mix_sentences(a, a, 0.3), a, atol=1e-5)    # parallel: no NaN


def test_edit_strength_zero_is_the_original_and_one_the_new_prompt(model):
    lat = gen.make_latent(model, embeds(2), seed=5, per_prompt=1)
    original = gen.generate(model, lat)
    new = embeds(1, seed=9).sentence
    out0, lat0 = ref.edit(model, lat, new, 0.0)
    assert torch.equal(out0, original) and torch.equal(lat0.z, lat.z)
    out1, lat1 = ref.edit(model, lat, new, 1.0, preserve=0.0)
    assert torch.allclose(lat1.sentence, new.expand(2, -1))
    assert torch.equal(lat1.z, lat.z)
    assert torch.allclose(out1, model.generator(lat.z, new.expand(2, -1)), atol=1e-6)


def test_edge_difference_ignores_offsets_and_sees_moved_edges():
    x = torch.zeros(2, 3, 16, 16)
    x[:, :, :, 8:] = 1
    assert torch.equal(ref.edge_difference(x, x), torch.zeros(2))
    assert torch.allclose(ref.edge_difference(x, x + 0.5), torch.zeros(2))   # a colour offset
    assert (ref.edge_difference(x, torch.roll(x, 2, dims=3)) > 0).all()       # a moved edge


def test_guided_edit_is_exact_deterministic_batch_independent_and_keeps_edges(model):
    lat = gen.make_latent(model, embeds(3), seed=5, per_prompt=1)
    original = gen.generate(model, lat)
    new = embeds(1, seed=9).sentence
    calls = []
    out, new_lat = ref.edit(model, lat, new, 1.0, edit_steps=6,
                            progress=lambda done, total: calls.append((done, total)))
    assert calls[-1] == (6, 6) and len(calls) == 6
    assert torch.allclose(new_lat.sentence, new.expand(3, -1))
    assert not torch.equal(new_lat.z, lat.z)                          # the noise moved ...
    assert torch.allclose(new_lat.z.norm(dim=1), lat.z.norm(dim=1), atol=1e-4)   # on its shell
    assert torch.allclose(gen.generate(model, new_lat), out, atol=1e-5)   # ... and is exact
    again, _ = ref.edit(model, lat, new, 1.0, edit_steps=6)
    assert torch.equal(again, out)
    one, _ = ref.edit(model, gen.GANLatent(lat.z[1:2], lat.sentence[1:2], lat.prompts[1:2],
                                           lat.seeds[1:2], lat.encoder_id, lat.model_id),
                      new, 1.0, edit_steps=6)
    assert torch.allclose(one, out[1:2], atol=1e-5)
    swap, _ = ref.edit(model, lat, new, 1.0, preserve=0.0)
    assert not torch.allclose(swap, out, atol=1e-4)     # preserve 0 is the one-pass swap
    out0, lat0 = ref.edit(model, lat, new, 0.0, edit_steps=6)         # strength 0: untouched
    assert torch.equal(out0, original) and torch.equal(lat0.z, lat.z)


def test_mask_keeps_pixels_outside(model):
    lat = gen.make_latent(model, embeds(2), seed=7, per_prompt=1)
    original = gen.generate(model, lat)
    mask = torch.zeros(1, RES, RES)
    mask[:, 8:24, 8:24] = 1
    out, _ = ref.edit(model, lat, embeds(1, seed=9).sentence, 1.0, mask)
    outside = (mask == 0).expand(2, -1, -1)[:, None].expand(-1, 3, -1, -1)
    assert torch.equal(out[outside], original[outside])
    inside = out[:, :, 12:20, 12:20] - original[:, :, 12:20, 12:20]
    assert inside.abs().max() > 0
    with pytest.raises(ref.RefineError, match="mask is 16x16 but the image is 32x32"):
        ref.edit(model, lat, embeds(1).sentence, 1.0, torch.ones(1, 16, 16))


def test_ssim_is_one_for_identical_images():
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    assert torch.allclose(ref.masked_ssim(x, x), torch.ones(2), atol=1e-5)
    assert (ref.masked_ssim(x, -x) < 0.5).all()


# ------------------------------------------------------------------ models/invert

def test_inversion_reduces_reconstruction_error(model):
    z_true = gan.seeded_noise([11, 12], NZ)
    s = embeds(2, seed=3).sentence
    with torch.no_grad():
        target = model.generator(z_true, s)
    start = inv.invert(model, target, s, steps=0, fit_sentence=False, seed=0)
    fitted = inv.invert(model, target, s, steps=25, fit_sentence=False, seed=0, lr=0.1)
    err = lambda lat: (gen.generate(model, lat) - target).abs().mean().item()
    assert err(fitted) < 0.7 * err(start)
    with pytest.raises(ValueError, match="a starting sentence is needed"):
        inv.invert(model, target, None, steps=1)


def test_inverter_trains_saves_loads_and_checks(model, tmp_path):
    bank = embeds(16, seed=5).sentence
    net, stats = train_inverter(model, bank, steps=3, batch=4, width=4)
    assert stats["step"] == 3
    path = inv.save_inverter(tmp_path / "toy_inverter.safetensors", net, encoder_id="toy-encoder",
                             provenance={"gan": model.name}, dtype=None)
    loaded = inv.load_inverter(path, model)
    x = torch.rand(2, 3, RES, RES) * 2 - 1
    assert all(torch.equal(a, b) for a, b in zip(net(x), loaded(x)))
    other = tiny_model(nz=NZ + 1)
    with pytest.raises(CheckpointError, match=r"made for \(resolution, nz, text_dim\)"):
        inv.load_inverter(path, other)
    with pytest.raises(CheckpointError, match="text encoder 'toy-encoder'"):
        inv.load_inverter(path, tiny_model(encoder="other"))
    # used as the starting point of an inversion
    lat = inv.invert(model, x, None, steps=2, encoder=loaded)
    assert lat.z.shape == (2, NZ) and torch.allclose(lat.sentence.norm(dim=1), torch.ones(2))


# ------------------------------------------------------------------ the node

NODE = refine_nodes.PromptGAN_Refine()


def run_node(model, **kw):
    args = dict(mode="refine", steps=3, strength=1.0, seed=0)
    args.update(kw)
    return NODE.refine(model, **args)


def test_node_refine_and_edit_outputs(model):
    e = embeds(2)
    lat = gen.make_latent(model, e, seed=0, per_prompt=1)
    img, new = run_node(model, latent=lat)
    assert img.shape == (2, RES, RES, 3) and 0 <= img.min() and img.max() <= 1
    assert isinstance(new, gen.GANLatent) and new.model_id == lat.model_id
    img2, _ = run_node(model, latent=lat)
    assert torch.equal(img, img2)
    edited, elat = run_node(model, mode="edit", latent=lat, embeds=embeds(1, seed=8), strength=0.0)
    assert torch.equal(edited, gen.to_comfy_image(gen.generate(model, lat)))
    assert elat.prompts == ["p0", "p0"]
    # the default edit is the guided transition; its latent redraws the output exactly
    edited, elat = run_node(model, mode="edit", latent=lat, embeds=embeds(1, seed=8))
    assert torch.allclose(edited, gen.to_comfy_image(gen.generate(model, elat)), atol=1e-5)
    swapped, slat = run_node(model, mode="edit", latent=lat, embeds=embeds(1, seed=8), preserve=0.0)
    assert torch.equal(slat.z, lat.z) and not torch.equal(elat.z, lat.z)


def test_node_errors(model):
    lat = gen.make_latent(model, embeds(1), seed=0, per_prompt=1)
    with pytest.raises(ValueError, match="needs an image or a latent"):
        run_node(model)
    with pytest.raises(ValueError, match="made by model 'toy.safetensors@\\?' but this Refine has "
                                         "model 'other.safetensors@\\?'"):
        run_node(tiny_model(path="other.safetensors"), latent=lat)
    with pytest.raises(gen.EncoderMismatchError, match="'other'"):
        run_node(model, latent=lat, embeds=embeds(1, encoder="other"))
    with pytest.raises(ValueError, match="edit mode needs the new prompt"):
        run_node(model, mode="edit", latent=lat)
    with pytest.raises(ValueError, match="input 'preserve' must be a number from 0.0 to 10.0, got -1"):
        run_node(model, mode="edit", latent=lat, embeds=embeds(1), preserve=-1)
    bad = torch.rand(1, RES, RES, 3)
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="image contains NaN"):
        run_node(model, mode="edit", image=bad, embeds=embeds(1))
    with pytest.raises(ValueError, match="mask is 8x8 but the image is 32x32"):
        run_node(model, latent=lat, mask=torch.ones(1, 8, 8))
    with pytest.raises(ValueError, match="mask has 3 layers for 1 images"):
        run_node(model, latent=lat, mask=torch.ones(3, RES, RES))
    with pytest.raises(ValueError, match="needs 'embeds' describing the image"):
        run_node(model, image=torch.rand(1, RES, RES, 3))


def test_node_under_inference_mode_with_a_model_loaded_there():
    """As ComfyUI and the headless runner call it: the loader ran under inference mode too."""
    with torch.inference_mode():
        m = tiny_model(seed=1)
        e = embeds(2)
        lat = gen.make_latent(m, e, seed=0, per_prompt=1)
        before = weights(m)
        img, new = run_node(m, latent=lat, steps=2)
        edited, _ = run_node(m, mode="edit", latent=lat, embeds=embeds(1, seed=3), strength=0.5)
        inverted, _ = run_node(m, mode="edit", image=img, embeds=embeds(1, seed=3), steps=2)
        mask = torch.zeros(2, RES, RES)
        mask[:, :16] = 1
        masked, _ = run_node(m, mode="edit", latent=lat, image=img, embeds=embeds(1, seed=3),
                             mask=mask)
    assert img.shape == edited.shape == inverted.shape == (2, RES, RES, 3)
    assert torch.equal(masked[:, 16:], img[:, 16:])
    assert not torch.equal(new.z, lat.z)
    assert same_weights(before, weights(m))
    assert not any(p.requires_grad for p in m.generator.parameters())


def test_other_resolution_is_resized_with_a_warning(model, caplog):
    image = torch.rand(1, 48, 40, 3)
    with caplog.at_level(logging.WARNING, logger="PromptGAN"):
        out, lat = run_node(model, mode="edit", image=image, embeds=embeds(1), steps=2)
    assert out.shape == (1, 48, 40, 3) and lat.z.shape == (1, NZ)
    assert "resized" in caplog.text and "40x48" in caplog.text


def test_interruption_leaves_model_unchanged_and_next_run_correct(model, monkeypatch):
    lat = gen.make_latent(model, embeds(2), seed=2, per_prompt=1)
    clean, _ = run_node(model, latent=lat, steps=6)
    before = weights(model)
    calls = {"n": 0}

    def cancel():
        calls["n"] += 1
        if calls["n"] == 3:
            raise InterruptedError("cancelled")

    monkeypatch.setattr(runtime, "check_interrupt", cancel)
    with pytest.raises(InterruptedError):
        run_node(model, latent=lat, steps=6)
    monkeypatch.setattr(runtime, "check_interrupt", lambda: None)
    assert same_weights(before, weights(model))
    again, _ = run_node(model, latent=lat, steps=6)
    assert torch.equal(again, clean)


def test_work_copy_is_private_and_follows_weight_changes():
    m = tiny_model(seed=2)
    g = m.generator
    copy = inv.work_copy(g)
    assert copy is not g and inv.work_copy(g) is copy
    assert all(p.data_ptr() != q.data_ptr() for p, q in zip(g.parameters(), copy.parameters()))
    with torch.no_grad():
        g.fc.bias.add_(1.0)
    fresh = inv.work_copy(g)
    assert torch.equal(fresh.fc.bias, g.fc.bias)


def test_embeds_broadcast_over_prompt_groups():
    s = embeds(2).sentence
    assert torch.equal(ref.broadcast_rows(s, 4), s[[0, 0, 1, 1]])
    with pytest.raises(ref.RefineError, match="hold 2 prompts but there are 3 images"):
        ref.broadcast_rows(s, 3)


def test_node_uses_the_inverter_saved_beside_the_model(tmp_path):
    src = tiny_model(seed=4)
    path = gan.save_gan(tmp_path / "m.safetensors", src.generator, src.discriminator,
                        encoder_id="toy-encoder", provenance={"step": 1}, dtype=None)
    m = gan.load_gan(path)
    net, _ = train_inverter(m, embeds(8).sentence, steps=1, batch=2, width=4)
    inv.save_inverter(inv.inverter_path_for(path), net, encoder_id="toy-encoder",
                      provenance={"gan": "m.safetensors"})
    assert inv.find_inverter(m) == tmp_path / "m_inverter.safetensors"
    img = torch.rand(1, RES, RES, 3)
    out, lat = run_node(m, mode="refine", image=img, steps=1)     # no embeds: the inverter guesses
    assert out.shape == img.shape and lat.sentence.shape == (1, TD)
    assert any(p.endswith("m_inverter.safetensors") for p in refine_nodes._inverters.paths())


# ------------------------------------------------------------------ the prompt-attribute term

def labelled_model(seed=0):
    """tiny_model whose discriminator has the procedural data's auxiliary label heads, with a
    random text head beside it."""
    from promptgan.models.data import procedural as P
    from promptgan.models.text_head import TextAttributeHead

    base = tiny_model(seed)
    heads = [list(h) for h in P.LABEL_HEADS]
    torch.manual_seed(seed + 1)
    d = gan.Discriminator(gan.DiscriminatorConfig(resolution=RES, ndf=4, text_dim=TD,
                                                  label_heads=heads))
    d.load_state_dict(base.discriminator.state_dict(), strict=False)
    d.aux.weight.data.normal_(0, 1.0)
    head = TextAttributeHead(TD, heads)
    head.linear.weight.data.normal_(0, 1.0)
    for m in (d, head):
        m.eval().requires_grad_(False)
    return gan.GANModel(base.generator, d, base.encoder_id, base.path, text_head=head)


def _attribute_ce(model, lat):
    with torch.no_grad():
        h = model.discriminator.features(gen.generate(model, lat))
        return ref.prompt_attribute_ce(model.discriminator.aux_logits(h),
                                       model.text_head(lat.sentence), model.text_head.label_heads)


def test_attribute_term_pulls_the_image_towards_what_the_prompt_asks():
    m = labelled_model()
    lat = gen.make_latent(m, embeds(8, seed=5), seed=0, per_prompt=1)
    out = ref.refine_latent(m, lat, steps=10, attribute_weight=100.0)
    before, after = _attribute_ce(m, lat), _attribute_ce(m, out)
    assert (after < before).float().mean() >= 0.75, (before, after)
    # weight 0, or a model without a text head, is the matching score alone
    plain_model = gan.GANModel(m.generator, m.discriminator, m.encoder_id, m.path)
    a = ref.refine_latent(m, lat, steps=3, attribute_weight=0.0)
    b = ref.refine_latent(plain_model, lat, steps=3, attribute_weight=100.0)
    assert torch.equal(a.z, b.z)
    assert not torch.equal(ref.refine_latent(m, lat, steps=3).z, a.z)


def test_prompt_attribute_ce_weights_a_domain_by_the_prompts_belief():
    from promptgan.models.data import procedural as P

    heads = [list(h) for h in P.LABEL_HEADS]
    n = sum(k for _, k in heads)
    image = torch.randn(1, n)
    prompt = torch.randn(1, n, generator=torch.Generator().manual_seed(0)) * 20   # clear words
    prompt[0, :2] = torch.tensor([50.0, 0.0])                                       # a flower
    flower_only = ref.prompt_attribute_ce(image, prompt, heads)
    start = sum(k for name, k in heads if not name.startswith("landscape"))
    changed = image.clone()
    changed[0, start:] += torch.randn(n - start) * 5   # landscape heads: no weight for a flower
    assert torch.allclose(ref.prompt_attribute_ce(changed, prompt, heads), flower_only, atol=1e-4)
    changed = image.clone()
    changed[0, 2:start] += torch.randn(start - 2) * 5   # flower heads count
    assert not torch.allclose(ref.prompt_attribute_ce(changed, prompt, heads), flower_only)
    # the domain logits only weight the domains' heads: the image's own domain reading is no term
    domain_read = image.clone()
    domain_read[0, :2] += torch.tensor([-5.0, 5.0])
    assert torch.allclose(ref.prompt_attribute_ce(domain_read, prompt, heads), flower_only, atol=1e-4)
    # a head whose value the prompt does not name clearly is left out
    vague = prompt.clone()
    vague[0, 2:start] = 0.0
    assert torch.allclose(ref.prompt_attribute_ce(changed, vague, heads),
                          ref.prompt_attribute_ce(image, vague, heads), atol=1e-4)


def test_text_head_ships_in_the_checkpoint_and_fit_text_head_adds_it(tmp_path):
    from promptgan.models.text_encoder import DEFAULT_ENCODER_ID
    from promptgan.models.train import text_head as th

    m = labelled_model()
    path = tmp_path / "m.safetensors"
    gan.save_gan(path, m.generator, m.discriminator, encoder_id="toy-encoder", provenance={},
                 text_head=m.text_head, dtype=torch.float32)
    back = gan.load_gan(path)
    assert back.text_head.config == m.text_head.config
    assert torch.equal(back.text_head.linear.weight, m.text_head.linear.weight)
    assert gan.load_gan(path, with_discriminator=False).text_head is None
    # a head that does not match the discriminator's attribute head is refused at load time
    from promptgan.models.text_head import TextAttributeHead

    gan.save_gan(path, m.generator, m.discriminator, encoder_id="toy-encoder", provenance={},
                 text_head=TextAttributeHead(TD, [["domain", 2], ["colour", 3]]), dtype=torch.float32)
    with pytest.raises(CheckpointError, match="re-fit it with fit-text-head"):
        gan.load_gan(path)
    # a file without a head gets one (MiniLM-sized) from fit-text-head; G and D are unchanged
    out = tmp_path / "with_head.safetensors"
    gan.save_gan(path, m.generator, m.discriminator, encoder_id="toy-encoder", provenance={"step": 7})
    with pytest.raises(SystemExit, match="fitted on the default encoder"):
        th.main(["--model", str(path), "--out", str(out)])
    gan.save_gan(path, m.generator, m.discriminator, encoder_id=DEFAULT_ENCODER_ID,
                 provenance={"step": 7}, dtype=torch.float16)
    assert th.main(["--model", str(path), "--out", str(out), "--captions", "256"]) == 0
    fitted = gan.load_gan(out)
    assert fitted.text_head.text_dim == 384 and fitted.provenance["step"] == 7
    assert "fit-text-head" in fitted.provenance["text_head"]["command"]
    assert fitted.stored_dtype == torch.float16          # an fp16 file stays fp16
    assert torch.equal(fitted.generator.state_dict()["to_rgb.1.weight"],
                       gan.load_gan(path).generator.state_dict()["to_rgb.1.weight"])
    # a discriminator without label heads has nothing to steer
    gan.save_gan(path, tiny_model().generator, tiny_model().discriminator, encoder_id="toy-encoder",
                 provenance={})
    with pytest.raises(SystemExit, match="no auxiliary label head"):
        th.main(["--model", str(path), "--out", str(out)])


def test_domain_names_follow_the_procedural_layout():
    from promptgan.models.data.procedural import DOMAINS, LABEL_HEADS

    assert ref.domain_names([list(h) for h in LABEL_HEADS]) == list(DOMAINS)
    with pytest.raises(ValueError, match="domain"):
        ref.domain_names([["colour", 3], ["flower.size", 2]])

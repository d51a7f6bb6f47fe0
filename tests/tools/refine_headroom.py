"""Where can Refine still gain? Per attribute, for each model file given:

    .venv/bin/python tests/tools/refine_headroom.py models/weights/promptgan_default.safetensors FILE

- D real / D fake: how often the discriminator's auxiliary head reads each attribute as the
  held-out prompt asks, on real renders of the prompts and on the model's own pictures of them
  (refine mode moves the noise along that head's reading, so D real bounds what it can reach);
- text head sure / right: the share of held-out prompts whose attribute the model's text head
  is at least 70% sure of (refine's attribute term counts only those) and how often that sure
  value is the one the prompt asks for.

The 200 held-out prompts of ``evaluate`` and ``refine-eval`` (seed 0), one seed each.
"""
import sys

import numpy as np
import torch
from pack import load_pack  # tests/tools/pack.py


def text_head_readings(model, s, labels, heads):
    """-> {head: (share sure, accuracy where sure)}."""
    with torch.no_grad():
        logits = model.text_head(s)
    out, o = {}, 0
    for i, (name, k) in enumerate(heads):
        conf, arg = logits[:, o:o + k].softmax(1).max(1)
        o += k
        valid = labels[:, i] >= 0
        sure = (conf >= 0.7) & valid
        right = float((arg[sure] == labels[sure, i]).float().mean()) if sure.any() else float("nan")
        out[name] = (float(sure.sum() / valid.sum().clamp_min(1)), right)
    return out


def main(paths):
    load_pack()
    from promptgan.models.data import procedural
    from promptgan.models.eval.gan import draw, head_argmax, per_head_accuracy, real_renders
    from promptgan.models.gan import load_gan
    from promptgan.models.text_encoder import encode_prompts

    torch.set_num_threads(1)
    prompts = procedural.heldout_prompts(100)
    e = encode_prompts([p["prompt"] for p in prompts])
    s, w = e.sentence, e.colour_words()
    labels = torch.as_tensor(np.stack([p["labels"] for p in prompts]))
    real = real_renders(prompts, 64, 10_000)
    for path in paths:
        model = load_gan(path)
        d, heads = model.discriminator, model.discriminator.cfg.label_heads
        fake = draw(model, s, list(range(len(prompts))), 1.0, w)
        with torch.no_grad():
            read = {name: per_head_accuracy(head_argmax(d.aux_logits(d.features(x)), heads),
                                            labels, heads) for name, x in (("real", real), ("fake", fake))}
        text = text_head_readings(model, s, labels, heads) if model.text_head is not None else {}
        print(f"\n{path}\n| attribute | D real | D fake | text head sure / right |\n"
              "| --- | --- | --- | --- |")
        for k in read["real"]:
            sure, right = text.get(k, (float("nan"), float("nan")))
            print(f"| {k} | {read['real'][k]:.2f} | {read['fake'][k]:.2f} | {sure:.2f} / {right:.2f} |")


if __name__ == "__main__":
    main(sys.argv[1:])

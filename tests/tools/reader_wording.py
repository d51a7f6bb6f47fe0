"""Does wider training wording teach the colour reader to bind held-out sentence frames?

    .venv/bin/python tests/tools/reader_wording.py --wording all
    .venv/bin/python tests/tools/reader_wording.py --wording narrow

Fits a fresh ColourReader alone (the binding loss of train-gan, no generator) on 8,000 training
captions of flowers with named colours, then reads evaluate-colours' 200 held-out-frame prompts
and prints, per part, the median / 90th-percentile CIEDE2000 between the asked colour and the
colour the reader found. "narrow": the wording before the background, flower and centre tables
grew (their first six / three / three entries); "all": the tables as they are.
"""
import argparse
import importlib.util
import os
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]


def load_pack():
    spec = importlib.util.spec_from_file_location("promptgan_main", ROOT / "__main__.py")
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    return cli.load_pack()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--wording", choices=("narrow", "all"), default="all")
    p.add_argument("--captions", type=int, default=8000)
    p.add_argument("--steps", type=int, default=4000)
    args = p.parse_args(argv)
    os.environ.setdefault("PROMPTGAN_FP32", "1")
    load_pack()
    from promptgan.models import colour_lexicon as lex
    from promptgan.models import gan
    from promptgan.models.data import captions as cap
    from promptgan.models.data import colour_names, procedural
    from promptgan.models.eval import colours as colour_eval
    from promptgan.models.text_encoder import encode_prompts
    if args.wording == "narrow":
        cap.NAMED_BACKGROUND_TRAIN = cap.NAMED_BACKGROUND_TRAIN[:6]
        cap.FLOWER_TRAIN_NOUNS = cap.FLOWER_TRAIN_NOUNS[:3]
        cap.FLOWER_TRAIN_CENTRE_NOUNS = cap.FLOWER_TRAIN_CENTRE_NOUNS[:3]
    torch.set_num_threads(1)
    rng = np.random.default_rng(7)
    texts, targets, masks = [], [], []
    for _ in range(args.captions):
        attrs = procedural.sample_attributes("flower", rng, "any")
        attrs = colour_names.add_named_colours_and_style("flower", attrs, rng, "train")
        text = procedural.make_caption("flower", attrs, rng, "train")
        t, m = colour_names.part_targets("flower", attrs, text)
        texts.append(text)
        targets.append(t)
        masks.append(m)
    words = encode_prompts(texts).colour_words().float()          # [N, M, 388]
    targets, masks = torch.tensor(np.array(targets)), torch.tensor(np.array(masks))
    heldout = colour_eval.named_prompts(200, split="heldout")
    heldout_words = encode_prompts([q["prompt"] for q in heldout]).colour_words().float()
    torch.manual_seed(0)
    reader = gan.ColourReader(words.shape[-1] - lex.COLOUR_CHANNELS, 128, 4)
    opt = torch.optim.Adam(reader.parameters(), lr=2e-3)
    gen = torch.Generator().manual_seed(0)
    for _ in range(args.steps):
        idx = torch.randint(0, len(texts), (64,), generator=gen)
        err = (reader.pooled(words[idx])[:, :3] - targets[idx]).pow(2).sum(-1) * masks[idx]
        loss = err.sum() / masks[idx].sum().clamp_min(1.0)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        pooled = reader.pooled(heldout_words)[:, :3].numpy()                 # [200, 3, 4]
    for q, part in enumerate(colour_names.PARTS):
        asked = lex.srgb_to_lab(np.array([h["attrs"][f"{part}_rgb"] for h in heldout], float))
        found = np.clip(pooled[:, q, 3:], 1e-4, None)
        de = colour_eval.ciede2000(asked, pooled[:, q, :3] * 100 / found)
        print(f"{args.wording} {part}: median {np.median(de):.1f}, "
              f"90th pct {np.percentile(de, 90):.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

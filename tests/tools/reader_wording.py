"""Does wider training wording teach the colour reader to bind held-out sentence frames?

    .venv/bin/python tests/tools/reader_wording.py --wording all
    .venv/bin/python tests/tools/reader_wording.py --wording narrow

Fits a fresh ColourReader alone (the binding loss of train-gan, no generator) on 8,000 training
captions of flowers with named colours, then reads evaluate-colours' 200 held-out-frame prompts
and prints, per part, the median / 90th-percentile CIEDE2000 between the asked colour and the
colour the reader found. "narrow": the wording before the background, flower and centre tables
grew (their first six / three / three entries); "all": the tables as they are.

``--keys`` says what the reader's attention is keyed by: "names", the colour tokens' own states
(as in the generator); "placeholder", the states of the prompt with every colour phrase replaced
by the word "colour" (the key then sees only the phrase's role, never the name); "both", the two
concatenated.
"""
import argparse
import os
import sys

import numpy as np
import torch
from pack import load_pack  # tests/tools/pack.py

PLACEHOLDER = "colour"


def encode(prompts: list[str], keys: str) -> "torch.Tensor":
    """The reader's input [N, M, D + 4] (keys "both": [N, M, 2D + 4])."""
    from promptgan.models import colour_lexicon as lex
    from promptgan.models.colour_words import colour_words
    from promptgan.models.text_encoder import load_encoder
    enc = load_encoder()
    plain = enc.encode(prompts)
    if keys == "names":
        return plain.colour_words().float()
    masked, spans = [], []
    for prompt in prompts:          # each colour phrase -> PLACEHOLDER, with its new span
        text, found = "", []
        pos = 0
        for span in lex.find_colours(prompt):
            text += prompt[pos:span.start]
            found.append((span, len(text), len(text) + len(PLACEHOLDER)))
            text += PLACEHOLDER
            pos = span.end
        masked.append(text + prompt[pos:])
        spans.append(found)
    roles = enc.encode(masked)
    # every token of a colour phrase gets the state of the phrase's placeholder
    role_states = torch.zeros_like(plain.tokens)
    for i, (prompt, text) in enumerate(zip(prompts, masked)):
        offs = enc.tokenizer(prompt, return_offsets_mapping=True)["offset_mapping"]
        moffs = enc.tokenizer(text, return_offsets_mapping=True)["offset_mapping"]
        for span, a, b in spans[i]:
            mt = [t for t, (x, y) in enumerate(moffs) if y > x and x < b and y > a]
            for t, (x, y) in enumerate(offs[:role_states.shape[1]]):
                if y > x and x < span.end and y > span.start:
                    role_states[i, t] = roles.tokens[i, mt].mean(0)
    feats = role_states if keys == "placeholder" else torch.cat([plain.tokens, role_states], -1)
    return colour_words(feats, plain.colours, plain.mask).float()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--wording", choices=("narrow", "all"), default="all")
    p.add_argument("--captions", type=int, default=8000)
    p.add_argument("--steps", type=int, default=4000)
    p.add_argument("--keys", choices=("names", "placeholder", "both"), default="names")
    p.add_argument("--worst", type=int, default=0, help="print this many worst prompts per part")
    args = p.parse_args(argv)
    os.environ.setdefault("PROMPTGAN_FP32", "1")
    load_pack()
    from promptgan.models import colour_lexicon as lex
    from promptgan.models import gan
    from promptgan.models.data import captions as cap
    from promptgan.models.data import colour_names, procedural
    from promptgan.models.eval import colours as colour_eval
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
    words = encode(texts, args.keys)                              # [N, M, 388 or 772]
    targets, masks = torch.tensor(np.array(targets)), torch.tensor(np.array(masks))
    heldout = colour_eval.named_prompts(200, split="heldout")
    heldout_words = encode([q["prompt"] for q in heldout], args.keys)
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
    errors = colour_eval.reading_errors(reader, heldout_words, heldout)
    for part, (de, _) in errors.items():
        print(f"{args.wording} wording, {args.keys} keys, {part}: median {np.median(de):.1f}, "
              f"90th pct {np.percentile(de, 90):.1f}")
        for i in np.argsort(-de)[:args.worst]:
            print(f"    {de[i]:5.1f}  {heldout[i]['attrs'][f'{part}_phrase']!r} in {heldout[i]['prompt']!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

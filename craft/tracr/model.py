"""A converted Tracr model: the torch ``Transformer`` plus Tracr's input and output encodings.

``TracrModel.run(["BOS", "a", "b"])`` decodes like Tracr's ``AssembledTransformerModel.apply``:
position 0 is the BOS token, the rest are the argmax output value (categorical) or the
output coordinate as a float (numerical). The encodings travel in ``model.meta`` so a
saved file loads back into a working ``TracrModel`` without Tracr installed.

Shape glossary: B batch, T positions (BOS included), D d_model, O output columns.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from craft.models import Direction, Transformer, load_model, run_with_cache, save_model
from specs.errors import CraftError

_SMALL_BATCH = 4096  # tokens; below this one thread is faster than many


def jsonable(value: Any) -> Any:
    """A token or output value as JSON (tuples become lists)."""
    if isinstance(value, tuple | list):
        return [jsonable(v) for v in value]
    return value


def from_jsonable(value: Any) -> Any:
    """Inverse of :func:`jsonable` (lists become tuples, which RASP values are)."""
    if isinstance(value, list):
        return tuple(from_jsonable(v) for v in value)
    return value


def direction(name: Any, value: Any) -> Direction:
    """A residual label as a layout ``Direction``; values that are not scalars become text."""
    if value is not None and not isinstance(value, str | int | float | bool):
        value = str(value)
    return Direction(str(name), value)


@dataclass
class TracrModel:
    """A standard-family model compiled from RASP, with Tracr's encodings.

    Attributes:
        model: the torch ``Transformer`` (``model.layout`` names every residual direction,
            ``model.meta`` holds provenance and the encodings).
        tokens: input values in encoding order (``W_E`` row ``i`` embeds ``tokens[i]``).
        output_values: decoded value of each logit column (categorical outputs).
        categorical: argmax decoding (True) or one float per position (False).
        bos: the BOS token every input starts with.
        report: how the conversion went (removed no-op sublayers, sizes, timings).
    """

    model: Transformer
    tokens: tuple[Any, ...]
    output_values: tuple[Any, ...]
    categorical: bool
    bos: str
    report: dict

    @property
    def max_len(self) -> int:
        """Longest input without BOS."""
        return self.model.cfg.n_ctx - 1

    def encode(self, seqs: Sequence[Sequence[Any]]) -> torch.Tensor:
        """Token ids ``[B, T]`` of equal-length inputs that start with BOS."""
        index = {t: i for i, t in enumerate(self.tokens)}
        lengths = {len(s) for s in seqs}
        if len(lengths) != 1:
            raise CraftError("inputs of one batch must have one length", fix="group by length")
        (length,) = lengths
        if length > self.model.cfg.n_ctx:
            raise CraftError(
                f"input of {length} tokens (BOS included) is longer than the model's "
                f"{self.model.cfg.n_ctx}",
                fix=f"use at most {self.max_len} tokens after BOS, or recompile with a "
                "larger max_len",
            )
        ids = []
        for seq in seqs:
            if not seq or seq[0] != self.bos:
                raise CraftError(
                    f"input {list(seq)!r} does not start with the BOS token {self.bos!r}",
                    fix=f"prepend {self.bos!r}",
                )
            try:
                ids.append([index[t] for t in seq])
            except KeyError as e:
                raise CraftError(
                    f"token {e.args[0]!r} is not in the model's vocabulary",
                    fix=f"use tokens from {sorted(map(str, self.tokens))}",
                ) from None
        return torch.tensor(ids, dtype=torch.long)

    @torch.no_grad()
    def logits(self, seqs: Sequence[Sequence[Any]]) -> torch.Tensor:
        """Output coordinates ``[B, T, O]`` of equal-length inputs (BOS first)."""
        tokens = self.encode(seqs)
        if tokens.numel() >= _SMALL_BATCH:
            return self.model(tokens)
        # Tiny batches (the check's shrinking runs one input at a time) gain nothing from
        # threads, and OpenMP threads on a busy machine stall each op by milliseconds.
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return self.model(tokens)
        finally:
            torch.set_num_threads(threads)

    def decode(self, logits: torch.Tensor) -> list[list[Any]]:
        """Tracr's decoding of ``[B, T, O]`` logits: BOS, then argmax values or floats."""
        if self.categorical:
            idx = logits.argmax(-1).tolist()
            rows = [[self.output_values[i] for i in row] for row in idx]
        else:
            rows = logits[..., 0].tolist()
        return [[self.bos, *row[1:]] for row in rows]

    def logits_by_length(
        self, seqs: Sequence[Sequence[Any]]
    ) -> list[tuple[list[int], torch.Tensor]]:
        """Run many inputs (any lengths, BOS first) in one forward pass per length.

        Returns ``(indices into seqs, logits [b, T, O])`` for each length. Tracr models
        are bidirectional, so inputs of different lengths cannot share a padded batch.
        """
        by_len: dict[int, list[int]] = {}
        for i, s in enumerate(seqs):
            by_len.setdefault(len(s), []).append(i)
        return [(idx, self.logits([seqs[i] for i in idx])) for idx in by_len.values()]

    def run_batch(self, seqs: Sequence[Sequence[Any]]) -> list[list[Any]]:
        """Decode many inputs (any lengths), batched by length, in input order."""
        out: list[list[Any] | None] = [None] * len(seqs)
        for idx, logits in self.logits_by_length(seqs):
            for i, row in zip(idx, self.decode(logits), strict=True):
                out[i] = row
        return out  # type: ignore[return-value]

    def run(self, tokens: Sequence[Any]) -> list[Any]:
        """Decode one input like Tracr: ``run(["BOS", "a", "b"]) -> ["BOS", x1, x2]``."""
        return self.decode(self.logits([list(tokens)]))[0]

    @torch.no_grad()
    def residuals(self, tokens: Sequence[Any]) -> list[torch.Tensor]:
        """Residual stream ``[T, D]`` after the embedding and after every sublayer."""
        _, cache = run_with_cache(self.model, self.encode([list(tokens)]))
        out = [cache["blocks.0.hook_resid_pre"][0]] if self.model.cfg.n_layers else []
        for layer in range(self.model.cfg.n_layers):
            out.append(cache[f"blocks.{layer}.hook_resid_mid"][0])
            out.append(cache[f"blocks.{layer}.hook_resid_post"][0])
        return out

    def save(self, path: str | Path) -> None:
        """Write safetensors + JSON header; the encodings ride in ``meta``."""
        save_model(self.model, path)

    @staticmethod
    def load(path: str | Path) -> TracrModel:
        """Load a file written by :meth:`save` (no code runs; Tracr is not needed)."""
        model = load_model(path)
        meta = model.meta
        if meta.get("source") != "tracr":
            raise CraftError(
                f"{path}: not a model converted from Tracr",
                fix="load it with craft.models.load_model",
            )
        try:
            return TracrModel(
                model=model,
                tokens=tuple(from_jsonable(t) for t in meta["input_tokens"]),
                output_values=tuple(from_jsonable(v) for v in meta["output_values"]),
                categorical=meta["output_encoding"] == "categorical",
                bos=meta["compiler_bos"],
                report=dict(meta.get("conversion") or {}),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise CraftError(
                f"{path}: the Tracr encodings in the header are missing or malformed "
                f"({type(e).__name__}: {e})",
                fix="re-create the model with craft tracr",
            ) from None

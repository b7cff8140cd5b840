"""Character-level language modelling on a public-domain text shipped in trainlib/assets."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Literal

import torch
from pydantic import Field

from trainlib.components.datasets_common import DataSettings
from trainlib.data import DataBundle, DataInfo, Task
from trainlib.registries import DATASETS

TEXTS = {"shakespeare_sonnets": "shakespeare_sonnets.txt"}


@cache
def load_text(name: str) -> str:
    """A shipped text by name (sources in trainlib/assets/README.md); nothing is downloaded."""
    return resources.files("trainlib.assets").joinpath(TEXTS[name]).read_text(encoding="utf-8")


@dataclass(frozen=True)
class CharVocab:
    """The sorted characters of a text; a character's id is its rank."""

    chars: str

    @classmethod
    def of(cls, text: str) -> CharVocab:
        return cls("".join(sorted(set(text))))

    def __len__(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> torch.Tensor:
        index = {ch: i for i, ch in enumerate(self.chars)}
        return torch.tensor([index[ch] for ch in text], dtype=torch.long)

    def decode(self, ids: torch.Tensor) -> str:
        return "".join(self.chars[i] for i in ids.tolist())


class CharTextSettings(DataSettings):
    """Next-character prediction: windows of `context_length` characters, the targets shifted by
    one; the last `val_fraction` of the text is validation (no window crosses the cut)."""

    batch_size: int = Field(64, ge=1, le=65536)
    text: Literal["shakespeare_sonnets"] = "shakespeare_sonnets"
    context_length: int = Field(64, ge=1, le=4096, description="T: characters per sample")
    stride: int | None = Field(
        None, ge=1, le=4096, description="characters between window starts; None: T / 8"
    )
    val_fraction: float = Field(0.1, gt=0, lt=1, description="share of the text, from its end")

    def known_task(self) -> Task | None:
        return "sequence"


def windows(ids: torch.Tensor, length: int, stride: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(x, y): x[i] = ids[i·s : i·s + T], y[i] the same window one character later."""
    if len(ids) < length + 1:
        raise ValueError(f"a text part of {len(ids)} characters is too short for T = {length}")
    blocks = ids.unfold(0, length + 1, stride)  # each row: T inputs and the character after
    return blocks[:, :-1].contiguous(), blocks[:, 1:].contiguous()


@DATASETS.register(
    "char_text",
    settings=CharTextSettings,
    summary="character-level language modelling on a shipped public-domain text",
    paper="The Unreasonable Effectiveness of Recurrent Neural Networks (Karpathy, 2015), "
    "char-rnn's tiny Shakespeare task; text: Shakespeare's Sonnets (Project Gutenberg #1041)",
)
def build_char_text(s: CharTextSettings, seed: int) -> DataBundle:
    # `seed` is unused: the text and its split are fixed; only the batch order is seeded
    text = load_text(s.text)
    vocab = CharVocab.of(text)
    ids = vocab.encode(text)
    cut = round(len(ids) * (1 - s.val_fraction))
    stride = s.stride or max(1, s.context_length // 8)
    train_x, train_y = windows(ids[:cut], s.context_length, stride)
    val_x, val_y = windows(ids[cut:], s.context_length, stride)
    info = DataInfo((s.context_length,), len(vocab), task="sequence", vocab_size=len(vocab))
    return DataBundle(train_x, train_y, val_x, val_y, info, s.batch_size)

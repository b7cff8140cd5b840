"""char_text: the shipped text, its character vocabulary and next-character windows."""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from trainlib.components.datasets_text import CharVocab, load_text, windows
from trainlib.registries import DATASETS

ASSETS = Path(__file__).resolve().parents[2] / "trainlib" / "assets"


def test_the_shipped_text_is_the_documented_file() -> None:
    raw = (ASSETS / "shakespeare_sonnets.txt").read_bytes()
    assert len(raw) == 95_728 < 1_000_000
    assert hashlib.sha256(raw).hexdigest().startswith("edb826e5a801c955")
    assert "shakespeare_sonnets.txt" in (ASSETS / "README.md").read_text()
    text = load_text("shakespeare_sonnets")
    assert text.startswith("THE SONNETS") and "From fairest creatures" in text


def test_vocab_round_trips_the_whole_text() -> None:
    text = load_text("shakespeare_sonnets")
    vocab = CharVocab.of(text)
    ids = vocab.encode(text)
    assert ids.dtype == torch.long and int(ids.max()) == len(vocab) - 1
    assert vocab.decode(ids) == text
    assert list(vocab.chars) == sorted(set(text))


def test_windows_shift_targets_by_one() -> None:
    ids = torch.arange(20)
    x, y = windows(ids, length=5, stride=3)
    assert x.shape == y.shape == (5, 5)  # starts 0, 3, ..., 12: a window needs 6 ids
    assert torch.equal(x[1], torch.arange(3, 8)) and torch.equal(y[1], torch.arange(4, 9))
    assert int(y.max()) == 17


def test_bundle_windows_come_from_the_text_and_validation_is_its_end() -> None:
    data = DATASETS.build({"name": "char_text", "context_length": 32, "stride": 16}, seed=0)
    text = load_text("shakespeare_sonnets")
    vocab = CharVocab.of(text)
    assert data.info.task == "sequence" and data.info.input_shape == (32,)
    assert data.info.vocab_size == data.info.num_classes == len(vocab)
    assert data.train_x.dtype == data.train_y.dtype == torch.long
    assert vocab.decode(data.train_x[0]) == text[:32]
    assert vocab.decode(data.train_y[0]) == text[1:33]
    assert vocab.decode(data.train_x[3]) == text[48:80]
    cut = round(len(text) * 0.9)
    assert vocab.decode(data.val_x[0]) == text[cut : cut + 32]
    # no training window reaches past the cut
    last = (len(data.train_x) - 1) * 16
    assert last + 33 <= cut

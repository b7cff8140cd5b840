"""Model compression during training: BitNet b1.58 quantization and pruning (`train:` options)."""

from trainlib.compression.bitnet import BitLinear, BitNetSettings, apply_bitnet
from trainlib.compression.pruning import (
    MagnitudePruningSettings,
    NMSparsitySettings,
    Pruner,
    PruningSettings,
    build_pruner,
)

__all__ = [
    "BitLinear",
    "BitNetSettings",
    "MagnitudePruningSettings",
    "NMSparsitySettings",
    "Pruner",
    "PruningSettings",
    "apply_bitnet",
    "build_pruner",
]

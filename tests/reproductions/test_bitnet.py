"""BitNet b1.58 (Ma et al., 2024): the ternary MLP of bitnet-digits.yaml, on a shorter budget,
is within a few points of its full-precision twin on digits."""

from __future__ import annotations

from bench.reproduce import bitnet

SHORT = {"train": {"steps": 300, "eval_every": 300, "log_every": 50}}


def test_ternary_mlp_is_within_a_few_points_of_full_precision() -> None:
    result = bitnet(SHORT)
    assert result.full_precision > 0.9
    assert result.ternary > 0.9
    assert result.full_precision - result.ternary < 0.05

"""A decoder-only (causal) transformer over token ids."""

from __future__ import annotations

import math
from contextlib import nullcontext
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from trainlib.components.blocks import ResidualBlock, fixup_bias
from trainlib.components.models_common import Activation, ModelSettings, make_activation
from trainlib.components.norms import NormField, make_norm, norm_field
from trainlib.data import DataInfo
from trainlib.registries import MODELS

NormPosition = Literal["pre", "post", "peri"]
QKNorm = Literal["none", "layernorm", "l2"]


class TransformerSettings(ModelSettings):
    """Decoder-only transformer with learned absolute positions.

    norm_position: pre (h + F(N(h))), post (N(h + F(h))), or peri (h + N_out(F(N_in(h))),
      Peri-LN, Kim et al. 2025, arXiv 2502.02732).
    qk_norm: none; layernorm (LayerNorm of each head's queries and keys, the qk-layernorm of
      "Small-scale proxies for large-scale Transformer training instabilities", Wortsman et al.
      2023); l2 (QKNorm, Henry et al. 2020: unit-norm q and k, logits g q.k with a learnable
      scalar g per attention module, initialised to `qk_scale_init` or log2(L^2 - L) with
      L = max_len).
    d_ff: the MLP's hidden width, 4 * d_model when unset.
    """

    d_model: int = Field(128, ge=2, le=8192)
    n_layers: int = Field(2, ge=1, le=128)
    n_heads: int = Field(4, ge=1, le=128)
    d_ff: int | None = Field(None, ge=1, le=65536)
    max_len: int = Field(256, ge=2, le=65536)
    norm_position: NormPosition = "pre"
    qk_norm: QKNorm = "none"
    qk_scale_init: float | None = Field(None, gt=0, le=1000)
    tied_embeddings: bool = False
    activation: Activation = "gelu"
    norm: NormField = norm_field("layernorm")

    @model_validator(mode="after")
    def _heads_divide(self) -> TransformerSettings:
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model {self.d_model} is not divisible by n_heads {self.n_heads}")
        return self


class CausalSelfAttention(nn.Module):
    def __init__(self, s: TransformerSettings) -> None:
        super().__init__()
        d = s.d_model
        self.n_heads = s.n_heads
        self.head_dim = d // s.n_heads
        self.qk_norm: QKNorm = s.qk_norm
        self.dropout = s.dropout
        self.qkv = nn.Linear(d, 3 * d)
        self.q_norm: nn.Module = nn.Identity()
        self.k_norm: nn.Module = nn.Identity()
        if s.qk_norm == "layernorm":  # one gain over the head dim, shared by the heads
            self.q_norm = nn.LayerNorm(self.head_dim)
            self.k_norm = nn.LayerNorm(self.head_dim)
        if s.qk_norm == "l2":
            g0 = s.qk_scale_init or math.log2(s.max_len**2 - s.max_len)
            self.qk_scale = nn.Parameter(torch.tensor(float(g0)))
        self.proj = nn.Linear(d, d)
        #: set by a regularizer that differentiates the gradient (grad_norm_penalty): the fused
        #: attention kernels have no double backward, the math one has
        self.twice_differentiable = False

    def input_layer(self) -> nn.Linear:
        return self.qkv

    def output_layer(self) -> nn.Linear:
        return self.proj

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        qkv = self.qkv(x).view(b, t, 3, self.n_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = self.q_norm(qkv[0]), self.k_norm(qkv[1]), qkv[2]
        scale = None
        if self.qk_norm == "l2":  # logits g * q_hat . k_hat, no 1/sqrt(d)
            q = F.normalize(q, dim=-1) * self.qk_scale
            k = F.normalize(k, dim=-1)
            scale = 1.0
        dropout = self.dropout if self.training else 0.0
        # a double backward (grad_norm_penalty) needs the math kernel: the fused ones have none
        kernel = sdpa_kernel(SDPBackend.MATH) if self.twice_differentiable else nullcontext()
        with kernel:
            out = F.scaled_dot_product_attention(
                q, k, v, dropout_p=dropout, is_causal=True, scale=scale
            )
        result: torch.Tensor = self.proj(out.transpose(1, 2).reshape(b, t, d))
        return result


class FeedForward(nn.Module):
    def __init__(self, s: TransformerSettings) -> None:
        super().__init__()
        d_ff = s.d_ff or 4 * s.d_model
        self.fc1 = nn.Linear(s.d_model, d_ff)
        self.bias = fixup_bias(s.residual)
        self.act = make_activation(s.activation)
        self.drop = nn.Dropout(s.dropout)
        self.fc2 = nn.Linear(d_ff, s.d_model)

    def input_layer(self) -> nn.Linear:
        return self.fc1

    def output_layer(self) -> nn.Linear:
        return self.fc2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.fc2(self.drop(self.act(self.bias(self.fc1(x)))))
        return out


def _sublayer_block(s: TransformerSettings, sublayer: nn.Module) -> ResidualBlock:
    """The branch is Sequential(norm_in, fixup bias, sublayer, dropout, norm_out)."""
    d, mode = s.d_model, s.residual

    def norm_if(position: bool) -> nn.Module:
        return make_norm(s.norm, d, "features") if position else nn.Identity()

    pre = s.norm_position in ("pre", "peri")
    branch = nn.Sequential(
        norm_if(pre),
        fixup_bias(mode),
        sublayer,
        nn.Dropout(s.dropout),
        norm_if(s.norm_position == "peri"),
    )
    post = norm_if(s.norm_position == "post")
    return ResidualBlock(branch, mode, s.drop_path, post=post)


class Transformer(nn.Module):
    """Decoder-only transformer; attention by F.scaled_dot_product_attention (causal).

    sequence tasks: (B, T, num_classes) logits, one per position; otherwise (B, num_classes)
    from the last position. Pre-LN and Peri-LN end with a final norm before the head.
    """

    def __init__(self, s: TransformerSettings, info: DataInfo) -> None:
        super().__init__()
        if info.vocab_size is None:
            raise ValueError("transformer takes token ids: the data set needs a vocabulary")
        if s.tied_embeddings and info.num_classes != info.vocab_size:
            raise ValueError("tied_embeddings needs as many classes as vocabulary entries")
        self.settings = s
        self.sequence_output = info.task == "sequence"
        self.stem = nn.Embedding(info.vocab_size, s.d_model)
        self.position = nn.Embedding(s.max_len, s.d_model)
        self.embed_dropout = nn.Dropout(s.dropout)
        blocks: list[ResidualBlock] = []
        for _ in range(s.n_layers):
            blocks.append(_sublayer_block(s, CausalSelfAttention(s)))
            blocks.append(_sublayer_block(s, FeedForward(s)))
        self.blocks = nn.ModuleList(blocks)
        final = s.norm_position != "post"
        self.final_norm = make_norm(s.norm, s.d_model, "features") if final else nn.Identity()
        self.head = nn.Linear(s.d_model, info.num_classes)
        if s.tied_embeddings:
            self.head.weight = self.stem.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = x.shape[1]
        if t > self.settings.max_len:
            raise ValueError(f"sequence length {t} exceeds max_len {self.settings.max_len}")
        positions = torch.arange(t, device=x.device)
        h = self.embed_dropout(self.stem(x.long()) + self.position(positions))
        for block in self.blocks:
            h = block(h)
        h = self.final_norm(h)
        out: torch.Tensor = self.head(h if self.sequence_output else h[:, -1])
        return out


@MODELS.register(
    "transformer",
    settings=TransformerSettings,
    summary="decoder-only causal transformer (pre/post/peri norm, qk-norm, tied embeddings)",
    paper="Attention Is All You Need (Vaswani et al., 2017); Query-Key Normalization for "
    "Transformers (Henry et al., 2020); Peri-LN (Kim et al., 2025)",
)
def build_transformer(s: TransformerSettings, info: DataInfo) -> nn.Module:
    return Transformer(s, info)

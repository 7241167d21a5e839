"""Independent PyTorch reference of the stretch LLaMA architecture, written from the math (not from stretch's C++
nor from any public implementation).

    x = tok_embeddings[tokens]                                          (B, T, C)
    per layer:
      h   = rmsnorm(x) * attention_norm                                 rmsnorm(x) = x / sqrt(mean(x^2) + eps)
      qkv = h @ wqkv^T,  wqkv = [wq (C,C); wk (KVD,C); wv (KVD,C)]      KVD = NKV * hd, hd = C / NH
      RoPE on q (NH heads) and k (NKV heads), interleaved pairs (2i, 2i+1), i < hd/2:
          angle = pos * inv_freq[i], inv_freq[i] = base^(-2i/hd) (or a given list)
          (x0, x1) -> a * (x0 cos - x1 sin, x0 sin + x1 cos)   (a = attention factor, 1 by default; q.k scales by a^2)
      causal attention (j <= i by index), scale 1/sqrt(hd); query head h reads kv head h // (NH / NKV)
      x += attn @ wo^T
      h2 = rmsnorm(x) * ffn_norm
      g  = h2 @ w13^T,  w13 = [w1 (F,C); w3 (F,C)]
      x += (silu(g[:, :F]) * g[:, F:]) @ w2^T
    logits = (rmsnorm(x) * norm) @ output^T      (output = tok_embeddings when tied)
    loss = mean cross entropy over the targets >= 0

No biases; RMSNorm eps 1e-5 by default. Parameter names (model.named_parameters()) are stretch's safetensors names:
    tok_embeddings.weight (V,C); layers.{l}.attention_norm.weight (C); layers.{l}.attention.wqkv.weight (C+2KVD, C);
    layers.{l}.attention.wo.weight (C,C); layers.{l}.ffn_norm.weight (C); layers.{l}.feed_forward.w13.weight (2F,C);
    layers.{l}.feed_forward.w2.weight (C,F); norm.weight (C); output.weight (V,C) only when untied.

    from torch_llama import Llama, LlamaConfig, rope_inv_freq
    model = Llama(LlamaConfig(vocab_size=61, n_layer=2, n_head=6, n_kv_head=2, n_embd=24, mlp_hidden=40)).double()
    logits, loss = model(tokens, targets, pos=None, inv_freq=None, attn_factor=1.0)

RoPE scaling helpers (all float64): rope_inv_freq(hd, base), linear_inv_freq, ntk_base, yarn_inv_freq.
Runs with Debian's /usr/bin/python3 (PyTorch 1.13); the RoPE tables are computed in float64 and cast to the
activation dtype.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, asdict

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class LlamaConfig:
    vocab_size: int = 512
    n_layer: int = 5
    n_head: int = 8
    n_kv_head: int = 4
    n_embd: int = 64
    mlp_hidden: int = 172
    block_size: int = 512
    rope_base: float = 10000.0
    norm_eps: float = 1e-5
    tie_embeddings: bool = True
    qkv_bias: bool = False          # biases on q, k, v (Qwen2): layers.{l}.attention.wqkv.bias (C+2KVD)

    def __post_init__(self):
        if self.n_embd % self.n_head or self.n_head % self.n_kv_head or (self.n_embd // self.n_head) % 2:
            raise ValueError(f"inconsistent heads: C {self.n_embd}, NH {self.n_head}, NKV {self.n_kv_head}")

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    @property
    def kv_dim(self) -> int:
        return self.n_kv_head * self.head_dim

    def to_dict(self):
        return asdict(self)


# ----------------------------------------------------------------------------------------------------------
# RoPE frequencies (float64)

def rope_inv_freq(hd: int, base: float = 10000.0) -> torch.Tensor:
    """inv_freq[i] = base^(-2i/hd), i = 0 .. hd/2 - 1."""
    i = torch.arange(hd // 2, dtype=torch.float64)
    return base ** (-2.0 * i / hd)


def linear_inv_freq(hd: int, base: float, s: float) -> torch.Tensor:
    """Position interpolation: every frequency divided by s."""
    return rope_inv_freq(hd, base) / s


def ntk_base(hd: int, base: float, s: float) -> float:
    """NTK-aware scaling: base' = base * s^(hd / (hd - 2))."""
    return base * s ** (hd / (hd - 2))


def yarn_inv_freq(hd: int, base: float, s: float, train_len: int, beta_fast: float = 32.0, beta_slow: float = 1.0):
    """YaRN frequencies (the Hugging Face variant) and its attention factor 0.1 ln(s) + 1.

    corr_dim(r) = hd ln(L_train / (r 2 pi)) / (2 ln base); low = max(floor(corr_dim(beta_fast)), 0),
    high = min(ceil(corr_dim(beta_slow)), hd - 1); ramp_i = clamp((i - low) / (high - low), 0, 1) (high is nudged by
    0.001 if equal to low); inv_freq_i = (inv_freq_i / s) ramp_i + inv_freq_i (1 - ramp_i)."""
    def corr_dim(r):
        return hd * math.log(train_len / (r * 2 * math.pi)) / (2 * math.log(base))

    low = max(math.floor(corr_dim(beta_fast)), 0)
    high = min(math.ceil(corr_dim(beta_slow)), hd - 1)
    if high == low:
        high += 0.001
    i = torch.arange(hd // 2, dtype=torch.float64)
    ramp = ((i - low) / (high - low)).clamp(0.0, 1.0)
    inv = rope_inv_freq(hd, base)
    return (inv / s) * ramp + inv * (1 - ramp), 0.1 * math.log(s) + 1.0, (low, high)


def rope_cos_sin(pos: torch.Tensor, inv_freq: torch.Tensor, attn_factor: float = 1.0):
    """pos (B, T) int -> a cos(angle), a sin(angle), each (B, T, hd/2), float64."""
    ang = pos.to(torch.float64)[..., None] * inv_freq.to(torch.float64)
    return attn_factor * torch.cos(ang), attn_factor * torch.sin(ang)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x (B, T, H, hd); pairs (2i, 2i+1) rotated by the angle of i; cos/sin (B, T, hd/2)."""
    c = cos[:, :, None, :].to(x.dtype)
    s = sin[:, :, None, :].to(x.dtype)
    x0, x1 = x[..., 0::2], x[..., 1::2]
    y0 = x0 * c - x1 * s
    y1 = x0 * s + x1 * c
    return torch.stack((y0, y1), dim=-1).flatten(-2)


# ----------------------------------------------------------------------------------------------------------
# modules (names chosen so that named_parameters() gives stretch's safetensors names)

class RMSNorm(nn.Module):
    def __init__(self, C: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(C))

    def forward(self, x):
        return x * torch.rsqrt((x * x).mean(-1, keepdim=True) + self.eps) * self.weight


class Attention(nn.Module):
    def __init__(self, cfg: LlamaConfig):
        super().__init__()
        self.cfg = cfg
        self.wqkv = nn.Linear(cfg.n_embd, cfg.n_embd + 2 * cfg.kv_dim, bias=cfg.qkv_bias)
        self.wo = nn.Linear(cfg.n_embd, cfg.n_embd, bias=False)

    def forward(self, x, cos, sin, mask):
        cfg = self.cfg
        B, T, C = x.shape
        NH, NKV, hd, KVD = cfg.n_head, cfg.n_kv_head, cfg.head_dim, cfg.kv_dim
        qkv = self.wqkv(x)
        q = qkv[..., :C].reshape(B, T, NH, hd)
        k = qkv[..., C:C + KVD].reshape(B, T, NKV, hd)
        v = qkv[..., C + KVD:].reshape(B, T, NKV, hd)
        q = apply_rope(q, cos, sin).transpose(1, 2)            # (B, NH, T, hd)
        k = apply_rope(k, cos, sin).transpose(1, 2)            # (B, NKV, T, hd)
        v = v.transpose(1, 2)
        G = NH // NKV
        k = k.repeat_interleave(G, dim=1)                      # head h <- kv head h // G
        v = v.repeat_interleave(G, dim=1)
        s = (q @ k.transpose(-1, -2)) / math.sqrt(hd)
        s = s.masked_fill(mask, float("-inf"))
        o = torch.softmax(s, dim=-1) @ v                       # (B, NH, T, hd)
        return self.wo(o.transpose(1, 2).reshape(B, T, C))


class FeedForward(nn.Module):
    def __init__(self, cfg: LlamaConfig):
        super().__init__()
        self.F = cfg.mlp_hidden
        self.w13 = nn.Linear(cfg.n_embd, 2 * cfg.mlp_hidden, bias=False)
        self.w2 = nn.Linear(cfg.mlp_hidden, cfg.n_embd, bias=False)

    def forward(self, x):
        g = self.w13(x)
        return self.w2(F.silu(g[..., :self.F]) * g[..., self.F:])


class Block(nn.Module):
    def __init__(self, cfg: LlamaConfig):
        super().__init__()
        self.attention_norm = RMSNorm(cfg.n_embd, cfg.norm_eps)
        self.attention = Attention(cfg)
        self.ffn_norm = RMSNorm(cfg.n_embd, cfg.norm_eps)
        self.feed_forward = FeedForward(cfg)

    def forward(self, x, cos, sin, mask):
        x = x + self.attention(self.attention_norm(x), cos, sin, mask)
        return x + self.feed_forward(self.ffn_norm(x))


class Llama(nn.Module):
    def __init__(self, cfg: LlamaConfig):
        super().__init__()
        self.cfg = cfg
        self.tok_embeddings = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.layers = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.norm = RMSNorm(cfg.n_embd, cfg.norm_eps)
        if not cfg.tie_embeddings:
            self.output = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)

    def forward(self, tokens, targets=None, pos=None, inv_freq=None, attn_factor: float = 1.0):
        cfg = self.cfg
        B, T = tokens.shape
        if pos is None:
            pos = torch.arange(T, device=tokens.device).repeat(B, 1)
        if inv_freq is None:
            inv_freq = rope_inv_freq(cfg.head_dim, cfg.rope_base)
        cos, sin = rope_cos_sin(pos, inv_freq, attn_factor)
        mask = torch.ones(T, T, dtype=torch.bool, device=tokens.device).triu(1)   # True above the diagonal
        x = self.tok_embeddings(tokens)
        for blk in self.layers:
            x = blk(x, cos, sin, mask)
        x = self.norm(x)
        w = self.tok_embeddings.weight if cfg.tie_embeddings else self.output.weight
        logits = x @ w.T
        loss = None
        if targets is not None:
            t = targets.reshape(-1).long()
            keep = t >= 0
            lp = torch.log_softmax(logits.reshape(-1, logits.shape[-1]), dim=-1)
            loss = -lp[keep.nonzero().squeeze(1), t[keep]].mean()
        return logits, loss

    @torch.no_grad()
    def greedy(self, prompt: list, n: int, **kw) -> list:
        """Greedy continuation (argmax, lowest id on ties) of a token list, recomputing the full prefix each step."""
        seq = list(prompt)
        for _ in range(n):
            logits, _ = self(torch.tensor([seq], dtype=torch.long), **kw)
            seq.append(int(torch.argmax(logits[0, -1]).item()))
        return seq[len(prompt):]

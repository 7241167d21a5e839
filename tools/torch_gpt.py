"""Independent PyTorch reference of the stretch GPT model (docs/MODEL.md), written from the math.

Position methods: none, alibi, sinusoidal, learned, rope, t5.
Parameter names are the safetensors names of docs/MODEL.md (wte, wpe, t5_bias, h.{l}.ln_1.weight, ...,
ln_f.weight, lm_head.weight), so model.state_dict() keys match a stretch checkpoint one for one.
Works in float32 and float64 (model.double()); the position tables (sinusoidal PE, RoPE angles, ALiBi and T5
biases) are computed in float64 and cast to the activation dtype.

    from torch_gpt import GPT, GPTConfig
    model = GPT(GPTConfig(vocab_size=256, n_layer=6, n_head=8, n_embd=256, mlp_hidden=1024,
                          block_size=256, position="alibi"))
    logits, loss = model(tokens, targets, pos=None)   # tokens (B, T) int; pos (B, T) int, default pos[b,t] = t

Attention is materialized: s = q k^T / sqrt(hd) + bias(pos_i, pos_j) with a causal mask by index (j <= i).
The (B*NH, T, T) bias-plus-mask tensor is built once per forward and shared by all layers (torch.baddbmm).
Requires PyTorch >= 1.13 (Debian's /usr/bin/python3 has it).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, asdict

import torch
import torch.nn as nn
import torch.nn.functional as F

POSITIONS = ("none", "alibi", "sinusoidal", "learned", "rope", "t5")
T5_NUM_BUCKETS = 32
T5_MAX_EXACT = 16


@dataclass
class GPTConfig:
    vocab_size: int = 256
    n_layer: int = 6
    n_head: int = 8
    n_embd: int = 256
    mlp_hidden: int = 1024
    block_size: int = 256          # L_max, the size of wpe for position = learned
    position: str = "alibi"
    bias: bool = True
    tie_embeddings: bool = True
    rope_base: float = 10000.0
    dropout: float = 0.0
    embed_scale: float = 1.0       # x = embed_scale * wte[tokens] (+ positions)
    activation: str = "gelu_tanh"  # MLP nonlinearity: gelu_tanh (GPT-2, BLOOM) or gelu (exact erf form, MPT)
    embed_norm: bool = False       # LayerNorm ln_emb over the summed embeddings (BLOOM's word_embeddings_layernorm)
    alibi_max_bias: float = 8.0    # ALiBi slopes 2^(-b (h+1) / n) for n a power of two

    def to_dict(self):
        return asdict(self)


# ----------------------------------------------------------------------------------------------------------
# position helpers (all in float64 / exact integer math)

def alibi_slopes(n_head: int, max_bias: float = 8.0) -> list:
    """ALiBi slopes (Press et al.): for n a power of two, the geometric sequence whose first term and ratio are
    2^(-8/n). Otherwise take the slopes for p = 2^floor(log2 n) and append every other slope of the 2p
    sequence, the first n - p of them."""
    def pow2(n):
        return [2.0 ** (-max_bias * (i + 1) / n) for i in range(n)]

    p = 1 << (n_head.bit_length() - 1)          # largest power of two <= n_head
    if p == n_head:
        return pow2(n_head)
    return pow2(p) + pow2(2 * p)[0::2][: n_head - p]


def t5_bucket(n: int) -> int:
    """Causal T5 bucket of a non-negative distance n (32 buckets, 16 exact)."""
    n = max(0, int(n))
    if n < T5_MAX_EXACT:
        return n
    b = T5_MAX_EXACT + int(math.floor(math.log(n / T5_MAX_EXACT) / math.log(128 / 16) * (T5_NUM_BUCKETS - T5_MAX_EXACT)))
    return min(T5_NUM_BUCKETS - 1, b)


def t5_bucket_tensor(dist: torch.Tensor) -> torch.Tensor:
    """Bucket of every entry of an integer distance tensor (negative distances clamp to 0)."""
    d = dist.clamp(min=0)
    dmax = int(d.max().item()) if d.numel() else 0
    table = torch.tensor([t5_bucket(n) for n in range(dmax + 1)], dtype=torch.long, device=dist.device)
    return table[d.long()]


def sinusoidal_pe(pos: torch.Tensor, C: int) -> torch.Tensor:
    """PE(p, 2i) = sin(p / 10000^(2i/C)), PE(p, 2i+1) = cos(same); pos any integer shape -> (..., C) float64."""
    i2 = torch.arange(0, C, 2, dtype=torch.float64, device=pos.device)       # 2i
    inv = torch.pow(torch.tensor(10000.0, dtype=torch.float64), -i2 / C)       # 10000^(-2i/C)
    ang = pos.to(torch.float64).unsqueeze(-1) * inv
    pe = torch.empty(*pos.shape, C, dtype=torch.float64, device=pos.device)
    pe[..., 0::2] = torch.sin(ang)
    pe[..., 1::2] = torch.cos(ang[..., : C // 2])
    return pe


def rope_cos_sin(pos: torch.Tensor, hd: int, base: float):
    """cos, sin of angle pos * base^(-2i/hd), i = 0 .. hd/2-1; pos (B, T) -> each (B, T, hd/2) float64."""
    i2 = torch.arange(0, hd, 2, dtype=torch.float64, device=pos.device)
    theta = torch.pow(torch.tensor(float(base), dtype=torch.float64), -i2 / hd)
    ang = pos.to(torch.float64).unsqueeze(-1) * theta
    return torch.cos(ang), torch.sin(ang)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x (B, NH, T, hd); interleaved pairs (2i, 2i+1): (x0, x1) -> (x0 cos - x1 sin, x0 sin + x1 cos).
    cos, sin (B or 1, 1, T, hd/2) in x's dtype."""
    xr = x.unflatten(-1, (-1, 2))
    x0, x1 = xr[..., 0], xr[..., 1]
    return torch.stack((x0 * cos - x1 * sin, x0 * sin + x1 * cos), dim=-1).flatten(-2)


def default_attention_core(q, kt, v, attn_bias, scale):
    """softmax(scale * q @ kt + attn_bias) @ v; q, v (BH, T, hd), kt (BH, hd, T), attn_bias (BH, T, T)."""
    att = torch.baddbmm(attn_bias, q, kt, alpha=scale)                        # bias added after the scale
    att = torch.softmax(att, dim=-1)
    return torch.bmm(att, v)


# Looked up at call time, so a benchmark may swap in an equivalent implementation (bench/peer_train.py).
attention_core = default_attention_core


# ----------------------------------------------------------------------------------------------------------
# modules

class LayerNorm(nn.Module):
    """LayerNorm over the last dim, eps 1e-5, bias optional (parameters `weight`, `bias`)."""

    def __init__(self, C: int, bias: bool):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(C))
        self.bias = nn.Parameter(torch.zeros(C)) if bias else None

    def forward(self, x):
        return F.layer_norm(x, (x.shape[-1],), self.weight, self.bias, 1e-5)


class Attention(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        assert cfg.n_embd % cfg.n_head == 0
        self.n_head = cfg.n_head
        self.hd = cfg.n_embd // cfg.n_head
        self.c_attn = nn.Linear(cfg.n_embd, 3 * cfg.n_embd, bias=cfg.bias)
        self.c_proj = nn.Linear(cfg.n_embd, cfg.n_embd, bias=cfg.bias)

    def forward(self, x, attn_bias, rope):
        """x (B, T, C); attn_bias (B*NH, T, T): position bias + causal mask (-inf); rope: (cos, sin) or None."""
        B, T, C = x.shape
        NH, hd = self.n_head, self.hd
        qkv = self.c_attn(x).view(B, T, 3, NH, hd).permute(2, 0, 3, 1, 4)    # (3, B, NH, T, hd)
        q, k, v = qkv[0], qkv[1], qkv[2]
        if rope is not None:
            q = apply_rope(q, *rope)
            k = apply_rope(k, *rope)
        q = q.reshape(B * NH, T, hd)
        kt = k.reshape(B * NH, T, hd).transpose(1, 2)
        v = v.reshape(B * NH, T, hd)
        o = attention_core(q, kt, v, attn_bias, 1.0 / math.sqrt(hd))          # (B*NH, T, hd)
        o = o.view(B, NH, T, hd).transpose(1, 2).reshape(B, T, C)
        return self.c_proj(o)


class MLP(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.c_fc = nn.Linear(cfg.n_embd, cfg.mlp_hidden, bias=cfg.bias)
        self.c_proj = nn.Linear(cfg.mlp_hidden, cfg.n_embd, bias=cfg.bias)
        if cfg.activation not in ("gelu_tanh", "gelu"):
            raise ValueError(f"activation must be gelu_tanh or gelu, got {cfg.activation!r}")
        self.tanh = cfg.activation == "gelu_tanh"

    def forward(self, x):
        return self.c_proj(F.gelu(self.c_fc(x), approximate="tanh" if self.tanh else "none"))


class Block(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.ln_1 = LayerNorm(cfg.n_embd, cfg.bias)
        self.attn = Attention(cfg)
        self.ln_2 = LayerNorm(cfg.n_embd, cfg.bias)
        self.mlp = MLP(cfg)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x, attn_bias, rope):
        x = x + self.drop(self.attn(self.ln_1(x), attn_bias, rope))
        x = x + self.drop(self.mlp(self.ln_2(x)))
        return x


class GPT(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        if cfg.position not in POSITIONS:
            raise ValueError(f"position must be one of {POSITIONS}, got {cfg.position!r}")
        if cfg.position == "rope" and (cfg.n_embd // cfg.n_head) % 2:
            raise ValueError("rope needs an even head size")
        self.cfg = cfg
        C = cfg.n_embd
        # registration order = the order of MODEL.md's table
        self.wte = nn.Parameter(torch.empty(cfg.vocab_size, C))
        if cfg.position == "learned":
            self.wpe = nn.Parameter(torch.empty(cfg.block_size, C))
        if cfg.position == "t5":
            self.t5_bias = nn.Parameter(torch.zeros(T5_NUM_BUCKETS, cfg.n_head))
        if cfg.embed_norm:
            self.ln_emb = LayerNorm(C, cfg.bias)
        self.h = nn.ModuleList([Block(cfg) for _ in range(cfg.n_layer)])
        self.ln_f = LayerNorm(C, cfg.bias)
        if not cfg.tie_embeddings:
            self.lm_head = nn.Linear(C, cfg.vocab_size, bias=False)
        self.drop = nn.Dropout(cfg.dropout)
        self.register_buffer("_alibi_slopes", torch.tensor(alibi_slopes(cfg.n_head, cfg.alibi_max_bias), dtype=torch.float64),
                             persistent=False)
        self.init_weights()

    # GPT-2 initialisation as in MODEL.md
    @torch.no_grad()
    def init_weights(self, generator: torch.Generator | None = None, std: float = 0.02):
        resid_std = std / math.sqrt(2 * self.cfg.n_layer)
        for name, p in self.named_parameters():
            if name == "t5_bias" or name.endswith(".bias"):
                p.zero_()
            elif name.endswith(("ln_1.weight", "ln_2.weight")) or name in ("ln_f.weight", "ln_emb.weight"):
                p.fill_(1.0)
            elif name.endswith("attn.c_proj.weight") or name.endswith("mlp.c_proj.weight"):
                p.normal_(0.0, resid_std, generator=generator)
            elif name == "wte" and self.cfg.embed_scale != 1.0:   # fairseq's scheme: unit variance after scaling
                p.normal_(0.0, 1.0 / self.cfg.embed_scale, generator=generator)
            else:                                   # wte, wpe, c_attn, c_fc, lm_head
                p.normal_(0.0, std, generator=generator)

    def decay_groups(self, weight_decay: float):
        """AdamW parameter groups: decay only the Linear weights (c_attn, attn.c_proj, c_fc, mlp.c_proj, lm_head)."""
        decay, no_decay = [], []
        for name, p in self.named_parameters():
            is_linear_w = name.endswith(("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight",
                                         "mlp.c_proj.weight")) or name == "lm_head.weight"
            (decay if is_linear_w else no_decay).append(p)
        return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]

    def _attn_bias(self, pos: torch.Tensor, B: int, T: int, dtype, device) -> torch.Tensor:
        """(B*NH, T, T) position bias + causal mask, pos (Bp, T) with Bp in {1, B}."""
        NH = self.cfg.n_head
        causal = torch.ones(T, T, dtype=torch.bool, device=device).tril()
        method = self.cfg.position
        if method == "alibi":
            rel = (pos[:, :, None] - pos[:, None, :]).to(torch.float64)             # pos_i - pos_j  (Bp,T,T)
            bias = -self._alibi_slopes.to(device)[None, :, None, None] * rel[:, None]  # (Bp,NH,T,T) float64
            bias = bias.to(dtype).masked_fill(~causal, float("-inf"))
        elif method == "t5":
            bucket = t5_bucket_tensor(pos[:, :, None] - pos[:, None, :])            # (Bp,T,T)
            tb = self.t5_bias.to(dtype)                                             # (NB, NH)
            bias = F.embedding(bucket, tb).permute(0, 3, 1, 2)                      # (Bp,NH,T,T)
            bias = bias.masked_fill(~causal, float("-inf"))
        else:
            bias = torch.zeros(T, T, dtype=dtype, device=device).masked_fill(~causal, float("-inf"))
            bias = bias.view(1, 1, T, T)
        return bias.expand(B, NH, T, T).reshape(B * NH, T, T)

    def forward(self, tokens, targets=None, pos=None):
        cfg = self.cfg
        B, T = tokens.shape
        device = tokens.device
        dtype = self.wte.dtype
        if pos is None:
            pos = torch.arange(T, device=device).view(1, T)
        else:
            pos = pos.to(device=device, dtype=torch.long)
            assert pos.shape == (B, T), f"pos must be (B, T), got {tuple(pos.shape)}"
        x = F.embedding(tokens, self.wte) * cfg.embed_scale
        if cfg.position == "learned":
            assert int(pos.max()) < cfg.block_size, "learned positions must be < block_size"
            x = x + F.embedding(pos, self.wpe)
        elif cfg.position == "sinusoidal":
            x = x + sinusoidal_pe(pos, cfg.n_embd).to(dtype)
        if cfg.embed_norm:
            x = self.ln_emb(x)
        x = self.drop(x)
        rope = None
        if cfg.position == "rope":
            cos, sin = rope_cos_sin(pos, cfg.n_embd // cfg.n_head, cfg.rope_base)
            rope = (cos.to(dtype).unsqueeze(1), sin.to(dtype).unsqueeze(1))         # (Bp,1,T,hd/2)
        attn_bias = self._attn_bias(pos, B, T, dtype, device)
        for block in self.h:
            x = block(x, attn_bias, rope)
        y = self.ln_f(x)
        w = self.wte if cfg.tie_embeddings else self.lm_head.weight
        logits = F.linear(y, w)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.reshape(B * T, -1).float() if logits.dtype == torch.bfloat16
                                   else logits.reshape(B * T, -1), targets.reshape(B * T).long())
        return logits, loss

"""A plain ViT (DINOv2-style: optional register tokens and LayerScale) that loads a user's local
checkpoint — DINOv2/DINOv2-reg, RETFound (timm/MAE layout), RETFound-Green — for use as a frozen
student backbone. No weights ship with efiqa and none are downloaded: pass a ``.pth`` or
``.safetensors`` file you have.

Returns the final-norm patch tokens as a (B, D, H/p, W/p) grid (class and register tokens dropped);
position embeddings are interpolated (bicubic) when the grid differs from the checkpoint's.
"""
from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

PRESETS = {  # name: (embed_dim, depth, heads)
    "vit_small": (384, 12, 6),
    "vit_base": (768, 12, 12),
    "vit_large": (1024, 24, 16),
}


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, layerscale: bool, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = nn.Module()
        self.attn.qkv = nn.Linear(dim, 3 * dim)
        self.attn.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = nn.Module()
        self.mlp.fc1 = nn.Linear(dim, int(dim * mlp_ratio))
        self.mlp.fc2 = nn.Linear(int(dim * mlp_ratio), dim)
        if layerscale:
            self.ls1, self.ls2 = nn.Module(), nn.Module()
            self.ls1.gamma = nn.Parameter(torch.ones(dim))
            self.ls2.gamma = nn.Parameter(torch.ones(dim))
        self.layerscale = layerscale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        qkv = self.attn.qkv(self.norm1(x)).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2]).transpose(1, 2).reshape(b, n, d)
        a = self.attn.proj(a)
        x = x + (a * self.ls1.gamma if self.layerscale else a)
        m = self.mlp.fc2(F.gelu(self.mlp.fc1(self.norm2(x))))
        return x + (m * self.ls2.gamma if self.layerscale else m)


class ViT(nn.Module):
    def __init__(self, embed_dim: int = 384, depth: int = 12, heads: int = 6, patch: int = 14, registers: int = 0,
                 layerscale: bool = True, pos_grid: int = 37) -> None:
        super().__init__()
        self.patch, self.registers, self.embed_dim = patch, registers, embed_dim
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv2d(3, embed_dim, patch, patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + pos_grid * pos_grid, embed_dim))
        if registers:
            self.register_tokens = nn.Parameter(torch.zeros(1, registers, embed_dim))
        self.blocks = nn.ModuleList(Block(embed_dim, heads, layerscale) for _ in range(depth))
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)

    @classmethod
    def preset(cls, name: str, **kw) -> "ViT":
        dim, depth, heads = PRESETS[name]
        return cls(dim, depth, heads, **kw)

    def _pos(self, gh: int, gw: int) -> torch.Tensor:
        cls_pos, grid = self.pos_embed[:, :1], self.pos_embed[:, 1:]
        side = int(math.isqrt(grid.shape[1]))
        if (gh, gw) != (side, side):
            grid = grid.reshape(1, side, side, -1).permute(0, 3, 1, 2)
            grid = F.interpolate(grid, size=(gh, gw), mode="bicubic", align_corners=False)
            grid = grid.permute(0, 2, 3, 1).reshape(1, gh * gw, -1)
        return torch.cat([cls_pos, grid], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        t = self.patch_embed.proj(x)
        gh, gw = t.shape[-2:]
        t = t.flatten(2).transpose(1, 2)
        t = torch.cat([self.cls_token.expand(b, -1, -1), t], dim=1) + self._pos(gh, gw)
        if self.registers:  # DINOv2-reg: registers go after the class token, without position
            t = torch.cat([t[:, :1], self.register_tokens.expand(b, -1, -1), t[:, 1:]], dim=1)
        for blk in self.blocks:
            t = blk(t)
        t = self.norm(t)[:, 1 + self.registers:]
        return t.transpose(1, 2).reshape(b, self.embed_dim, gh, gw)


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A checkpoint's tensors, unwrapped from the usual containers and key prefixes."""
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state = load_file(str(path))
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("model", "state_dict", "teacher", "student", "model_ema"):
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
            break
    out = {}
    for k, v in state.items():
        for prefix in ("module.", "backbone.", "encoder."):
            if k.startswith(prefix):
                k = k[len(prefix):]
        out[k] = v
    return out


def from_checkpoint(path: str | Path, patch: int | None = None) -> ViT:
    """Build a ViT whose shape is read off the checkpoint, and load it (strict on the backbone keys)."""
    sd = read_state_dict(path)
    if "patch_embed.proj.weight" not in sd or "pos_embed" not in sd:
        raise ValueError(f"{path}: not a ViT checkpoint (no patch_embed.proj.weight / pos_embed)")
    w = sd["patch_embed.proj.weight"]
    dim, patch = w.shape[0], patch or w.shape[-1]
    depth = 1 + max(int(k.split(".")[1]) for k in sd if k.startswith("blocks."))
    heads = {384: 6, 768: 12, 1024: 16, 1280: 16, 1536: 24}.get(dim, dim // 64)
    registers = sd["register_tokens"].shape[1] if "register_tokens" in sd else 0
    layerscale = "blocks.0.ls1.gamma" in sd
    pos_grid = int(math.isqrt(sd["pos_embed"].shape[1] - 1))
    vit = ViT(dim, depth, heads, patch, registers, layerscale, pos_grid)
    wanted = set(vit.state_dict())
    missing = sorted(wanted - set(sd))
    if missing:
        raise ValueError(f"{path}: checkpoint lacks {len(missing)} backbone tensors, e.g. {missing[:3]}")
    vit.load_state_dict({k: sd[k] for k in wanted})
    return vit.eval()

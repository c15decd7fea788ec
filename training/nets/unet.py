"""A plain U-Net (BatchNorm, ReLU, bilinear up-sampling): the vessel extractor and, wrapped as a
residual predictor, the masked-inpainting teacher."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def _double_conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
    )


class UNet(nn.Module):
    """``levels`` resolutions with ``base``·2^k channels; input sides must divide by 2^(levels-1)."""

    def __init__(self, in_ch: int = 3, out_ch: int = 1, base: int = 16, levels: int = 4) -> None:
        super().__init__()
        chans = [base * 2**k for k in range(levels)]
        self.down = nn.ModuleList([_double_conv(in_ch, chans[0])] +
                                  [_double_conv(chans[k - 1], chans[k]) for k in range(1, levels)])
        self.up = nn.ModuleList([_double_conv(chans[k] + chans[k - 1], chans[k - 1]) for k in range(levels - 1, 0, -1)])
        self.head = nn.Conv2d(chans[0], out_ch, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for k, block in enumerate(self.down):
            x = block(x if k == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        for block, skip in zip(self.up, reversed(skips[:-1])):
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = block(torch.cat([x, skip], dim=1))
        return self.head(x)


class ResidualInpainter(nn.Module):
    """VUAD-style teacher: reconstruction = masked input + U-Net(masked input), on vessel maps."""

    def __init__(self, base: int = 32, levels: int = 5) -> None:
        super().__init__()
        self.net = UNet(1, 1, base, levels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.net(x)

"""The reference YOLOv3 detector: Darknet-53 backbone, three detection scales, VOC head."""

from __future__ import annotations

import torch
from torch import nn

from tuner.models.zoo.blocks import Residual, cbr


def _dark(c_in: int, c_out: int, k: int = 1, s: int = 1) -> nn.Module:
    return cbr(c_in, c_out, k, s, k // 2, "leaky")


def _dark_stage(c_in: int, c_out: int, blocks: int) -> nn.Sequential:
    res = [Residual(nn.Sequential(_dark(c_out, c_out // 2), _dark(c_out // 2, c_out, 3)), relu=False)
           for _ in range(blocks)]
    return nn.Sequential(_dark(c_in, c_out, 3, 2), *res)


def _head(c_in: int, c: int) -> nn.Sequential:
    """Five alternating 1x1 / 3x3 convs ending in `c` channels (the branch point)."""
    return nn.Sequential(_dark(c_in, c), _dark(c, 2 * c, 3), _dark(2 * c, c), _dark(c, 2 * c, 3),
                         _dark(2 * c, c))


class YoloV3(nn.Module):
    def __init__(self, outputs: int = 3 * (5 + 20)) -> None:
        super().__init__()
        self.s8 = nn.Sequential(_dark(3, 32, 3), _dark_stage(32, 64, 1), _dark_stage(64, 128, 2),
                                _dark_stage(128, 256, 8))
        self.s16, self.s32 = _dark_stage(256, 512, 8), _dark_stage(512, 1024, 4)
        self.h32, self.h16, self.h8 = _head(1024, 512), _head(768, 256), _head(384, 128)
        self.o32, self.o16, self.o8 = (nn.Sequential(_dark(c, 2 * c, 3), nn.Conv2d(2 * c, outputs, 1))
                                       for c in (512, 256, 128))
        self.up16, self.up8 = _dark(512, 256), _dark(256, 128)
        self.upsample = nn.Upsample(scale_factor=2, mode="nearest")

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        f8 = self.s8(x)
        f16 = self.s16(f8)
        b32 = self.h32(self.s32(f16))
        b16 = self.h16(torch.cat([self.upsample(self.up16(b32)), f16], 1))
        b8 = self.h8(torch.cat([self.upsample(self.up8(b16)), f8], 1))
        return self.o32(b32), self.o16(b16), self.o8(b8)

"""The reference ImageNet classifiers: ResNet-50 (Caffe and TF-slim), MobileNet v1 / v2,
SqueezeNet v1.1, VGG-16 and Inception v1 (Caffe and TF-slim) / v3, each in the layout whose GOP
AMD's Model Zoo published.
"""

from __future__ import annotations

import torch
from torch import nn

from tuner.models.zoo.blocks import Classifier, Concat, Residual, cbr

# --- ResNet-50 (Caffe) --------------------------------------------------------------------------


def _bottleneck(c_in: int, mid: int, stride: int) -> nn.Module:
    body = nn.Sequential(cbr(c_in, mid, 1, stride), cbr(mid, mid, 3, 1, 1),
                         nn.Conv2d(mid, 4 * mid, 1, bias=False), nn.BatchNorm2d(4 * mid))
    short = None
    if stride != 1 or c_in != 4 * mid:
        short = nn.Sequential(nn.Conv2d(c_in, 4 * mid, 1, stride, bias=False), nn.BatchNorm2d(4 * mid))
    return Residual(body, short)


def resnet50() -> nn.Module:
    layers: list[nn.Module] = [cbr(3, 64, 7, 2, 3), nn.MaxPool2d(3, 2, 1)]
    c_in = 64
    for mid, blocks, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
        for i in range(blocks):
            layers.append(_bottleneck(c_in, mid, stride if i == 0 else 1))
            c_in = 4 * mid
    return Classifier(nn.Sequential(*layers), 2048)


def _tf_bottleneck(c_in: int, mid: int, stride: int) -> nn.Module:
    """TF-slim resnet_v1 unit: the stride sits on the 3x3; a same-depth shortcut subsamples."""
    body = nn.Sequential(cbr(c_in, mid), cbr(mid, mid, 3, stride, 1),
                         nn.Conv2d(mid, 4 * mid, 1, bias=False), nn.BatchNorm2d(4 * mid))
    if c_in != 4 * mid:
        short: nn.Module = nn.Sequential(nn.Conv2d(c_in, 4 * mid, 1, stride, bias=False),
                                         nn.BatchNorm2d(4 * mid))
    else:
        short = nn.MaxPool2d(1, stride) if stride > 1 else nn.Identity()
    return Residual(body, short)


def resnet50_tf() -> nn.Module:
    """TF-slim ResNet-50 v1: each of the first three stages down-samples in its LAST unit."""
    layers: list[nn.Module] = [cbr(3, 64, 7, 2, 3), nn.MaxPool2d(3, 2, 1)]
    c_in = 64
    for mid, blocks, stride in ((64, 3, 2), (128, 4, 2), (256, 6, 2), (512, 3, 1)):
        for i in range(blocks):
            layers.append(_tf_bottleneck(c_in, mid, stride if i == blocks - 1 else 1))
            c_in = 4 * mid
    return Classifier(nn.Sequential(*layers), 2048)


# --- MobileNet v1 / v2 --------------------------------------------------------------------------


def mobilenet_v1() -> nn.Module:
    layers: list[nn.Module] = [cbr(3, 32, 3, 2, 1)]
    c_in = 32
    plan = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)] + [(512, 1)] * 5 + [
        (1024, 2), (1024, 1)]
    for c_out, stride in plan:
        layers += [cbr(c_in, c_in, 3, stride, 1, groups=c_in), cbr(c_in, c_out)]
        c_in = c_out
    return Classifier(nn.Sequential(*layers), 1024)


def _inverted_residual(c_in: int, c_out: int, stride: int, expand: int) -> nn.Module:
    mid = c_in * expand
    layers: list[nn.Module] = [] if expand == 1 else [cbr(c_in, mid, act="relu6")]
    layers += [cbr(mid, mid, 3, stride, 1, "relu6", groups=mid),
               nn.Conv2d(mid, c_out, 1, bias=False), nn.BatchNorm2d(c_out)]
    body = nn.Sequential(*layers)
    return Residual(body, relu=False) if stride == 1 and c_in == c_out else body


def mobilenet_v2() -> nn.Module:
    layers: list[nn.Module] = [cbr(3, 32, 3, 2, 1, "relu6")]
    c_in = 32
    for t, c, n, s in ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                       (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)):
        for i in range(n):
            layers.append(_inverted_residual(c_in, c, s if i == 0 else 1, t))
            c_in = c
    layers.append(cbr(320, 1280, act="relu6"))
    return Classifier(nn.Sequential(*layers), 1280)


# --- SqueezeNet v1.1 and VGG-16 -----------------------------------------------------------------


def _fire(c_in: int, squeeze: int, expand: int) -> nn.Module:
    relu_conv = lambda i, o, k, p: nn.Sequential(nn.Conv2d(i, o, k, padding=p), nn.ReLU())  # noqa: E731
    return nn.Sequential(relu_conv(c_in, squeeze, 1, 0),
                         Concat(relu_conv(squeeze, expand, 1, 0), relu_conv(squeeze, expand, 3, 1)))


class SqueezeNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        pool = lambda: nn.MaxPool2d(3, 2, ceil_mode=True)  # noqa: E731  (Caffe rounds up)
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, 3, 2), nn.ReLU(), pool(), _fire(64, 16, 64), _fire(128, 16, 64), pool(),
            _fire(128, 32, 128), _fire(256, 32, 128), pool(), _fire(256, 48, 192),
            _fire(384, 48, 192), _fire(384, 64, 256), _fire(512, 64, 256),
            nn.Conv2d(512, 1000, 1), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(nn.functional.adaptive_avg_pool2d(self.features(x), 1), 1)


def vgg16() -> nn.Module:
    layers: list[nn.Module] = []
    c_in = 3
    for block in ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512)):
        for c_out in block:
            layers += [nn.Conv2d(c_in, c_out, 3, padding=1), nn.ReLU()]
            c_in = c_out
        layers.append(nn.MaxPool2d(2, 2))
    head = nn.Sequential(nn.Flatten(), nn.Linear(512 * 7 * 7, 4096), nn.ReLU(),
                         nn.Linear(4096, 4096), nn.ReLU(), nn.Linear(4096, 1000))
    return nn.Sequential(*layers, head)


# --- Inception v1 (GoogLeNet) and v3 ------------------------------------------------------------


def _inception_v1_block(c_in: int, b1: int, r3: int, b3: int, r5: int, b5: int, bp: int,
                        k5: int = 5) -> nn.Module:
    return Concat(cbr(c_in, b1), nn.Sequential(cbr(c_in, r3), cbr(r3, b3, 3, 1, 1)),
                   nn.Sequential(cbr(c_in, r5), cbr(r5, b5, k5, 1, k5 // 2)),
                   nn.Sequential(nn.MaxPool2d(3, 1, 1), cbr(c_in, bp)))


def _googlenet(k5: int) -> nn.Module:
    """GoogLeNet; k5 = kernel of the '5x5' branch (Caffe 5, TF-slim 3)."""
    pool = lambda: nn.MaxPool2d(3, 2, ceil_mode=True)  # noqa: E731
    plan = {"3a": (192, 64, 96, 128, 16, 32, 32), "3b": (256, 128, 128, 192, 32, 96, 64),
            "4a": (480, 192, 96, 208, 16, 48, 64), "4b": (512, 160, 112, 224, 24, 64, 64),
            "4c": (512, 128, 128, 256, 24, 64, 64), "4d": (512, 112, 144, 288, 32, 64, 64),
            "4e": (528, 256, 160, 320, 32, 128, 128), "5a": (832, 256, 160, 320, 32, 128, 128),
            "5b": (832, 384, 192, 384, 48, 128, 128)}
    layers: list[nn.Module] = [cbr(3, 64, 7, 2, 3), pool(), cbr(64, 64), cbr(64, 192, 3, 1, 1), pool()]
    for name, args in plan.items():
        layers.append(_inception_v1_block(*args, k5=k5))
        if name in ("3b", "4e"):
            layers.append(pool())
    return Classifier(nn.Sequential(*layers), 1024)


def inception_v1() -> nn.Module:
    return _googlenet(5)


def inception_v1_tf() -> nn.Module:
    return _googlenet(3)


def _avg_proj(c_in: int, c_out: int) -> nn.Module:
    # TF-slim's branch pool is avg_pool2d(3, stride 1, padding SAME), which divides by the valid
    # cells only: count_include_pad=False, as the Model Zoo's tf_inceptionv3 computes it.
    return nn.Sequential(nn.AvgPool2d(3, 1, 1, count_include_pad=False), cbr(c_in, c_out))


def _v3_a(c_in: int, pool: int) -> nn.Module:
    return Concat(cbr(c_in, 64), nn.Sequential(cbr(c_in, 48), cbr(48, 64, 5, 1, 2)),
                   nn.Sequential(cbr(c_in, 64), cbr(64, 96, 3, 1, 1), cbr(96, 96, 3, 1, 1)),
                   _avg_proj(c_in, pool))


def _v3_b(c_in: int) -> nn.Module:
    return Concat(cbr(c_in, 384, 3, 2),
                   nn.Sequential(cbr(c_in, 64), cbr(64, 96, 3, 1, 1), cbr(96, 96, 3, 2)),
                   nn.MaxPool2d(3, 2))


def _v3_c(c_in: int, c7: int) -> nn.Module:
    row, col = ((1, 7), (0, 3)), ((7, 1), (3, 0))
    return Concat(
        cbr(c_in, 192),
        nn.Sequential(cbr(c_in, c7), cbr(c7, c7, row[0], 1, row[1]), cbr(c7, 192, col[0], 1, col[1])),
        nn.Sequential(cbr(c_in, c7), cbr(c7, c7, col[0], 1, col[1]), cbr(c7, c7, row[0], 1, row[1]),
                      cbr(c7, c7, col[0], 1, col[1]), cbr(c7, 192, row[0], 1, row[1])),
        _avg_proj(c_in, 192))


def _v3_d(c_in: int) -> nn.Module:
    return Concat(nn.Sequential(cbr(c_in, 192), cbr(192, 320, 3, 2)),
                   nn.Sequential(cbr(c_in, 192), cbr(192, 192, (1, 7), 1, (0, 3)),
                                 cbr(192, 192, (7, 1), 1, (3, 0)), cbr(192, 192, 3, 2)),
                   nn.MaxPool2d(3, 2))


def _v3_e(c_in: int) -> nn.Module:
    def split(c: int) -> nn.Module:
        return Concat(cbr(c, 384, (1, 3), 1, (0, 1)), cbr(c, 384, (3, 1), 1, (1, 0)))

    return Concat(cbr(c_in, 320), nn.Sequential(cbr(c_in, 384), split(384)),
                   nn.Sequential(cbr(c_in, 448), cbr(448, 384, 3, 1, 1), split(384)),
                   _avg_proj(c_in, 192))


def inception_v3() -> nn.Module:
    stem = [cbr(3, 32, 3, 2), cbr(32, 32, 3), cbr(32, 64, 3, 1, 1), nn.MaxPool2d(3, 2),
            cbr(64, 80), cbr(80, 192, 3), nn.MaxPool2d(3, 2)]
    mixed = [_v3_a(192, 32), _v3_a(256, 64), _v3_a(288, 64), _v3_b(288), _v3_c(768, 128),
             _v3_c(768, 160), _v3_c(768, 160), _v3_c(768, 192), _v3_d(768), _v3_e(1280), _v3_e(2048)]
    return Classifier(nn.Sequential(*stem, *mixed), 2048)

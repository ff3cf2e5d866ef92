"""Reference CNN architectures defined in code (random weights), for the FPGA cost model's
validation and as `--model` choices: their op counts match the published GOP per image.

Each layout follows the variant AMD's Model Zoo measured (the `cf_` / `tf_` / `dk_` rows of
tuner/catalog/fpga_published.csv), because that is what its GOP figure counts:

    resnet50      Caffe ResNet-50 (stride 2 on the first 1x1 of a down-sampling block), 7.7 G
    resnet50_tf   TF-slim ResNet-50 v1 (down-sampling in the last unit of a stage), 6.97 G
    mobilenet_v1  TF MobileNet v1 1.0, 224, 1.14 G
    mobilenet_v2  Caffe MobileNet v2 1.0, 224, 0.59 G
    squeezenet    Caffe SqueezeNet v1.1 (ceil-mode pooling), 227, 0.76 G
    vgg16         VGG-16, 224, 30.96 G
    inception_v1  Caffe GoogLeNet (5x5 branches; LRN left out: no ops counted, no DPU support), 3.16 G
    inception_v1_tf  TF-slim Inception v1 (3x3 in the "5x5" branch), 3.0 G
    inception_v3  TF Inception v3, 299, 11.45 G
    yolov3        Darknet YOLOv3, VOC head (3 x 25 channels per scale), 416, 65.42 G

GOP = 2 x multiply-accumulates of convolutions and fully connected layers per image.
ResNet-18 is the built-in `resnet18` (tuner.models.resnet), so it is not repeated here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

SEED = 0


@dataclass(frozen=True)
class Architecture:
    name: str
    build: Callable[[], nn.Module]  # seeded random weights, eval mode; forward(x)
    input_shape: tuple[int, ...]    # one instance, without the batch dimension
    published_gop: float            # GOP per image (1 MAC = 2 ops) as published
    description: str


def _cbr(c_in: int, c_out: int, k: int | tuple[int, int] = 1, s: int = 1,
         p: int | tuple[int, int] = 0, act: str = "relu", groups: int = 1) -> nn.Sequential:
    """Conv (no bias) + BatchNorm + activation, the unit of every network below."""
    acts = {"relu": nn.ReLU(), "relu6": nn.ReLU6(), "leaky": nn.LeakyReLU(0.1)}
    return nn.Sequential(nn.Conv2d(c_in, c_out, k, s, p, groups=groups, bias=False),
                         nn.BatchNorm2d(c_out, eps=1e-3), acts[act])


class _Classifier(nn.Module):
    """features -> global average pool -> fully connected logits."""

    def __init__(self, features: nn.Module, channels: int, classes: int = 1000) -> None:
        super().__init__()
        self.features, self.fc = features, nn.Linear(channels, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(self.features(x), 1), 1))


class _Concat(nn.Module):
    """Run branches on one input and concatenate them along channels."""

    def __init__(self, *branches: nn.Module) -> None:
        super().__init__()
        self.branches = nn.ModuleList(branches)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([b(x) for b in self.branches], 1)


class _Residual(nn.Module):
    def __init__(self, body: nn.Module, shortcut: nn.Module | None = None, relu: bool = True) -> None:
        super().__init__()
        self.body, self.shortcut = body, shortcut or nn.Identity()
        self.act = nn.ReLU() if relu else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.body(x) + self.shortcut(x))


# --- ResNet-50 (Caffe) --------------------------------------------------------------------------


def _bottleneck(c_in: int, mid: int, stride: int) -> nn.Module:
    body = nn.Sequential(_cbr(c_in, mid, 1, stride), _cbr(mid, mid, 3, 1, 1),
                         nn.Conv2d(mid, 4 * mid, 1, bias=False), nn.BatchNorm2d(4 * mid))
    short = None
    if stride != 1 or c_in != 4 * mid:
        short = nn.Sequential(nn.Conv2d(c_in, 4 * mid, 1, stride, bias=False), nn.BatchNorm2d(4 * mid))
    return _Residual(body, short)


def resnet50() -> nn.Module:
    layers: list[nn.Module] = [_cbr(3, 64, 7, 2, 3), nn.MaxPool2d(3, 2, 1)]
    c_in = 64
    for mid, blocks, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
        for i in range(blocks):
            layers.append(_bottleneck(c_in, mid, stride if i == 0 else 1))
            c_in = 4 * mid
    return _Classifier(nn.Sequential(*layers), 2048)


def _tf_bottleneck(c_in: int, mid: int, stride: int) -> nn.Module:
    """TF-slim resnet_v1 unit: the stride sits on the 3x3; a same-depth shortcut subsamples."""
    body = nn.Sequential(_cbr(c_in, mid), _cbr(mid, mid, 3, stride, 1),
                         nn.Conv2d(mid, 4 * mid, 1, bias=False), nn.BatchNorm2d(4 * mid))
    if c_in != 4 * mid:
        short: nn.Module = nn.Sequential(nn.Conv2d(c_in, 4 * mid, 1, stride, bias=False),
                                         nn.BatchNorm2d(4 * mid))
    else:
        short = nn.MaxPool2d(1, stride) if stride > 1 else nn.Identity()
    return _Residual(body, short)


def resnet50_tf() -> nn.Module:
    """TF-slim ResNet-50 v1: each of the first three stages down-samples in its LAST unit."""
    layers: list[nn.Module] = [_cbr(3, 64, 7, 2, 3), nn.MaxPool2d(3, 2, 1)]
    c_in = 64
    for mid, blocks, stride in ((64, 3, 2), (128, 4, 2), (256, 6, 2), (512, 3, 1)):
        for i in range(blocks):
            layers.append(_tf_bottleneck(c_in, mid, stride if i == blocks - 1 else 1))
            c_in = 4 * mid
    return _Classifier(nn.Sequential(*layers), 2048)


# --- MobileNet v1 / v2 --------------------------------------------------------------------------


def mobilenet_v1() -> nn.Module:
    layers: list[nn.Module] = [_cbr(3, 32, 3, 2, 1)]
    c_in = 32
    plan = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)] + [(512, 1)] * 5 + [
        (1024, 2), (1024, 1)]
    for c_out, stride in plan:
        layers += [_cbr(c_in, c_in, 3, stride, 1, groups=c_in), _cbr(c_in, c_out)]
        c_in = c_out
    return _Classifier(nn.Sequential(*layers), 1024)


def _inverted_residual(c_in: int, c_out: int, stride: int, expand: int) -> nn.Module:
    mid = c_in * expand
    layers: list[nn.Module] = [] if expand == 1 else [_cbr(c_in, mid, act="relu6")]
    layers += [_cbr(mid, mid, 3, stride, 1, "relu6", groups=mid),
               nn.Conv2d(mid, c_out, 1, bias=False), nn.BatchNorm2d(c_out)]
    body = nn.Sequential(*layers)
    return _Residual(body, relu=False) if stride == 1 and c_in == c_out else body


def mobilenet_v2() -> nn.Module:
    layers: list[nn.Module] = [_cbr(3, 32, 3, 2, 1, "relu6")]
    c_in = 32
    for t, c, n, s in ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2),
                       (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)):
        for i in range(n):
            layers.append(_inverted_residual(c_in, c, s if i == 0 else 1, t))
            c_in = c
    layers.append(_cbr(320, 1280, act="relu6"))
    return _Classifier(nn.Sequential(*layers), 1280)


# --- SqueezeNet v1.1 and VGG-16 -----------------------------------------------------------------


def _fire(c_in: int, squeeze: int, expand: int) -> nn.Module:
    relu_conv = lambda i, o, k, p: nn.Sequential(nn.Conv2d(i, o, k, padding=p), nn.ReLU())  # noqa: E731
    return nn.Sequential(relu_conv(c_in, squeeze, 1, 0),
                         _Concat(relu_conv(squeeze, expand, 1, 0), relu_conv(squeeze, expand, 3, 1)))


class _SqueezeNet(nn.Module):
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
    return _Concat(_cbr(c_in, b1), nn.Sequential(_cbr(c_in, r3), _cbr(r3, b3, 3, 1, 1)),
                   nn.Sequential(_cbr(c_in, r5), _cbr(r5, b5, k5, 1, k5 // 2)),
                   nn.Sequential(nn.MaxPool2d(3, 1, 1), _cbr(c_in, bp)))


def _googlenet(k5: int) -> nn.Module:
    """GoogLeNet; k5 = kernel of the '5x5' branch (Caffe 5, TF-slim 3)."""
    pool = lambda: nn.MaxPool2d(3, 2, ceil_mode=True)  # noqa: E731
    plan = {"3a": (192, 64, 96, 128, 16, 32, 32), "3b": (256, 128, 128, 192, 32, 96, 64),
            "4a": (480, 192, 96, 208, 16, 48, 64), "4b": (512, 160, 112, 224, 24, 64, 64),
            "4c": (512, 128, 128, 256, 24, 64, 64), "4d": (512, 112, 144, 288, 32, 64, 64),
            "4e": (528, 256, 160, 320, 32, 128, 128), "5a": (832, 256, 160, 320, 32, 128, 128),
            "5b": (832, 384, 192, 384, 48, 128, 128)}
    layers: list[nn.Module] = [_cbr(3, 64, 7, 2, 3), pool(), _cbr(64, 64), _cbr(64, 192, 3, 1, 1), pool()]
    for name, args in plan.items():
        layers.append(_inception_v1_block(*args, k5=k5))
        if name in ("3b", "4e"):
            layers.append(pool())
    return _Classifier(nn.Sequential(*layers), 1024)


def inception_v1() -> nn.Module:
    return _googlenet(5)


def inception_v1_tf() -> nn.Module:
    return _googlenet(3)


def _avg_proj(c_in: int, c_out: int) -> nn.Module:
    # TF-slim's branch pool is avg_pool2d(3, stride 1, padding SAME), which divides by the valid
    # cells only: count_include_pad=False, as the Model Zoo's tf_inceptionv3 computes it.
    return nn.Sequential(nn.AvgPool2d(3, 1, 1, count_include_pad=False), _cbr(c_in, c_out))


def _v3_a(c_in: int, pool: int) -> nn.Module:
    return _Concat(_cbr(c_in, 64), nn.Sequential(_cbr(c_in, 48), _cbr(48, 64, 5, 1, 2)),
                   nn.Sequential(_cbr(c_in, 64), _cbr(64, 96, 3, 1, 1), _cbr(96, 96, 3, 1, 1)),
                   _avg_proj(c_in, pool))


def _v3_b(c_in: int) -> nn.Module:
    return _Concat(_cbr(c_in, 384, 3, 2),
                   nn.Sequential(_cbr(c_in, 64), _cbr(64, 96, 3, 1, 1), _cbr(96, 96, 3, 2)),
                   nn.MaxPool2d(3, 2))


def _v3_c(c_in: int, c7: int) -> nn.Module:
    row, col = ((1, 7), (0, 3)), ((7, 1), (3, 0))
    return _Concat(
        _cbr(c_in, 192),
        nn.Sequential(_cbr(c_in, c7), _cbr(c7, c7, row[0], 1, row[1]), _cbr(c7, 192, col[0], 1, col[1])),
        nn.Sequential(_cbr(c_in, c7), _cbr(c7, c7, col[0], 1, col[1]), _cbr(c7, c7, row[0], 1, row[1]),
                      _cbr(c7, c7, col[0], 1, col[1]), _cbr(c7, 192, row[0], 1, row[1])),
        _avg_proj(c_in, 192))


def _v3_d(c_in: int) -> nn.Module:
    return _Concat(nn.Sequential(_cbr(c_in, 192), _cbr(192, 320, 3, 2)),
                   nn.Sequential(_cbr(c_in, 192), _cbr(192, 192, (1, 7), 1, (0, 3)),
                                 _cbr(192, 192, (7, 1), 1, (3, 0)), _cbr(192, 192, 3, 2)),
                   nn.MaxPool2d(3, 2))


def _v3_e(c_in: int) -> nn.Module:
    def split(c: int) -> nn.Module:
        return _Concat(_cbr(c, 384, (1, 3), 1, (0, 1)), _cbr(c, 384, (3, 1), 1, (1, 0)))

    return _Concat(_cbr(c_in, 320), nn.Sequential(_cbr(c_in, 384), split(384)),
                   nn.Sequential(_cbr(c_in, 448), _cbr(448, 384, 3, 1, 1), split(384)),
                   _avg_proj(c_in, 192))


def inception_v3() -> nn.Module:
    stem = [_cbr(3, 32, 3, 2), _cbr(32, 32, 3), _cbr(32, 64, 3, 1, 1), nn.MaxPool2d(3, 2),
            _cbr(64, 80), _cbr(80, 192, 3), nn.MaxPool2d(3, 2)]
    mixed = [_v3_a(192, 32), _v3_a(256, 64), _v3_a(288, 64), _v3_b(288), _v3_c(768, 128),
             _v3_c(768, 160), _v3_c(768, 160), _v3_c(768, 192), _v3_d(768), _v3_e(1280), _v3_e(2048)]
    return _Classifier(nn.Sequential(*stem, *mixed), 2048)


# --- YOLOv3 (Darknet-53 backbone, three detection scales) ---------------------------------------


def _dark(c_in: int, c_out: int, k: int = 1, s: int = 1) -> nn.Module:
    return _cbr(c_in, c_out, k, s, k // 2, "leaky")


def _dark_stage(c_in: int, c_out: int, blocks: int) -> nn.Sequential:
    res = [_Residual(nn.Sequential(_dark(c_out, c_out // 2), _dark(c_out // 2, c_out, 3)), relu=False)
           for _ in range(blocks)]
    return nn.Sequential(_dark(c_in, c_out, 3, 2), *res)


def _head(c_in: int, c: int) -> nn.Sequential:
    """Five alternating 1x1 / 3x3 convs ending in `c` channels (the branch point)."""
    return nn.Sequential(_dark(c_in, c), _dark(c, 2 * c, 3), _dark(2 * c, c), _dark(c, 2 * c, 3),
                         _dark(2 * c, c))


class _YoloV3(nn.Module):
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


# --- registry -----------------------------------------------------------------------------------


def _seeded(factory: Callable[[], nn.Module]) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        torch.manual_seed(SEED)
        model = factory()
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        return model.eval()

    build.__name__ = f"build_{getattr(factory, '__name__', 'model')}"
    return build


_IMAGE = (3, 224, 224)
ARCHITECTURES: dict[str, Architecture] = {
    a.name: a for a in (
        Architecture("resnet50", _seeded(resnet50), _IMAGE, 7.7,
                     "ResNet-50 (Caffe layout), random weights; input [batch, 3, 224, 224]"),
        Architecture("resnet50_tf", _seeded(resnet50_tf), _IMAGE, 6.97,
                     "ResNet-50 v1 (TF-slim layout), random weights; input [batch, 3, 224, 224]"),
        Architecture("mobilenet_v1", _seeded(mobilenet_v1), _IMAGE, 1.14,
                     "MobileNet v1 1.0, random weights; input [batch, 3, 224, 224]"),
        Architecture("mobilenet_v2", _seeded(mobilenet_v2), _IMAGE, 0.59,
                     "MobileNet v2 1.0, random weights; input [batch, 3, 224, 224]"),
        Architecture("squeezenet", _seeded(_SqueezeNet), (3, 227, 227), 0.76,
                     "SqueezeNet v1.1 (Caffe), random weights; input [batch, 3, 227, 227]"),
        Architecture("vgg16", _seeded(vgg16), _IMAGE, 30.96,
                     "VGG-16, random weights; input [batch, 3, 224, 224]"),
        Architecture("inception_v1", _seeded(inception_v1), _IMAGE, 3.16,
                     "Inception v1 / GoogLeNet (Caffe), random weights; input [batch, 3, 224, 224]"),
        Architecture("inception_v1_tf", _seeded(inception_v1_tf), _IMAGE, 3.0,
                     "Inception v1 (TF-slim: 3x3 in the '5x5' branch), random weights; "
                     "input [batch, 3, 224, 224]"),
        Architecture("inception_v3", _seeded(inception_v3), (3, 299, 299), 11.45,
                     "Inception v3 (TF), random weights; input [batch, 3, 299, 299]"),
        Architecture("yolov3", _seeded(_YoloV3), (3, 416, 416), 65.42,
                     "YOLOv3 (Darknet-53, VOC head: 3 outputs of 75 channels), random weights; "
                     "input [batch, 3, 416, 416]"),
    )
}

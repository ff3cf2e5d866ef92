"""The zoo's table: `ARCHITECTURES`, name -> `Architecture` (a builder of seeded random weights,
the input shape of one instance, the published GOP per image, a description).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from tuner.models.zoo.classifiers import (
    SqueezeNet,
    inception_v1,
    inception_v1_tf,
    inception_v3,
    mobilenet_v1,
    mobilenet_v2,
    resnet50,
    resnet50_tf,
    vgg16,
)
from tuner.models.zoo.yolo import YoloV3

SEED = 0


@dataclass(frozen=True)
class Architecture:
    """One reference architecture of the zoo."""

    name: str
    build: Callable[[], nn.Module]  # seeded random weights, eval mode; forward(x)
    input_shape: tuple[int, ...]    # one instance, without the batch dimension
    published_gop: float            # GOP per image (1 MAC = 2 ops) as published
    description: str


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
        Architecture("squeezenet", _seeded(SqueezeNet), (3, 227, 227), 0.76,
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
        Architecture("yolov3", _seeded(YoloV3), (3, 416, 416), 65.42,
                     "YOLOv3 (Darknet-53, VOC head: 3 outputs of 75 channels), random weights; "
                     "input [batch, 3, 416, 416]"),
    )
}

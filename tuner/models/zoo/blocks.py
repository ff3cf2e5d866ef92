"""Building blocks shared by the reference architectures: conv + BatchNorm + activation, a
classifier head, parallel branches concatenated, and a residual connection.
"""

from __future__ import annotations

import torch
from torch import nn


def cbr(c_in: int, c_out: int, k: int | tuple[int, int] = 1, s: int = 1,
        p: int | tuple[int, int] = 0, act: str = "relu", groups: int = 1) -> nn.Sequential:
    """Conv (no bias) + BatchNorm + activation, the unit of every network in the zoo."""
    acts = {"relu": nn.ReLU(), "relu6": nn.ReLU6(), "leaky": nn.LeakyReLU(0.1)}
    return nn.Sequential(nn.Conv2d(c_in, c_out, k, s, p, groups=groups, bias=False),
                         nn.BatchNorm2d(c_out, eps=1e-3), acts[act])


class Classifier(nn.Module):
    """features -> global average pool -> fully connected logits."""

    def __init__(self, features: nn.Module, channels: int, classes: int = 1000) -> None:
        super().__init__()
        self.features, self.fc = features, nn.Linear(channels, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(self.features(x), 1), 1))


class Concat(nn.Module):
    """Run branches on one input and concatenate them along channels."""

    def __init__(self, *branches: nn.Module) -> None:
        super().__init__()
        self.branches = nn.ModuleList(branches)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([b(x) for b in self.branches], 1)


class Residual(nn.Module):
    def __init__(self, body: nn.Module, shortcut: nn.Module | None = None, relu: bool = True) -> None:
        super().__init__()
        self.body, self.shortcut = body, shortcut or nn.Identity()
        self.act = nn.ReLU() if relu else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.body(x) + self.shortcut(x))


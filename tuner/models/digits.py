"""digits-cnn: a small CNN trained in-process on scikit-learn's digits (no download).

Input: float32 ``[batch, 1, 8, 8]``, ``load_digits().images / 16.0``. Output: 10 logits.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

SEED = 0
EPOCHS = 40
BATCH = 64
LR = 2e-3
TEST_FRACTION = 0.25


class DigitsCNN(nn.Module):
    """Two 3x3 convolutions and two dense layers; about 30k parameters."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(32 * 4 * 4, 64), nn.ReLU(), nn.Linear(64, 10)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


@dataclass(frozen=True)
class DigitsData:
    """The digits split: images float32 [n, 1, 8, 8] in [0, 1], labels int64 [n]."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def load_data() -> DigitsData:
    """A fixed, stratified train/test split of scikit-learn's digits."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[:, None, :, :]
    y = digits.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = train_test_split(
        x, y, test_size=TEST_FRACTION, random_state=SEED, stratify=y
    )
    return DigitsData(x_tr, y_tr, x_te, y_te)


def train(data: DigitsData) -> DigitsCNN:
    """Train DigitsCNN with Adam; deterministic for a given torch build (about 5 s on 1 core)."""
    torch.manual_seed(SEED)
    gen = torch.Generator().manual_seed(SEED)
    model = DigitsCNN()
    opt = torch.optim.Adam(model.parameters(), lr=LR)
    x = torch.from_numpy(data.x_train)
    y = torch.from_numpy(data.y_train)
    model.train()
    for _ in range(EPOCHS):
        order = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), BATCH):
            idx = order[i : i + BATCH]
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            loss.backward()
            opt.step()
    model.eval()
    return model

"""Target networks of the image tasks: a small ResNet and a small VGG-style net.

Both take ``[n, 1, H, W]`` images (Fashion-MNIST, 2×2 average-pooled to 14×14 by the tasks)
and return 10 logits. They are sized to train on one CPU core in seconds per epoch, not to
match the paper's ResNet-34 / VGG-16; what they keep is the *structure* GNS reads:

* :class:`SmallResNet`: a conv + BN stem, ``stages`` stages of ``blocks`` :class:`BasicBlock`
  each (an ``nn.Sequential`` per stage, so the graph extractor finds ``stages × blocks``
  repeated blocks), global average pooling and a linear head. The first block of every
  stage after the first halves the resolution and has a 1×1 conv + BN shortcut.
* :class:`SmallVGG`: conv-BN-ReLU pairs followed by 2×2 max pooling ("conv-conv-pool"
  stacks), global average pooling and a linear head; it has no repeated module class inside
  a container, so its graph is partitioned layer-wise (input / middle / output block).
"""
from __future__ import annotations

import torch
from torch import nn


class BasicBlock(nn.Module):
    """ResNet basic block (He et al. 2016): two 3×3 conv + BN, identity or 1×1 projection
    shortcut, ReLU after the addition."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut: nn.Module | None = None
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.shortcut is None else self.shortcut(x)
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + identity)


class SmallResNet(nn.Module):
    """Stem, ``len(widths)`` stages of ``blocks`` BasicBlocks, average pool, linear head."""

    def __init__(self, in_channels: int = 1, widths: tuple[int, ...] = (8, 16, 32), blocks: int = 2,
                 num_classes: int = 10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False),
                                  nn.BatchNorm2d(widths[0]), nn.ReLU())
        stages: list[nn.Module] = []
        cin = widths[0]
        for i, w in enumerate(widths):
            layers = [BasicBlock(cin if b == 0 else w, w, stride=2 if (i > 0 and b == 0) else 1) for b in range(blocks)]
            stages.append(nn.Sequential(*layers))
            cin = w
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(widths[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.stages(self.stem(x))), 1))


class SmallVGG(nn.Module):
    """VGG-style: for each width two 3×3 conv-BN-ReLU then 2×2 max pooling; average pool and
    a linear head."""

    def __init__(self, in_channels: int = 1, widths: tuple[int, ...] = (8, 16, 32), num_classes: int = 10):
        super().__init__()
        layers: list[nn.Module] = []
        cin = in_channels
        for w in widths:
            for _ in range(2):
                layers += [nn.Conv2d(cin, w, 3, 1, 1, bias=False), nn.BatchNorm2d(w), nn.ReLU()]
                cin = w
            layers.append(nn.MaxPool2d(2, ceil_mode=True))
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(widths[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))

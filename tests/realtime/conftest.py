"""Realtime fixtures: a small ONNX model that follows the model contract.

A torchvision mobilenet_v2 (the shared ImageNet weights when present, else
random init; the head is random: the tests check the plumbing, not accuracy)
wrapped to output `expression` [N, 8] and `valence_arousal` [N, 2]
(tanh), exported at 96 px with a dynamic batch and the spec written into the
ONNX metadata_props.

With `blendshapes` names the graph takes the contract's optional second input
`blendshapes` [N, B] too: a small branch whose output is zeroed for NaN rows
(faces without blendshapes), added to the logits with weights large enough
that real scores visibly change the outputs.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from affect.blendshapes import MEDIAPIPE_BLENDSHAPES
from affect.spec import INPUT_BLENDSHAPES, INPUT_NAME, OUTPUT_EXPRESSION, OUTPUT_VA, ModelSpec

TEST_INPUT_SIZE = 96
SHARED_WEIGHTS = Path(__file__).resolve().parents[2].parent / "shared" / "weights" / "mobilenet_v2_imagenet.pth"


def export_contract_onnx(path: Path, spec: ModelSpec | None = None, with_metadata: bool = True,
                         blendshapes: list[str] | None = None) -> Path:
    """`blendshapes`: the graph takes them (and the default spec lists them);
    a given `spec` is written as is, so a spec and a graph can disagree."""
    import onnx
    import torch
    from torch import nn
    from torchvision.models import mobilenet_v2

    class Wrapped(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = mobilenet_v2()
            if SHARED_WEIGHTS.exists():
                self.body.load_state_dict(torch.load(SHARED_WEIGHTS, map_location="cpu", weights_only=True))
            # logits of order 1, so different faces give visibly different outputs
            head = nn.Linear(1280, 10)
            nn.init.normal_(head.weight, std=0.05)
            self.body.classifier = nn.Sequential(nn.Dropout(0.2), head)

        def forward(self, x):
            y = self.body(x)
            return y[:, :8], torch.tanh(y[:, 8:10])

    class WithBlendshapes(Wrapped):
        def __init__(self, width: int) -> None:
            super().__init__()
            self.branch = nn.Linear(width, 16)
            self.branch_head = nn.Linear(16, 10)
            nn.init.normal_(self.branch.weight, std=1.0)
            nn.init.normal_(self.branch_head.weight, std=0.5)

        def forward(self, x, b):
            present = ~torch.isnan(b).any(dim=1, keepdim=True)
            clean = torch.where(present, b, torch.zeros_like(b))
            y = self.body(x) + self.branch_head(torch.relu(self.branch(clean))) * present.to(x.dtype)
            return y[:, :8], torch.tanh(y[:, 8:10])

    torch.manual_seed(0)
    dummy = torch.zeros(1, 3, TEST_INPUT_SIZE, TEST_INPUT_SIZE)
    outputs = {OUTPUT_EXPRESSION: {0: "n"}, OUTPUT_VA: {0: "n"}}
    if blendshapes:
        model = WithBlendshapes(len(blendshapes)).eval()
        args, names = (dummy, torch.full((1, len(blendshapes)), 0.5)), [INPUT_NAME, INPUT_BLENDSHAPES]
    else:
        model, args, names = Wrapped().eval(), (dummy,), [INPUT_NAME]
    torch.onnx.export(model, args, str(path), dynamo=False, opset_version=17,
                      input_names=names, output_names=[OUTPUT_EXPRESSION, OUTPUT_VA],
                      dynamic_axes={**{n: {0: "n"} for n in names}, **outputs})
    if with_metadata:
        spec = spec or ModelSpec(input_size=TEST_INPUT_SIZE, mean=[0.5] * 3, std=[0.5] * 3,
                                 backbone="mobilenet_v2", trained_on="random-init test model",
                                 blendshapes=list(blendshapes or []))
        proto = onnx.load(str(path))
        onnx.helper.set_model_props(proto, spec.to_metadata())
        onnx.save(proto, str(path))
    return path


@pytest.fixture(scope="session")
def export_onnx():
    """The exporter itself, for tests that need a variant (no metadata, other spec)."""
    return export_contract_onnx


@pytest.fixture(scope="session")
def onnx_model(tmp_path_factory) -> Path:
    return export_contract_onnx(tmp_path_factory.mktemp("model") / "test_model.onnx")


# A subset in an order of its own, not MediaPipe's: the pipeline must follow the spec's order.
TEST_BLENDSHAPES = [n for n in MEDIAPIPE_BLENDSHAPES if n != "_neutral"][::-1][:40]


@pytest.fixture(scope="session")
def blendshape_onnx_model(tmp_path_factory) -> Path:
    """The test model with the second input `blendshapes` (40 MediaPipe names)."""
    return export_contract_onnx(tmp_path_factory.mktemp("bs_model") / "bs_model.onnx",
                                blendshapes=TEST_BLENDSHAPES)

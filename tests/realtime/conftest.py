"""Realtime fixtures: a small ONNX model that follows the model contract.

A torchvision mobilenet_v2 (the shared ImageNet weights when present, else
random init; the head is random: the tests check the plumbing, not accuracy)
wrapped to output `expression` [N, 8] and `valence_arousal` [N, 2]
(tanh), exported at 96 px with a dynamic batch and the spec written into the
ONNX metadata_props.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from affect.spec import INPUT_NAME, OUTPUT_EXPRESSION, OUTPUT_VA, ModelSpec

TEST_INPUT_SIZE = 96
SHARED_WEIGHTS = Path(__file__).resolve().parents[2].parent / "shared" / "weights" / "mobilenet_v2_imagenet.pth"


def export_contract_onnx(path: Path, spec: ModelSpec | None = None, with_metadata: bool = True) -> Path:
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

    torch.manual_seed(0)
    model = Wrapped().eval()
    dummy = torch.zeros(1, 3, TEST_INPUT_SIZE, TEST_INPUT_SIZE)
    torch.onnx.export(model, dummy, str(path), dynamo=False, opset_version=17,
                      input_names=[INPUT_NAME], output_names=[OUTPUT_EXPRESSION, OUTPUT_VA],
                      dynamic_axes={INPUT_NAME: {0: "n"}, OUTPUT_EXPRESSION: {0: "n"}, OUTPUT_VA: {0: "n"}})
    if with_metadata:
        spec = spec or ModelSpec(input_size=TEST_INPUT_SIZE, mean=[0.5] * 3, std=[0.5] * 3,
                                 backbone="mobilenet_v2", trained_on="random-init test model")
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

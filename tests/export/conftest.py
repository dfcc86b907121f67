"""Small checkpoints for the export tests (random or briefly fitted heads, 64-96 px)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from affect.labels import EXPRESSIONS
from train.checkpoint import model_args, save_checkpoint, spec_for
from train.models import build_model


def make_checkpoint(path: Path, backbone: str, size: int = 64, pretrained: str = "none", hidden: int = 32,
                    num_landmarks: int = 0, au_names: list[str] | None = None, seed: int = 0,
                    blendshapes: list[str] | tuple[str, ...] = (), standardise: bool = False) -> Path:
    torch.manual_seed(seed)
    model = build_model(backbone, pretrained=pretrained, input_size=size, hidden=hidden, dropout=0.1,
                        num_landmarks=num_landmarks, num_aus=len(au_names or []), blendshapes=list(blendshapes),
                        blendshape_standardise=standardise)
    if standardise:
        model.blendshapes.set_statistics(np.random.default_rng(seed).random((40, len(blendshapes)), np.float32) * 0.3)
    spec = spec_for(model.eval(), list(EXPRESSIONS), trained_on="test", au_names=au_names)
    return save_checkpoint(path, model=model, spec=spec, model_args=model_args(model, hidden, 0.1))


@pytest.fixture(scope="session")
def small_onnx(tmp_path_factory, affectnet_root) -> Path:
    """A parity-checked ONNX export of a tiny CNN, shared by the tests that only read it."""
    from export.onnx_export import export_onnx

    d = tmp_path_factory.mktemp("small")
    return export_onnx(make_checkpoint(d / "small.pt", "small_cnn", size=64), d / "small.onnx",
                       parity_data=affectnet_root)


@pytest.fixture(scope="session")
def fitted_mv2(tmp_path_factory, affectnet_root, mobilenet_weights) -> Path:
    """MobileNetV2 (local ImageNet weights) at 96 px whose heads were fitted for a
    moment on 128 AffectNet crops, so its argmaxes mean something."""
    from export.faces import batches, load_faces
    from train.checkpoint import model_from_checkpoint

    d = tmp_path_factory.mktemp("mv2")
    path = make_checkpoint(d / "mv2.pt", "mobilenet_v2", size=96, pretrained=str(mobilenet_weights), hidden=64)
    model, spec, _ = model_from_checkpoint(path)
    faces = load_faces(affectnet_root, limit=128, seed=1)
    with torch.no_grad():  # inference-mode tensors cannot feed the head fit's autograd
        feats = torch.cat([model.backbone(torch.from_numpy(x)) for x in batches(faces, spec, 64)])
    y = torch.from_numpy(np.clip(faces.expression, 0, None))
    heads = [p for n, p in model.named_parameters() if not n.startswith("backbone.")]
    opt = torch.optim.Adam(heads, lr=3e-3)
    for _ in range(150):
        loss = torch.nn.functional.cross_entropy(model.expression(model.neck(feats)), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    return save_checkpoint(path, model=model, spec=spec, model_args=model_args(model, 64, 0.1))


@pytest.fixture(scope="session")
def make_ckpt():
    """`make_checkpoint` as a fixture (test modules here are not importable as a package)."""
    return make_checkpoint

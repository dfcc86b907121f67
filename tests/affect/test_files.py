"""The torch-free helpers every room shares: the cache root, atomic writes, image reading."""

from __future__ import annotations

import stat

import numpy as np
import pytest

from affect.files import PendingFile, atomic_path, atomic_write_json, cache_root
from affect.images import IMAGE_SUFFIXES, UnreadableImage, read_image_file


def test_cache_root_honours_affectcam_cache_then_xdg(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("AFFECTCAM_CACHE", raising=False)
    assert cache_root() == tmp_path / "xdg" / "affectcam"
    monkeypatch.setenv("AFFECTCAM_CACHE", str(tmp_path / "mine"))
    assert cache_root() == tmp_path / "mine"
    assert cache_root("blendshapes") == tmp_path / "mine" / "blendshapes"


def test_every_cache_lives_under_the_one_root(monkeypatch, tmp_path, face_model_path, affectnet_root):
    """The face-model cache, the detector extracted from it and the per-sample
    blendshape table all go under $AFFECTCAM_CACHE (the blendshapes once did not)."""
    pytest.importorskip("torch")
    import affect.face_model as fm
    from affect.datasets.blendshapes import attach_blendshapes
    from affect.datasets.loaders import load_dataset

    root = tmp_path / "cache"
    monkeypatch.setenv("AFFECTCAM_CACHE", str(root))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "elsewhere"))
    monkeypatch.delenv(fm.ENV_VAR, raising=False)
    (root / fm.FACE_MODEL_NAME).parent.mkdir(parents=True)
    (root / fm.FACE_MODEL_NAME).write_bytes(face_model_path.read_bytes())
    bundle = fm.resolve_face_model(download=False)
    assert bundle == root / fm.FACE_MODEL_NAME
    assert fm.detector_model(bundle).parent == root / "detector"
    samples = load_dataset({"type": "affectnet", "root": str(affectnet_root), "limit": 2}).samples
    attach_blendshapes(samples, ["jawOpen", "mouthSmileLeft"], bundle, progress=False)
    assert [p.parent.name for p in root.rglob("blendshapes-*.npz")] == ["blendshapes"]
    assert not (tmp_path / "elsewhere" / "affectcam").exists()  # (matplotlib keeps its own cache there)


def test_atomic_path_replaces_only_on_success(tmp_path):
    target = tmp_path / "sub" / "model.onnx"
    with atomic_path(target) as tmp:
        assert tmp.parent == target.parent and tmp.name.endswith(".partial.onnx")  # suffix last (cv2, numpy)
        tmp.write_bytes(b"first")
    assert target.read_bytes() == b"first"
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("killed mid-write")
    assert target.read_bytes() == b"first"  # what was already written is not lost
    assert sorted(p.name for p in target.parent.iterdir()) == ["model.onnx"]


def test_pending_files_are_unique_and_commit_or_discard(tmp_path):
    a, b = PendingFile(tmp_path / "rec.csv"), PendingFile(tmp_path / "rec.csv")
    assert a.tmp != b.tmp  # two writers of one file never share a temporary
    a.tmp.write_text("a")
    a.commit()
    b.discard()
    assert [p.name for p in tmp_path.iterdir()] == ["rec.csv"] and (tmp_path / "rec.csv").read_text() == "a"
    atomic_write_json(tmp_path / "m.json", {"x": np.float32(0.5), "v": np.arange(2)})
    assert (tmp_path / "m.json").read_text() == '{\n  "x": 0.5,\n  "v": [\n    0,\n    1\n  ]\n}\n'


def test_read_image_file_reads_real_faces_and_names_bad_files(tmp_path, affectnet_root):
    real = next(p for p in sorted((affectnet_root / "images").iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES)
    pixels = read_image_file(real)
    assert pixels.dtype == np.uint8 and pixels.ndim in (2, 3) and pixels.std() > 0
    truncated = tmp_path / "cut.jpg"
    truncated.write_bytes(real.read_bytes()[:300])
    for bad in (truncated, tmp_path / "absent.png"):
        with pytest.raises(UnreadableImage) as info:
            read_image_file(bad)
        assert str(info.value).startswith(f"{bad}: unreadable image") and "\n" not in str(info.value)

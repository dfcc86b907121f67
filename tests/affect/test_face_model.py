from __future__ import annotations

import zipfile

import pytest

import affect.face_model as fm


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """No env var, an empty cache, and a downloader that fails like an offline machine."""
    monkeypatch.delenv(fm.ENV_VAR, raising=False)
    monkeypatch.setenv("AFFECTCAM_CACHE", str(tmp_path / "cache"))

    def no_network(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(fm.urllib.request, "urlopen", no_network)
    return tmp_path / "cache"


def test_offline_without_a_file_says_which_file_goes_where(offline):
    with pytest.raises(fm.FaceModelError) as info:
        fm.resolve_face_model()
    msg = str(info.value)
    assert str(offline / "face_landmarker.task") in msg
    assert fm.FACE_MODEL_URL in msg and "--face-model" in msg and fm.ENV_VAR in msg
    assert "\n" not in msg
    assert not list(offline.glob("*partial*"))  # no half-downloaded file left behind


def test_resolution_order_flag_env_cache(offline, face_model_path, monkeypatch, tmp_path):
    offline.mkdir(parents=True)
    cached = offline / "face_landmarker.task"
    cached.write_bytes(face_model_path.read_bytes())
    assert fm.resolve_face_model() == cached
    monkeypatch.setenv(fm.ENV_VAR, str(face_model_path))
    assert fm.resolve_face_model() == face_model_path
    other = tmp_path / "mine.task"
    other.write_bytes(face_model_path.read_bytes())
    assert fm.resolve_face_model(other) == other


def test_download_checks_the_pinned_sha256(offline, tmp_path, monkeypatch):
    import io

    monkeypatch.setattr(fm.urllib.request, "urlopen", lambda *a, **k: io.BytesIO(b"tampered"))
    with pytest.raises(fm.FaceModelError, match="expected 64184e22"):
        fm.resolve_face_model()
    assert not (offline / "face_landmarker.task").exists()


def test_a_file_that_is_not_a_bundle_is_rejected(tmp_path, offline):
    bad = tmp_path / "face.task"
    bad.write_text("hello")
    with pytest.raises(fm.FaceModelError, match="face.task: not a MediaPipe .task bundle"):
        fm.resolve_face_model(bad)
    with pytest.raises(fm.FaceModelError, match="face model not found"):
        fm.resolve_face_model(tmp_path / "absent.task")


def test_detector_is_extracted_from_the_bundle_once(face_model_path, offline):
    first = fm.detector_model(face_model_path)
    with zipfile.ZipFile(face_model_path) as zf:
        assert first.read_bytes() == zf.read(fm.DETECTOR_MEMBER)
    mtime = first.stat().st_mtime_ns
    assert fm.detector_model(face_model_path) == first and first.stat().st_mtime_ns == mtime

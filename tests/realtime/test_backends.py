from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from affect.preprocess import prepare_batch
from affect.spec import SpecError
from realtime.backends import BackendError, OnnxRuntimeBackend, backend_for_path, create_backend

TEST_INPUT_SIZE = 96  # the conftest model's input size


def test_onnx_backend_reads_spec_and_predicts_contract_outputs(onnx_model):
    with create_backend(onnx_model, threads=1) as backend:
        assert isinstance(backend, OnnxRuntimeBackend)
        assert backend.spec.input_size == TEST_INPUT_SIZE
        assert backend.spec.labels[1] == "Happy"
        crops = [np.full((120, 100, 3), v, np.uint8) for v in (0, 128, 255)]
        out = backend.predict(prepare_batch(crops, backend.spec))
        assert set(out) == {"expression", "valence_arousal"}
        assert out["expression"].shape == (3, 8)
        assert out["valence_arousal"].shape == (3, 2)
        assert np.all(np.abs(out["valence_arousal"]) <= 1)
        # different inputs give different outputs (the batch really went through)
        assert not np.allclose(out["expression"][0], out["expression"][2])
        # one call with a batch equals the calls one by one
        single = backend.predict(prepare_batch(crops[1:2], backend.spec))
        np.testing.assert_allclose(single["expression"][0], out["expression"][1], atol=1e-4)
        empty = backend.predict(prepare_batch([], backend.spec))
        assert empty["expression"].shape == (0, 8)


def test_wrong_batch_shape_is_a_clear_error(onnx_model):
    with create_backend(onnx_model) as backend:
        with pytest.raises(BackendError, match="expected \\[N, 3, 96, 96\\]"):
            backend.predict(np.zeros((1, 3, 64, 64), np.float32))


def test_onnx_without_metadata_is_a_spec_error(tmp_path, export_onnx):
    path = export_onnx(tmp_path / "bare.onnx", with_metadata=False)
    with pytest.raises(SpecError, match="bare.onnx: no affect.\\* metadata"):
        create_backend(path)


def test_wrong_kind_of_file_is_a_one_line_error(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(BackendError, match="unknown model file kind '.txt'"):
        create_backend(text)
    fake = tmp_path / "fake.onnx"
    fake.write_text("this is not a protobuf")
    with pytest.raises(BackendError, match="fake.onnx: not a loadable ONNX model") as info:
        create_backend(fake)
    assert "\n" not in str(info.value)
    with pytest.raises(BackendError, match="model file not found"):
        create_backend(tmp_path / "missing.onnx")


def test_backend_name_must_fit_the_file(onnx_model):
    with pytest.raises(BackendError, match="cannot be run by the torch backend"):
        create_backend(onnx_model, backend="torch")
    with pytest.raises(BackendError, match="unknown backend"):
        create_backend(onnx_model, backend="magic")
    assert backend_for_path("m.engine") == "tensorrt"
    assert backend_for_path("m.pt") == "torch"


def test_backends_for_a_suffix_are_exactly_those_that_load_it(onnx_model):
    from realtime.backends import BACKENDS, backends_for

    usable = backends_for(".onnx")
    assert "onnxruntime" in usable and "ort-cpu" in usable and not {"torch", "tensorrt"} & set(usable)
    for name in BACKENDS:
        if name in usable:
            with create_backend(onnx_model, backend=name, threads=1) as backend:
                assert backend.spec.labels
        else:
            with pytest.raises(BackendError):
                create_backend(onnx_model, backend=name)


def test_unavailable_execution_provider_is_named(onnx_model):
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has CUDA")
    with pytest.raises(BackendError, match="CUDAExecutionProvider"):
        create_backend(onnx_model, backend="ort-cuda")


def test_tensorrt_engine_needs_its_spec_file(tmp_path):
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"\0" * 16)
    with pytest.raises(SpecError, match="m.engine.json: spec file not found"):
        create_backend(engine)


def test_torch_checkpoint_that_is_not_ours_is_rejected(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a zip")
    with pytest.raises(BackendError, match="bad.pt"):
        create_backend(bad)


def test_importing_realtime_does_not_import_torch():
    code = ("import realtime, realtime.cam, realtime.backends, sys; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_batches_larger_than_an_engine_profile_run_in_chunks():
    from realtime.backends import BackendError, batch_chunks

    assert batch_chunks(10, 8) == [(0, 8), (8, 10)]
    assert batch_chunks(8, 8) == [(0, 8)] and batch_chunks(0, 8) == []
    assert [j - i for i, j in batch_chunks(17, 4)] == [4, 4, 4, 4, 1]
    with pytest.raises(BackendError, match="at least 1"):
        batch_chunks(3, 0)

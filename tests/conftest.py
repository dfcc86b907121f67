"""Shared fixtures: where ../shared is, and skips when it is absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("AFFECTCAM_SHARED", REPO.parent / "shared"))


def shared_path(*parts: str) -> Path:
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} not found: these tests need the project's ../shared data")
    return path


@pytest.fixture(scope="session")
def affectnet_root() -> Path:
    return shared_path("data", "affectnet")


@pytest.fixture(scope="session")
def fer2013_root() -> Path:
    return shared_path("data", "fer2013")


@pytest.fixture(scope="session")
def face_model_path() -> Path:
    return shared_path("models", "face_landmarker.task")


@pytest.fixture(scope="session")
def hamilton_clip() -> Path:
    return shared_path("videos", "short_hamilton_clip.mp4")


@pytest.fixture(scope="session")
def mobilenet_weights() -> Path:
    return shared_path("weights", "mobilenet_v2_imagenet.pth")

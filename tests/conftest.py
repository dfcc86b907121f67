"""Shared fixtures: where ../shared is, and skips when it is absent."""

from __future__ import annotations

import os
import socket
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
def ckplus_root() -> Path:
    return shared_path("data", "ckplus")


@pytest.fixture(scope="session")
def face_model_path() -> Path:
    return shared_path("models", "face_landmarker.task")


@pytest.fixture(scope="session")
def hamilton_clip() -> Path:
    return shared_path("videos", "short_hamilton_clip.mp4")


@pytest.fixture(scope="session")
def mobilenet_weights() -> Path:
    return shared_path("weights", "mobilenet_v2_imagenet.pth")


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread_per_worker():
    """pytest-xdist runs one worker per core; more intra-op threads than
    cores makes OpenMP spin-wait and every step an order of magnitude slower."""
    try:
        import torch
    except ImportError:
        return
    torch.set_num_threads(1)


_LOOPBACK = {"127.0.0.1", "::1", "localhost", "0.0.0.0", ""}


@pytest.fixture(autouse=True, scope="session")
def _no_network():
    """No test reaches the network: a lookup or connection to anything but this
    machine fails at once, as offline (the dashboard's own servers stay reachable)."""
    real_connect, real_lookup = socket.socket.connect, socket.getaddrinfo

    def connect(sock, address):
        if sock.family in (socket.AF_INET, socket.AF_INET6) and address[0] not in _LOOPBACK:
            raise OSError(f"tests may not reach the network (connect to {address[0]})")
        return real_connect(sock, address)

    def lookup(host, *args, **kwargs):
        if host not in _LOOPBACK and host is not None:
            raise socket.gaierror(f"tests may not reach the network (lookup of {host})")
        return real_lookup(host, *args, **kwargs)

    socket.socket.connect, socket.getaddrinfo = connect, lookup
    yield
    socket.socket.connect, socket.getaddrinfo = real_connect, real_lookup

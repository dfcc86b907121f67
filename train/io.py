"""Moved to `affect.files` (every room writes files atomically); kept so old imports work."""

from affect.files import atomic_write_bytes, atomic_write_json, atomic_write_text  # noqa: F401

"""Fixtures for the task reader tests: a helper that writes a small file into tmp_path."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest


@pytest.fixture
def write(tmp_path):
    """``write(name, text_or_bytes)`` -> path; ``.gz`` names are gzip-compressed."""

    def _write(name: str, content: str | bytes) -> Path:
        path = tmp_path / name
        data = content.encode("utf-8") if isinstance(content, str) else content
        path.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
        return path

    return _write

"""Helpers for the data tests: small feedback files written to tmp_path (gzipped when the name ends in .gz)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest


@pytest.fixture
def make_file(tmp_path):
    def make(name: str, content: str | bytes | list) -> Path:
        """Write `content` (text, bytes, or a list of objects as JSON lines) to tmp_path/name and return the path."""
        if isinstance(content, list):
            content = "".join(json.dumps(row) + "\n" for row in content)
        data = content.encode("utf-8") if isinstance(content, str) else content
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
        return path

    return make

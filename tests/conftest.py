"""Shared fixtures. The reference material (../shared) is found through XPVAE_SHARED."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    path = Path(os.environ.get("XPVAE_SHARED") or REPO.parent / "shared").resolve()
    if not (path / "README.md").exists():
        pytest.fail(f"reference material not found at {path}; set XPVAE_SHARED")
    return path

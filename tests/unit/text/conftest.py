"""Fixtures for text-aware items: the exported sentence encoder, made once and cached.

The MiniLM export takes ~15 s on two cores, so it lives in pytest's cache directory
(``.pytest_cache/d/nextbehavior-text-encoder``) and is re-exported only when its files no longer
match their checksums.
"""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def text_encoder_dir(request: pytest.FixtureRequest) -> Path:
    from nextbehavior.export.text_encoder import ensure_text_encoder

    path = Path(request.config.cache.mkdir("nextbehavior-text-encoder"))
    ensure_text_encoder(path)
    return path

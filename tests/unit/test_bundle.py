"""Bundle manifest: what makes a bundle unservable is refused with a one-line reason."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import pytest

from nextbehavior.stream.bundle import (
    FORMAT_VERSION,
    MANIFEST_FILE,
    MODEL_FILE,
    PAD_TOKEN,
    BundleError,
    Manifest,
    read_manifest,
    sha256_file,
    write_manifest,
)


def make_bundle(path: Path, **changes: Any) -> Manifest:
    path.mkdir(parents=True, exist_ok=True)
    (path / MODEL_FILE).write_bytes(b"not really onnx, but bytes with a checksum")
    manifest = Manifest(
        model_version="m-1",
        created_at="2024-01-01T00:00:00Z",
        max_len=8,
        top_k=2,
        items=[PAD_TOKEN, "a", "b", "c"],
        event_types=[PAD_TOKEN, "view"],
        onnx_sha256=sha256_file(path / MODEL_FILE),
        metrics={"hit@10": 0.5},
    )
    manifest = replace(manifest, **changes)
    write_manifest(path, manifest)
    return manifest


def patch_manifest(path: Path, **changes: Any) -> None:
    obj = orjson.loads((path / MANIFEST_FILE).read_bytes())
    obj.update(changes)
    (path / MANIFEST_FILE).write_bytes(orjson.dumps(obj))


def test_round_trip(tmp_path: Path) -> None:
    written = make_bundle(tmp_path)
    assert read_manifest(tmp_path) == written
    assert written.format_version == FORMAT_VERSION
    assert not list(tmp_path.glob("*.tmp"))  # written atomically


def test_not_a_directory(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="not a directory"):
        read_manifest(tmp_path / "nope")


@pytest.mark.parametrize("name", [MANIFEST_FILE, MODEL_FILE])
def test_missing_file(tmp_path: Path, name: str) -> None:
    make_bundle(tmp_path)
    (tmp_path / name).unlink()
    with pytest.raises(BundleError, match=f"{name} is missing"):
        read_manifest(tmp_path)


def test_bad_checksum(tmp_path: Path) -> None:
    make_bundle(tmp_path)
    with (tmp_path / MODEL_FILE).open("ab") as fh:
        fh.write(b"tampered")
    with pytest.raises(BundleError, match="checksum"):
        read_manifest(tmp_path)


def test_wrong_format_version(tmp_path: Path) -> None:
    make_bundle(tmp_path)
    patch_manifest(tmp_path, format_version=FORMAT_VERSION + 1)
    with pytest.raises(BundleError, match="format_version"):
        read_manifest(tmp_path)


def test_not_json(tmp_path: Path) -> None:
    make_bundle(tmp_path)
    (tmp_path / MANIFEST_FILE).write_text("{broken")
    with pytest.raises(BundleError, match="not valid JSON"):
        read_manifest(tmp_path)


def test_missing_key(tmp_path: Path) -> None:
    make_bundle(tmp_path)
    obj = orjson.loads((tmp_path / MANIFEST_FILE).read_bytes())
    del obj["items"]
    (tmp_path / MANIFEST_FILE).write_bytes(orjson.dumps(obj))
    with pytest.raises(BundleError, match="lacks items"):
        read_manifest(tmp_path)


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"items": ["a", "b", "c"]}, "padding entry"),
        ({"items": [PAD_TOKEN, "a", "a"]}, "duplicate"),
        ({"event_types": [PAD_TOKEN]}, "at least 2"),
        ({"top_k": 0}, "top_k"),
        ({"top_k": 4}, "top_k"),
        ({"max_len": 0}, "max_len"),
        ({"max_len": "8"}, "max_len"),
    ],
)
def test_bad_manifest_values(tmp_path: Path, changes: dict[str, Any], reason: str) -> None:
    make_bundle(tmp_path)
    patch_manifest(tmp_path, **changes)
    with pytest.raises(BundleError, match=reason):
        read_manifest(tmp_path)


def test_unknown_manifest_keys_are_ignored(tmp_path: Path) -> None:
    written = make_bundle(tmp_path)
    patch_manifest(tmp_path, future_field={"x": 1})
    assert read_manifest(tmp_path) == written

"""The model bundle contract: a directory with ``model.onnx`` and ``manifest.json``.

Written by ``nextbehavior.export``, read by the predictor. JSON and ONNX only: nothing in a
bundle can execute code when loaded.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

import orjson

FORMAT_VERSION: Final = 1
MODEL_FILE: Final = "model.onnx"
MANIFEST_FILE: Final = "manifest.json"
PAD_TOKEN: Final = "[PAD]"
INPUT_NAMES: Final = ("item_ids", "event_types")
OUTPUT_NAMES: Final = ("top_item_ids", "top_item_scores", "event_type_probs")
WEIGHTS_OUTPUT: Final = "history_weights"
"""Optional output (explanations): float32 [batch, seq], a weight per history position."""


class BundleError(ValueError):
    """A bundle that must not be served; the message is a one-line reason."""


@dataclass(frozen=True)
class Manifest:
    """``manifest.json``. ``items[0]`` and ``event_types[0]`` are the padding entry."""

    model_version: str
    created_at: str  # ISO-8601 UTC
    max_len: int
    top_k: int
    items: list[str]
    event_types: list[str]
    onnx_sha256: str
    format_version: int = FORMAT_VERSION
    outputs: list[str] = field(default_factory=lambda: list(OUTPUT_NAMES))
    metrics: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def has_weights(self) -> bool:
        return WEIGHTS_OUTPUT in self.outputs

    def to_json(self) -> bytes:
        return orjson.dumps(asdict(self), option=orjson.OPT_INDENT_2)

    @classmethod
    def from_dict(cls, obj: Any) -> Manifest:
        if not isinstance(obj, dict):
            raise BundleError("manifest.json is not a JSON object")
        required = (
            "format_version",
            "model_version",
            "created_at",
            "max_len",
            "top_k",
            "items",
            "event_types",
            "onnx_sha256",
        )
        missing = [k for k in required if k not in obj]
        if missing:
            raise BundleError(f"manifest.json lacks {', '.join(missing)}")
        if obj["format_version"] != FORMAT_VERSION:
            raise BundleError(
                f"unsupported bundle format_version {obj['format_version']!r} "
                f"(this version reads {FORMAT_VERSION})"
            )
        known = {f for f in cls.__dataclass_fields__}
        kwargs = {k: v for k, v in obj.items() if k in known}
        try:
            manifest = cls(**kwargs)
        except TypeError as exc:
            raise BundleError(f"manifest.json is malformed: {exc}") from None
        _check_vocab("items", manifest.items)
        _check_vocab("event_types", manifest.event_types)
        if not isinstance(manifest.max_len, int) or manifest.max_len < 1:
            raise BundleError("manifest max_len must be a positive integer")
        if not isinstance(manifest.top_k, int) or not 1 <= manifest.top_k < len(manifest.items):
            raise BundleError("manifest top_k must be in [1, number of items)")
        return manifest


def _check_vocab(name: str, vocab: Any) -> None:
    if not isinstance(vocab, list) or len(vocab) < 2 or not all(isinstance(v, str) for v in vocab):
        raise BundleError(f"manifest {name} must be a list of at least 2 strings")
    if vocab[0] != PAD_TOKEN:
        raise BundleError(f"manifest {name}[0] must be the padding entry {PAD_TOKEN!r}")
    if len(set(vocab)) != len(vocab):
        raise BundleError(f"manifest {name} has duplicate entries")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_manifest(bundle_dir: Path) -> Manifest:
    """Read and check ``manifest.json`` and the model checksum; raise :class:`BundleError`."""
    bundle_dir = Path(bundle_dir)
    if not bundle_dir.is_dir():
        raise BundleError(f"bundle {bundle_dir} is not a directory")
    manifest_path = bundle_dir / MANIFEST_FILE
    model_path = bundle_dir / MODEL_FILE
    for path in (manifest_path, model_path):
        if not path.is_file():
            raise BundleError(f"bundle {bundle_dir} is incomplete: {path.name} is missing")
    try:
        obj = orjson.loads(manifest_path.read_bytes())
    except orjson.JSONDecodeError as exc:
        raise BundleError(f"{manifest_path} is not valid JSON: {exc}") from None
    manifest = Manifest.from_dict(obj)
    actual = sha256_file(model_path)
    if actual != manifest.onnx_sha256:
        raise BundleError(
            f"bundle {bundle_dir}: model.onnx checksum {actual[:12]}... does not match the "
            f"manifest's {str(manifest.onnx_sha256)[:12]}... (tampered or half-written)"
        )
    return manifest


def write_manifest(bundle_dir: Path, manifest: Manifest) -> Path:
    """Write ``manifest.json`` atomically (temp file + rename), last, so readers never see half."""
    path = Path(bundle_dir) / MANIFEST_FILE
    tmp = path.with_suffix(".json.tmp")
    tmp.write_bytes(manifest.to_json())
    os.replace(tmp, path)
    return path

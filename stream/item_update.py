"""Add items to a text-aware bundle without retraining, and without torch.

A text-aware model's served item table is ``warm * id_emb + proj(text)``; an item nobody has
interacted with yet has no ID part, so its row is ``text_vector @ W.T + b``. Export stores
``W``, ``b`` in ``item_text.npz`` (checksummed in ``manifest.extra["text"]``); here a new item's
text goes through the same ONNX sentence encoder as at training time, its row is appended to
the item table inside ``model.onnx`` (the graph's initializer and its transposed copy for the
output head, rewritten with the ``onnx`` package), and the manifest gets the new items and a
new ``model_version``. The graph's inputs and outputs stay exactly the bundle contract.

Not supported (refused with the reason): int8 bundles (the output head is quantized) and the
two-stage top-k of very large catalogues (its chunk layout is fixed at export).
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from nextbehavior.stream.bundle import (
    MANIFEST_FILE,
    MODEL_FILE,
    BundleError,
    Manifest,
    read_manifest,
    sha256_file,
    write_manifest,
)
from nextbehavior.stream.catalogue import item_texts, read_items

PROJECTION_FILE: Final = "item_text.npz"
TABLE_INITIALIZER: Final = "model.item_emb.weight"
"""The item table's initializer name in graphs exported from ``export.shim.ScoringShim``."""

log = logging.getLogger(__name__)

F32 = npt.NDArray[np.float32]


def write_projection(
    bundle_dir: Path, weight: F32, bias: F32, text: dict[str, Any], d_model: int
) -> dict[str, Any]:
    """Write ``item_text.npz`` into ``bundle_dir``; return the manifest's ``extra["text"]``."""
    if weight.shape[0] != d_model or bias.shape != (d_model,):
        raise ValueError("projection shape does not match the model width")
    path = Path(bundle_dir) / PROJECTION_FILE
    with path.open("wb") as fh:
        np.savez(fh, weight=weight.astype(np.float32), bias=bias.astype(np.float32))
    return {
        **text,
        "projection_file": PROJECTION_FILE,
        "projection_sha256": sha256_file(path),
        "item_table": TABLE_INITIALIZER,
        "added": [],
    }


def read_projection(bundle_dir: Path, text: dict[str, Any]) -> tuple[F32, F32]:
    """(W (d, text_dim), b (d,)) from the bundle, checked against the manifest checksum."""
    path = Path(bundle_dir) / str(text.get("projection_file", PROJECTION_FILE))
    if not path.is_file():
        raise BundleError(f"bundle {bundle_dir} is incomplete: {path.name} is missing")
    if sha256_file(path) != text.get("projection_sha256"):
        raise BundleError(f"bundle {bundle_dir}: {path.name} does not match its checksum")
    with np.load(path, allow_pickle=False) as npz:
        return npz["weight"].astype(np.float32), npz["bias"].astype(np.float32)


@dataclass(frozen=True)
class AddResult:
    manifest: Manifest
    added: list[str]  # new item ids, in the order appended
    already_known: int  # items in the file the bundle already had (left as they are)


def _text_section(manifest: Manifest) -> dict[str, Any]:
    text = manifest.extra.get("text")
    if not isinstance(text, dict):
        raise BundleError(
            "the bundle has no text-aware item table: train with `--items`, then export"
        )
    if manifest.extra.get("variant") == "int8":
        raise BundleError("items cannot be added to an int8 bundle: export fp32 or fp16")
    if manifest.extra.get("two_stage_topk_chunk"):
        raise BundleError(
            "items cannot be added to a bundle with the two-stage top-k of large catalogues "
            "(its chunk layout is fixed at export): re-export after retraining"
        )
    return text


def append_rows(model: Any, rows: F32, table_name: str) -> int:
    """Append ``rows`` (n, d) to the item table initializer ``table_name`` of the ONNX
    ``model`` and to every initializer that is its transpose; returns the new item count."""
    from onnx import numpy_helper

    inits = {init.name: init for init in model.graph.initializer}
    if table_name not in inits:
        raise BundleError(f"model.onnx has no item table initializer {table_name!r}")
    table = numpy_helper.to_array(inits[table_name])  # (V, d)
    if table.ndim != 2 or table.shape[1] != rows.shape[1]:
        raise BundleError(f"item table is {table.shape}, new rows are {rows.shape}")
    new_rows = rows.astype(table.dtype)
    replaced = 0
    for init in list(model.graph.initializer):
        array = numpy_helper.to_array(init)
        if init.name == table_name:
            updated = np.concatenate([array, new_rows], axis=0)
        elif array.shape == table.T.shape and np.array_equal(array, table.T):
            updated = np.ascontiguousarray(np.concatenate([array, new_rows.T], axis=1))
        else:
            continue
        init.CopyFrom(numpy_helper.from_array(updated, init.name))
        replaced += 1
    if replaced < 2:
        log.warning("item table found %d time(s) in the graph (expected input + output)", replaced)
    # Shape annotations of intermediate values may carry the old item count: drop them all
    # (optional metadata; ONNX Runtime infers shapes itself).
    del model.graph.value_info[:]
    return int(table.shape[0] + rows.shape[0])


def add_items(
    bundle_dir: Path,
    items_path: Path,
    encoder_dir: Path,
    *,
    out_dir: Path | None = None,
    text_fields: Sequence[str] | None = None,
    items_format: str = "auto",
    id_field: str | None = None,
) -> AddResult:
    """Add the items of ``items_path`` that ``bundle_dir`` lacks; write the bundle to ``out_dir``
    (default: in place, model first and manifest last). Raises :class:`BundleError`."""
    import onnx

    from nextbehavior.stream.text_encoder import TextEncoder

    bundle_dir = Path(bundle_dir)
    out = Path(out_dir) if out_dir is not None else bundle_dir
    manifest = read_manifest(bundle_dir)
    text = _text_section(manifest)
    weight, bias = read_projection(bundle_dir, text)
    encoder = TextEncoder(encoder_dir)
    _check_encoder(encoder.info.describe(), text.get("encoder", {}), weight.shape[1])
    catalogue = read_items(items_path, items_format, id_field)
    fields = list(text_fields) if text_fields else text.get("text_fields")
    texts = item_texts(catalogue, fields)
    known = set(manifest.items)
    new = [i for i in texts if i not in known]
    if not new:
        log.info("all %d items of %s are already in the bundle", len(texts), items_path)
        return AddResult(manifest, [], len(texts))
    rows = encoder.encode([texts[i] for i in new]) @ weight.T + bias  # (n, d)
    model = onnx.load(str(bundle_dir / MODEL_FILE))
    n_items = append_rows(model, rows.astype(np.float32), str(text.get("item_table")))
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / (MODEL_FILE + ".tmp")
    onnx.save(model, str(tmp))
    onnx.checker.check_model(str(tmp))
    if out.resolve() != bundle_dir.resolve():
        for path in bundle_dir.iterdir():
            if path.is_file() and path.name not in (MODEL_FILE, MANIFEST_FILE):
                shutil.copy2(path, out / path.name)
    sha = sha256_file(tmp)
    created = datetime.now(UTC).replace(microsecond=0)
    created_at = created.isoformat().replace("+00:00", "Z")
    added_entry = {
        "at": created_at,
        "n": len(new),
        "from": str(items_path),
        "parent_model_version": manifest.model_version,
    }
    new_text = {**text, "text_fields": fields, "added": [*text.get("added", []), added_entry]}
    new_manifest = replace(
        manifest,
        model_version=f"{created.strftime('%Y%m%dT%H%M%SZ')}-{sha[:8]}",
        created_at=created_at,
        items=[*manifest.items, *new],
        onnx_sha256=sha,
        extra={**manifest.extra, "text": new_text},
    )
    if len(new_manifest.items) != n_items:
        raise BundleError(f"item table has {n_items} rows, the manifest {len(new_manifest.items)}")
    # Readers never pair an old manifest with a new model: remove it, move the model, write it.
    (out / MANIFEST_FILE).unlink(missing_ok=True)
    os.replace(tmp, out / MODEL_FILE)
    write_manifest(out, new_manifest)
    log.info("added %d items to %s (model_version %s)", len(new), out, new_manifest.model_version)
    return AddResult(new_manifest, new, len(texts) - len(new))


def _check_encoder(have: dict[str, Any], want: dict[str, Any], text_dim: int) -> None:
    if have.get("name") != want.get("name") or have.get("dim") != text_dim:
        raise BundleError(
            f"text encoder {have.get('name')} (dim {have.get('dim')}) is not the one the model "
            f"was trained with: {want.get('name')} (dim {text_dim})"
        )
    if have.get("onnx_sha256") != want.get("onnx_sha256"):
        log.warning(
            "text encoder export differs from training's (same model %s): vectors may differ "
            "in the last float digits",
            have.get("name"),
        )

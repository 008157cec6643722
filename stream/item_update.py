"""Add items to a text-aware bundle without retraining, and without torch.

A text-aware model's served item table is ``warm * id_emb + proj(text) + ...``; an item nobody
has interacted with yet has no ID part, so its row comes from its text alone (:func:`cold_rows`,
the numpy mirror of ``model.text_items.TextItemTable``), its logit gets the calibrated offset of
text-only rows (``item_bias``) and histories skip it (``item_readable`` 0), as for the model's
own text-only items: serving an added item is what evaluation measured for cold items.
Export stores what that needs in ``item_text.npz`` (checksummed in
``manifest.extra["text"]``); here a new item's
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
BIAS_INITIALIZER: Final = "model.item_bias"
"""(V,) logit offset per item (text-only rows: the calibrated ``cold_bias``; warm rows: 0)."""
READABLE_INITIALIZER: Final = "model.item_readable"
"""(V,) 1 = the item is read in histories (warm), 0 = dropped from them (text-only)."""

log = logging.getLogger(__name__)

F32 = npt.NDArray[np.float32]


def write_item_side(
    bundle_dir: Path, arrays: dict[str, npt.NDArray[Any]], text: dict[str, Any]
) -> dict[str, Any]:
    """Write ``item_text.npz`` (what a new item's row is computed from, see :func:`cold_rows`)
    into ``bundle_dir``; return the manifest's ``extra["text"]``."""
    missing = {"weight", "bias"} - set(arrays)
    if missing:
        raise ValueError(f"item side arrays lack {sorted(missing)}")
    path = Path(bundle_dir) / PROJECTION_FILE
    with path.open("wb") as fh:
        np.savez(fh, allow_pickle=False, **arrays)
    return {
        **text,
        "projection_file": PROJECTION_FILE,
        "projection_sha256": sha256_file(path),
        "item_table": TABLE_INITIALIZER,
        "item_bias": BIAS_INITIALIZER,
        "item_readable": READABLE_INITIALIZER,
        "added": [],
    }


def read_item_side(bundle_dir: Path, text: dict[str, Any]) -> dict[str, npt.NDArray[Any]]:
    """The arrays of ``item_text.npz``, checked against the manifest checksum (no pickle)."""
    path = Path(bundle_dir) / str(text.get("projection_file", PROJECTION_FILE))
    if not path.is_file():
        raise BundleError(f"bundle {bundle_dir} is incomplete: {path.name} is missing")
    if sha256_file(path) != text.get("projection_sha256"):
        raise BundleError(f"bundle {bundle_dir}: {path.name} does not match its checksum")
    with np.load(path, allow_pickle=False) as npz:
        return {name: npz[name] for name in npz.files}


def cold_rows(arrays: dict[str, npt.NDArray[Any]], vectors: F32) -> F32:
    """Item-table rows (n, d) of items known by their text vectors (n, text_dim) alone: the
    numpy mirror of ``TextItemTable`` for an item without an ID embedding. ``weight``/``bias``
    project the text (bias includes the cold offset); with ``pool`` (warm item indices),
    ``keys`` (their text vectors) and ``id_emb`` (their ID embeddings), the row also borrows
    the ID embeddings of its ``k`` most text-similar warm items, softmax(cos / temp)-weighted."""
    rows = vectors @ arrays["weight"].T + arrays["bias"]  # (n, d)
    if "pool" in arrays and len(vectors):
        k = int(arrays["k"])
        idx, cos = nearest(vectors, arrays["keys"], k)  # (n, k)
        z = cos / np.exp(float(arrays["log_temp"]))
        w = np.exp(z - z.max(axis=1, keepdims=True))
        w /= w.sum(axis=1, keepdims=True)
        rows = rows + float(arrays["scale"]) * (w[..., None] * arrays["id_emb"][idx]).sum(1)
    if "cold_scale" in arrays:  # calibrated after training (bundles before it: 1)
        rows = rows * float(arrays["cold_scale"])
    return np.asarray(rows, dtype=np.float32)


def nearest(
    queries: F32, keys: F32, k: int, *, skip: npt.NDArray[np.int64] | None = None
) -> tuple[npt.NDArray[np.int64], F32]:
    """Top-``k`` cosine neighbours of each query among ``keys`` (both L2-normalized or zero)
    -> (key indices (Q, k), cosines (Q, k)), best first. ``skip[j]`` = the query index that is
    key ``j`` (a query is never its own neighbour). Chunks of 1024 queries bound the memory."""
    idx = np.zeros((len(queries), k), dtype=np.int64)
    cos = np.zeros((len(queries), k), dtype=np.float32)
    for lo in range(0, len(queries), 1024):
        sim = queries[lo : lo + 1024] @ keys.T  # (q, P)
        if skip is not None:
            rows = skip - lo
            inside = (rows >= 0) & (rows < len(sim))
            sim[rows[inside], np.flatnonzero(inside)] = -np.inf
        top = np.argpartition(-sim, k - 1, axis=1)[:, :k]  # (q, k) unordered
        order = np.argsort(-np.take_along_axis(sim, top, axis=1), axis=1, kind="stable")
        idx[lo : lo + len(sim)] = np.take_along_axis(top, order, axis=1)
        cos[lo : lo + len(sim)] = np.take_along_axis(sim, idx[lo : lo + len(sim)], axis=1)
    return idx, cos


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
    ``model`` and to any initializer that is its transpose (a constant-folded output head);
    returns the new item count."""
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
    log.debug("item table rewritten in %d initializer(s)", replaced)
    # Shape annotations of intermediate values may carry the old item count: drop them all
    # (optional metadata; ONNX Runtime infers shapes itself).
    del model.graph.value_info[:]
    return int(table.shape[0] + rows.shape[0])


def append_values(model: Any, name: str, values: F32) -> None:
    """Append ``values`` (n,) to the 1-D initializer ``name`` of the ONNX ``model``."""
    from onnx import numpy_helper

    for init in model.graph.initializer:
        if init.name == name:
            array = numpy_helper.to_array(init)
            updated = np.concatenate([array, values.astype(array.dtype)])
            init.CopyFrom(numpy_helper.from_array(updated, name))
            return
    raise BundleError(f"model.onnx has no initializer {name!r}")


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
    arrays = read_item_side(bundle_dir, text)
    encoder = TextEncoder(encoder_dir)
    _check_encoder(encoder.info.describe(), text.get("encoder", {}), arrays["weight"].shape[1])
    catalogue = read_items(items_path, items_format, id_field)
    fields = list(text_fields) if text_fields else text.get("text_fields")
    texts = item_texts(catalogue, fields)
    known = set(manifest.items)
    new = [i for i in texts if i not in known]
    if not new:
        log.info("all %d items of %s are already in the bundle", len(texts), items_path)
        return AddResult(manifest, [], len(texts))
    rows = cold_rows(arrays, encoder.encode([texts[i] for i in new]))  # (n, d)
    model = onnx.load(str(bundle_dir / MODEL_FILE))
    n_items = append_rows(model, rows.astype(np.float32), str(text.get("item_table")))
    if "item_bias" in text:  # new rows get the calibrated text-only treatment
        cold_bias = float(arrays["cold_bias"]) if "cold_bias" in arrays else 0.0
        append_values(model, str(text["item_bias"]), np.full(len(new), cold_bias, np.float32))
        append_values(model, str(text["item_readable"]), np.zeros(len(new), np.float32))
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

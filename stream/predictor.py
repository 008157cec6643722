"""Serve a model bundle with ONNX Runtime: load, check, warm up, predict batches. No torch.

One :class:`Predictor` per process. ONNX Runtime's ``InferenceSession.run`` is thread-safe and
everything else here is read-only after ``__init__``, so one predictor may serve many threads.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from nextbehavior.stream.bundle import (
    INPUT_NAMES,
    MODEL_FILE,
    OUTPUT_NAMES,
    WEIGHTS_OUTPUT,
    BundleError,
    Manifest,
    read_manifest,
)
from nextbehavior.stream.history import Step, encode_steps

log = logging.getLogger(__name__)

_ORT_LOAD_ERRORS: tuple[type[Exception], ...] = (
    ort.capi.onnxruntime_pybind11_state.Fail,
    ort.capi.onnxruntime_pybind11_state.InvalidGraph,
    ort.capi.onnxruntime_pybind11_state.InvalidProtobuf,
    ort.capi.onnxruntime_pybind11_state.NoSuchFile,
    ort.capi.onnxruntime_pybind11_state.NotImplemented,
    RuntimeError,
)

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float32]

_TYPES = {
    "item_ids": "tensor(int64)",
    "event_types": "tensor(int64)",
    "top_item_ids": "tensor(int64)",
    "top_item_scores": "tensor(float)",
    "event_type_probs": "tensor(float)",
    WEIGHTS_OUTPUT: "tensor(float)",
}


@dataclass(frozen=True, slots=True)
class BatchOutput:
    """One batch of predictions; row r answers history r. Ids index the manifest's vocabularies."""

    top_ids: IntArray  # (B, k) item indices, best first; never 0 (padding)
    top_scores: FloatArray  # (B, k) softmax probabilities over the catalogue, descending
    type_probs: FloatArray  # (B, n_types) next behavior type; column 0 (padding) is 0
    weights: FloatArray | None  # (B, W) attention from the newest event (None: bundle has none)


def check_contract(session: ort.InferenceSession, manifest: Manifest) -> None:
    """Raise :class:`BundleError` unless the graph's inputs/outputs are the bundle contract's."""
    inputs = {i.name: i for i in session.get_inputs()}
    outputs = {o.name: o for o in session.get_outputs()}
    if set(inputs) != set(INPUT_NAMES):
        raise BundleError(
            f"model inputs are {sorted(inputs)}, the contract wants {list(INPUT_NAMES)}"
        )
    wanted = [*OUTPUT_NAMES, *([WEIGHTS_OUTPUT] if manifest.has_weights else [])]
    missing = [n for n in wanted if n not in outputs]
    if missing:
        raise BundleError(f"model lacks the output(s) {missing} (it has {sorted(outputs)})")
    for name, arg in [*inputs.items(), *((n, outputs[n]) for n in wanted)]:
        if arg.type != _TYPES[name]:
            raise BundleError(f"model {name} is {arg.type}, the contract wants {_TYPES[name]}")
        if len(arg.shape) != 2:
            raise BundleError(f"model {name} has rank {len(arg.shape)}, the contract wants 2")
    expected_cols = {
        "top_item_ids": manifest.top_k,
        "top_item_scores": manifest.top_k,
        "event_type_probs": len(manifest.event_types),
    }
    for name, cols in expected_cols.items():
        dim = outputs[name].shape[1]
        if isinstance(dim, int) and dim != cols:
            raise BundleError(f"model {name} has {dim} columns, the manifest implies {cols}")


def choose_providers(wanted: Sequence[str]) -> list[str]:
    """The wanted providers that this onnxruntime build offers, in order; error if none."""
    available = ort.get_available_providers()
    chosen = [p for p in wanted if p in available]
    skipped = [p for p in wanted if p not in available]
    if skipped:
        log.info("providers not available in this onnxruntime build, skipped: %s", skipped)
    if not chosen:
        raise BundleError(f"none of the providers {list(wanted)} is available ({available})")
    return chosen


class Predictor:
    """A loaded, checked and warmed-up bundle. See the module docstring for thread-safety."""

    def __init__(
        self,
        bundle_dir: Path | str,
        providers: Sequence[str] | None = None,
        intra_op_threads: int = 1,
    ) -> None:
        """Load ``bundle_dir``; ``providers`` default to ``Settings.providers`` (NBP_PROVIDERS).

        Raises :class:`BundleError` with a one-line reason for a bundle that must not be served.
        """
        if providers is None:
            from nextbehavior.stream.settings import get_settings

            providers = get_settings().providers
        self.bundle_dir = Path(bundle_dir)
        self.manifest = read_manifest(self.bundle_dir)
        # Raw id -> vocabulary index ("[PAD]" -> 0, as in the manifest's lists).
        self.item_index = {v: i for i, v in enumerate(self.manifest.items)}
        self.type_index = {v: i for i, v in enumerate(self.manifest.event_types)}
        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_op_threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "0")
        wanted = choose_providers(providers)
        try:
            self.session = ort.InferenceSession(
                str(self.bundle_dir / MODEL_FILE), options, providers=wanted
            )
        except _ORT_LOAD_ERRORS as exc:
            raise BundleError(f"ONNX Runtime cannot load {self.bundle_dir}: {exc}") from None
        check_contract(self.session, self.manifest)
        self.provider: str = self.session.get_providers()[0]
        if self.provider != wanted[0]:
            log.warning("asked for %s but the session runs on %s", wanted[0], self.provider)
        self._outputs = [*OUTPUT_NAMES, *([WEIGHTS_OUTPUT] if self.manifest.has_weights else [])]
        self._warm_up()
        log.info(
            "loaded bundle %s (model_version=%s, %d items, top_k=%d) on %s, %d intra-op thread(s)",
            self.bundle_dir,
            self.manifest.model_version,
            len(self.manifest.items) - 1,
            self.manifest.top_k,
            self.provider,
            intra_op_threads,
        )

    @property
    def max_len(self) -> int:
        return self.manifest.max_len

    def _warm_up(self) -> None:
        """Run an all-padding and a full-length row once; check the answer's shape and range."""
        n = self.max_len
        items = np.zeros((2, n), dtype=np.int64)
        items[1] = np.arange(n) % (len(self.manifest.items) - 1) + 1
        out = self.predict(items, np.zeros_like(items))
        k, n_types = self.manifest.top_k, len(self.manifest.event_types)
        if out.top_ids.shape != (2, k) or out.type_probs.shape != (2, n_types):
            raise BundleError(
                f"model answers {out.top_ids.shape} ids / {out.type_probs.shape} type probs, "
                f"the manifest implies (2, {k}) / (2, {n_types})"
            )
        if out.top_ids.min() < 1 or out.top_ids.max() >= len(self.manifest.items):
            raise BundleError("model answers item ids outside the manifest's items")

    def predict(self, item_ids: Any, event_types: Any) -> BatchOutput:
        """Score encoded histories: int64 (B, W), left-padded, newest last (``history.encode``).

        Columns beyond ``max_len`` (the oldest) are dropped; an empty batch gives empty arrays.
        """
        items = np.ascontiguousarray(item_ids, dtype=np.int64)
        types = np.ascontiguousarray(event_types, dtype=np.int64)
        if items.ndim != 2 or items.shape != types.shape:
            raise ValueError(f"item_ids {items.shape} and event_types {types.shape} must be (B, W)")
        if items.shape[1] > self.max_len:
            items = np.ascontiguousarray(items[:, -self.max_len :])
            types = np.ascontiguousarray(types[:, -self.max_len :])
        if items.shape[1] == 0:
            items = np.zeros((items.shape[0], 1), dtype=np.int64)
            types = np.zeros_like(items)
        if items.shape[0] == 0:
            return self._empty(items.shape[1])
        result = self.session.run(self._outputs, {INPUT_NAMES[0]: items, INPUT_NAMES[1]: types})
        return BatchOutput(
            top_ids=result[0],
            top_scores=result[1],
            type_probs=result[2],
            weights=result[3] if len(result) > 3 else None,
        )

    def predict_histories(self, histories: Sequence[Sequence[Step]]) -> BatchOutput:
        """Score state histories in one call, padded to the longest (known) one, at most max_len.

        Positions count from the newest event, so the padded width does not change any answer.
        Unknown items are skipped and unknown behavior types become 0, as in ``history.encode``.
        """
        items, types = encode_steps(histories, self.item_index, self.type_index, self.max_len)
        filled = np.flatnonzero(items.any(axis=0))
        start = int(filled[0]) if filled.size else self.max_len - 1
        return self.predict(items[:, start:], types[:, start:])

    def _empty(self, width: int) -> BatchOutput:
        k, n_types = self.manifest.top_k, len(self.manifest.event_types)
        return BatchOutput(
            top_ids=np.zeros((0, k), dtype=np.int64),
            top_scores=np.zeros((0, k), dtype=np.float32),
            type_probs=np.zeros((0, n_types), dtype=np.float32),
            weights=np.zeros((0, width), dtype=np.float32) if self.manifest.has_weights else None,
        )

    def items_of(self, ids: IntArray) -> list[str]:
        """Raw item ids for a row of vocabulary indices."""
        return [self.manifest.items[int(i)] for i in ids]

    def types_of(self, probs: FloatArray) -> Mapping[str, float]:
        """``{event_type: probability}`` for one row of ``type_probs``, padding left out."""
        names = self.manifest.event_types
        return {names[i]: float(p) for i, p in enumerate(probs) if i > 0}

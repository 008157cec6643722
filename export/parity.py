"""Parity: the exported graph (ONNX Runtime) predicts what the PyTorch model predicts.

The reference is ``BehaviorTransformer.forward`` itself (full last-position logits, padding
masked, softmax, ``torch.topk``), not the shim, so the check covers the shim and the export.

Tolerances (fp32 graph vs fp32 eager, both on CPU). Both run the same arithmetic in different
orders (blocked GEMMs, fused LayerNorm/GELU kernels), so logits differ by a few float32 ulps
amplified through the layers: about 1e-6 measured on logits of magnitude ~10 (ONNX.md: <= 1.5e-6).
A probability ``p = exp(l - lse)`` then moves by at most ``p * 2 * max|dl|``, so we require
``|p_onnx - p_torch| <= RTOL * p_torch + ATOL`` with ``RTOL = 1e-4`` (50x the worst measured
logit error, still far below any score difference that matters) and ``ATOL = 1e-6`` for
near-zero probabilities. The same bound applies to behavior-type probabilities and to the
history weights (normalized mixing rows chained over the blocks, as sensitive to float order
as a softmax).
Top-k ids must be the same. Two items whose probabilities are within that tolerance are a tie
that either side may order either way, so a differing id at rank r is accepted only when, in the
torch model's own probabilities, the ONNX choice scores within tolerance of torch's r-th score.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import torch

from nextbehavior.model.attribution import history_weights
from nextbehavior.model.transformer import BehaviorTransformer
from nextbehavior.stream.bundle import INPUT_NAMES, OUTPUT_NAMES, WEIGHTS_OUTPUT

RTOL: Final = 1e-4
ATOL: Final = 1e-6

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float32]


@dataclass
class ParityReport:
    """Outcome of :func:`verify_parity`; ``ok`` is False with ``failures`` naming each case."""

    cases: int = 0
    rows: int = 0
    rows_ids_identical: int = 0
    max_score_diff: float = 0.0
    max_type_diff: float = 0.0
    max_weight_diff: float = 0.0
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok, "rtol": RTOL, "atol": ATOL}


def _rows(
    rng: np.random.Generator, lengths: list[int], width: int, n_items: int, n_types: int
) -> tuple[IntArray, IntArray]:
    """Random histories of the given lengths, left-padded to ``width``."""
    items = np.zeros((len(lengths), width), dtype=np.int64)
    types = np.zeros((len(lengths), width), dtype=np.int64)
    for r, n in enumerate(lengths):
        if n:
            items[r, width - n :] = rng.integers(1, n_items, n)
            types[r, width - n :] = rng.integers(0, n_types, n)  # 0 = unknown type
    return items, types


def random_histories(
    max_len: int, n_items: int, n_types: int, rows: int = 256, seed: int = 1
) -> tuple[IntArray, IntArray]:
    """``rows`` random histories of random lengths 1..max_len (seeded), width max_len."""
    rng = np.random.default_rng(seed)
    return _rows(rng, rng.integers(1, max_len + 1, rows).tolist(), max_len, n_items, n_types)


def parity_cases(
    max_len: int, n_items: int, n_types: int, *, seed: int = 0, n_random: int = 32
) -> list[tuple[str, IntArray, IntArray]]:
    """Named ``(case, item_ids, event_types)`` batches: random histories plus the edge cases.

    Edge cases: an all-padding row, a single-event row (also at width 1), a full-length row,
    each alone (batch 1) and all together with random rows (batch > 1).
    """
    rng = np.random.default_rng(seed)
    lengths = [0, 1, max_len, *rng.integers(0, max_len + 1, n_random).tolist()]
    narrow = min(5, max_len)
    specs = [
        ("all-padding, batch 1", [0], max_len),
        ("single event, batch 1", [1], max_len),
        ("single event, width 1", [1], 1),
        ("full length, batch 1", [max_len], max_len),
        ("mixed, batch > 1", lengths, max_len),
        ("mixed, narrower width", [min(n, narrow) for n in lengths], narrow),
    ]
    return [(name, *_rows(rng, ls, w, n_items, n_types)) for name, ls, w in specs]


def torch_reference(
    model: BehaviorTransformer, items: IntArray, types: IntArray
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Torch's answer on the full-sequence path: item probabilities (B, V) and type
    probabilities (B, n_types), padding masked, and the history weights (B, T) of
    :func:`~nextbehavior.model.attribution.history_weights` (every block, every query)."""
    with torch.no_grad():
        item_t, type_t = torch.from_numpy(items), torch.from_numpy(types)
        logits, type_logits, _ = model.eval()(item_t, type_t)
        weights = history_weights(model, item_t, type_t).float()  # (B, T)
    logits, type_logits = logits.float(), type_logits.float()
    logits[:, 0] = float("-inf")
    type_logits[:, 0] = float("-inf")
    return logits.softmax(1).numpy(), type_logits.softmax(1).numpy(), weights.numpy()


def _close(a: npt.NDArray[Any], ref: npt.NDArray[Any]) -> npt.NDArray[np.bool_]:
    return np.abs(a - ref) <= RTOL * np.abs(ref) + ATOL  # type: ignore[no-any-return]


def compare(
    probs: FloatArray, type_probs: FloatArray, outputs: list[npt.NDArray[Any]], case: str
) -> tuple[list[str], int, float, float]:
    """Check one batch's ONNX outputs against torch probabilities; returns failures and stats."""
    ids, scores, types = outputs[0], outputs[1], outputs[2]
    k = ids.shape[1]
    order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    ref_ids = order
    ref_scores = np.take_along_axis(probs, order, axis=1)
    failures: list[str] = []
    identical = int(np.sum(np.all(ids == ref_ids, axis=1)))
    chosen = np.take_along_axis(probs, np.clip(ids, 0, probs.shape[1] - 1), axis=1)
    if np.any(ids <= 0) or np.any(ids >= probs.shape[1]):
        failures.append(f"{case}: top ids out of range (padding or past the catalogue)")
    elif not np.all(_close(chosen, ref_scores)):
        failures.append(f"{case}: top-k ids differ beyond ties")
    if np.any(np.apply_along_axis(lambda r: len(set(r.tolist())) != len(r), 1, ids)):
        failures.append(f"{case}: duplicate ids in a row")
    if not np.all(_close(scores, chosen)):
        failures.append(f"{case}: scores differ beyond tolerance")
    if np.any(np.diff(scores, axis=1) > 0):
        failures.append(f"{case}: scores are not in descending order")
    if not np.all(_close(types, type_probs)):
        failures.append(f"{case}: behavior-type probabilities differ beyond tolerance")
    score_diff = float(np.max(np.abs(scores - chosen))) if scores.size else 0.0
    type_diff = float(np.max(np.abs(types - type_probs))) if types.size else 0.0
    return failures, identical, score_diff, type_diff


def verify_parity(
    model: BehaviorTransformer, onnx_path: Path, *, seed: int = 0, n_random: int = 32
) -> ParityReport:
    """Run every :func:`parity_cases` batch through torch and ONNX Runtime (CPU) and compare."""
    import onnxruntime as ort

    cfg = model.cfg
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    report = ParityReport()
    for case, items, types in parity_cases(
        cfg.max_len, cfg.n_items, cfg.n_event_types, seed=seed, n_random=n_random
    ):
        outputs = session.run(None, dict(zip(INPUT_NAMES, (items, types), strict=True)))
        by_name = dict(zip(names, outputs, strict=True))
        probs, type_probs, ref_w = torch_reference(model, items, types)
        failures, identical, s_diff, t_diff = compare(
            probs, type_probs, [by_name[n] for n in OUTPUT_NAMES], case
        )
        if WEIGHTS_OUTPUT in by_name:
            got = by_name[WEIGHTS_OUTPUT]
            report.max_weight_diff = max(report.max_weight_diff, float(np.max(np.abs(got - ref_w))))
            if not np.all(_close(got, ref_w)):
                failures.append(f"{case}: history weights differ beyond tolerance")
        report.cases += 1
        report.rows += items.shape[0]
        report.rows_ids_identical += identical
        report.max_score_diff = max(report.max_score_diff, s_diff)
        report.max_type_diff = max(report.max_type_diff, t_diff)
        report.failures.extend(failures)
    return report


def top_k_agreement(
    reference: Path, candidate: Path, items: IntArray, types: IntArray, k: int = 10
) -> float:
    """Mean overlap of the two graphs' top-``k`` id sets (1.0 = identical sets on every row)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    feeds = dict(zip(INPUT_NAMES, (items, types), strict=True))
    ids = [
        ort.InferenceSession(str(p), options, providers=["CPUExecutionProvider"]).run(
            [OUTPUT_NAMES[0]], feeds
        )[0][:, :k]
        for p in (reference, candidate)
    ]
    overlap = [len(set(a.tolist()) & set(b.tolist())) / k for a, b in zip(*ids, strict=True)]
    return float(np.mean(overlap))

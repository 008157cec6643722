"""Trained model -> ``model.onnx`` (dynamo exporter, opset 20, dynamic batch and sequence axes)."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import onnx
import torch
from onnx import numpy_helper

from nextbehavior.export.shim import ScoringShim, default_chunk
from nextbehavior.model.transformer import BehaviorTransformer
from nextbehavior.stream.bundle import INPUT_NAMES, OUTPUT_NAMES, WEIGHTS_OUTPUT
from nextbehavior.stream.item_update import READABLE_INITIALIZER

log = logging.getLogger(__name__)

OPSET: Final = 20
MAX_BATCH: Final = 1 << 20
GRAPH_OUTPUTS: Final = (*OUTPUT_NAMES, WEIGHTS_OUTPUT)


def example_inputs(max_len: int, n_items: int, n_types: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch of 2 full-width rows (one padded) to trace with: batch >= 2 keeps the axis free."""
    gen = torch.Generator().manual_seed(0)
    items = torch.randint(1, n_items, (2, max_len), generator=gen)  # (2, T)
    types = torch.randint(1, n_types, (2, max_len), generator=gen)  # (2, T)
    half = max_len // 2
    items[1, :half] = 0
    types[1, :half] = 0
    return items, types


def name_initializer(path: Path, value: npt.NDArray[Any], name: str) -> None:
    """Give the one initializer of the graph at ``path`` that holds exactly ``value`` the name
    ``name`` (the exporter names lifted constants ``val_N``; a stable name lets tools find it)."""
    model = onnx.load(str(path))
    found = [
        init
        for init in model.graph.initializer
        if tuple(init.dims) == value.shape
        and np.array_equal(numpy_helper.to_array(init), value.astype(bool))
    ]
    if len(found) != 1:
        raise RuntimeError(f"{path}: expected one initializer holding {name}, got {len(found)}")
    old = found[0].name
    found[0].name = name
    for node in model.graph.node:
        node.input[:] = [name if i == old else i for i in node.input]
    onnx.save(model, str(path))


def export_onnx(
    model: BehaviorTransformer,
    path: Path,
    top_k: int,
    *,
    chunk: int | str | None = "auto",
    explain: bool = False,
) -> int | None:
    """Write the scoring graph of ``model`` to ``path`` (one self-contained file).

    ``chunk="auto"`` picks the two-stage top-k for large catalogues (:func:`default_chunk`),
    an int forces that chunk size, None forces one plain TopK. Returns the chunk used.
    ``explain`` adds the ``history_weights`` output (explanations).
    """
    cfg = model.cfg
    used = default_chunk(cfg.n_items, top_k) if chunk == "auto" else chunk
    if isinstance(used, str):
        raise ValueError(f"chunk must be 'auto', an int or None, got {chunk!r}")
    shim = ScoringShim(model.eval(), top_k, chunk=used, explain=explain)
    batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    seq = torch.export.Dim("seq", min=1, max=cfg.max_len)
    args = example_inputs(cfg.max_len, cfg.n_items, cfg.n_event_types)
    chatty = logging.getLogger("torch.onnx")  # "torchvision is not installed" lines
    level = chatty.level
    chatty.setLevel(logging.ERROR)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            # The exporter's deprecation and axis-renaming chatter says nothing about this graph.
            warnings.simplefilter("ignore", (UserWarning, FutureWarning, DeprecationWarning))
            program = torch.onnx.export(
                shim,
                args,
                dynamo=True,
                opset_version=OPSET,
                input_names=list(INPUT_NAMES),
                output_names=list(GRAPH_OUTPUTS if explain else OUTPUT_NAMES),
                dynamic_shapes=({0: batch, 1: seq}, {0: batch, 1: seq}),
                external_data=False,
                verbose=False,
            )
    finally:
        chatty.setLevel(level)
    if program is None:  # only the legacy exporter writes to a file and returns None
        raise RuntimeError("torch.onnx.export returned no program")
    path.parent.mkdir(parents=True, exist_ok=True)
    program.save(str(path), external_data=False)
    readable = shim.model.readable()
    if readable is not None:  # text-aware: `items add` appends to this mask by name
        name_initializer(path, readable.cpu().numpy(), READABLE_INITIALIZER)
    onnx.checker.check_model(str(path), full_check=True)
    log.info("exported %s (%d items, top_k=%d, chunk=%s)", path, cfg.n_items, top_k, used)
    return used

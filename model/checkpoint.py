"""The checkpoint directory: weights, config, vocabularies, metrics and data description.

``model.safetensors`` holds the state_dict as plain tensors (safetensors: no pickle, nothing
executes on load); ``config.json`` rebuilds the model, so the checkpoint alone is enough for
export and evaluation. A checkpoint of an earlier version (``model.pt``, a pickle) is refused,
never unpickled.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from nextbehavior.model.config import ModelConfig
from nextbehavior.model.transformer import BehaviorTransformer
from nextbehavior.stream.bundle import PAD_TOKEN

MODEL_FILE = "model.safetensors"
LEGACY_MODEL_FILE = "model.pt"
CONFIG_FILE = "config.json"
VOCAB_FILE = "vocab.json"
METRICS_FILE = "metrics.json"
DATA_FILE = "data.json"
CURVE_FILE = "training_curve.png"


class CheckpointError(ValueError):
    """A checkpoint directory that cannot be loaded; the message says why, on one line."""


@dataclass
class Checkpoint:
    model: BehaviorTransformer  # eval mode
    config: ModelConfig
    items: list[str]  # index 0 = [PAD]
    event_types: list[str]  # index 0 = [PAD]
    metrics: dict[str, Any]
    data: dict[str, Any]


def _write_json(path: Path, obj: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(orjson.dumps(obj, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY))
    os.replace(tmp, path)


def write_metrics(out_dir: str | Path, metrics: dict[str, Any]) -> None:
    _write_json(Path(out_dir) / METRICS_FILE, metrics)


def save_checkpoint(
    out_dir: str | Path,
    model: BehaviorTransformer,
    items: list[str],
    event_types: list[str],
    metrics: dict[str, Any],
    data_info: dict[str, Any],
) -> Path:
    """Write the checkpoint files into ``out_dir`` (created); return it."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if items[0] != PAD_TOKEN or event_types[0] != PAD_TOKEN:
        raise ValueError(f"vocabularies must start with {PAD_TOKEN!r}")
    cfg = model.cfg
    if (cfg.n_items, cfg.n_event_types) != (len(items), len(event_types)):
        raise ValueError("vocabulary sizes do not match the model config")
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    tmp = out / (MODEL_FILE + ".tmp")
    save_file(state, str(tmp))
    os.replace(tmp, out / MODEL_FILE)
    _write_json(out / CONFIG_FILE, cfg.to_dict())
    _write_json(out / VOCAB_FILE, {"items": items, "event_types": event_types})
    _write_json(out / DATA_FILE, data_info)
    write_metrics(out, metrics)
    return out


def _read_json(path: Path) -> Any:
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path.parent} is incomplete: {path.name} is missing")
    try:
        return orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError as exc:
        raise CheckpointError(f"{path} is not valid JSON: {exc}") from None


def load_checkpoint(ckpt_dir: str | Path, device: str | torch.device = "cpu") -> Checkpoint:
    """Rebuild the model from ``ckpt_dir`` alone; raises :class:`CheckpointError`."""
    path = Path(ckpt_dir)
    if not path.is_dir():
        raise CheckpointError(f"checkpoint {path} is not a directory")
    try:
        config = ModelConfig.from_dict(_read_json(path / CONFIG_FILE))
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{path / CONFIG_FILE}: {exc}") from None
    vocab = _read_json(path / VOCAB_FILE)
    items, event_types = vocab.get("items"), vocab.get("event_types")
    if not isinstance(items, list) or not isinstance(event_types, list):
        raise CheckpointError(f"{path / VOCAB_FILE} lacks items or event_types lists")
    if (len(items), len(event_types)) != (config.n_items, config.n_event_types):
        raise CheckpointError(f"{path}: vocabulary sizes do not match config.json")
    weights = path / MODEL_FILE
    if not weights.is_file():
        if (path / LEGACY_MODEL_FILE).is_file():
            raise CheckpointError(
                f"checkpoint {path} has {LEGACY_MODEL_FILE} (a pickle, from an earlier version), "
                f"not {MODEL_FILE}: retrain it"
            )
        raise CheckpointError(f"checkpoint {path} is incomplete: {MODEL_FILE} is missing")
    model = BehaviorTransformer(config)
    try:
        model.load_state_dict(load_file(str(weights), device="cpu"))
    except (RuntimeError, OSError, ValueError, SafetensorError) as exc:
        raise CheckpointError(f"{weights} cannot be loaded: {exc}") from None
    model.to(device).eval()
    metrics = _read_json(path / METRICS_FILE) if (path / METRICS_FILE).is_file() else {}
    data = _read_json(path / DATA_FILE) if (path / DATA_FILE).is_file() else {}
    return Checkpoint(model, config, items, event_types, metrics, data)

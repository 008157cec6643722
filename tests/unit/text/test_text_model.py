"""The text-aware item table inside the Transformer: fusion, cold items, baking, checkpoint."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from nextbehavior.model.checkpoint import load_checkpoint, save_checkpoint
from nextbehavior.model.config import ModelConfig
from nextbehavior.model.text_items import ItemText, text_vectors
from nextbehavior.model.transformer import BehaviorTransformer
from nextbehavior.stream.item_update import cold_rows, nearest

V, TEXT_DIM = 12, 8


def text_model(
    id_dropout: float = 0.0, neighbors: int = 0, text_in_warm: bool = False
) -> tuple[BehaviorTransformer, ItemText]:
    torch.manual_seed(0)
    cfg = ModelConfig(
        n_items=V, n_event_types=3, max_len=6, d_model=16, n_heads=2, n_layers=2,
        text_dim=TEXT_DIM, id_dropout=id_dropout, text_neighbors=neighbors,
        text_in_warm=text_in_warm,
    )  # fmt: skip
    model = BehaviorTransformer(cfg)
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(V, TEXT_DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)  # like the sentence encoder's
    vectors[0] = 0
    warm = np.arange(V) % 3 != 0  # items 3, 6, 9 are cold (and 0 is padding)
    warm[0] = False
    info = ItemText(vectors, warm, np.arange(V) > 0, {"text_fields": ["title"]})
    info.install(model)
    with torch.no_grad():  # make the ID part visible
        model.item_emb.weight.normal_()
    return model.eval(), info


def test_warm_items_use_their_id_and_cold_items_their_text() -> None:
    model, info = text_model()
    table = model.item_table().detach()
    assert table.shape == (V, 16)
    assert torch.all(table[0] == 0)
    item_text = model.item_text
    assert item_text is not None
    text_part = item_text.proj(torch.from_numpy(info.vectors)).detach()
    for i in (3, 6, 9):  # cold: text alone
        torch.testing.assert_close(table[i], text_part[i])
    torch.testing.assert_close(table[1], model.item_emb.weight[1].detach())  # warm: its ID


def test_warm_rows_can_add_their_text() -> None:
    model, info = text_model(text_in_warm=True)
    item_text = model.item_text
    assert item_text is not None and item_text.warm_proj is not None
    table = model.item_table().detach()
    vectors = torch.from_numpy(info.vectors)
    warm_text = item_text.warm_proj(vectors).detach()
    torch.testing.assert_close(table[1], model.item_emb.weight[1].detach() + warm_text[1])
    torch.testing.assert_close(table[3], item_text.proj(vectors).detach()[3])  # cold: text only


def test_id_dropout_only_in_training() -> None:
    model, _ = text_model(id_dropout=0.5)
    torch.testing.assert_close(model.item_table(), model.item_table())
    model.train()
    torch.manual_seed(1)
    a, b = model.item_table(), model.item_table()
    assert not torch.equal(a, b)  # different warm items dropped to text-only each draw
    rows = (a - b).abs().sum(1) > 0
    assert not rows[[0, 3, 6, 9]].any()  # padding and cold rows never change


def test_baked_model_is_plain_and_predicts_the_same() -> None:
    model, _ = text_model(id_dropout=0.3)
    model.train()  # baking must not depend on (or change) the mode
    plain = model.baked()
    assert model.training and plain.item_text is None and plain.cfg.text_dim == 0
    items = torch.tensor([[0, 0, 1, 3, 5, 9], [2, 4, 6, 8, 10, 11]])
    types = torch.ones_like(items) * (items != 0)
    model.eval()
    ref_logits, ref_types, _ = model(items, types)
    logits, type_logits, _ = plain(items, types)
    torch.testing.assert_close(logits, ref_logits)
    torch.testing.assert_close(type_logits, ref_types)


def test_id_only_model_is_unchanged() -> None:
    cfg = ModelConfig(n_items=V, n_event_types=3, max_len=6, d_model=16, n_heads=2)
    model = BehaviorTransformer(cfg)
    assert model.item_text is None and model.baked() is model
    assert not any(k.startswith("item_text") for k in model.state_dict())
    items = torch.tensor([[0, 1, 2, 3, 4, 5]])
    model.eval()
    logits, _, _ = model(items, torch.ones_like(items))
    h = model.hidden(items, torch.ones_like(items))[:, -1]
    torch.testing.assert_close(logits, h @ model.item_emb.weight.T)


def test_checkpoint_carries_the_text_table(tmp_path: Path) -> None:
    model, info = text_model()
    items = ["[PAD]", *(f"i{k}" for k in range(1, V))]
    save_checkpoint(tmp_path, model, items, ["[PAD]", "a", "b"], {}, {"text": info.describe()})
    ckpt = load_checkpoint(tmp_path)
    loaded = ckpt.model.item_text
    assert loaded is not None
    np.testing.assert_array_equal(loaded.text.numpy(), info.vectors)
    np.testing.assert_array_equal(loaded.warm.numpy() > 0, info.warm)
    torch.testing.assert_close(ckpt.model.item_table(), model.item_table())
    assert ckpt.data["text"]["n_warm"] == int(info.warm.sum())


def test_text_vectors_for_a_vocabulary() -> None:
    def encode(texts: list[str]) -> np.ndarray:
        return np.array([[len(t), 1.0] for t in texts], dtype=np.float32)

    vectors, has = text_vectors(
        ["[PAD]", "a", "b", "c"], {"a": "xx", "c": "yyy", "z": "?"}, encode, 2
    )
    np.testing.assert_array_equal(vectors, [[0, 0], [2, 1], [0, 0], [3, 1]])
    np.testing.assert_array_equal(has, [False, True, False, True])


def test_cold_rows_borrow_from_text_neighbours_and_match_serving() -> None:
    """A text-only row = projection + cold offset + the softmax(cos/temp)-weighted ID embeddings
    of its k most text-similar warm items; `items add` (numpy) computes the same row."""
    model, info = text_model(neighbors=3)
    item_text = model.item_text
    assert item_text is not None
    idx = item_text.nbr_idx.numpy()
    warm = np.flatnonzero(info.warm)
    assert set(idx[1:].ravel()) <= set(warm)
    assert all(i not in idx[i] for i in range(1, V))  # never its own neighbour
    cos = info.vectors @ info.vectors[warm].T  # (V, n_warm)
    cos[warm, np.arange(len(warm))] = -np.inf  # not itself
    np.testing.assert_allclose(item_text.nbr_cos.numpy()[1:, 0], cos[1:].max(axis=1), atol=1e-6)
    table = model.item_table().detach().numpy()
    arrays = item_text.serving_arrays(model.item_emb.weight)
    for i in (3, 6, 9):  # cold items: served rows == numpy rows from their text alone
        np.testing.assert_allclose(cold_rows(arrays, info.vectors[i : i + 1])[0], table[i],
                                   atol=1e-5)  # fmt: skip
    plain = model.baked()
    np.testing.assert_allclose(plain.item_emb.weight.detach().numpy(), table, atol=1e-6)


def test_nearest() -> None:
    keys = np.eye(4, dtype=np.float32)
    queries = np.array([[0.9, 0.1, 0, 0], [0, 0, 0.2, 0.8]], dtype=np.float32)
    idx, cos = nearest(queries, keys, 2)
    np.testing.assert_array_equal(idx, [[0, 1], [3, 2]])
    np.testing.assert_allclose(cos, [[0.9, 0.1], [0.8, 0.2]], atol=1e-6)
    idx, _ = nearest(keys, keys, 1, skip=np.arange(4))  # a key never finds itself
    assert all(idx[i, 0] != i for i in range(4))


def test_model_selection_can_rank_only_items_with_training_events() -> None:
    model, info = text_model()
    items = torch.tensor([[0, 1, 2, 4]])
    logits, _, _ = model(items, torch.ones_like(items))
    assert torch.isfinite(logits[0, 1:]).all()  # served: every item is a candidate
    info.hide_unseen = True
    info.install(model)  # what text_train does while fitting (validation = warm items only)
    logits, _, _ = model(items, torch.ones_like(items))
    assert torch.isinf(logits[0, [3, 6, 9]]).all() and torch.isfinite(logits[0, [1, 2, 4]]).all()

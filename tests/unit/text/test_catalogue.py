"""Item side files: RecBole .item, MovieLens u.item / movies.dat, CSV, JSONL."""

from __future__ import annotations

from pathlib import Path

import pytest

from nextbehavior.stream.catalogue import (
    CatalogueError,
    canonical,
    item_texts,
    parse_text_fields,
    read_items,
)


def test_recbole_item_file(tmp_path: Path) -> None:
    path = tmp_path / "ml.item"
    path.write_text(
        "item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\tscore:float\n"
        "1\tToy Story\t1995\tAnimation Children's Comedy\t0.5\n"
        "2\tGoldenEye\t1995\tAction Adventure Thriller\t0.1\n"
    )
    cat = read_items(path)
    assert cat.format == "recbole" and len(cat) == 2
    assert cat.default_fields == ["movie_title", "release_year", "class"]  # no float field
    assert item_texts(cat)["1"] == "Toy Story. 1995. Animation, Children's, Comedy"
    assert item_texts(cat, ["title", "genres"])["2"] == "GoldenEye. Action, Adventure, Thriller"
    assert item_texts(cat, ["score"])["1"] == "0.5"  # chosen explicitly, it is text too


def test_movielens_u_item(tmp_path: Path) -> None:
    path = tmp_path / "u.item"
    flags = ["0"] * 19
    flags[3] = flags[4] = flags[5] = "1"
    path.write_bytes(
        ("1|Toy Story (1995)|01-Jan-1995||http://x|" + "|".join(flags) + "\n").encode("latin-1")
        + "2|Café Society (1995)|01-Jan-1995||http://y|".encode("latin-1")
        + b"|".join([b"0"] * 8 + [b"1"] + [b"0"] * 10)
        + b"\n"
    )
    texts = item_texts(read_items(path))
    assert texts == {
        "1": "Toy Story (1995). Animation, Children's, Comedy",
        "2": "Café Society (1995). Drama",
    }


def test_movielens_movies_dat(tmp_path: Path) -> None:
    path = tmp_path / "movies.dat"
    path.write_text("1::Toy Story (1995)::Animation|Children's|Comedy\n2::Heat (1995)::Action\n")
    cat = read_items(path)
    assert item_texts(cat)["1"] == "Toy Story (1995). Animation, Children's, Comedy"
    assert item_texts(cat, ["title"])["2"] == "Heat (1995)"


def test_csv_and_jsonl(tmp_path: Path) -> None:
    csv_path = tmp_path / "movies.csv"
    csv_path.write_text('movieId,title,genres\n1,"Toy Story (1995)",Animation|Comedy\n')
    assert item_texts(read_items(csv_path)) == {"1": "Toy Story (1995). Animation, Comedy"}
    jsonl = tmp_path / "items.jsonl"
    jsonl.write_text(
        '{"item_id": "sku-1", "name": "Red shoe", "category": ["shoes", "red"], "meta": {}}\n'
        "\n"
        '{"item_id": "sku-2", "name": "Blue hat", "price": 9.5}\n'
    )
    cat = read_items(jsonl)
    assert cat.fields == ["item_id", "name", "category", "price"]
    assert item_texts(cat, ["title", "genres"]) == {
        "sku-1": "Red shoe. shoes, red",
        "sku-2": "Blue hat",
    }


def test_errors_are_one_line_reasons(tmp_path: Path) -> None:
    with pytest.raises(CatalogueError, match="does not exist"):
        read_items(tmp_path / "nope.item")
    bad = tmp_path / "x.csv"
    bad.write_text("foo,bar\n1,2\n")
    with pytest.raises(CatalogueError, match="no item id column"):
        read_items(bad)
    assert len(read_items(bad, id_field="foo")) == 1
    good = tmp_path / "y.csv"
    good.write_text("item_id,title\n1,a\n")
    with pytest.raises(CatalogueError, match="text field 'plot'"):
        item_texts(read_items(good), ["plot"])
    unknown = tmp_path / "z.bin"
    unknown.write_text("1")
    with pytest.raises(CatalogueError, match="cannot tell the format"):
        read_items(unknown)


def test_field_names() -> None:
    assert parse_text_fields("title, genres,") == ["title", "genres"]
    assert parse_text_fields("") is None
    assert canonical("movie_title") == "title" and canonical("class") == "genres"
    assert canonical("release_year") == canonical("year") == "year"

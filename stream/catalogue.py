"""Item side files: what each item is (title, genres, ...), and the text the model reads.

Formats (``auto`` picks by name): ``recbole`` (``.item`` atomic file, tab-separated,
``name:type`` header), ``movielens`` (``u.item`` pipe-separated with 19 genre flags, or
``movies.dat`` with ``::``), ``csv`` (a header with an id column, e.g. ``movies.csv``), ``jsonl``
(one object per line with an id field). Torch-free: ``nextbehavior items add`` runs at serving
time.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import orjson

FORMATS: Final = ("auto", "recbole", "movielens", "csv", "jsonl")
ID_FIELDS: Final = ("item_id", "itemid", "movieid", "movie_id", "product_id", "id", "item")
ALIASES: Final = {
    "title": ("title", "movie_title", "name", "item_name", "product_name"),
    "genres": ("genres", "genre", "class", "category", "categories"),
    "description": ("description", "desc", "overview", "summary", "plot"),
    "year": ("year", "release_year"),
}
UITEM_GENRES: Final = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
    "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance",
    "Sci-Fi", "Thriller", "War", "Western",
)  # fmt: skip


class CatalogueError(ValueError):
    """An item file that cannot be read; the message is a one-line reason."""


@dataclass(frozen=True)
class ItemCatalogue:
    """Item id -> its fields as text, in file order; ``default_fields`` make the default text."""

    fields: list[str]
    rows: dict[str, dict[str, str]]
    default_fields: list[str]
    format: str

    def __len__(self) -> int:
        return len(self.rows)


def canonical(name: str) -> str:
    """``movie_title`` -> ``title``, ``class`` -> ``genres``; other names lower-cased."""
    low = name.strip().lower()
    for key, names in ALIASES.items():
        if low in names:
            return key
    return low


def parse_text_fields(spec: str | None) -> list[str] | None:
    """``"title,genres"`` -> ``["title", "genres"]``; None or empty -> None (the defaults)."""
    if not spec:
        return None
    return [f.strip() for f in spec.split(",") if f.strip()] or None


def item_texts(
    catalogue: ItemCatalogue, text_fields: Sequence[str] | None = None
) -> dict[str, str]:
    """Item id -> text: the chosen fields' values joined with ``". "`` (empty ones skipped)."""
    wanted = list(text_fields) if text_fields else catalogue.default_fields
    chosen: list[str] = []
    for name in wanted:
        match = [f for f in catalogue.fields if f == name or canonical(f) == canonical(name)]
        if not match:
            raise CatalogueError(
                f"text field {name!r} is not in the item file (fields: "
                f"{', '.join(catalogue.fields)}); choose them with --text-fields"
            )
        chosen.append(match[0])
    return {
        item: ". ".join(v for f in chosen if (v := row.get(f, "").strip()))
        for item, row in catalogue.rows.items()
    }


def detect_format(path: Path) -> str:
    name = path.name.lower()
    if name.endswith(".item") and name != "u.item":
        return "recbole"
    if name == "u.item" or name.endswith(".dat"):
        return "movielens"
    if name.endswith(".csv"):
        return "csv"
    if name.endswith((".jsonl", ".json", ".ndjson")):
        return "jsonl"
    raise CatalogueError(f"cannot tell the format of {path.name}: pass --items-format")


def read_items(path: Path, fmt: str = "auto", id_field: str | None = None) -> ItemCatalogue:
    """Read an item side file; raise :class:`CatalogueError` with a one-line reason."""
    path = Path(path)
    if not path.is_file():
        raise CatalogueError(f"item file {path} does not exist")
    if fmt not in FORMATS:
        raise CatalogueError(f"unknown item format {fmt!r} (one of {', '.join(FORMATS)})")
    fmt = detect_format(path) if fmt == "auto" else fmt
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")  # the MovieLens files are latin-1
    if fmt == "recbole":
        cat = _recbole(text, id_field)
    elif fmt == "movielens":
        cat = _movielens(text)
    elif fmt == "csv":
        cat = _table(csv.DictReader(io.StringIO(text)), id_field, "csv")
    else:
        cat = _table(_json_lines(text), id_field, "jsonl")
    if not cat.rows:
        raise CatalogueError(f"item file {path} holds no items")
    return cat


def _genres(value: str, sep: str) -> str:
    return ", ".join(g for g in (p.strip() for p in value.split(sep)) if g)


def _recbole(text: str, id_field: str | None) -> ItemCatalogue:
    lines = text.splitlines()
    if not lines:
        raise CatalogueError("RecBole .item file is empty")
    header = [h.rsplit(":", 1) if ":" in h else [h, "token"] for h in lines[0].split("\t")]
    names = [h[0] for h in header]
    types = [h[1] for h in header]
    id_col = _id_column(names, id_field)
    rows: dict[str, dict[str, str]] = {}
    for line in lines[1:]:
        if not line.strip():
            continue
        values = line.split("\t")
        row: dict[str, str] = {}
        for name, kind, value in zip(names, types, values, strict=False):
            genre_like = kind == "token_seq" and canonical(name) == "genres"
            row[name] = _genres(value, " ") if genre_like else value.strip()
        rows.setdefault(row.get(id_col, "").strip(), row)
    rows.pop("", None)
    default = [n for n, t in zip(names, types, strict=True) if n != id_col and "token" in t]
    return ItemCatalogue(names, rows, default, "recbole")


def _movielens(text: str) -> ItemCatalogue:
    rows: dict[str, dict[str, str]] = {}
    first = next((ln for ln in text.splitlines() if ln.strip()), "")
    if "::" in first:  # movies.dat: MovieID::Title::Genres
        fields = ["item_id", "title", "genres"]
        for line in text.splitlines():
            parts = line.split("::")
            if len(parts) >= 3 and parts[0].strip():
                rows.setdefault(parts[0].strip(), dict(zip(fields, [
                    parts[0].strip(), parts[1].strip(), _genres(parts[2], "|")
                ], strict=True)))  # fmt: skip
        return ItemCatalogue(fields, rows, ["title", "genres"], "movielens")
    # u.item: id|title|release date|video release date|IMDb URL|19 genre flags
    fields = ["item_id", "title", "release_date", "imdb_url", "genres"]
    for line in text.splitlines():
        parts = line.split("|")
        if len(parts) < 5 or not parts[0].strip():
            continue
        flags = parts[5 : 5 + len(UITEM_GENRES)]
        genres = ", ".join(g for g, f in zip(UITEM_GENRES, flags, strict=False) if f.strip() == "1")
        values = [parts[0].strip(), parts[1].strip(), parts[2].strip(), parts[4].strip(), genres]
        rows.setdefault(values[0], dict(zip(fields, values, strict=True)))
    return ItemCatalogue(fields, rows, ["title", "genres"], "movielens")


def _json_lines(text: str) -> Iterable[dict[str, object]]:
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise CatalogueError(f"item file line {number} is not JSON: {exc}") from None
        if not isinstance(obj, dict):
            raise CatalogueError(f"item file line {number} is not a JSON object")
        yield obj


def _as_text(name: str, value: object) -> str | None:
    if isinstance(value, str):
        return _genres(value, "|") if canonical(name) == "genres" and "|" in value else value
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, list) and all(isinstance(v, str | int | float) for v in value):
        return ", ".join(str(v) for v in value)
    return None  # nested objects are not text


def _table(records: Iterable[dict[str, object]], id_field: str | None, fmt: str) -> ItemCatalogue:
    fields: list[str] = []
    rows: dict[str, dict[str, str]] = {}
    id_col: str | None = None
    for record in records:
        if id_col is None:
            id_col = _id_column(list(record), id_field)
        row = {k: t for k, v in record.items() if (t := _as_text(k, v)) is not None}
        item = row.get(id_col, "").strip()
        if not item:
            continue
        for key in row:
            if key not in fields:
                fields.append(key)
        rows.setdefault(item, row)
    default = [f for f in fields if f != id_col]
    return ItemCatalogue(fields, rows, default, fmt)


def _id_column(names: Sequence[str], id_field: str | None) -> str:
    if id_field is not None:
        if id_field not in names:
            raise CatalogueError(f"id field {id_field!r} is not in the item file")
        return id_field
    for name in names:
        if name.strip().lower().replace(" ", "_") in ID_FIELDS:
            return name
    raise CatalogueError(
        f"no item id column among {', '.join(names)}: pass --id-field (e.g. item_id, movieId)"
    )

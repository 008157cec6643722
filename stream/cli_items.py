"""CLI commands: ``items`` (text-aware items: show texts, export the encoder, add to a bundle)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import orjson
import typer

from nextbehavior.stream.console import fail, setup_logging

items_app = typer.Typer(
    name="items",
    help="Text-aware items: what text the model reads, the sentence encoder, adding new items.",
    no_args_is_help=True,
)

ItemsOption = Annotated[
    Path,
    typer.Option("--items", help="Item side file: RecBole .item, u.item, movies.dat, CSV or JSONL"),
]
TextFieldsOption = Annotated[
    str | None,
    typer.Option(
        "--text-fields",
        help="Comma-separated fields that make an item's text, e.g. title,genres "
        "(default: the bundle's training fields, else the file's text fields)",
    ),
]
FormatOption = Annotated[
    str, typer.Option("--items-format", help="auto, recbole, movielens, csv or jsonl")
]
IdFieldOption = Annotated[
    str | None, typer.Option("--id-field", help="Item id column (default: detected)")
]
EncoderOption = Annotated[
    Path | None,
    typer.Option(
        "--encoder", help="Sentence-encoder dir (default: NBP_TEXT_ENCODER, ~/.cache/...)"
    ),
]


def _echo_json(obj: object) -> None:
    typer.echo(orjson.dumps(obj, option=orjson.OPT_INDENT_2).decode())


@items_app.command("show")
def show(
    items: ItemsOption,
    text_fields: TextFieldsOption = None,
    items_format: FormatOption = "auto",
    id_field: IdFieldOption = None,
    limit: Annotated[int, typer.Option(help="Items to print (0: all)")] = 5,
) -> None:
    """Print the text the model reads for each item, as JSON lines {item_id, text}."""
    from nextbehavior.stream.catalogue import (
        CatalogueError,
        item_texts,
        parse_text_fields,
        read_items,
    )

    try:
        texts = item_texts(
            read_items(items, items_format, id_field), parse_text_fields(text_fields)
        )
    except CatalogueError as exc:
        fail(str(exc))
    for n, (item, text) in enumerate(texts.items()):
        if limit and n >= limit:
            break
        typer.echo(orjson.dumps({"item_id": item, "text": text}).decode())


@items_app.command("encoder")
def encoder(
    out: Annotated[
        Path | None, typer.Option("--out", help="Directory (default: NBP_TEXT_ENCODER)")
    ] = None,
) -> None:
    """Export the offline sentence encoder (all-MiniLM-L6-v2) to ONNX, once (needs torch).

    Copy the directory to serving machines: `items add` then runs without torch."""
    from nextbehavior.stream.settings import get_settings
    from nextbehavior.stream.text_encoder import TextEncoderError

    setup_logging("WARNING")
    target = out or get_settings().text_encoder
    try:
        from nextbehavior.export.text_encoder import ensure_text_encoder

        info = ensure_text_encoder(target)
    except ImportError as exc:
        fail(f"exporting the encoder needs torch (pip install 'nextbehavior[text]'): {exc}")
    except TextEncoderError as exc:
        fail(str(exc))
    _echo_json({"encoder": str(target), **info.describe()})


@items_app.command("add")
def add(
    bundle: Annotated[Path, typer.Option("--bundle", help="Text-aware model bundle directory")],
    items: ItemsOption,
    out: Annotated[
        Path | None, typer.Option("--out", help="Write the new bundle here (default: in place)")
    ] = None,
    text_fields: TextFieldsOption = None,
    items_format: FormatOption = "auto",
    id_field: IdFieldOption = None,
    encoder_dir: EncoderOption = None,
) -> None:
    """Add items a bundle lacks, from their text, without retraining (no torch needed).

    Prints {model_version, added, already_known, n_items} as JSON."""
    from nextbehavior.stream.bundle import BundleError
    from nextbehavior.stream.catalogue import CatalogueError, parse_text_fields
    from nextbehavior.stream.item_update import add_items
    from nextbehavior.stream.settings import get_settings
    from nextbehavior.stream.text_encoder import TextEncoderError

    setup_logging("WARNING")
    try:
        result = add_items(
            bundle,
            items,
            encoder_dir or get_settings().text_encoder,
            out_dir=out,
            text_fields=parse_text_fields(text_fields),
            items_format=items_format,
            id_field=id_field,
        )
    except ImportError as exc:
        fail(f"`items add` needs the `items` extra (pip install 'nextbehavior[items]'): {exc}")
    except (BundleError, CatalogueError, TextEncoderError) as exc:
        fail(str(exc))
    _echo_json(
        {
            "bundle": str(out or bundle),
            "model_version": result.manifest.model_version,
            "added": len(result.added),
            "already_known": result.already_known,
            "n_items": len(result.manifest.items) - 1,
        }
    )


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    app.add_typer(items_app)

"""Bundle selection and hot reload (stream/reload.py) on real copies of the tiny bundle.

Copies differ only in their manifest (model_version, created_at), so each loads in tens of
milliseconds; a broken copy has a bad checksum or a graph ONNX Runtime cannot load.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from dataclasses import replace
from pathlib import Path

import orjson
import pytest

from nextbehavior.stream.bundle import (
    MANIFEST_FILE,
    MODEL_FILE,
    BundleError,
    Manifest,
    read_manifest,
    sha256_file,
    write_manifest,
)
from nextbehavior.stream.predictor import Predictor
from nextbehavior.stream.reload import (
    BundleDirectory,
    BundleWatcher,
    Loaded,
    is_bundle,
    load_newest,
    parse_created_at,
)


def copy_bundle(src: Path, dest: Path, version: str, created_at: str) -> Path:
    """A copy of ``src`` whose manifest says ``version`` and ``created_at``."""
    shutil.copytree(src, dest)
    write_manifest(dest, replace(read_manifest(dest), model_version=version, created_at=created_at))
    return dest


def break_checksum(bundle: Path) -> None:
    with (bundle / MODEL_FILE).open("ab") as fh:
        fh.write(b"\0")


def break_graph(bundle: Path) -> None:
    """A model file ONNX Runtime cannot parse, with a matching checksum."""
    (bundle / MODEL_FILE).write_bytes(b"not an onnx graph")
    manifest = read_manifest_unchecked(bundle)
    write_manifest(bundle, replace(manifest, onnx_sha256=sha256_file(bundle / MODEL_FILE)))


def read_manifest_unchecked(bundle: Path) -> Manifest:
    """The manifest without the checksum check."""
    return Manifest.from_dict(orjson.loads((bundle / MANIFEST_FILE).read_bytes()))


def load(path: Path) -> Predictor:
    return Predictor(path, ["CPUExecutionProvider"])


def test_parse_created_at() -> None:
    a = parse_created_at("2024-05-01T10:00:00Z")
    b = parse_created_at("2024-05-01T10:00:00.5+00:00")
    c = parse_created_at("2024-05-01T12:00:00+02:00")  # the same instant as a
    assert a < b and a == c
    assert parse_created_at("2024-05-01T10:00:00") == a  # naive means UTC
    for bad in ("yesterday", 17, None):
        with pytest.raises(BundleError, match="created_at"):
            parse_created_at(bad)


def test_single_bundle_or_directory(tiny_bundle: Path, tmp_path: Path) -> None:
    assert is_bundle(tiny_bundle)
    assert not is_bundle(tmp_path)


def test_newest_by_created_at_then_name(tiny_bundle: Path, tmp_path: Path) -> None:
    root = tmp_path / "bundles"
    root.mkdir()
    copy_bundle(tiny_bundle, root / "zzz-old", "old", "2024-01-01T00:00:00Z")
    copy_bundle(tiny_bundle, root / "a-new", "new-a", "2024-06-01T00:00:00Z")
    copy_bundle(tiny_bundle, root / "b-new", "new-b", "2024-06-01T00:00:00Z")  # tie: name wins
    copy_bundle(tiny_bundle, root / ".incoming", "hidden", "2030-01-01T00:00:00Z")
    (root / "empty").mkdir()  # not a bundle (yet)
    (root / "notes.txt").write_text("not a directory")
    found, broken = BundleDirectory(root).scan()
    assert [c.model_version for c in found] == ["new-b", "new-a", "old"]
    assert not broken
    loaded, refused = load_newest(BundleDirectory(root), load)
    assert loaded.predictor.manifest.model_version == "new-b"
    assert loaded.candidate.path == root / "b-new"
    assert not refused


def test_start_skips_broken_bundles(tiny_bundle: Path, tmp_path: Path) -> None:
    root = tmp_path / "bundles"
    root.mkdir()
    copy_bundle(tiny_bundle, root / "good", "good", "2024-01-01T00:00:00Z")
    break_checksum(copy_bundle(tiny_bundle, root / "tampered", "t", "2024-02-01T00:00:00Z"))
    break_graph(copy_bundle(tiny_bundle, root / "garbage", "g", "2024-03-01T00:00:00Z"))
    (root / "unreadable").mkdir()
    (root / "unreadable" / MODEL_FILE).write_bytes(b"x")
    (root / "unreadable" / MANIFEST_FILE).write_text("{not json")
    seen: list[tuple[str, str]] = []
    loaded, refused = load_newest(
        BundleDirectory(root), load, lambda p, r: seen.append((p.name, r))
    )
    assert loaded.predictor.manifest.model_version == "good"
    assert {name for name, _ in seen} == {"tampered", "garbage", "unreadable"}
    reasons = dict(seen)
    assert "checksum" in reasons["tampered"]
    assert "ONNX Runtime cannot load" in reasons["garbage"]
    assert "cannot read" in reasons["unreadable"]
    assert len(refused) == 3


def test_start_fails_when_nothing_loads(tiny_bundle: Path, tmp_path: Path) -> None:
    root = tmp_path / "bundles"
    root.mkdir()
    with pytest.raises(BundleError, match=r"no servable bundle.*no bundle subdirectories"):
        load_newest(BundleDirectory(root), load)
    break_checksum(copy_bundle(tiny_bundle, root / "only", "only", "2024-01-01T00:00:00Z"))
    with pytest.raises(BundleError, match=r"no servable bundle.*checksum"):
        load_newest(BundleDirectory(root), load)


async def test_watcher_swaps_refuses_and_rolls_back(tiny_bundle: Path, tmp_path: Path) -> None:
    root = tmp_path / "bundles"
    root.mkdir()
    copy_bundle(tiny_bundle, root / "v1", "v1", "2024-01-01T00:00:00Z")
    current, refused = load_newest(BundleDirectory(root), load)
    swaps: list[str] = []
    refusals: list[str] = []
    watcher = BundleWatcher(
        BundleDirectory(root),
        current,
        load,
        on_swap=lambda got: swaps.append(got.predictor.manifest.model_version),
        on_refused=lambda path, reason: refusals.append(path.name),
        refused=refused,
    )
    assert await watcher.poll() is None  # nothing new

    copy_bundle(tiny_bundle, root / "v2", "v2", "2024-02-01T00:00:00Z")
    assert await watcher.poll() is None  # seen once: not settled yet (could be mid-copy)
    got = await watcher.poll()
    assert isinstance(got, Loaded) and got.predictor.manifest.model_version == "v2"
    assert swaps == ["v2"] and watcher.current is got

    broken = copy_bundle(tiny_bundle, root / "v3", "v3", "2024-03-01T00:00:00Z")
    break_checksum(broken)
    for _ in range(3):  # refused once, not retried while unchanged
        assert await watcher.poll() is None
    assert refusals == ["v3"] and swaps == ["v2"]

    # Repaired in place (its files change): tried again, and served.
    shutil.copyfile(tiny_bundle / MODEL_FILE, broken / MODEL_FILE)
    os.utime(broken / MODEL_FILE, ns=(1, 1))
    await watcher.poll()
    await watcher.poll()
    assert swaps == ["v2", "v3"]

    # Rollback: remove the served bundle, the newest remaining one is served.
    shutil.rmtree(broken)
    await watcher.poll()
    assert swaps == ["v2", "v3", "v2"]
    # Nothing left but the served one going away: keeps serving.
    shutil.rmtree(root / "v2")
    shutil.rmtree(root / "v1")
    assert await watcher.poll() is None
    assert watcher.current.predictor.manifest.model_version == "v2"


async def test_watcher_run_polls_until_cancelled(tiny_bundle: Path, tmp_path: Path) -> None:
    root = tmp_path / "bundles"
    root.mkdir()
    copy_bundle(tiny_bundle, root / "v1", "v1", "2024-01-01T00:00:00Z")
    current, _ = load_newest(BundleDirectory(root), load)
    swapped = asyncio.Event()
    watcher = BundleWatcher(BundleDirectory(root), current, load, lambda _: swapped.set())
    task = asyncio.create_task(watcher.run(0.05))
    copy_bundle(tiny_bundle, root / "v2", "v2", "2024-02-01T00:00:00Z")
    await asyncio.wait_for(swapped.wait(), timeout=10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert watcher.current.predictor.manifest.model_version == "v2"


def test_worker_command_refuses_a_directory_without_a_servable_bundle(
    tiny_bundle: Path, tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from nextbehavior.stream.cli import app

    root = tmp_path / "bundles"
    root.mkdir()
    break_checksum(copy_bundle(tiny_bundle, root / "bad", "bad", "2024-01-01T00:00:00Z"))
    result = CliRunner().invoke(app, ["worker", "--bundle", str(root)])
    assert result.exit_code == 1
    last = result.stderr.strip().splitlines()[-1]  # the refusal is logged before it
    assert last.startswith(f"error: no servable bundle in {root}: ")
    assert "checksum" in last

"""Which model bundle to serve, and hot reload from a directory of bundles.

``--bundle PATH`` is either one bundle (``PATH/manifest.json`` exists: served as is, never
reloaded) or a directory of bundles, each a subdirectory. Names starting with ``.`` are
ignored, so a bundle can be copied in under a dot-name and renamed when complete.

**Newest** is the latest manifest ``created_at`` (ISO-8601; the export time), ties broken by
the larger subdirectory name. The worker serves the newest bundle that loads: checksum, graph
contract and warm-up (:class:`~nextbehavior.stream.predictor.Predictor`). A bundle that fails is
*refused* (a log line and ``nextbehavior_model_reload_total{outcome="refused"}``) and not tried
again until its files change; the one being served goes on. If the served bundle's directory
disappears, the newest remaining one is served (a rollback is "remove the bad bundle").

:class:`BundleWatcher` polls the directory. A bundle is considered once its files (manifest and
model: size and mtime) are unchanged over one poll, so a copy in progress is not refused for
being half-written. It is loaded and warmed on a worker thread, off the event loop, then handed
to ``on_swap`` on the loop; the worker applies it between batches.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Generic, TypeVar

import orjson

from nextbehavior.stream.bundle import MANIFEST_FILE, MODEL_FILE, BundleError

logger = logging.getLogger(__name__)

P = TypeVar("P")
LOAD_ERRORS: tuple[type[Exception], ...] = (BundleError, OSError, ValueError, RuntimeError)
"""What a failed load may raise (BundleError is a ValueError; ONNX Runtime's are RuntimeErrors)."""
Signature = tuple[int, int, int, int]
"""(manifest size, manifest mtime_ns, model size, model mtime_ns): changes when a file does."""


@dataclass(frozen=True, slots=True)
class Candidate:
    """A subdirectory that looks like a bundle (it has a readable manifest)."""

    path: Path
    created_at: datetime
    model_version: str
    signature: Signature

    @property
    def order(self) -> tuple[datetime, str]:
        """Sort key: larger is newer (``created_at``, then the directory name)."""
        return self.created_at, self.path.name

    @property
    def identity(self) -> tuple[Path, Signature]:
        return self.path, self.signature


def is_bundle(path: Path) -> bool:
    """A single bundle (as opposed to a directory of bundles)."""
    return (Path(path) / MANIFEST_FILE).is_file()


def signature(bundle: Path) -> Signature | None:
    """The files' sizes and mtimes, None while either file is missing."""
    try:
        manifest = (bundle / MANIFEST_FILE).stat()
        model = (bundle / MODEL_FILE).stat()
    except OSError:
        return None
    return manifest.st_size, manifest.st_mtime_ns, model.st_size, model.st_mtime_ns


def parse_created_at(value: object) -> datetime:
    """``created_at`` as an aware datetime (naive means UTC); BundleError if not ISO-8601."""
    if not isinstance(value, str):
        raise BundleError(f"manifest created_at must be an ISO-8601 string, got {value!r}")
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise BundleError(f"manifest created_at {value!r} is not ISO-8601") from None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def read_candidate(bundle: Path) -> Candidate | None:
    """The bundle's ordering facts (None while incomplete); BundleError if unreadable."""
    sig = signature(bundle)
    if sig is None:
        return None
    try:
        obj = orjson.loads((bundle / MANIFEST_FILE).read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        raise BundleError(f"cannot read {bundle / MANIFEST_FILE}: {exc}") from None
    if not isinstance(obj, dict):
        raise BundleError(f"{bundle / MANIFEST_FILE} is not a JSON object")
    created_at = parse_created_at(obj.get("created_at"))
    return Candidate(bundle, created_at, str(obj.get("model_version")), sig)


def newest_first(candidates: list[Candidate]) -> list[Candidate]:
    return sorted(candidates, key=lambda c: c.order, reverse=True)


class BundleDirectory:
    """The bundles under ``root``, newest first; manifests are re-read only when they change."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._cache: dict[Path, tuple[Signature, Candidate | BundleError]] = {}

    def scan(self) -> tuple[list[Candidate], dict[Path, tuple[Signature, BundleError]]]:
        """(readable bundles newest first, unreadable ones with their signature and error)."""
        try:
            dirs = [p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".")]
        except OSError as exc:
            logger.warning("cannot list the bundle directory %s: %s", self.root, exc)
            return [], {}
        found: list[Candidate] = []
        broken: dict[Path, tuple[Signature, BundleError]] = {}
        cache: dict[Path, tuple[Signature, Candidate | BundleError]] = {}
        for path in dirs:
            sig = signature(path)
            if sig is None:
                continue  # incomplete (being written); not a candidate yet
            cached = self._cache.get(path)
            if cached is not None and cached[0] == sig:
                result = cached[1]
            else:
                try:
                    read = read_candidate(path)
                except BundleError as exc:
                    read = None
                    result = exc
                else:
                    if read is None:
                        continue
                    result = read
            cache[path] = (sig, result)
            if isinstance(result, BundleError):
                broken[path] = (sig, result)
            else:
                found.append(result)
        self._cache = cache
        return newest_first(found), broken


@dataclass(frozen=True, slots=True)
class Loaded(Generic[P]):
    """A loaded bundle: what was loaded (``candidate``) and the ready ``predictor``."""

    candidate: Candidate
    predictor: P


def load_newest(
    directory: BundleDirectory,
    load: Callable[[Path], P],
    on_refused: Callable[[Path, str], None] | None = None,
) -> tuple[Loaded[P], set[tuple[Path, Signature]]]:
    """At start: the newest bundle that loads, and the identities refused on the way.

    Raises :class:`BundleError` (listing the reasons) when none does.
    """
    candidates, broken = directory.scan()
    refused: set[tuple[Path, Signature]] = set()
    reasons: list[str] = []
    for path, (sig, exc) in broken.items():
        refused.add((path, sig))
        reasons.append(str(exc))
        _refuse(path, str(exc), on_refused)
    for cand in candidates:
        try:
            return Loaded(cand, load(cand.path)), refused
        except LOAD_ERRORS as exc:
            refused.add(cand.identity)
            reasons.append(str(exc))
            _refuse(cand.path, str(exc), on_refused)
    detail = "; ".join(reasons) if reasons else "it has no bundle subdirectories"
    raise BundleError(f"no servable bundle in {directory.root}: {detail}")


def _refuse(path: Path, reason: str, on_refused: Callable[[Path, str], None] | None) -> None:
    logger.error("model bundle %s refused: %s", path, reason)
    if on_refused is not None:
        on_refused(path, reason)


class BundleWatcher(Generic[P]):
    """Polls a bundle directory and swaps to the newest bundle that loads (see the module doc).

    ``load`` runs on a private thread (it may take seconds); ``on_swap`` and ``on_refused`` run
    on the event loop that calls :meth:`poll` / :meth:`run`.
    """

    def __init__(
        self,
        directory: BundleDirectory,
        current: Loaded[P],
        load: Callable[[Path], P],
        on_swap: Callable[[Loaded[P]], None],
        on_refused: Callable[[Path, str], None] | None = None,
        refused: set[tuple[Path, Signature]] | None = None,
    ) -> None:
        self.directory = directory
        self.current = current
        self._load = load
        self._on_swap = on_swap
        self._on_refused = on_refused
        self._refused = set(refused or ())
        self._seen: dict[Path, Signature] = {}
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bundle-load")
        self._gone_logged = False

    async def poll(self) -> Loaded[P] | None:
        """One look at the directory; returns the newly served bundle, if it changed."""
        candidates, broken = await asyncio.to_thread(self.directory.scan)
        seen = {c.path: c.signature for c in candidates}
        seen.update({p: sig for p, (sig, _) in broken.items()})
        settled = {p for p, sig in seen.items() if self._seen.get(p) == sig}
        self._seen = seen
        for path, (sig, exc) in broken.items():
            if path in settled and (path, sig) not in self._refused:
                self._refused.add((path, sig))
                _refuse(path, str(exc), self._on_refused)
        current = self.current.candidate
        present = seen.get(current.path) == current.signature
        for cand in candidates:
            if cand.identity == current.identity:
                return None  # the newest servable bundle is already served
            if cand.path not in settled or cand.identity in self._refused:
                continue
            loop = asyncio.get_running_loop()
            try:
                predictor = await loop.run_in_executor(self._executor, self._load, cand.path)
            except LOAD_ERRORS as exc:
                self._refused.add(cand.identity)
                _refuse(cand.path, str(exc), self._on_refused)
                continue
            loaded = Loaded(cand, predictor)
            self.current = loaded
            self._gone_logged = False
            self._on_swap(loaded)
            return loaded
        if not present and not self._gone_logged:
            logger.warning(
                "the served bundle %s is gone and no other loads; still serving %s",
                current.path,
                current.model_version,
            )
            self._gone_logged = True
        return None

    async def run(self, interval_s: float) -> None:
        """Poll every ``interval_s`` seconds until cancelled; errors are logged, never raised."""
        try:
            while True:
                await asyncio.sleep(interval_s)
                try:
                    await self.poll()
                except Exception:  # the watcher must outlive any one bad poll
                    logger.exception("bundle directory poll failed; trying again later")
        finally:
            self._executor.shutdown(wait=False, cancel_futures=True)

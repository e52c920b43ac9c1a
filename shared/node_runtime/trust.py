"""Which Flower App runs a node will serve: the allow-list of trusted releases and the decision.

In Flower's deployment engine a run arrives with a FAB (a zip of the app directory) chosen by
whoever submitted the run. The node never executes anything from it: its runner always runs the
ClientApp installed with this package. The FAB is still the statement of *which campaign app*
the coordinator is running, so a node serves a run only when its FAB is a release it trusts.

The decision, in order (the first failure is the reason given):

1. the FAB's bytes hash (SHA-256) to the hash the run declares (what the SuperLink says the run
   is, and what a coordinator can show in its audit log);
2. the FAB is a well-formed, bounded zip with a ``pyproject.toml`` (read in memory, never
   extracted, nothing imported);
3. its content digest (see below) or its exact FAB hash is on the allow-list;
4. the app id (``publisher/name``), version and ClientApp reference in its ``pyproject.toml``
   equal the trusted release's, and the app id and version the run declares equal them too.

**FAB bytes are reproducible only on the same toolchain.** Flower 1.42 writes every entry
STORED with a fixed date (2024-10-01) in sorted order, so the same files give the same bytes on
one machine (checked: two builds, and a build of a copy in another directory with a stray
``__pycache__``, hashed equal). But the zip headers record the building OS (``create_system``:
0 on Windows, 3 elsewhere) and ``pyproject.toml`` is re-serialised by ``tomli_w``, so a
release pipeline on another OS or library version would produce other bytes for the same app.
The allow-list therefore trusts the **content digest**: SHA-256 over the sorted list of
``name, SHA-256(file bytes)`` of every file in the FAB, with ``pyproject.toml`` taken in a
canonical form (its parsed TOML as sorted JSON) and Flower's derived manifest
``.info/CONTENT`` left out. Any added, removed, renamed or changed file, or any changed
setting, changes the digest. The exact FAB hash is kept beside it and also accepted.

**How a release gets onto the allow-list.** Nothing is typed by hand:

- the campaign app shipped with this package (``coordinator/flower_app``) is trusted as it is
  installed: at start the runner builds its FAB with Flower's own builder, exactly as the
  coordinator does when it submits a campaign (``coordinator.flower_control.build_fab``), and
  takes the release from it (:func:`release_from_fab`). A node therefore always trusts the
  campaign app of its own version, and only that, unless told more;
- other releases (the previous version during a staggered upgrade) are listed in
  :data:`PINNED_RELEASES` below or in an allow-list file given to the runner
  (``--allow-list``, JSON written by :meth:`AllowList.dumps`). Their entries are produced at
  build time with ``python -m shared.node_runtime.flower_runner --print-release APP_DIR``.

Run-config overrides (``flwr run --run-config``) are outside any FAB hash: the trusted ClientApp
validates every value it reads (``shared.federation.settings.RunSettings``).

Pure Python on purpose (no Flower import): the decision is testable without a federation, and
everything Flower-version-specific stays in ``flower_runner``.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import tomllib
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

TRUSTED_CLIENTAPP = "shared.federation.client_app:app"
ALLOW_LIST_FORMAT = 1
CONTENT_DIGEST_SCHEME = b"retail-fab-content-v1\n"
PYPROJECT = "pyproject.toml"
MANIFEST = ".info/CONTENT"  # Flower's per-file hash list, derived from the other files

# Bounds for reading a FAB that nobody vouched for yet (Flower itself caps FABs at 10 MB).
MAX_FAB_BYTES = 10 * 1024 * 1024
MAX_FILES = 1000
MAX_FILE_BYTES = 10 * 1024 * 1024
MAX_TOTAL_BYTES = 50 * 1024 * 1024

_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


class FabError(ValueError):
    """The bytes are not a FAB this module will read (the message says why)."""


@dataclass(frozen=True)
class TrustedRelease:
    """One campaign app release a node serves: who it is and what its FAB contains."""

    app_id: str  # "publisher/name", as Flower's run.fab_id
    version: str
    content_sha256: str
    fab_sha256: str = ""  # the exact FAB bytes, when built on the same toolchain
    clientapp: str = TRUSTED_CLIENTAPP
    note: str = ""  # where the entry came from, for people reading an allow-list

    def __post_init__(self) -> None:
        if not _SHA256_HEX.fullmatch(self.content_sha256):
            raise ValueError(f"content_sha256 must be 64 lowercase hex digits: {self!r}")
        if self.fab_sha256 and not _SHA256_HEX.fullmatch(self.fab_sha256):
            raise ValueError(f"fab_sha256 must be empty or 64 lowercase hex digits: {self!r}")
        if "/" not in self.app_id or not self.version:
            raise ValueError(f"app_id must be 'publisher/name' and version non-empty: {self!r}")

    def to_dict(self) -> dict[str, str]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> TrustedRelease:
        known = {"app_id", "version", "content_sha256", "fab_sha256", "clientapp", "note"}
        unknown = set(raw) - known
        if unknown:
            raise ValueError(f"unknown keys in a trusted release: {sorted(unknown)}")
        values = {key: raw[key] for key in known if key in raw}
        if not all(isinstance(value, str) for value in values.values()):
            raise ValueError(f"every field of a trusted release is a string: {dict(raw)!r}")
        return cls(**values)


@dataclass(frozen=True)
class FabFacts:
    """What a FAB says about itself, read without extracting or importing anything."""

    fab_sha256: str
    content_sha256: str
    app_id: str
    version: str
    clientapp: str
    serverapp: str
    files: tuple[str, ...]


@dataclass(frozen=True)
class RunClaim:
    """What the run says it is (Flower's Run: fab_hash, fab_id, fab_version)."""

    fab_hash: str
    app_id: str = ""
    version: str = ""


@dataclass(frozen=True)
class TrustDecision:
    """Serve the run or not; ``reason`` is for the retailer's event stream and the reply."""

    trusted: bool
    reason: str
    release: TrustedRelease | None = None
    facts: FabFacts | None = None


def _canonical(name: str, content: bytes) -> bytes:
    """File bytes as digested; pyproject.toml by meaning, so re-serialising it changes nothing."""
    if name != PYPROJECT:
        return content
    try:
        parsed = tomllib.loads(content.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise FabError(f"{PYPROJECT} is not valid TOML: {exc}") from None
    return json.dumps(
        parsed, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str
    ).encode("utf-8")


def content_digest(files: Mapping[str, bytes]) -> str:
    """SHA-256 over sorted ``name NUL sha256(canonical bytes)`` lines; the manifest excluded."""
    digest = hashlib.sha256(CONTENT_DIGEST_SCHEME)
    for name in sorted(files):
        if name == MANIFEST:
            continue
        file_hash = hashlib.sha256(_canonical(name, files[name])).hexdigest()
        digest.update(f"{name}\0{file_hash}\n".encode())
    return digest.hexdigest()


def _safe_name(name: str) -> bool:
    path = PurePosixPath(name)
    return (
        bool(name)
        and "\\" not in name
        and "\0" not in name
        and not path.is_absolute()
        and ".." not in path.parts
    )


def read_fab_files(content: bytes) -> dict[str, bytes]:
    """The FAB's files in memory, bounded; duplicate or path-escaping names are refused."""
    if len(content) > MAX_FAB_BYTES:
        raise FabError(f"the FAB is {len(content)} bytes, above the {MAX_FAB_BYTES} limit")
    try:
        archive = zipfile.ZipFile(io.BytesIO(content))
    except (zipfile.BadZipFile, ValueError) as exc:
        raise FabError(f"the FAB is not a zip archive: {exc}") from None
    files: dict[str, bytes] = {}
    total = 0
    with archive:
        entries = archive.infolist()
        if len(entries) > MAX_FILES:
            raise FabError(f"the FAB holds {len(entries)} files, above the {MAX_FILES} limit")
        for info in entries:
            name = info.filename
            if not _safe_name(name):
                raise FabError(f"the FAB holds a file with an unsafe name: {name!r}")
            if name in files:
                raise FabError(f"the FAB holds {name!r} twice")
            try:
                with archive.open(info) as handle:
                    data = handle.read(MAX_FILE_BYTES + 1)
            except (zipfile.BadZipFile, NotImplementedError, RuntimeError, OSError) as exc:
                raise FabError(f"{name!r} in the FAB cannot be read: {exc}") from None
            if len(data) > MAX_FILE_BYTES:
                raise FabError(f"{name!r} in the FAB is above the {MAX_FILE_BYTES} byte limit")
            total += len(data)
            if total > MAX_TOTAL_BYTES:
                raise FabError(f"the FAB unpacks to more than {MAX_TOTAL_BYTES} bytes")
            files[name] = data
    return files


def _text(table: Mapping[str, Any], *keys: str) -> str:
    value: Any = table
    for key in keys:
        if not isinstance(value, Mapping) or key not in value:
            return ""
        value = value[key]
    return value if isinstance(value, str) else ""


def inspect_fab(content: bytes) -> FabFacts:
    """Hashes, identity and component references of a FAB (raises FabError if unreadable)."""
    files = read_fab_files(content)
    if PYPROJECT not in files:
        raise FabError(f"the FAB has no {PYPROJECT}")
    digest = content_digest(files)  # also checks pyproject.toml parses
    config = tomllib.loads(files[PYPROJECT].decode("utf-8"))
    publisher = _text(config, "tool", "flwr", "app", "publisher")
    name = _text(config, "project", "name")
    return FabFacts(
        fab_sha256=hashlib.sha256(content).hexdigest(),
        content_sha256=digest,
        app_id=f"{publisher}/{name}",
        version=_text(config, "project", "version"),
        clientapp=_text(config, "tool", "flwr", "app", "components", "clientapp"),
        serverapp=_text(config, "tool", "flwr", "app", "components", "serverapp"),
        files=tuple(sorted(files)),
    )


def release_from_fab(content: bytes, note: str = "") -> TrustedRelease:
    """The allow-list entry for a FAB one trusts (built from a release's app directory)."""
    facts = inspect_fab(content)
    return TrustedRelease(
        app_id=facts.app_id,
        version=facts.version,
        content_sha256=facts.content_sha256,
        fab_sha256=facts.fab_sha256,
        clientapp=facts.clientapp,
        note=note,
    )


@dataclass(frozen=True)
class AllowList:
    """The releases a node serves; :meth:`decide` is the only way a run gets served."""

    releases: tuple[TrustedRelease, ...] = field(default_factory=tuple)

    def __add__(self, other: AllowList) -> AllowList:
        merged = list(self.releases)
        merged += [r for r in other.releases if r not in merged]
        return AllowList(tuple(merged))

    @classmethod
    def of(cls, releases: Iterable[TrustedRelease]) -> AllowList:
        return cls(tuple(releases))

    def _match(self, facts: FabFacts) -> TrustedRelease | None:
        for release in self.releases:
            if release.content_sha256 == facts.content_sha256:
                return release
        for release in self.releases:
            if release.fab_sha256 and release.fab_sha256 == facts.fab_sha256:
                return release
        return None

    def decide(self, fab: bytes, claim: RunClaim) -> TrustDecision:
        """Trusted only if every check in the module doc passes; else the first reason."""
        declared = claim.fab_hash.strip().lower()
        if not _SHA256_HEX.fullmatch(declared):
            return TrustDecision(False, f"the run declares no valid FAB hash ({claim.fab_hash!r})")
        actual = hashlib.sha256(fab).hexdigest()
        if actual != declared:
            return TrustDecision(
                False,
                f"the FAB's bytes (sha256 {actual[:12]}…) do not match the hash the run "
                f"declares ({declared[:12]}…)",
            )
        try:
            facts = inspect_fab(fab)
        except FabError as exc:
            return TrustDecision(False, f"the FAB is not a valid app bundle: {exc}")
        release = self._match(facts)
        label = f"{facts.app_id} {facts.version}".strip()
        if release is None:
            return TrustDecision(
                False,
                f"app {label} (content {facts.content_sha256[:12]}…) is not a release this "
                "node trusts",
                facts=facts,
            )
        if facts.app_id != release.app_id or facts.version != release.version:
            return TrustDecision(
                False,
                f"app id mismatch: the FAB says {label}, the trusted release is "
                f"{release.app_id} {release.version}",
                release,
                facts,
            )
        if claim.app_id and claim.app_id != facts.app_id:
            return TrustDecision(
                False,
                f"app id mismatch: the run declares {claim.app_id}, its FAB is {facts.app_id}",
                release,
                facts,
            )
        if claim.version and claim.version != facts.version:
            return TrustDecision(
                False,
                f"app version mismatch: the run declares {claim.version}, its FAB is "
                f"{facts.version}",
                release,
                facts,
            )
        if facts.clientapp != release.clientapp:
            return TrustDecision(
                False,
                f"the FAB names ClientApp {facts.clientapp!r}, the trusted release "
                f"{release.clientapp!r}",
                release,
                facts,
            )
        return TrustDecision(True, f"trusted release {label}", release, facts)

    def dumps(self) -> str:
        """The allow-list file format (JSON), as ``--allow-list`` reads it."""
        return json.dumps(
            {"format": ALLOW_LIST_FORMAT, "releases": [r.to_dict() for r in self.releases]},
            indent=2,
            sort_keys=True,
        )

    @classmethod
    def loads(cls, text: str) -> AllowList:
        raw = json.loads(text)
        if not isinstance(raw, dict) or raw.get("format") != ALLOW_LIST_FORMAT:
            raise ValueError(f"not an allow-list of format {ALLOW_LIST_FORMAT}")
        releases = raw.get("releases")
        if not isinstance(releases, list) or not all(isinstance(r, dict) for r in releases):
            raise ValueError("an allow-list's 'releases' is a list of objects")
        return cls(tuple(TrustedRelease.from_dict(r) for r in releases))

    @classmethod
    def load(cls, path: Path) -> AllowList:
        return cls.loads(Path(path).read_text("utf-8"))


# Releases this build trusts besides the campaign app installed with it (see the module doc):
# add ``TrustedRelease(...)`` entries printed by ``flower_runner --print-release``.
PINNED_RELEASES: tuple[TrustedRelease, ...] = ()
PINNED = AllowList(PINNED_RELEASES)

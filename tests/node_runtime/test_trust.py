"""Which runs a node serves (pure decisions on FAB bytes) and the node's local event stream."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from shared.node_runtime.events import (
    EVENTS_FILE,
    Event,
    EventKind,
    EventLog,
    last_events,
    read_events,
)
from shared.node_runtime.trust import (
    TRUSTED_CLIENTAPP,
    AllowList,
    FabError,
    RunClaim,
    TrustedRelease,
    inspect_fab,
    release_from_fab,
)

APP_ID = "retail-intelligence/retail-campaign"

PYPROJECT = """[project]
name = "retail-campaign"
version = "0.1.0"

[tool.flwr.app]
publisher = "retail-intelligence"

[tool.flwr.app.components]
serverapp = "coordinator.flower_app.server:app"
clientapp = "{clientapp}"

[tool.flwr.app.config]
rounds = 5
"""


def _files(clientapp: str = TRUSTED_CLIENTAPP, server: bytes = b"app = 1\n") -> dict[str, bytes]:
    return {
        "pyproject.toml": PYPROJECT.format(clientapp=clientapp).encode(),
        "__init__.py": b'"""The campaign app."""\n',
        "server.py": server,
    }


def _fab(files: dict[str, bytes], *, create_system: int = 3, manifest: bool = True) -> bytes:
    """A FAB as Flower 1.42 writes one (STORED, fixed date, sorted, .info/CONTENT last)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        lines = []
        for name in ["pyproject.toml", *sorted(n for n in files if n != "pyproject.toml")]:
            info = zipfile.ZipInfo(name, date_time=(2024, 10, 1, 0, 0, 0))
            info.create_system = create_system
            archive.writestr(info, files[name])
            lines.append(f"{name},{hashlib.sha256(files[name]).hexdigest()},{len(files[name]) * 8}")
        if manifest:
            info = zipfile.ZipInfo(".info/CONTENT", date_time=(2024, 10, 1, 0, 0, 0))
            archive.writestr(info, "\n".join(lines))
    return buffer.getvalue()


def _claim(fab: bytes, app_id: str = APP_ID, version: str = "0.1.0") -> RunClaim:
    return RunClaim(hashlib.sha256(fab).hexdigest(), app_id, version)


@pytest.fixture
def trusted() -> tuple[bytes, AllowList]:
    fab = _fab(_files())
    return fab, AllowList((release_from_fab(fab),))


# -- trust decisions -------------------------------------------------------------------------


def test_an_allow_listed_release_is_trusted(trusted: tuple[bytes, AllowList]) -> None:
    fab, allowed = trusted
    decision = allowed.decide(fab, _claim(fab))
    assert decision.trusted, decision.reason
    assert decision.release is not None and decision.release.app_id == APP_ID
    assert decision.facts is not None and decision.facts.clientapp == TRUSTED_CLIENTAPP


def test_an_unknown_release_is_refused_with_a_reason(trusted: tuple[bytes, AllowList]) -> None:
    _, allowed = trusted
    other = _fab(_files(server=b"app = 2\n"))  # one changed line, same name and version
    decision = allowed.decide(other, _claim(other))
    assert not decision.trusted
    assert decision.reason.startswith(f"app {APP_ID} 0.1.0 (content ")
    assert decision.reason.endswith("is not a release this node trusts")


def test_nothing_is_trusted_by_an_empty_allow_list(trusted: tuple[bytes, AllowList]) -> None:
    fab, _ = trusted
    assert not AllowList().decide(fab, _claim(fab)).trusted


def test_a_fab_whose_bytes_do_not_match_the_declared_hash_is_refused(
    trusted: tuple[bytes, AllowList],
) -> None:
    fab, allowed = trusted
    other = _fab(_files(server=b"app = 2\n"))
    decision = allowed.decide(other, _claim(fab))  # the trusted hash, other bytes
    assert not decision.trusted
    assert "do not match the hash the run declares" in decision.reason
    assert not allowed.decide(fab, RunClaim("not-a-hash")).trusted


def test_an_app_id_mismatch_is_refused(trusted: tuple[bytes, AllowList]) -> None:
    fab, allowed = trusted
    # The run says it is another app than its FAB.
    decision = allowed.decide(fab, _claim(fab, app_id="evil/retail-campaign"))
    assert not decision.trusted and decision.reason.startswith("app id mismatch")
    assert not allowed.decide(fab, _claim(fab, version="0.2.0")).trusted
    # An allow-list entry whose identity differs from the FAB it names.
    release = release_from_fab(fab)
    wrong = TrustedRelease(
        app_id="someone/else", version="0.1.0", content_sha256=release.content_sha256
    )
    decision = AllowList((wrong,)).decide(fab, _claim(fab))
    assert not decision.trusted
    assert decision.reason == (
        f"app id mismatch: the FAB says {APP_ID} 0.1.0, the trusted release is someone/else 0.1.0"
    )


def test_a_fab_naming_another_clientapp_is_refused_even_when_its_hash_is_listed() -> None:
    fab = _fab(_files(clientapp="evil_clientapp:app"))
    facts = inspect_fab(fab)
    listed = TrustedRelease(APP_ID, "0.1.0", "0" * 64, fab_sha256=facts.fab_sha256)
    decision = AllowList((listed,)).decide(fab, _claim(fab))
    assert not decision.trusted
    assert "evil_clientapp:app" in decision.reason


def test_the_exact_fab_hash_alone_is_accepted(trusted: tuple[bytes, AllowList]) -> None:
    fab, _ = trusted
    release = TrustedRelease(APP_ID, "0.1.0", "0" * 64, fab_sha256=hashlib.sha256(fab).hexdigest())
    assert AllowList((release,)).decide(fab, _claim(fab)).trusted


def test_the_content_digest_ignores_how_the_zip_and_pyproject_were_written(
    trusted: tuple[bytes, AllowList],
) -> None:
    """Same files built on Windows (create_system 0), pyproject re-serialised, no manifest:
    other FAB bytes, the same release."""
    fab, allowed = trusted
    files = _files()
    files["pyproject.toml"] = files["pyproject.toml"].replace(b" = ", b"=").replace(b"\n\n", b"\n")
    rebuilt = _fab(files, create_system=0, manifest=False)
    assert hashlib.sha256(rebuilt).digest() != hashlib.sha256(fab).digest()
    assert inspect_fab(rebuilt).content_sha256 == inspect_fab(fab).content_sha256
    assert allowed.decide(rebuilt, _claim(rebuilt)).trusted


@pytest.mark.parametrize(
    "change",
    [
        lambda f: f.update({"extra.py": b"import os\n"}),
        lambda f: f.update({"server.py": f["server.py"] + b"# comment\n"}),
        lambda f: f.update({"pyproject.toml": f["pyproject.toml"].replace(b"5", b"6")}),
        lambda f: f.update({"Server.py": f.pop("server.py")}),
    ],
    ids=["added file", "changed byte", "changed setting", "renamed file"],
)
def test_any_change_to_the_files_changes_the_release(
    change: Callable[[dict[str, bytes]], None], trusted: tuple[bytes, AllowList]
) -> None:
    _, allowed = trusted
    files = _files()
    change(files)
    tampered = _fab(files)
    assert not allowed.decide(tampered, _claim(tampered)).trusted


def _zip(entries: list[tuple[str, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in entries:
            archive.writestr(zipfile.ZipInfo(name), data)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"not a zip", "not a zip archive"),
        (_zip([("server.py", b"x")]), "no pyproject.toml"),
        (_zip([("pyproject.toml", b"[project")]), "not valid TOML"),
        (_zip([("pyproject.toml", b""), ("../escape.py", b"x")]), "unsafe name"),
        (_zip([("pyproject.toml", b""), ("/abs.py", b"x")]), "unsafe name"),
    ],
)
def test_malformed_fabs_are_refused_without_extracting(content: bytes, problem: str) -> None:
    with pytest.raises(FabError, match=problem):
        inspect_fab(content)
    decision = AllowList().decide(content, RunClaim(hashlib.sha256(content).hexdigest()))
    assert not decision.trusted and problem in decision.reason


def test_a_fab_holding_a_name_twice_is_refused() -> None:
    with pytest.warns(UserWarning, match="Duplicate name"):
        content = _zip([("pyproject.toml", b""), ("a.py", b"1"), ("a.py", b"2")])
    with pytest.raises(FabError, match="twice"):
        inspect_fab(content)


def test_an_allow_list_file_round_trips_and_rejects_unknown_keys(
    trusted: tuple[bytes, AllowList], tmp_path: Path
) -> None:
    fab, allowed = trusted
    path = tmp_path / "allow.json"
    path.write_text(allowed.dumps(), "utf-8")
    assert AllowList.load(path) == allowed
    assert AllowList.load(path).decide(fab, _claim(fab)).trusted
    raw = json.loads(allowed.dumps())
    raw["releases"][0]["trust_everything"] = "yes"
    with pytest.raises(ValueError, match="unknown keys"):
        AllowList.loads(json.dumps(raw))
    with pytest.raises(ValueError, match="format"):
        AllowList.loads(json.dumps({"format": 99, "releases": []}))
    with pytest.raises(ValueError, match="64 lowercase hex"):
        TrustedRelease(APP_ID, "0.1.0", "abc")


def test_merging_allow_lists_keeps_each_release_once(trusted: tuple[bytes, AllowList]) -> None:
    _, allowed = trusted
    assert (allowed + allowed).releases == allowed.releases


# -- the event stream ------------------------------------------------------------------------


def test_events_append_and_read_back_in_order(tmp_path: Path) -> None:
    log = EventLog(tmp_path)
    log.append(EventKind.RUNNER_STARTED, message="serving trusted runs only", pid=12)
    log.append(EventKind.DECLINED, run_id=5, server_round=2, message="no consent", stage="train")
    log.append(EventKind.EPSILON_CHARGED, run_id=5, server_round=3, epsilon=0.5, spent=1.5)
    batch = read_events(tmp_path)
    assert [e.kind for e in batch.events] == ["runner_started", "declined", "epsilon_charged"]
    declined = batch.events[1]
    assert (declined.run_id, declined.round, declined.message) == (5, 2, "no consent")
    assert declined.data == {"stage": "train"}
    assert batch.events[2].data == {"epsilon": 0.5, "spent": 1.5}
    assert all(e.at.tzinfo is not None for e in batch.events)
    assert batch.skipped == 0 and batch.next_offset == (tmp_path / EVENTS_FILE).stat().st_size
    # Following the stream: only what came after the offset.
    log.append(EventKind.MODEL_RECEIVED, run_id=5, server_round=3, loss=0.25)
    newer = read_events(tmp_path, batch.next_offset)
    assert [e.kind for e in newer.events] == ["model_received"]
    assert [e.kind for e in last_events(tmp_path, 2)] == ["epsilon_charged", "model_received"]


def test_a_truncated_last_line_is_left_for_later_and_then_skipped(tmp_path: Path) -> None:
    log = EventLog(tmp_path)
    log.append(EventKind.JOINED, run_id=1, server_round=1)
    path = tmp_path / EVENTS_FILE
    with path.open("ab") as handle:
        handle.write(b'{"v":1,"at":"2026-01-01T00:00:00+00:00","kind":"trai')  # a crash mid-write
    batch = read_events(tmp_path)
    assert [e.kind for e in batch.events] == ["joined"]
    assert batch.skipped == 0
    assert batch.next_offset < path.stat().st_size  # the partial line is not consumed
    log.append(EventKind.ERROR, run_id=1, message="after the crash")  # ends the cut line first
    rest = read_events(tmp_path, batch.next_offset)
    assert [e.kind for e in rest.events] == ["error"]
    assert rest.skipped == 1
    assert [e.kind for e in read_events(tmp_path).events] == ["joined", "error"]


def test_readers_keep_unknown_kinds_and_skip_garbage(tmp_path: Path) -> None:
    path = tmp_path / EVENTS_FILE
    newer = Event("kind_from_a_newer_runner", datetime.now(UTC), data={"x": 1}).to_json()
    path.write_text(f"{newer}\nnot json\n[1, 2]\n\n", "utf-8")
    batch = read_events(tmp_path)
    assert [e.kind for e in batch.events] == ["kind_from_a_newer_runner"]
    assert batch.skipped == 2


def test_event_values_are_plain_json(tmp_path: Path) -> None:
    event = EventLog(tmp_path).append(
        EventKind.TRAINED, seconds=float("nan"), where=tmp_path, count=3, ok=True
    )
    assert event.data == {"seconds": None, "where": str(tmp_path), "count": 3, "ok": True}
    line = (tmp_path / EVENTS_FILE).read_text("utf-8")
    assert json.loads(line)["data"]["seconds"] is None


def test_a_missing_stream_reads_as_empty(tmp_path: Path) -> None:
    assert read_events(tmp_path / "nowhere").events == ()
    assert read_events(tmp_path / "nowhere", 10).next_offset == 10

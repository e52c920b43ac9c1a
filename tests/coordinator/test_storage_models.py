"""Model registry: atomic publication, checksums, tamper detection, model card validation."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from coordinator.audit import AuditLog
from coordinator.db import Database, NotFoundError
from coordinator.services.campaigns import CampaignStore
from coordinator.services.models import (
    ModelIntegrityError,
    ModelRegistry,
    file_sha256,
    validate_card,
)
from tests.coordinator.test_storage_support import BACKENDS, FakeClock, open_test_db

CARD: dict[str, Any] = {
    "data_summary": {"retailers": 7, "rows": 120_000, "period": "2025-01..2025-12"},
    "metrics": {
        "overall": {"wape": 0.31},
        "by_size_group": {"small": {"wape": 0.35}, "medium": {"wape": 0.3}, "large": None},
    },
    "epsilon_spent": 2.0,
    "intended_use": "Weekly demand forecasts and price elasticities for small grocery retailers.",
    "limitations": ["Not validated for new product categories."],
}


@pytest.fixture(params=BACKENDS)
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    with open_test_db(request.param, tmp_path) as database:
        yield database


@pytest.fixture
def audit(db: Database) -> AuditLog:
    return AuditLog(db, FakeClock())


@pytest.fixture
def registry(db: Database, audit: AuditLog, tmp_path: Path) -> ModelRegistry:
    return ModelRegistry(db, tmp_path / "models", audit, clock=FakeClock())


@pytest.fixture
def campaign(db: Database, audit: AuditLog) -> int:
    return (
        CampaignStore(db, audit)
        .create(rounds=3, epsilon=2.0, tasks=["forecasting"], created_by="ops")
        .id
    )


def arrays() -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    return [rng.normal(size=(4, 3)).astype(np.float32), np.arange(5, dtype=np.int64)]


def test_publish_writes_a_checksummed_file(
    registry: ModelRegistry, audit: AuditLog, campaign: int
) -> None:
    record = registry.publish(campaign, arrays(), CARD)
    assert record.path.is_file() and record.path.parent == registry.models_dir
    assert record.sha256 == file_sha256(record.path)
    assert record.version == f"m-{campaign}-{record.sha256[:8]}"
    assert record.card == CARD
    assert registry.get(record.version) == record
    assert registry.list() == [record]
    assert registry.open_file(record.version) == record.path
    loaded = registry.load_arrays(record.version)
    for got, want in zip(loaded, arrays(), strict=True):
        np.testing.assert_array_equal(got, want)
        assert got.dtype == want.dtype
    assert list(registry.models_dir.iterdir()) == [record.path]  # no temporary file left
    event = audit.events()[-1]
    assert (event.action, event.subject) == ("model.publish", f"model:{record.version}")
    assert event.details["sha256"] == record.sha256
    assert "path" not in record.to_json()


def test_an_altered_file_is_never_served(registry: ModelRegistry, campaign: int) -> None:
    record = registry.publish(campaign, arrays(), CARD)
    data = bytearray(record.path.read_bytes())
    data[len(data) // 2] ^= 0x01
    record.path.write_bytes(bytes(data))
    with pytest.raises(ModelIntegrityError, match="altered"):
        registry.open_file(record.version)
    with pytest.raises(ModelIntegrityError, match="altered"):
        registry.read_bytes(record.version)
    with pytest.raises(ModelIntegrityError, match="altered"):
        registry.load_arrays(record.version)
    record.path.unlink()
    with pytest.raises(ModelIntegrityError, match="missing"):
        registry.open_file(record.version)
    with pytest.raises(NotFoundError):
        registry.open_file("m-1-deadbeef")


def test_publishing_identical_content_twice_is_one_version(
    registry: ModelRegistry, campaign: int
) -> None:
    first = registry.publish(campaign, arrays(), CARD)
    again = registry.publish(campaign, arrays(), CARD)
    if again.sha256 == first.sha256:  # numpy's archive bytes are deterministic
        assert again == first and len(registry.list()) == 1
    else:  # archive timestamps differ: two honest versions, each intact
        assert {r.version for r in registry.list()} == {first.version, again.version}


def _without(path: str) -> dict[str, Any]:
    card = copy.deepcopy(CARD)
    *parents, last = path.split(".")
    target = card
    for key in parents:
        target = target[key]
    del target[last]
    return card


@pytest.mark.parametrize(
    ("card", "message"),
    [
        (_without("intended_use"), "lacks intended_use"),
        (_without("limitations"), "lacks limitations"),
        (_without("data_summary"), "lacks data_summary"),
        (_without("epsilon_spent"), "lacks epsilon_spent"),
        (_without("metrics.overall"), "metrics.overall"),
        (_without("metrics.by_size_group.large"), "lacks 'large'"),
        ({**CARD, "epsilon_spent": 11}, "epsilon_spent"),
        ({**CARD, "limitations": []}, "limitations"),
        ({**CARD, "intended_use": " "}, "intended_use"),
    ],
)
def test_model_cards_are_validated(card: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        validate_card(card)


def test_an_invalid_card_publishes_nothing(registry: ModelRegistry, campaign: int) -> None:
    with pytest.raises(ValueError, match="lacks limitations"):
        registry.publish(campaign, arrays(), _without("limitations"))
    assert registry.list() == []
    assert not registry.models_dir.exists() or list(registry.models_dir.iterdir()) == []
    assert validate_card(CARD) == CARD


def test_arrays_and_campaign_are_validated(registry: ModelRegistry, campaign: int) -> None:
    with pytest.raises(ValueError, match="at least one"):
        registry.publish(campaign, [], CARD)
    with pytest.raises(ValueError, match="only numbers"):
        registry.publish(campaign, [np.array(["a"], dtype=object)], CARD)
    with pytest.raises(NotFoundError):
        registry.publish(campaign + 100, arrays(), CARD)

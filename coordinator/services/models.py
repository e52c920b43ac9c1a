"""The model registry: published global models, each an .npz file with a checksum and a card.

Nodes download the global model after a campaign and run it on their own data, so what they
receive must be exactly what the campaign produced: the file is written atomically (temporary
file, fsync, rename), its SHA-256 is stored, and it is checked again every time it is served;
an altered or truncated file is refused rather than served. Versions are content-addressed
(``m-<campaign>-<sha[:8]>``). Each model carries a model card (what data it learned from, how
well it does overall and per retailer-size group, the ε it cost, what it is for and not for),
validated here so no model is published without one.
"""

from __future__ import annotations

import builtins
import hashlib
import math
import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError

from coordinator.audit import AuditLog
from coordinator.db import schema as t
from coordinator.db.database import Database, NotFoundError
from coordinator.db.types import Clock, as_utc, plain_json, utc_now

SIZE_GROUPS = ("small", "medium", "large")
REQUIRED_CARD_KEYS = ("data_summary", "metrics", "epsilon_spent", "intended_use", "limitations")


class ModelIntegrityError(RuntimeError):
    """A stored model file is missing or no longer matches its checksum; it is not served."""


@dataclass(frozen=True)
class ModelVersionRecord:
    """A published model: where its file is, its checksum and its card."""

    id: int
    version: str
    campaign_id: int
    sha256: str
    path: Path
    card: dict[str, Any]
    created_at: datetime

    def to_json(self) -> dict[str, Any]:
        """A JSON-able dict without the server-side path (the API's shape)."""
        return {
            "version": self.version,
            "campaign_id": self.campaign_id,
            "sha256": self.sha256,
            "card": self.card,
            "created_at": self.created_at.isoformat(),
        }


def validate_card(card: Mapping[str, Any]) -> dict[str, Any]:
    """The card as plain JSON, or ``ValueError`` naming the missing or malformed entry.

    Required: ``data_summary`` (mapping), ``metrics`` with ``overall`` (mapping) and
    ``by_size_group`` holding ``small``, ``medium`` and ``large`` (each a mapping, or None
    where too few retailers of that size took part to publish it), ``epsilon_spent`` (a number
    in [0, 10]), ``intended_use`` (text) and ``limitations`` (text or a list of texts).
    """
    if not isinstance(card, Mapping):
        raise ValueError("the model card must be a mapping")
    missing = [key for key in REQUIRED_CARD_KEYS if key not in card]
    if missing:
        raise ValueError(f"the model card lacks {', '.join(missing)}")
    if not isinstance(card["data_summary"], Mapping):
        raise ValueError("model card: data_summary must be a mapping")
    metrics = card["metrics"]
    if not isinstance(metrics, Mapping) or not isinstance(metrics.get("overall"), Mapping):
        raise ValueError("model card: metrics.overall must be a mapping of metric values")
    groups = metrics.get("by_size_group")
    if not isinstance(groups, Mapping):
        raise ValueError("model card: metrics.by_size_group must map small/medium/large")
    for group in SIZE_GROUPS:
        if group not in groups:
            raise ValueError(f"model card: metrics.by_size_group lacks {group!r}")
        if groups[group] is not None and not isinstance(groups[group], Mapping):
            raise ValueError(f"model card: metrics.by_size_group.{group} must be a mapping or None")
    spent = card["epsilon_spent"]
    if (
        isinstance(spent, bool)
        or not isinstance(spent, int | float)
        or not math.isfinite(spent)
        or not 0 <= spent <= 10
    ):
        raise ValueError(f"model card: epsilon_spent must be a number in [0, 10], got {spent!r}")
    if not isinstance(card["intended_use"], str) or not card["intended_use"].strip():
        raise ValueError("model card: intended_use must say what the model is for")
    limitations = card["limitations"]
    if isinstance(limitations, str):
        ok = bool(limitations.strip())
    else:
        ok = (
            isinstance(limitations, list | tuple)
            and bool(limitations)
            and all(isinstance(item, str) and item.strip() for item in limitations)
        )
    if not ok:
        raise ValueError("model card: limitations must be text or a non-empty list of texts")
    plain: dict[str, Any] = plain_json(card, "model card")
    return plain


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


class ModelRegistry:
    """Publishes global models into ``models_dir`` and serves them only while intact."""

    def __init__(
        self, db: Database, models_dir: Path, audit: AuditLog, *, clock: Clock = utc_now
    ) -> None:
        self._db = db
        self.models_dir = Path(models_dir)
        self._audit = audit
        self._clock = clock

    def publish(
        self,
        campaign_id: int,
        arrays: builtins.list[np.ndarray],
        card: Mapping[str, Any],
        *,
        actor: str = "system",
    ) -> ModelVersionRecord:
        """Store a campaign's global model (its parameter arrays, in order) with its card.

        Publishing identical content again returns the existing version. Raises
        ``ValueError`` for an invalid card or arrays, ``NotFoundError`` for an unknown campaign.
        """
        plain_card = validate_card(card)
        _check_arrays(arrays)
        with self._db.session(readonly=True) as session:
            if session.get(t.Campaign, campaign_id) is None:
                raise NotFoundError(f"there is no campaign #{campaign_id}")
        self.models_dir.mkdir(parents=True, exist_ok=True)
        temporary = self.models_dir / f".publishing-{uuid.uuid4().hex}.npz"
        try:
            with temporary.open("wb") as handle:
                np.savez(handle, *arrays)
                handle.flush()
                os.fsync(handle.fileno())
            sha = file_sha256(temporary)
            version = f"m-{campaign_id}-{sha[:8]}"
            existing = self.get(version)
            if existing is not None:
                if existing.sha256 != sha:
                    raise ModelIntegrityError(f"version {version} exists with other content")
                return existing
            final = self.models_dir / f"{version}.npz"
            temporary.replace(final)
            _fsync_dir(self.models_dir)
        finally:
            temporary.unlink(missing_ok=True)
        try:
            with self._db.session() as session:
                model_id = session.execute(
                    insert(t.ModelVersion)
                    .values(
                        version=version,
                        campaign_id=campaign_id,
                        sha256=sha,
                        path=final.name,
                        card=plain_card,
                        created_at=as_utc(self._clock(), what="the registry clock"),
                    )
                    .returning(t.ModelVersion.id)
                ).scalar_one()
                self._audit.append_in(
                    session,
                    actor,
                    "model.publish",
                    f"model:{version}",
                    {"campaign_id": campaign_id, "sha256": sha, "model_id": model_id},
                )
                return self._record(session.get_one(t.ModelVersion, model_id))
        except IntegrityError:
            concurrent = self.get(version)  # the same content published at the same moment
            if concurrent is not None and concurrent.sha256 == sha:
                return concurrent
            raise

    def list(self) -> builtins.list[ModelVersionRecord]:
        """Every published model, newest first."""
        query = select(t.ModelVersion).order_by(t.ModelVersion.id.desc())
        with self._db.session(readonly=True) as session:
            return [self._record(row) for row in session.scalars(query)]

    def get(self, version: str) -> ModelVersionRecord | None:
        """One published model by version, or None."""
        query = select(t.ModelVersion).where(t.ModelVersion.version == version)
        with self._db.session(readonly=True) as session:
            row = session.scalars(query).first()
            return None if row is None else self._record(row)

    def open_file(self, version: str) -> Path:
        """The path of a model's file after checking it still matches its checksum.

        Raises ``NotFoundError`` for an unknown version and ``ModelIntegrityError`` when the
        file is missing or was altered (to serve bytes with no gap between check and read,
        use ``read_bytes``).
        """
        record = self._require(version)
        try:
            actual = file_sha256(record.path)
        except FileNotFoundError:
            raise ModelIntegrityError(f"the file of model {version} is missing") from None
        _compare(record, actual)
        return record.path

    def read_bytes(self, version: str) -> bytes:
        """The model file's bytes, checked against the stored checksum after reading."""
        record = self._require(version)
        try:
            data = record.path.read_bytes()
        except FileNotFoundError:
            raise ModelIntegrityError(f"the file of model {version} is missing") from None
        _compare(record, hashlib.sha256(data).hexdigest())
        return data

    def load_arrays(self, version: str) -> builtins.list[np.ndarray]:
        """The model's parameter arrays in publication order (checksum verified first)."""
        import io

        data = self.read_bytes(version)
        with np.load(io.BytesIO(data), allow_pickle=False) as archive:
            return [archive[f"arr_{i}"] for i in range(len(archive.files))]

    def _require(self, version: str) -> ModelVersionRecord:
        record = self.get(version)
        if record is None:
            raise NotFoundError(f"there is no model version {version!r}")
        return record

    def _record(self, row: t.ModelVersion) -> ModelVersionRecord:
        return ModelVersionRecord(
            id=row.id,
            version=row.version,
            campaign_id=row.campaign_id,
            sha256=row.sha256,
            path=self.models_dir / row.path,
            card=dict(row.card),
            created_at=row.created_at,
        )


def _check_arrays(arrays: builtins.list[np.ndarray]) -> None:
    if not isinstance(arrays, list | tuple) or not arrays:
        raise ValueError("a model needs at least one parameter array")
    for index, array in enumerate(arrays):
        if not isinstance(array, np.ndarray):
            raise ValueError(f"parameter {index} is a {type(array).__name__}, not a numpy array")
        if array.dtype.kind not in "biuf":
            raise ValueError(f"parameter {index} has dtype {array.dtype}; only numbers are stored")


def _compare(record: ModelVersionRecord, actual: str) -> None:
    if actual != record.sha256:
        raise ModelIntegrityError(
            f"the file of model {record.version} was altered or corrupted "
            f"(SHA-256 {actual[:12]}…, published as {record.sha256[:12]}…); it will not be served"
        )


def _fsync_dir(directory: Path) -> None:
    """Make the rename durable (POSIX); a no-op where directories cannot be opened."""
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)

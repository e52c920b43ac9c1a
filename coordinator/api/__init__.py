"""The coordinator's HTTP API (FastAPI): ``create_app(coord, runner)``."""

from coordinator.api.app import API_PREFIX, create_app

__all__ = ["API_PREFIX", "create_app"]

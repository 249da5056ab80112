"""Why a request names no model version this process can run: the data plane raises these, and
each protocol adapter answers them in its own words (REST 404/503 with ``detail``, V2 404/503
with ``error``; gRPC ``NOT_FOUND``/``UNAVAILABLE``)."""

from __future__ import annotations

from collections.abc import Iterable


class UnknownModel(Exception):
    """A request for a model this process has never heard of: 404, listing the ones it has."""

    def __init__(self, name: str, known: Iterable[str]) -> None:
        self.name, self.known = name[:40], ", ".join(known) or "none"
        super().__init__(f"no model named {self.name!r}; models: {self.known}")


class ModelUnavailable(Exception):
    """A request for a model with no version loaded; the route answers 503 with the reason."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"model '{name}' is not available: {reason}")
        self.name = name
        self.reason = reason


class VersionNotServed(Exception):
    """A request for a version this process does not serve; the route answers 404 (or 503 when
    the version is on disk but failed to load, with the reason)."""

    def __init__(self, name: str, version: str, served: list[str], reason: str | None) -> None:
        versions = ", ".join(served) or "none"
        because = f"it failed to load: {reason}" if reason else "there is no such version"
        super().__init__(
            f"version '{version[:20]}' of model '{name}' is not served ({because}); "
            f"served versions: {versions}"
        )
        self.failed = reason is not None


class NoCanary(VersionNotServed):
    """``"version": "canary"`` for a model whose rollout has no canary: 404, saying so."""

    def __init__(self, name: str, stable: str) -> None:
        Exception.__init__(
            self, f"model '{name}' has no canary (its rollout: stable {stable}); "
            f"name a version or 'stable'",
        )  # fmt: skip
        self.failed = False


NOT_SERVED = (UnknownModel, ModelUnavailable, VersionNotServed)
"""Every way a request can name no version this process runs (for ``except``)."""

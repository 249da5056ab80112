"""Rollouts: which served version answers a request that names none, and which one shadows it.

A model folder may hold ``rollout.json`` beside its version folders::

    {"stable": "1"}                                       # 1 answers, whatever else is served
    {"stable": "1", "canary": "2", "canary_percent": 20}  # about 20% of requests go to 2
    {"stable": "1", "shadow": "2"}                        # 1 answers; 2 runs too, off the path

It is read at start-up and at every reload (``service.serving.registry``). A file that cannot be read,
breaks the schema below, or names a version that is not served fails that model's reload with
the reason (``failures["NAME/rollout.json"]``, in ``/readyz`` and the reload answer) and the
rollout in force before stays; at first start, with none before, the highest version answers.

The routing rule, for a request that names no version:

* no ``rollout.json``: the highest served version (the rule without rollouts);
* otherwise ``stable``, unless the request falls in the canary share. With an
  ``X-Routing-Key`` header the share is decided by the key: its bucket is the first 8 bytes of
  ``sha256(model name + "\\n" + key)`` modulo 100, and buckets below ``canary_percent`` go to the
  canary. The hash is the same in every worker process and every restart (Python's ``hash`` is
  salted per process, so it is never used), so one key always meets one version. Without the
  header each request draws at random, so about ``canary_percent``% of them reach the canary.

A request may also name ``"version": "stable"`` or ``"canary"`` (the V2 paths too:
``/v2/models/NAME/versions/canary/infer``); ``canary`` on a model without one is a 404 saying so.
Responses always say which version answered.

Shadow: when ``stable`` answered a predict request (REST or V2 inference) that named no version
(or ``stable``), the ``shadow`` version runs on the same input once the response is on its way
(``service.serving.shadow``) and the agreement is counted in ``/metrics``; a shadow failure never
touches the response.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Collection
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated, Any, Self

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

ROLLOUT_FILE = "rollout.json"
ROUTING_HEADER = "x-routing-key"
LABELS = ("stable", "canary")
BUCKETS = 100


def _version_text(value: object) -> object:
    """``1``, ``"1"`` and ``1.0`` name the same version; the API writes versions as strings."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


VersionNumber = Annotated[str, Field(pattern=r"^[1-9][0-9]{0,17}$"), BeforeValidator(_version_text)]


class RolloutFile(BaseModel):
    """The content of ``models/NAME/rollout.json``. Unknown keys are refused: a typo such as
    ``canary_percentage`` would otherwise silently send nobody to the canary."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    stable: VersionNumber = Field(description="The version that answers by default.")
    canary: VersionNumber | None = Field(
        None, description="A version tried on a share of requests."
    )
    canary_percent: int | None = Field(
        None,
        ge=0,
        le=100,
        description="The canary's share of the requests naming no version, in %.",
    )
    shadow: VersionNumber | None = Field(
        None, description="A version run on stable's inputs, off the response path, and compared."
    )

    @model_validator(mode="after")
    def _coherent(self) -> Self:
        if (self.canary is None) != (self.canary_percent is None):
            raise ValueError("'canary' and 'canary_percent' go together: give both or neither")
        named = [v for v in (self.stable, self.canary, self.shadow) if v is not None]
        if len(set(named)) != len(named):
            raise ValueError(f"stable, canary and shadow must be different versions, got {named}")
        return self


@dataclass(frozen=True)
class Rollout:
    """The rollout in force for one model: the file's content (None: no file, the highest version
    serves) and the effective versions. ``digest`` is the sha256 of ``rollout.json`` as last
    read, valid or not (empty: no file), so the poller sees an edit without reloading a broken
    file on every scan."""

    file: RolloutFile | None
    stable: str
    canary: str | None = None
    canary_percent: int = 0
    shadow: str | None = None
    digest: str = ""
    problem: str | None = None

    @classmethod
    def of(cls, file: RolloutFile | None, served: Collection[int], digest: str,
           problem: str | None = None) -> Rollout:  # fmt: skip
        if file is None:
            return cls(None, str(max(served)), digest=digest, problem=problem)
        return cls(file, file.stable, file.canary, file.canary_percent or 0, file.shadow, digest,
                   problem)  # fmt: skip

    def choose(self, name: str, key: str | None) -> str:
        """The version for a request that names none (the module docstring's rule)."""
        if self.canary is None or self.canary_percent <= 0:
            return self.stable
        return self.canary if bucket(name, key) < self.canary_percent else self.stable

    def label(self, version: str) -> str | None:
        """``stable`` or ``canary`` as the version they name (None: no canary)."""
        return self.stable if version == "stable" else self.canary

    def shown(self) -> dict[str, Any]:
        """What ``/models/NAME`` shows under ``rollout``."""
        return {
            "file": self.file.model_dump(exclude_none=True) if self.file else None,
            "stable": self.stable, "canary": self.canary,
            "canary_percent": self.canary_percent if self.canary else 0, "shadow": self.shadow,
            "problem": self.problem,
        }  # fmt: skip


def bucket(name: str, key: str | None) -> int:
    """0–99: by the routing key's sha256 when given (equal in every process), else at random."""
    if key is None:
        return random.randrange(BUCKETS)
    digest = hashlib.sha256(f"{name}\n{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


class RolloutError(Exception):
    """A ``rollout.json`` that must not be applied, with the reason naming the file and field."""


def read_file(path: Path, served: Collection[int]) -> tuple[RolloutFile | None, str]:
    """The file's content checked against the served versions, and its sha256 (None, "" when
    there is no file); ``RolloutError`` with the reason otherwise."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None, ""
    except OSError as error:
        raise RolloutError(f"{path} cannot be read: {error}") from None
    digest = hashlib.sha256(raw).hexdigest()
    try:
        file = RolloutFile.model_validate_json(raw)
    except ValidationError as error:
        issues = "; ".join(_issue(e) for e in error.errors()[:5])
        raise RolloutError(f"{path} is not a valid rollout: {issues}") from None
    versions = ", ".join(map(str, sorted(served))) or "none"
    for field in ("stable", "canary", "shadow"):
        version = getattr(file, field)
        if version is not None and int(version) not in served:
            raise RolloutError(f"{path}: {field} names version {version}, which is not served "
                               f"(served versions: {versions})")  # fmt: skip
    return file, digest


def _issue(error: Any) -> str:
    where = ".".join(str(part) for part in error.get("loc", ())) or "the file"
    return f"{where}: {error.get('msg', 'invalid')}"


def file_digest(path: Path) -> str:
    """sha256 of ``rollout.json`` ("" when there is none): what the poller compares."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except FileNotFoundError:
        return ""
    except OSError:
        return "unreadable"


def settle(
    folder: Path, served: Collection[int], before: Rollout | None
) -> tuple[Rollout | None, str | None]:
    """The rollout a (re)load puts in force for one model, and the failure to record, if any.

    A broken file keeps the rollout in force before, if it still fits the served versions; else
    (at first start, or its versions are gone) the highest version serves until the file is
    fixed."""
    if not served:
        return None, None
    path = folder / ROLLOUT_FILE
    try:
        file, digest = read_file(path, served)
    except RolloutError as error:
        digest = file_digest(path)
        if before is not None and before.file is not None and _fits(before, served):
            reason = f"{error} (still applying the rollout in force before: stable {before.stable})"
            return replace(before, digest=digest, problem=reason), reason
        reason = f"{error} (serving the highest version, {max(served)}, until it is fixed)"
        return Rollout.of(None, served, digest, reason), reason
    return Rollout.of(file, served, digest), None


def _fits(rollout: Rollout, served: Collection[int]) -> bool:
    named = (rollout.stable, rollout.canary, rollout.shadow)
    return all(v is None or int(v) in served for v in named)

"""Faults the simulator can inject, as the real API and its gateway produce them.

Per endpoint (ListInstances, ListBackupRecords, ListRestoreRecords), each request may be:

- **dropped**: the connection closes before any answer, or half-way through the body;
- **throttled**: 429 ``APIG.0308`` with ``Retry-After``, in bursts of several requests;
- **failed**: 500 ``DCS.5000``, 502/504 gateway bodies (``APIG.0201``), a 503 text page;
- **malformed**: a 200 whose body is not JSON, is cut short, has a string or missing
  total, or an object where the list belongs;

and independently **slow** (answered after a delay) and, for a continuation page of
ListBackupRecords, **shifted**: a new backup starts just before the page is computed,
so it lands at the head of the list and every later record moves down one place.

Faults never change the simulator's truth, except that a shift adds a real record,
which then stays. Decisions come from one generator per endpoint seeded by ``seed``,
so the same sequence of requests meets the same faults. Standard library only.
"""

from __future__ import annotations

import math
import random
import threading
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

LIST_INSTANCES = "ListInstances"
LIST_BACKUP_RECORDS = "ListBackupRecords"
LIST_RESTORE_RECORDS = "ListRestoreRecords"
FAULT_OPERATIONS = (LIST_INSTANCES, LIST_BACKUP_RECORDS, LIST_RESTORE_RECORDS)

# What a request meets, at most one of these: drawn in this order from one number.
DROP, THROTTLE, ERROR, MALFORMED = "drop", "throttle", "error", "malformed"
EXCLUSIVE_KINDS = (DROP, THROTTLE, ERROR, MALFORMED)
RATE_FIELDS = ("drop_rate", "throttle_rate", "error_rate", "malformed_rate", "slow_rate", "shift_rate")
RETRY_AFTER_FORMATS = ("seconds", "http-date")

MAX_SLOW_SECONDS = 300.0
MAX_RETRY_AFTER = 3600.0
MAX_THROTTLE_BURST = 1000

# Variants, chosen with a second number, so a rate covers a realistic mix.
ERROR_VARIANTS = (
    (500, "DCS.5000", "Internal service error."),
    (502, "APIG.0201", "Backend unavailable"),
    (503, None, "503 Service Temporarily Unavailable"),  # a load balancer's text page
    (504, "APIG.0201", "Backend timeout"),
)
MALFORMED_VARIANTS = ("not-json", "truncated", "total-as-string", "total-missing", "list-as-object")
DROP_VARIANTS = ("before-response", "mid-body")


class FaultConfigError(ValueError):
    """A fault setting out of range; the message names the setting."""


def _identity(name: str) -> str:
    return name


@dataclass(frozen=True)
class FaultSettings:
    """What to inject. All rates are probabilities per request, 0 to 1.

    ``endpoints`` limits the faults to some operations; ``per_endpoint`` overrides
    rates for one operation, e.g. ``{"ListInstances": {"error_rate": 0}}``.
    """

    error_rate: float = 0.0
    throttle_rate: float = 0.0
    malformed_rate: float = 0.0
    drop_rate: float = 0.0
    slow_rate: float = 0.0
    shift_rate: float = 0.0
    throttle_burst: int = 1  # a throttle answers this many requests in a row with 429
    retry_after: float | None = None  # None: no Retry-After header
    retry_after_format: str = "seconds"
    slow_seconds: float = 1.0
    seed: int = 0
    endpoints: tuple[str, ...] = FAULT_OPERATIONS
    per_endpoint: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    # Which variants a fault may take (default all), so a test can aim at one.
    error_statuses: tuple[int, ...] = tuple(status for status, _, _ in ERROR_VARIANTS)
    malformed_variants: tuple[str, ...] = MALFORMED_VARIANTS
    drop_variants: tuple[str, ...] = DROP_VARIANTS

    @classmethod
    def from_dict(cls, data: Any, *, name: Callable[[str], str] = _identity) -> FaultSettings:
        """Validated settings from JSON-like data; ``name`` renders a field name in messages."""
        if not isinstance(data, Mapping):
            raise FaultConfigError("the fault settings must be a JSON object")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise FaultConfigError(f"unknown fault setting(s): {', '.join(map(str, unknown))}")
        values: dict[str, Any] = {}
        for key in RATE_FIELDS:
            if key in data:
                values[key] = _number(data[key], name(key), 0.0, 1.0)
        if "throttle_burst" in data:
            values["throttle_burst"] = _whole(
                data["throttle_burst"], name("throttle_burst"), 1, MAX_THROTTLE_BURST
            )
        if data.get("retry_after") is not None:
            values["retry_after"] = _number(data["retry_after"], name("retry_after"), 0.0, MAX_RETRY_AFTER)
        if "retry_after_format" in data:
            if data["retry_after_format"] not in RETRY_AFTER_FORMATS:
                raise FaultConfigError(
                    f"{name('retry_after_format')} must be one of {', '.join(RETRY_AFTER_FORMATS)}"
                )
            values["retry_after_format"] = data["retry_after_format"]
        if "slow_seconds" in data:
            values["slow_seconds"] = _number(
                data["slow_seconds"], name("slow_seconds"), 0.0, MAX_SLOW_SECONDS
            )
        if "seed" in data:
            values["seed"] = _whole(data["seed"], name("seed"), None, None)
        if "endpoints" in data:
            endpoints = data["endpoints"]
            if isinstance(endpoints, str) or not isinstance(endpoints, list | tuple):
                raise FaultConfigError(f"{name('endpoints')} must be a list of {', '.join(FAULT_OPERATIONS)}")
            values["endpoints"] = tuple(_operation(op, name("endpoints")) for op in endpoints)
        if "per_endpoint" in data:
            values["per_endpoint"] = _per_endpoint(data["per_endpoint"], name)
        all_statuses = tuple(status for status, _, _ in ERROR_VARIANTS)
        for key, allowed in (
            ("error_statuses", all_statuses),
            ("malformed_variants", MALFORMED_VARIANTS),
            ("drop_variants", DROP_VARIANTS),
        ):
            if key in data:
                values[key] = _subset(data[key], name(key), allowed)
        settings = cls(**values)
        settings.check_sums(name)
        return settings

    def check_sums(self, name: Callable[[str], str] = _identity) -> None:
        """The exclusive faults share one draw, so their rates may not add up to more than 1."""
        for operation in FAULT_OPERATIONS:
            rates = self.rates_for(operation)
            if rates and sum(rates[f"{kind}_rate"] for kind in EXCLUSIVE_KINDS) > 1 + 1e-9:
                names = " + ".join(name(f"{kind}_rate") for kind in EXCLUSIVE_KINDS)
                raise FaultConfigError(f"{names} must not add up to more than 1 (for {operation})")

    def rates_for(self, operation: str) -> dict[str, float] | None:
        """The rates that apply to ``operation``, or None when it gets no faults."""
        if operation not in self.endpoints:
            return None
        rates = {key: getattr(self, key) for key in RATE_FIELDS}
        rates.update(self.per_endpoint.get(operation, {}))
        return rates

    @property
    def active(self) -> bool:
        return any(rates and any(rates.values()) for rates in map(self.rates_for, FAULT_OPERATIONS))

    def as_dict(self) -> dict:
        data = asdict(self)
        data["endpoints"] = list(self.endpoints)
        data["per_endpoint"] = {op: dict(rates) for op, rates in self.per_endpoint.items()}
        for key in ("error_statuses", "malformed_variants", "drop_variants"):
            data[key] = list(data[key])
        return data


def _number(value: Any, label: str, low: float, high: float) -> float:
    if isinstance(value, bool):
        raise FaultConfigError(f"{label} must be a number between {low:g} and {high:g}, got {value!r}")
    try:
        number = float(str(value).strip()) if isinstance(value, str) else float(value)
    except (TypeError, ValueError):
        raise FaultConfigError(
            f"{label} must be a number between {low:g} and {high:g}, got {value!r}"
        ) from None
    if not math.isfinite(number) or not low <= number <= high:
        raise FaultConfigError(f"{label} must be a number between {low:g} and {high:g}, got {value!r}")
    return number


def _whole(value: Any, label: str, low: int | None, high: int | None) -> int:
    try:
        if isinstance(value, bool | float):
            raise ValueError
        number = int(str(value).strip())
    except (TypeError, ValueError):
        raise FaultConfigError(f"{label} must be a whole number, got {value!r}") from None
    if (low is not None and number < low) or (high is not None and number > high):
        raise FaultConfigError(f"{label} must be between {low} and {high}, got {number}")
    return number


def _subset(value: Any, label: str, allowed: tuple) -> tuple:
    if isinstance(value, str) or not isinstance(value, list | tuple) or not value:
        raise FaultConfigError(f"{label} must be a non-empty list of {', '.join(map(str, allowed))}")
    for item in value:
        if item not in allowed or isinstance(item, bool):
            raise FaultConfigError(f"{label}: {item!r} is not one of {', '.join(map(str, allowed))}")
    return tuple(dict.fromkeys(value))


def _operation(value: Any, label: str) -> str:
    if value not in FAULT_OPERATIONS:
        raise FaultConfigError(f"{label}: {value!r} is not one of {', '.join(FAULT_OPERATIONS)}")
    return value


def _per_endpoint(data: Any, name: Callable[[str], str]) -> dict[str, dict[str, float]]:
    if not isinstance(data, Mapping):
        raise FaultConfigError(f"{name('per_endpoint')} must be an object keyed by operation")
    result = {}
    for operation, rates in data.items():
        _operation(operation, name("per_endpoint"))
        if not isinstance(rates, Mapping) or not set(rates) <= set(RATE_FIELDS):
            raise FaultConfigError(
                f"{name('per_endpoint')}[{operation}] may only set {', '.join(RATE_FIELDS)}"
            )
        result[operation] = {
            key: _number(value, f"{name('per_endpoint')}[{operation}].{key}", 0.0, 1.0)
            for key, value in rates.items()
        }
    return result


@dataclass(frozen=True)
class FaultDecision:
    """What one request meets."""

    kind: str | None = None  # one of EXCLUSIVE_KINDS, or None
    variant: int = 0  # index into that kind's variants
    delay: float = 0.0  # seconds to wait before answering
    shift: bool = False  # start a new backup before this page is computed
    nonce: int = 0  # 128 random bits, for the id of a shifted-in record

    @property
    def any(self) -> bool:
        return self.kind is not None or self.delay > 0 or self.shift


NO_FAULT = FaultDecision()


class Faults:
    """The fault switchboard of one simulator; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # Set on reset, so a request held up by a slow fault ends at once.
        self._wake = threading.Event()
        self.reset()

    def reset(self) -> None:
        """Faults off, counters cleared."""
        self.configure()

    def configure(self, settings: FaultSettings | None = None, **changes: Any) -> FaultSettings:
        """Replace the settings (fields not given take their defaults) and restart the draws.

        ``sim.faults.configure(error_rate=0.2, seed=3)`` or ``configure(FaultSettings(...))``.
        """
        if settings is None:
            settings = FaultSettings.from_dict(changes)
        elif changes:
            settings = replace(settings, **changes)
            settings.check_sums()
        with self._lock:
            self._settings = settings
            self._rngs = {op: random.Random(f"faults:{settings.seed}:{op}") for op in FAULT_OPERATIONS}
            self._burst_left = dict.fromkeys(FAULT_OPERATIONS, 0)
            self._counts: dict[str, Counter[str]] = {op: Counter() for op in FAULT_OPERATIONS}
            self._wake.set()
            self._wake = threading.Event()
        return settings

    @property
    def settings(self) -> FaultSettings:
        with self._lock:
            return self._settings

    @property
    def counts(self) -> dict[str, dict[str, int]]:
        """Faults injected so far, per operation and kind (also ``slow``, ``shift``)."""
        with self._lock:
            return {op: dict(counter) for op, counter in self._counts.items()}

    def as_dict(self) -> dict:
        with self._lock:
            settings, counts = self._settings, {op: dict(c) for op, c in self._counts.items()}
        return {**settings.as_dict(), "active": settings.active, "injected": counts}

    def decide(self, operation: str, *, continuation: bool = False) -> FaultDecision:
        """The faults for the next request to ``operation``; ``continuation``: offset > 0."""
        with self._lock:
            rates = self._settings.rates_for(operation)
            if not rates or not any(rates.values()):
                return NO_FAULT
            rng = self._rngs[operation]
            # Always the same number of draws, so one request's fault never
            # changes which faults later requests meet.
            kind_draw, variant_draw, slow_draw, shift_draw = (rng.random() for _ in range(4))
            nonce = rng.getrandbits(128)
            kind = None
            if self._burst_left[operation] > 0:
                self._burst_left[operation] -= 1
                kind = THROTTLE
            else:
                edge = 0.0
                for candidate in EXCLUSIVE_KINDS:
                    edge += rates[f"{candidate}_rate"]
                    if kind_draw < edge:
                        kind = candidate
                        break
                if kind == THROTTLE:
                    self._burst_left[operation] = self._settings.throttle_burst - 1
            variant = self._variant(kind, variant_draw)
            delay = self._settings.slow_seconds if slow_draw < rates["slow_rate"] else 0.0
            shift = operation == LIST_BACKUP_RECORDS and continuation and shift_draw < rates["shift_rate"]
            counter = self._counts[operation]
            if kind:
                counter[kind] += 1
            if delay:
                counter["slow"] += 1
            if shift:
                counter["shift"] += 1
            return FaultDecision(kind=kind, variant=variant, delay=delay, shift=shift, nonce=nonce)

    def _variant(self, kind: str | None, draw: float) -> int:
        """Index into the kind's variants, drawn among those the settings allow."""
        settings = self._settings
        if kind == ERROR:
            statuses = [status for status, _, _ in ERROR_VARIANTS]
            allowed = [statuses.index(status) for status in settings.error_statuses]
        elif kind == MALFORMED:
            allowed = [MALFORMED_VARIANTS.index(v) for v in settings.malformed_variants]
        elif kind == DROP:
            allowed = [DROP_VARIANTS.index(v) for v in settings.drop_variants]
        else:
            return 0
        return allowed[int(draw * len(allowed))]

    def wait(self, seconds: float) -> None:
        """Hold a slow answer back; a reset lets it go at once."""
        with self._lock:
            wake = self._wake
        wake.wait(seconds)

    def __repr__(self) -> str:
        return f"<Faults {self.settings.as_dict()}>"


__all__ = ["FAULT_OPERATIONS", "FaultConfigError", "FaultDecision", "FaultSettings", "Faults"]

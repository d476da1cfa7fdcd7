"""Leases: so that two syncs of the same thing never run at once.

A lease is a row in ``SyncLease``: a name ("sync:fleet", "instance:42"), a
holder (a sync run's token, "run-17") and an expiry. Whoever holds an
unexpired lease may do the work; everyone else is refused, or waits a little.
A holder renews its lease while it works; a holder that dies (SIGKILL, OOM, a
lost machine) stops renewing, and its lease runs out after ``ttl`` seconds, so
nothing stays locked for good.

Why the database and not Redis: the database is the one thing every process
of the dashboard already shares, on SQLite as on PostgreSQL. Syncs and pages
keep working while Redis is down (the embedded mode has no Redis at all), the
leases are visible to the pages and to ``sync_status``, and expiry uses the
database's clock, so workers whose clocks disagree still agree on when a lease
ran out.

Acquiring is atomic on both databases without SELECT ... FOR UPDATE:

- a free name is taken by INSERT; the primary key lets one of two racing
  inserts through and the other gets an IntegrityError;
- an expired lease is taken over by one conditional UPDATE
  (``... WHERE name = %s AND expires_at <= now``). On PostgreSQL a second
  taker blocks on the row lock and then re-checks the condition against the
  new row, which is no longer expired; SQLite runs one writer at a time.

A lease protects against duplicate *work*, not against wrong data: every
write of the sync is an idempotent upsert, so even two syncs that overlapped
after a lease ran out would leave the same rows.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Case, DateTimeField, ExpressionWrapper, F, Q, Value, When
from django.db.models.fields import DurationField
from django.db.models.functions import Now

from backups.models import SyncLease

logger = logging.getLogger(__name__)

# How often acquire(wait=...) asks again.
POLL_SECONDS = 0.2


def default_ttl() -> float:
    return float(settings.DCS_SYNC_LEASE_TTL)


def _now_plus(seconds: float) -> ExpressionWrapper:
    """The database's now + seconds, evaluated by the database."""
    return ExpressionWrapper(
        Now() + Value(timedelta(seconds=seconds), output_field=DurationField()),
        output_field=DateTimeField(),
    )


def _try_acquire(name: str, holder: str, ttl: float) -> bool:
    with transaction.atomic():
        # The lease ran out (its holder died or stalled), or we hold it already.
        taken = SyncLease.objects.filter(name=name, expires_at__lte=Now()).update(
            holder=holder, acquired_at=Now(), renewed_at=Now(), expires_at=_now_plus(ttl)
        )
        if taken:
            return True
        if SyncLease.objects.filter(name=name, holder=holder).update(
            renewed_at=Now(), expires_at=_now_plus(ttl)
        ):
            return True
        try:
            with transaction.atomic():
                SyncLease.objects.create(
                    name=name, holder=holder, acquired_at=Now(), renewed_at=Now(), expires_at=_now_plus(ttl)
                )
        except IntegrityError:
            return False  # someone else holds it and it has not run out
        return True


class Lease:
    """A lease this process holds. Use :func:`acquire` to get one.

    ``renew()`` pushes the expiry ``ttl`` seconds on; ``kept_alive()`` renews it
    from a background thread while a block of work runs, so a long API call
    does not let it run out.
    """

    def __init__(self, name: str, holder: str, ttl: float) -> None:
        self.name = name
        self.holder = holder
        self.ttl = ttl
        self.lost = False
        self._renewed = time.monotonic()

    def __repr__(self) -> str:
        return f"<Lease {self.name} held by {self.holder}>"

    def renew(self) -> bool:
        """True while we still hold it; False once someone took it over after it ran out."""
        updated = SyncLease.objects.filter(name=self.name, holder=self.holder).update(
            renewed_at=Now(), expires_at=_now_plus(self.ttl)
        )
        self._renewed = time.monotonic()
        if not updated and not self.lost:
            self.lost = True
            logger.warning("lease %s of %s ran out and was taken over", self.name, self.holder)
        return bool(updated)

    def keep_alive(self) -> bool:
        """Renew when a third of the ttl has passed since the last renewal."""
        if time.monotonic() - self._renewed >= self.ttl / 3:
            return self.renew()
        return not self.lost

    def release(self) -> None:
        SyncLease.objects.filter(name=self.name, holder=self.holder).delete()

    def kept_alive(self) -> _KeepAlive:
        return _KeepAlive([self])

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, *exc_info) -> None:
        self.release()


class _KeepAlive:
    """Renews leases every ttl/3 from a daemon thread while the block runs.

    Inside a transaction (a test's, or a caller's) another connection could
    neither see nor wait for the lease row, so no thread is started there.
    """

    def __init__(self, leases: list[Lease]) -> None:
        self.leases = [lease for lease in leases if lease is not None]
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _run(self) -> None:
        interval = max(0.05, min(lease.ttl for lease in self.leases) / 3)
        try:
            while not self._stop.wait(interval):
                for lease in self.leases:
                    try:
                        lease.renew()
                    except Exception:  # a database hiccup: the next round tries again
                        logger.warning("could not renew lease %s", lease.name, exc_info=True)
        finally:
            # This thread's connection is its own; a worker must not keep it open.
            connection.close()

    def __enter__(self) -> _KeepAlive:
        if self.leases and not connection.in_atomic_block:
            self._thread = threading.Thread(target=self._run, name="lease-keep-alive", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)


def keep_alive(*leases: Lease | None) -> _KeepAlive:
    """``with keep_alive(run_lease, instance_lease): ...``"""
    return _KeepAlive(list(leases))


def acquire(name: str, *, holder: str, ttl: float | None = None, wait: float = 0.0) -> Lease | None:
    """Take the lease ``name`` for ``holder``, or None when someone else holds it.

    Waits up to ``wait`` seconds for it to be released or to run out. Taking a
    lease you already hold renews it. Call it outside a transaction, so that
    others see the lease at once.
    """
    ttl = default_ttl() if ttl is None else ttl
    deadline = time.monotonic() + wait
    while True:
        if _try_acquire(name, holder, ttl):
            return Lease(name, holder, ttl)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        time.sleep(min(POLL_SECONDS, remaining))


def acquire_each(names: list[str], *, holder: str, ttl: float | None = None) -> dict[str, Lease]:
    """Take every one of ``names`` that is free, has run out or is ``holder``'s already; the leases taken.

    One transaction of three statements for them all, where :func:`acquire`
    costs a transaction each: a fleet sync takes the next instances' leases
    together. A name someone else holds is left out, and it is the caller's
    to wait for it with :func:`acquire`. Race-safe as :func:`acquire` is.
    """
    if not names:
        return {}
    ttl = default_ttl() if ttl is None else ttl
    with transaction.atomic():
        SyncLease.objects.filter(Q(expires_at__lte=Now()) | Q(holder=holder), name__in=names).update(
            holder=holder,
            acquired_at=Case(When(holder=holder, then=F("acquired_at")), default=Now()),
            renewed_at=Now(),
            expires_at=_now_plus(ttl),
        )
        # A name another transaction inserts first stays theirs.
        fresh = [
            SyncLease(
                name=name, holder=holder, acquired_at=Now(), renewed_at=Now(), expires_at=_now_plus(ttl)
            )
            for name in names
        ]
        SyncLease.objects.bulk_create(fresh, ignore_conflicts=True)
        taken = SyncLease.objects.filter(name__in=names, holder=holder).values_list("name", flat=True)
        return {name: Lease(name, holder, ttl) for name in taken}


def release_each(leases: list[Lease]) -> None:
    """Release these leases, with one statement."""
    for holder in {lease.holder for lease in leases}:
        names = [lease.name for lease in leases if lease.holder == holder]
        SyncLease.objects.filter(name__in=names, holder=holder).delete()


def held(name: str, *, holder: str, ttl: float | None = None) -> Lease:
    """A handle on a lease ``holder`` took earlier (perhaps in another process), to renew it."""
    return Lease(name, holder, default_ttl() if ttl is None else ttl)


def holder_of(name: str) -> str | None:
    """Who holds ``name`` now; None when it is free or has run out."""
    return SyncLease.objects.filter(name=name, expires_at__gt=Now()).values_list("holder", flat=True).first()


def holds_any(holder: str) -> bool:
    """Whether ``holder`` holds any lease that has not run out."""
    return SyncLease.objects.filter(holder=holder, expires_at__gt=Now()).exists()


def release_all(holder: str) -> int:
    """Drop every lease of ``holder`` (a finished or abandoned run)."""
    deleted, _ = SyncLease.objects.filter(holder=holder).delete()
    return deleted


__all__ = [
    "Lease",
    "acquire",
    "acquire_each",
    "held",
    "holder_of",
    "holds_any",
    "keep_alive",
    "release_all",
    "release_each",
]

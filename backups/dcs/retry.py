"""When and how long the DCS client waits before sending a request again.

The policy only decides; :meth:`backups.dcs.client.DcsClient.get` is the one
place that loops, so a request is never retried by two layers at once (the
SDK's urllib3 retries are not used: requests' adapters default to none).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from backups.dcs.errors import DcsApiError, DcsError

# A server that asks for more than a day is not asking for a retry.
_MAX_RETRY_AFTER = 86_400.0
# Statuses whose Retry-After we follow: throttling, and a 503 that says when
# the service will be back (RFC 9110 §10.2.3).
_RETRY_AFTER_STATUSES = frozenset({429, 503})


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delay-seconds or an HTTP-date.

    Returns None for a missing or unreadable value; a date in the past is 0.
    """
    text = (value or "").strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        seconds = None
    if seconds is not None:
        # float() also reads "nan", "inf" and "1e9": none of them is a delay.
        return seconds if 0 <= seconds <= _MAX_RETRY_AFTER else None
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # "-0000" means UTC but parses naive
        when = when.replace(tzinfo=UTC)
    delay = (when - (now or datetime.now(UTC))).total_seconds()
    return min(max(delay, 0.0), _MAX_RETRY_AFTER)


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter, bounded in count and in each wait.

    ``max_retries`` is the number of retries after the first attempt, so a
    request is sent at most ``max_retries + 1`` times.
    """

    max_retries: int = 4
    backoff: float = 0.5  # the first retry waits up to this long
    backoff_cap: float = 30.0  # no single backoff wait is longer
    retry_after_cap: float = 60.0  # a server's Retry-After is honoured up to this

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise ValueError("max_retries must be 0 or more")
        if min(self.backoff, self.backoff_cap, self.retry_after_cap) < 0:
            raise ValueError("backoff, backoff_cap and retry_after_cap must be 0 or more")

    def should_retry(self, error: DcsError, retries_done: int) -> bool:
        return error.retryable and retries_done < self.max_retries

    def delay(self, error: DcsError, retry_number: int, rng: random.Random) -> float:
        """Seconds to wait before retry ``retry_number`` (1 for the first retry).

        A Retry-After from the server wins, capped; otherwise a random wait
        between 0 and base·2^(n-1), capped ("full jitter"), so workers that
        failed together do not come back together.
        """
        if (
            isinstance(error, DcsApiError)
            and error.status in _RETRY_AFTER_STATUSES
            and error.retry_after is not None
        ):
            return min(error.retry_after, self.retry_after_cap)
        ceiling = min(self.backoff_cap, self.backoff * 2.0 ** min(retry_number - 1, 60))
        return rng.uniform(0.0, ceiling)


__all__ = ["RetryPolicy", "parse_retry_after"]

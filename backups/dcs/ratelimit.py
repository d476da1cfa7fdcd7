"""A client-side limit on DCS API requests per second, shared by every worker.

The API gateway throttles at 200 requests per second per API (dcs-api.md
§3.3, APIG.0308); a fleet sync that fans out over many workers must stay well
under that together, not each on its own. With Redis, all workers draw from
one budget: a Lua script hands out send times ("slots") spaced 1/rate apart
on the Redis server's clock, so it is atomic and immune to worker clock skew.
Without Redis, or while Redis is unreachable, each process paces itself.

Both limiters space requests evenly rather than allowing bursts: a sync is a
long stream of requests, so bursts buy nothing and only risk the gateway.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol

import redis

logger = logging.getLogger(__name__)

DEFAULT_KEY = "dcs-dashboard:ratelimit:dcs-api"
# After Redis fails, the local limiter is used this long before Redis is tried again.
REDIS_RETRY_SECONDS = 30.0
# A limiter call must never hold up a sync for long when Redis hangs.
REDIS_TIMEOUT_SECONDS = 0.5

# KEYS[1]: the budget's key. ARGV[1]: microseconds between two requests.
# The key holds the earliest time (µs, Redis clock) the next request may go.
# Each caller takes the later of that and now, and moves it on by one interval.
_RESERVE_SCRIPT = """
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local slot = tonumber(redis.call('GET', KEYS[1]) or '0')
if slot < now then slot = now end
local following = slot + interval
local ttl_ms = math.ceil((following - now) / 1000) + 1000
redis.call('SET', KEYS[1], string.format('%.0f', following), 'PX', ttl_ms)
return string.format('%.0f', slot - now)
"""


class RateLimiter(Protocol):
    def acquire(self) -> float:
        """Block until the next request may be sent; returns the seconds waited."""
        ...


class LocalRateLimiter:
    """Spaces the requests of this process ``1/rate`` seconds apart (thread-safe)."""

    def __init__(
        self,
        rate: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not rate > 0:
            raise ValueError("rate must be more than 0 requests per second")
        self.rate = rate
        self.interval = 1.0 / rate
        self._clock = clock
        self._sleep = sleep
        self._next: float | None = None
        self._lock = threading.Lock()

    def reserve(self) -> float:
        """Claim the next send time; returns how long from now that is."""
        with self._lock:
            now = self._clock()
            slot = now if self._next is None or self._next < now else self._next
            self._next = slot + self.interval
            return slot - now

    def acquire(self) -> float:
        wait = self.reserve()
        if wait > 0:
            self._sleep(wait)
        return wait

    def __repr__(self) -> str:
        return f"<LocalRateLimiter {self.rate:g}/s>"


class RedisRateLimiter:
    """One budget of ``rate`` requests per second for every process sharing ``key``.

    When Redis cannot be reached the requests are paced by ``fallback`` (a
    local limiter at the same rate) and a warning is logged once; Redis is
    tried again after :data:`REDIS_RETRY_SECONDS`. A limiter never fails a sync.
    """

    def __init__(
        self,
        redis_url: str,
        rate: float,
        *,
        key: str = DEFAULT_KEY,
        fallback: RateLimiter | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not rate > 0:
            raise ValueError("rate must be more than 0 requests per second")
        self.rate = rate
        self.key = key
        self.interval_us = max(1, round(1_000_000 / rate))
        self.fallback = fallback or LocalRateLimiter(rate, sleep=sleep, clock=clock)
        self._sleep = sleep
        self._clock = clock
        self._redis_url = redis_url
        self._script = None
        self._down_until: float | None = None
        self._lock = threading.Lock()
        self.fallbacks = 0  # acquisitions paced locally because Redis failed

    def _reserve_script(self):
        if self._script is None:
            client = redis.Redis.from_url(
                self._redis_url,
                socket_timeout=REDIS_TIMEOUT_SECONDS,
                socket_connect_timeout=REDIS_TIMEOUT_SECONDS,
            )
            self._script = client.register_script(_RESERVE_SCRIPT)
        return self._script

    def reserve(self) -> float:
        """Claim the next shared send time; returns how long from now that is.

        Raises whatever redis-py raises when Redis cannot be used.
        """
        microseconds = int(self._reserve_script()(keys=[self.key], args=[self.interval_us]))
        return max(0, microseconds) / 1_000_000

    def acquire(self) -> float:
        with self._lock:
            use_redis = self._down_until is None or self._clock() >= self._down_until
        if use_redis:
            try:
                wait = self.reserve()
            except (redis.RedisError, OSError, ValueError) as exc:  # ValueError: a bad REDIS_URL
                self._redis_failed(exc)
            else:
                self._redis_back()
                if wait > 0:
                    self._sleep(wait)
                return wait
        self.fallbacks += 1
        return self.fallback.acquire()

    def _redis_failed(self, exc: Exception) -> None:
        with self._lock:
            first = self._down_until is None
            self._down_until = self._clock() + REDIS_RETRY_SECONDS
        if first:
            # Once per outage: a sync of a large fleet would log this per request.
            # The URL may carry a password, so it is not logged.
            logger.warning(
                "rate limit: Redis is unreachable (%s: %s); pacing DCS API calls per process at %g/s "
                "until it is back",
                type(exc).__name__,
                exc,
                self.rate,
            )

    def _redis_back(self) -> None:
        if self._down_until is None:
            return
        with self._lock:
            self._down_until = None
        logger.info("rate limit: Redis is back; DCS API calls share one budget again")

    def __repr__(self) -> str:  # never the URL: it may hold a password
        return f"<RedisRateLimiter {self.rate:g}/s key={self.key!r}>"


def build_rate_limiter(rate: float, redis_url: str = "", *, key: str = DEFAULT_KEY) -> RateLimiter | None:
    """The limiter for ``rate`` requests per second; None when ``rate`` is 0 (no limit)."""
    if rate <= 0:
        return None
    if redis_url:
        return RedisRateLimiter(redis_url, rate, key=key)
    return LocalRateLimiter(rate)


@functools.lru_cache(maxsize=8)
def shared_rate_limiter(rate: float, redis_url: str = "") -> RateLimiter | None:
    """One limiter per process for each setting, so every client in it shares the budget."""
    return build_rate_limiter(rate, redis_url)


__all__ = [
    "LocalRateLimiter",
    "RateLimiter",
    "RedisRateLimiter",
    "build_rate_limiter",
    "shared_rate_limiter",
]

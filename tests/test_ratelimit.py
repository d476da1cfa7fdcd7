"""The client-side rate limit: even pacing per process, one shared budget through Redis.

The Redis tests use the real Redis at REDIS_URL (or 127.0.0.1:6379/15) under a key of
their own. Without a Redis they are skipped on a workstation and fail in CI.
"""

from __future__ import annotations

import itertools
import logging
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
import redis

from backups.dcs import ratelimit
from backups.dcs.ratelimit import (
    LocalRateLimiter,
    RedisRateLimiter,
    build_rate_limiter,
    shared_rate_limiter,
)

BASE_DIR = Path(__file__).resolve().parent.parent
UNREACHABLE_REDIS = "redis://127.0.0.1:1/0"  # nothing listens on port 1


class FakeTime:
    """A monotonic clock that only moves when someone sleeps or the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(round(seconds, 9))
        self.now += seconds


# --- Per process -----------------------------------------------------------------------


def test_it_spaces_requests_evenly_at_the_rate():
    fake = FakeTime()
    limiter = LocalRateLimiter(4, clock=fake, sleep=fake.sleep)
    waits = [limiter.acquire() for _ in range(5)]
    assert waits == [0, 0.25, 0.25, 0.25, 0.25]
    assert fake.now == 1001.0  # 5 requests at 4/s: the first at once, then one every 0.25 s


def test_it_saves_up_no_burst_while_idle():
    fake = FakeTime()
    limiter = LocalRateLimiter(10, clock=fake, sleep=fake.sleep)
    limiter.acquire()
    fake.now += 60  # a minute without requests
    assert [limiter.acquire() for _ in range(3)] == pytest.approx([0, 0.1, 0.1])


def test_it_waits_only_the_rest_of_the_interval_when_time_passed():
    fake = FakeTime()
    limiter = LocalRateLimiter(2, clock=fake, sleep=fake.sleep)
    limiter.acquire()
    fake.now += 0.2  # the caller spent 0.2 s on its request
    assert limiter.acquire() == pytest.approx(0.3)


def test_threads_sharing_a_limiter_never_get_the_same_slot():
    fake = FakeTime()  # frozen: nobody's sleep is real here, reserve() only hands out slots
    limiter = LocalRateLimiter(100, clock=fake, sleep=fake.sleep)
    slots: list[float] = []
    lock = threading.Lock()

    def worker() -> None:
        for _ in range(25):
            wait = limiter.reserve()
            with lock:
                slots.append(wait)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(round(slot * 100) for slot in slots) == list(range(200))


def test_it_refuses_a_rate_that_is_not_positive():
    with pytest.raises(ValueError):
        LocalRateLimiter(0)
    with pytest.raises(ValueError):
        RedisRateLimiter(UNREACHABLE_REDIS, -1)


def test_it_builds_the_limiter_the_settings_ask_for():
    assert build_rate_limiter(0) is None
    assert isinstance(build_rate_limiter(20), LocalRateLimiter)
    shared = build_rate_limiter(20, "redis://127.0.0.1:6379/15")
    assert isinstance(shared, RedisRateLimiter)
    assert shared_rate_limiter(7.0, "") is shared_rate_limiter(7.0, "")


def test_it_never_shows_the_redis_password():
    limiter = RedisRateLimiter("redis://:hunter2-secret@127.0.0.1:1/0", 5)
    assert "hunter2" not in repr(limiter)


# --- Redis unreachable ----------------------------------------------------------------


def test_it_falls_back_to_local_pacing_with_one_warning_when_redis_is_down(caplog):
    fake = FakeTime()
    url = "redis://:pw-secret@127.0.0.1:1/0"  # nothing listens on port 1
    limiter = RedisRateLimiter(url, 5, key="test:down", clock=fake, sleep=fake.sleep)
    with caplog.at_level(logging.WARNING, logger="backups.dcs.ratelimit"):
        waits = [limiter.acquire() for _ in range(4)]
        fake.now += ratelimit.REDIS_RETRY_SECONDS + 1  # time to try Redis again: still down
        waits.append(limiter.acquire())
    assert waits == pytest.approx([0, 0.2, 0.2, 0.2, 0])
    assert limiter.fallbacks == 5
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "Redis is unreachable" in warnings[0]
    assert "pw-secret" not in caplog.text


def test_a_bad_redis_url_falls_back_instead_of_failing():
    fake = FakeTime()
    limiter = RedisRateLimiter("not-a-redis-url", 5, clock=fake, sleep=fake.sleep)
    assert limiter.acquire() == 0
    assert limiter.fallbacks == 1


def test_it_goes_back_to_redis_when_it_answers_again(monkeypatch, caplog):
    fake = FakeTime()
    limiter = RedisRateLimiter(UNREACHABLE_REDIS, 5, clock=fake, sleep=fake.sleep)
    answers = iter([redis.ConnectionError("refused"), 0.05])

    def reserve() -> float:
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    monkeypatch.setattr(limiter, "reserve", reserve)
    with caplog.at_level(logging.INFO, logger="backups.dcs.ratelimit"):
        limiter.acquire()
        fake.now += ratelimit.REDIS_RETRY_SECONDS
        assert limiter.acquire() == 0.05
    assert limiter.fallbacks == 1
    assert "Redis is back" in caplog.records[-1].getMessage()


# --- Through the real Redis -------------------------------------------------------------


@pytest.fixture
def redis_url() -> str:
    url = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/15"
    try:
        redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=0.5).ping()
    except (redis.RedisError, OSError) as exc:
        if os.environ.get("CI"):
            pytest.fail(f"CI needs the Redis at {url}: {exc}")
        pytest.skip(f"no Redis answers at {url}")
    return url


@pytest.fixture
def budget_key(redis_url):
    key = f"test-dcs-dashboard:ratelimit:{uuid.uuid4().hex}"
    yield key
    redis.Redis.from_url(redis_url).delete(key)


def test_two_workers_share_one_budget_through_redis(redis_url, budget_key):
    rate = 20  # one slot every 50 ms
    slots: list[float] = []

    def record_slot(wait: float) -> None:
        # Where this request's slot lies on our clock; nobody really sleeps.
        slots.append(time.monotonic() + wait)

    workers = [RedisRateLimiter(redis_url, rate, key=budget_key, sleep=record_slot) for _ in range(2)]
    for turn in range(20):
        workers[turn % 2].acquire()
    # The first request goes at once and sleeps not at all; every later one waits its turn,
    # whichever worker asks, so the slots are one interval apart.
    assert len(slots) == 19
    gaps = [later - earlier for earlier, later in itertools.pairwise(slots)]
    assert all(gap == pytest.approx(1 / rate, abs=0.005) for gap in gaps), gaps
    assert sum(worker.fallbacks for worker in workers) == 0


def test_workers_in_threads_are_paced_together_in_real_time(redis_url, budget_key):
    rate, per_worker = 100, 10
    workers = [RedisRateLimiter(redis_url, rate, key=budget_key) for _ in range(2)]
    started = time.monotonic()
    threads = [
        threading.Thread(target=lambda w=worker: [w.acquire() for _ in range(per_worker)])
        for worker in workers
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    # 20 requests at 100/s take at least 0.19 s together; each worker alone would take 0.09 s.
    assert elapsed >= (2 * per_worker - 1) / rate - 0.005


def test_the_budget_key_expires_when_nobody_uses_it(redis_url, budget_key):
    RedisRateLimiter(redis_url, 2, key=budget_key).acquire()
    ttl_ms = redis.Redis.from_url(redis_url).pttl(budget_key)
    assert 0 < ttl_ms <= 1500  # one interval (0.5 s) plus a second's grace


# --- Settings ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DCS_RATE_LIMIT": "500"}, "DCS_RATE_LIMIT must be at most 200"),
        ({"DCS_MAX_RETRIES": "many"}, "DCS_MAX_RETRIES must be a whole number"),
        ({"DCS_RETRY_AFTER_CAP": "-1"}, "DCS_RETRY_AFTER_CAP must be a number of at least 0"),
    ],
)
def test_bad_retry_and_rate_settings_stop_start_up(tmp_path, env, message):
    code = "import dashboard.settings"
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=BASE_DIR,
        env={**os.environ, "DASHBOARD_DATA_DIR": str(tmp_path), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert message in result.stderr

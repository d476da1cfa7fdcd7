"""Our DCS client at the HTTP boundary: paging, 204, every error shape, timeouts,
retries and their waits, and listings that do not add up.

`responses` stands in for the API here; the client code is the real one. The
sleep and the jitter are injected, so retries cost no time and no luck.
test_faults.py runs the same client against the simulator's faults over HTTP.
"""

import logging
import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
import requests
import responses
from responses import matchers

from backups.dcs.client import DcsClient, Listing
from backups.dcs.config import DcsConfig, DcsProject
from backups.dcs.errors import (
    DcsApiError,
    DcsAuthError,
    DcsBadRequest,
    DcsForbidden,
    DcsMalformedResponse,
    DcsNotFound,
    DcsServerError,
    DcsThrottled,
    DcsTransportError,
)
from backups.dcs.ratelimit import LocalRateLimiter
from backups.dcs.retry import RetryPolicy, parse_retry_after

SK = "super-secret-sk-value"
PROJECT = DcsProject("cn-north-4", "p1")
BASE = "https://dcs.cn-north-4.myhuaweicloud.com"
BACKUPS = f"{BASE}/v2/p1/instances/i1/backups"


class HighestJitter(random.Random):
    """Full jitter that always draws the top of its range, so waits are exact."""

    def uniform(self, a: float, b: float) -> float:
        return b


@pytest.fixture
def sleeps() -> list[float]:
    return []


def make_client(sleeps: list[float], **kwargs) -> DcsClient:
    config = DcsConfig(access_key="AK1", secret_key=SK, projects=(PROJECT,))
    kwargs.setdefault("page_size", 2)
    kwargs.setdefault("rng", random.Random(4))
    return DcsClient(config, sleep=sleeps.append, **kwargs)


@pytest.fixture
def client(sleeps):
    return make_client(sleeps)


def _record(n: int) -> dict:
    return {"backup_id": f"b{n}", "instance_id": "i1", "status": "succeed"}


@responses.activate
def test_it_pages_by_offset_until_the_total(client):
    for offset, records in ((0, [1, 2]), (2, [3, 4]), (4, [5])):
        responses.get(
            BACKUPS,
            match=[matchers.query_param_matcher({"offset": str(offset), "limit": "2"})],
            json={"total_num": 5, "backup_record_response": [_record(n) for n in records]},
        )
    ids = [r["backup_id"] for r in client.list_backup_records(PROJECT, "i1")]
    assert ids == ["b1", "b2", "b3", "b4", "b5"]
    assert client.api_calls == 3


@pytest.mark.parametrize(
    ("body_text", "content_type", "remark"),
    [
        # PostgreSQL cannot store U+0000: it arrives as U+FFFD.
        ('"a\\u0000b"', "application/json;charset=UTF-8", "a\ufffdb"),
        ('"\\u0000\\u0000"', "application/json", "\ufffd\ufffd"),
        # An escaped backslash before u0000 is a backslash and text, not a NUL.
        ('"a\\\\u0000b"', "application/json", "a\\u0000b"),
        ('"\\\\\\u0000"', "application/json", "\\\ufffd"),
        # A charset Python does not know: read as JSON's own encoding.
        ('"caf\u00e9\\u0000"', "application/json; charset=x-unknown", "caf\u00e9\ufffd"),
    ],
)
@responses.activate
def test_it_reads_a_nul_in_the_api_text_as_a_replacement_character(client, body_text, content_type, remark):
    body = '{"total_num": 1, "backup_record_response": [{"backup_id": "b1", "remark": ' + body_text + "}]}"
    responses.get(BACKUPS, body=body.encode("utf-8"), content_type=content_type)

    (record,) = client.list_backup_records(PROJECT, "i1")

    assert record["remark"] == remark


@responses.activate
def test_it_signs_every_call_with_the_project_header(client):
    responses.get(BACKUPS, json={"total_num": 0, "backup_record_response": []})
    list(client.list_backup_records(PROJECT, "i1"))
    sent = responses.calls[0].request
    assert sent.headers["Authorization"].startswith("SDK-HMAC-SHA256 Access=AK1, SignedHeaders=")
    assert sent.headers["X-Project-Id"] == "p1"
    assert "x-sdk-date" in sent.headers["Authorization"]
    assert SK not in str(sent.headers)


@responses.activate
def test_it_sends_the_time_window_in_utc_compact_form(client):
    responses.get(
        BACKUPS,
        match=[
            matchers.query_param_matcher(
                {"begin_time": "20170718000000", "end_time": "20170718235959", "offset": "0", "limit": "2"}
            )
        ],
        status=204,
    )
    begin = datetime(2017, 7, 18, tzinfo=UTC)
    end = datetime(2017, 7, 18, 23, 59, 59, tzinfo=UTC)
    assert list(client.list_backup_records(PROJECT, "i1", begin=begin, end=end)) == []


@responses.activate
def test_it_treats_204_as_an_empty_list(client):
    responses.get(BACKUPS, status=204)
    assert list(client.list_backup_records(PROJECT, "i1")) == []


@responses.activate
def test_it_calls_a_listing_shorter_than_promised_incomplete(client):
    responses.get(BACKUPS, json={"total_num": 5, "backup_record_response": [_record(1), _record(2)]})
    responses.get(BACKUPS, json={"total_num": 5, "backup_record_response": []})
    listing = client.list_backup_records(PROJECT, "i1")
    assert [r["backup_id"] for r in listing] == ["b1", "b2"]
    assert listing.complete is False
    assert any("held 0 of the 2 records promised" in p for p in listing.problems)
    assert any("received 2 distinct records of 5" in p for p in listing.problems)


@pytest.mark.parametrize(
    "body",
    [
        "<html>gateway</html>",
        '{"total_num": 1, "backup_record_response": [',
        '{"backup_record_response": []}',
        '{"total_num": "many", "backup_record_response": []}',
        '{"total_num": 1, "backup_record_response": {"a": 1}}',
        "[1, 2]",
    ],
)
@responses.activate
def test_it_turns_malformed_bodies_into_a_typed_error(client, body):
    responses.get(BACKUPS, body=body, headers={"X-Request-Id": "req-9"})
    with pytest.raises(DcsMalformedResponse):
        list(client.list_backup_records(PROJECT, "i1"))


@pytest.mark.parametrize(
    ("status", "body", "error_class", "code", "message"),
    [
        (
            400,
            {"error_code": "DCS.4800", "error_msg": "Invalid offset in the request."},
            DcsBadRequest,
            "DCS.4800",
            "Invalid offset in the request.",
        ),
        (
            400,
            {"error_code": "111400800", "error_msg": "Invalid limit", "error_ext_msg": None},
            DcsBadRequest,
            "111400800",
            "Invalid limit",
        ),
        (
            401,
            {"error_code": "APIG.0301", "error_msg": "Incorrect IAM authentication information"},
            DcsAuthError,
            "APIG.0301",
            "Incorrect IAM authentication information",
        ),
        (
            401,
            {"errorCode": "APIGW.0301", "errorMsg": "verify aksk signature fail"},
            DcsAuthError,
            "APIGW.0301",
            "verify aksk signature fail",
        ),
        (
            404,
            {"error": {"code": "111404022", "message": "This DCS instance does not exist."}},
            DcsNotFound,
            "111404022",
            "This DCS instance does not exist.",
        ),
        (
            404,
            {"code": "DCS.3022", "message": "This DCS instance does not exist."},
            DcsNotFound,
            "DCS.3022",
            "This DCS instance does not exist.",
        ),
        (
            500,
            {"error_code": "DCS.5000", "error_msg": "Internal service error."},
            DcsServerError,
            "DCS.5000",
            "Internal service error.",
        ),
    ],
)
@responses.activate
def test_it_raises_typed_errors_for_every_body_shape(client, status, body, error_class, code, message):
    responses.get(BACKUPS, status=status, json=body, headers={"X-Request-Id": "req-42"})
    with pytest.raises(error_class) as caught:
        list(client.list_backup_records(PROJECT, "i1"))
    error = caught.value
    assert (error.status, error.error_code, error.error_msg, error.request_id) == (
        status,
        code,
        message,
        "req-42",
    )
    assert "req-42" in str(error)


@responses.activate
def test_it_takes_the_request_id_from_a_gateway_body(sleeps):
    client = make_client(sleeps, retry=RetryPolicy(max_retries=0))
    responses.get(
        BACKUPS,
        status=429,
        json={
            "error_code": "APIG.0308",
            "error_msg": "The throttling threshold has been reached",
            "request_id": "gw-1",
        },
        headers={"Retry-After": "3"},
    )
    with pytest.raises(DcsThrottled) as caught:
        list(client.list_backup_records(PROJECT, "i1"))
    assert caught.value.request_id == "gw-1"
    assert caught.value.retry_after == 3.0
    assert caught.value.retryable


@responses.activate
def test_it_reports_a_non_json_error_body(client):
    responses.get(BACKUPS, status=502, body="Bad Gateway")
    with pytest.raises(DcsServerError) as caught:
        list(client.list_backup_records(PROJECT, "i1"))
    assert caught.value.status == 502
    assert caught.value.error_msg == "Bad Gateway"


@pytest.mark.parametrize("exc", [requests.ConnectionError("refused"), requests.ReadTimeout("slow")])
@responses.activate
def test_it_wraps_transport_failures(client, exc):
    responses.get(BACKUPS, body=exc)
    with pytest.raises(DcsTransportError) as caught:
        list(client.list_backup_records(PROJECT, "i1"))
    assert caught.value.retryable
    assert SK not in str(caught.value)


def test_it_always_sets_connect_and_read_timeouts():
    config = DcsConfig(access_key="AK1", secret_key=SK, projects=(PROJECT,))
    assert DcsClient(config, connect_timeout=3, read_timeout=9).timeout == (3, 9)


def test_it_never_shows_the_secret_key_in_reprs():
    config = DcsConfig(access_key="AK1", secret_key=SK, projects=(PROJECT,), security_token="tok-123")
    client = DcsClient(config)
    assert SK not in repr(config)
    assert "tok-123" not in repr(config)
    assert SK not in repr(client._auth(PROJECT))


@responses.activate
def test_it_lists_instances_with_instance_num(client):
    url = f"{BASE}/v2/p1/instances"
    responses.get(url, json={"instance_num": 3, "instances": [{"instance_id": "a"}, {"instance_id": "b"}]})
    responses.get(url, json={"instance_num": 3, "instances": [{"instance_id": "c"}]})
    assert [i["instance_id"] for i in client.list_instances(PROJECT)] == ["a", "b", "c"]


def test_an_api_error_is_a_dcs_error():
    assert issubclass(DcsBadRequest, DcsApiError)


# --- Retries ------------------------------------------------------------------------


def _page(*numbers: int, total: int | None = None) -> dict:
    return {
        "total_num": len(numbers) if total is None else total,
        "backup_record_response": [_record(n) for n in numbers],
    }


@pytest.mark.parametrize(
    "failure",
    [
        {"status": 500, "json": {"error_code": "DCS.5000", "error_msg": "Internal service error."}},
        {"status": 502, "json": {"error_code": "APIG.0201", "error_msg": "Backend unavailable"}},
        {"status": 503, "body": "Service Temporarily Unavailable"},
        {"status": 504, "json": {"error_code": "APIG.0201", "error_msg": "Backend timeout"}},
        {"body": requests.ConnectionError("reset by peer")},
        {"body": requests.ReadTimeout("read timed out")},
        {"body": requests.exceptions.ChunkedEncodingError("IncompleteRead(10 bytes read, 90 more expected)")},
        {"status": 200, "body": '{"total_num": 1, "backup_rec'},  # a body cut short
        {"status": 200, "body": "<html>proxy error</html>"},
    ],
)
@responses.activate
def test_it_retries_a_transient_failure_and_then_succeeds(client, sleeps, failure):
    responses.get(BACKUPS, **failure)
    responses.get(BACKUPS, json=_page(1))
    listing = client.list_backup_records(PROJECT, "i1")
    assert [r["backup_id"] for r in listing] == ["b1"]
    assert listing.complete
    assert (client.api_calls, client.retries, len(sleeps)) == (2, 1, 1)
    assert 0 <= sleeps[0] <= 0.5


@responses.activate
def test_it_gives_up_after_the_bound_and_raises_the_last_error_typed(sleeps):
    client = make_client(sleeps, retry=RetryPolicy(max_retries=3, backoff=0.25), rng=HighestJitter())
    responses.get(
        BACKUPS,
        status=500,
        json={"error_code": "DCS.5078", "error_msg": "failed to query the backup record"},
        headers={"X-Request-Id": "req-last"},
    )
    with pytest.raises(DcsServerError) as caught:
        client.list_backup_records(PROJECT, "i1")
    error = caught.value
    assert (error.status, error.error_code, error.request_id, error.attempts) == (
        500,
        "DCS.5078",
        "req-last",
        4,
    )
    assert (client.api_calls, client.retries) == (4, 3)
    assert sleeps == [0.25, 0.5, 1.0]  # base·2^(n-1), here at the top of the jitter
    assert client.error_counts == {"DCS.5078": 4}


def test_full_jitter_stays_under_an_exponential_ceiling_and_the_cap():
    policy = RetryPolicy(max_retries=10, backoff=0.5, backoff_cap=30)
    error = DcsServerError(500, "DCS.5000", "boom")
    assert [policy.delay(error, n, HighestJitter()) for n in range(1, 9)] == [
        0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0,
    ]  # fmt: skip
    rng = random.Random(1)
    waits = [policy.delay(error, 3, rng) for _ in range(200)]
    assert all(0 <= wait <= 2.0 for wait in waits)
    assert len(set(waits)) == 200  # spread out, so failed workers do not return together
    assert policy.delay(error, 10_000, HighestJitter()) == 30.0


@pytest.mark.parametrize(
    ("status", "code", "error_class"),
    [
        (400, "DCS.4800", DcsBadRequest),
        (401, "APIG.0301", DcsAuthError),
        (403, "DCS.2003", DcsForbidden),
        (404, "DCS.3022", DcsNotFound),
    ],
)
@responses.activate
def test_it_never_retries_a_4xx_that_will_not_change(client, sleeps, status, code, error_class):
    responses.get(BACKUPS, status=status, json={"error_code": code, "error_msg": "no"})
    with pytest.raises(error_class) as caught:
        client.list_backup_records(PROJECT, "i1")
    assert caught.value.attempts == 1
    assert len(responses.calls) == 1
    assert (client.api_calls, client.retries, sleeps) == (1, 0, [])


@responses.activate
def test_it_does_not_retry_a_well_formed_body_of_the_wrong_shape(client, sleeps):
    responses.get(BACKUPS, json={"total_num": 1, "backup_record_response": {"0": _record(1)}})
    with pytest.raises(DcsMalformedResponse) as caught:
        client.list_backup_records(PROJECT, "i1")
    assert not caught.value.retryable
    assert (len(responses.calls), sleeps) == (1, [])
    assert client.error_counts == {"malformed": 1}


@responses.activate
def test_it_waits_as_long_as_retry_after_says(client, sleeps):
    throttled = {"error_code": "APIG.0308", "error_msg": "The throttling threshold has been reached"}
    responses.get(BACKUPS, status=429, json=throttled, headers={"Retry-After": "3"})
    responses.get(BACKUPS, status=429, json=throttled, headers={"Retry-After": "0"})
    responses.get(BACKUPS, json=_page(1))
    client.list_backup_records(PROJECT, "i1")
    assert sleeps == [3.0]  # a Retry-After of 0 means at once
    assert (client.api_calls, client.retries, client.throttles) == (3, 2, 2)
    assert client.error_counts == {"APIG.0308": 2}


@responses.activate
def test_it_caps_a_long_retry_after(sleeps):
    client = make_client(sleeps, retry=RetryPolicy(retry_after_cap=7))
    responses.get(BACKUPS, status=429, json={"error_code": "APIG.0308"}, headers={"Retry-After": "3600"})
    responses.get(BACKUPS, json=_page(1))
    client.list_backup_records(PROJECT, "i1")
    assert sleeps == [7.0]


@responses.activate
def test_it_reads_retry_after_as_an_http_date(sleeps):
    now = datetime(2026, 11, 20, 12, 0, 0, tzinfo=UTC)
    client = make_client(sleeps, clock=lambda: now)
    when = format_datetime(now + timedelta(seconds=5), usegmt=True)
    responses.get(BACKUPS, status=429, json={"error_code": "APIG.0308"}, headers={"Retry-After": when})
    responses.get(BACKUPS, json=_page(1))
    client.list_backup_records(PROJECT, "i1")
    assert sleeps == [5.0]


@responses.activate
def test_a_429_without_retry_after_backs_off_like_any_other_failure(sleeps):
    client = make_client(sleeps, rng=HighestJitter())
    responses.get(BACKUPS, status=429, json={"error_code": "APIG.0308"})
    responses.get(BACKUPS, status=429, json={"error_code": "APIG.0308"})
    responses.get(BACKUPS, json=_page(1))
    client.list_backup_records(PROJECT, "i1")
    assert sleeps == [0.5, 1.0]


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("3", 3.0),
        (" 2.5 ", 2.5),
        ("0", 0.0),
        ("-1", None),
        ("nan", None),
        ("inf", None),
        ("1e9", None),
        ("soon", None),
        ("", None),
        (None, None),
        ("Fri, 20 Nov 2026 12:00:30 GMT", 30.0),
        ("Fri, 20 Nov 2026 11:59:00 GMT", 0.0),  # already past: at once
    ],
)
def test_it_parses_retry_after_seconds_and_dates(header, expected):
    now = datetime(2026, 11, 20, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after(header, now=now) == expected


def test_a_retry_policy_refuses_negative_bounds():
    with pytest.raises(ValueError):
        RetryPolicy(max_retries=-1)
    with pytest.raises(ValueError):
        RetryPolicy(backoff=-0.1)


@responses.activate
def test_it_logs_each_retry_without_headers_or_secrets(client, caplog):
    responses.get(
        BACKUPS,
        status=503,
        json={"error_code": "APIG.0201", "error_msg": "x"},
        headers={"X-Request-Id": "req-503"},
    )
    responses.get(BACKUPS, json=_page(1))
    with caplog.at_level(logging.WARNING, logger="backups.dcs.client"):
        client.list_backup_records(PROJECT, "i1")
    (line,) = [r.getMessage() for r in caplog.records]
    assert "HTTP 503 APIG.0201 request id req-503" in line
    assert "retry 1 of 4 in" in line
    assert SK not in line
    assert "Authorization" not in line
    assert "SDK-HMAC-SHA256" not in line


@responses.activate
def test_it_asks_the_rate_limiter_before_every_attempt(sleeps):
    acquired = []

    class CountingLimiter(LocalRateLimiter):
        def acquire(self) -> float:
            acquired.append(len(responses.calls))
            return super().acquire()

    client = make_client(sleeps, rate_limiter=CountingLimiter(1000))
    responses.get(BACKUPS, status=502, json={"error_code": "APIG.0201"})
    responses.get(BACKUPS, json=_page(1, 2, total=3))
    responses.get(BACKUPS, json=_page(3, total=3))
    client.list_backup_records(PROJECT, "i1")
    assert acquired == [0, 1, 2]  # each before its request was sent, the retry included


def test_from_settings_builds_the_policy_and_the_shared_limiter(settings):
    from backups.dcs.ratelimit import shared_rate_limiter

    settings.DCS_MAX_RETRIES, settings.DCS_RETRY_BACKOFF, settings.DCS_RETRY_AFTER_CAP = 2, 0.1, 9.0
    settings.DCS_RATE_LIMIT, settings.REDIS_URL = 12.5, ""
    config = DcsConfig(access_key="AK1", secret_key=SK, projects=(PROJECT,))
    first, second = DcsClient.from_settings(config), DcsClient.from_settings(config)
    assert first.retry == RetryPolicy(max_retries=2, backoff=0.1, backoff_cap=30.0, retry_after_cap=9.0)
    assert isinstance(first.rate_limiter, LocalRateLimiter)
    assert first.rate_limiter.rate == 12.5
    assert first.rate_limiter is second.rate_limiter is shared_rate_limiter(12.5, "")
    settings.DCS_RATE_LIMIT = 0
    assert DcsClient.from_settings(config).rate_limiter is None


# --- Listings that do not add up ------------------------------------------------------


@responses.activate
def test_a_consistent_listing_is_complete(client):
    responses.get(BACKUPS, json=_page(1, 2, total=3))
    responses.get(BACKUPS, json=_page(3, total=3))
    listing = client.list_backup_records(PROJECT, "i1")
    assert isinstance(listing, Listing)
    assert (listing.complete, listing.problems, listing.total, listing.pages, len(listing)) == (
        True,
        [],
        3,
        2,
        3,
    )


@responses.activate
def test_records_that_shift_between_pages_make_an_incomplete_listing_without_repeats(client):
    # b0 started between the two requests: b2 moves from offset 1 to 2 and comes again.
    responses.get(BACKUPS, json=_page(1, 2, total=3))
    responses.get(BACKUPS, json=_page(2, 3, total=4))
    listing = client.list_backup_records(PROJECT, "i1")
    assert [r["backup_id"] for r in listing] == ["b1", "b2", "b3"]
    assert not listing.complete
    problems = " | ".join(listing.problems)
    assert "total_num changed from 3 to 4" in problems
    assert "backup_id b2 repeated at offset 2" in problems
    assert "received 3 distinct records of 4 promised" in problems


@responses.activate
def test_a_record_dropped_between_pages_makes_an_incomplete_listing(client):
    # b1 vanished after the first page: b3 moved up to offset 1 and was never seen.
    responses.get(BACKUPS, json=_page(1, 2, total=4))
    responses.get(BACKUPS, json=_page(4, total=3))
    listing = client.list_backup_records(PROJECT, "i1")
    assert [r["backup_id"] for r in listing] == ["b1", "b2", "b4"]
    assert not listing.complete
    assert "total_num changed from 4 to 3" in listing.problems[0]


@responses.activate
def test_a_short_page_in_the_middle_makes_an_incomplete_listing(client):
    responses.get(BACKUPS, json=_page(1, total=3))
    responses.get(BACKUPS, json=_page(2, 3, total=3))
    listing = client.list_backup_records(PROJECT, "i1")
    assert len(listing) == 3
    assert not listing.complete
    assert "held 1 of the 2 records promised" in listing.problems[0]


@responses.activate
def test_a_listing_that_turns_204_half_way_is_incomplete(client):
    responses.get(BACKUPS, json=_page(1, 2, total=3))
    responses.get(BACKUPS, status=204)
    listing = client.list_backup_records(PROJECT, "i1")
    assert len(listing) == 2
    assert "became empty (204) at offset 2 of 3" in listing.problems[0]


@responses.activate
def test_more_records_than_the_total_is_not_complete(client):
    responses.get(BACKUPS, json=_page(1, 2, total=1))
    listing = client.list_backup_records(PROJECT, "i1")
    assert not listing.complete
    assert "more than the 1 promised" in listing.problems[-1]


@responses.activate
def test_an_item_without_an_id_is_passed_on_but_the_listing_is_not_complete(client):
    responses.get(BACKUPS, json={"total_num": 2, "backup_record_response": [_record(1), {"status": "x"}]})
    listing = client.list_backup_records(PROJECT, "i1")
    assert list(listing) == [_record(1), {"status": "x"}]
    assert not listing.complete


@pytest.mark.parametrize(
    "body",
    [
        {"total_num": "2", "backup_record_response": []},
        {"total_num": 2.0, "backup_record_response": []},
        {"total_num": True, "backup_record_response": []},
        {"total_num": -1, "backup_record_response": []},
        {"total_num": None, "backup_record_response": []},
        {"total_num": 2, "backup_record_response": [_record(1), "b2"]},
        {"total_num": 2},
    ],
)
@responses.activate
def test_a_total_or_items_of_the_wrong_type_are_malformed(client, body):
    responses.get(BACKUPS, json=body, headers={"X-Request-Id": "req-bad"})
    with pytest.raises(DcsMalformedResponse) as caught:
        client.list_backup_records(PROJECT, "i1")
    assert caught.value.request_id == "req-bad"


@responses.activate
def test_an_empty_200_body_is_retried_as_malformed(client, sleeps):
    responses.get(BACKUPS, status=200, body="")
    with pytest.raises(DcsMalformedResponse, match="empty body") as caught:
        client.list_backup_records(PROJECT, "i1")
    assert caught.value.attempts == 5


@responses.activate
def test_instances_are_deduplicated_by_instance_id(client):
    url = f"{BASE}/v2/p1/instances"
    responses.get(url, json={"instance_num": 3, "instances": [{"instance_id": "a"}, {"instance_id": "b"}]})
    responses.get(url, json={"instance_num": 3, "instances": [{"instance_id": "b"}]})
    listing = client.list_instances(PROJECT)
    assert [i["instance_id"] for i in listing] == ["a", "b"]
    assert not listing.complete
    assert "instance_id b repeated" in " ".join(listing.problems)

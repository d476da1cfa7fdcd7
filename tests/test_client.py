"""Our DCS client at the HTTP boundary: paging, 204, every error shape, timeouts.

`responses` stands in for the API here; the client code is the real one.
"""

from datetime import UTC, datetime

import pytest
import requests
import responses
from responses import matchers

from backups.dcs.client import DcsClient
from backups.dcs.config import DcsConfig, DcsProject
from backups.dcs.errors import (
    DcsApiError,
    DcsAuthError,
    DcsBadRequest,
    DcsMalformedResponse,
    DcsNotFound,
    DcsServerError,
    DcsThrottled,
    DcsTransportError,
)

SK = "super-secret-sk-value"
PROJECT = DcsProject("cn-north-4", "p1")
BASE = "https://dcs.cn-north-4.myhuaweicloud.com"
BACKUPS = f"{BASE}/v2/p1/instances/i1/backups"


@pytest.fixture
def client():
    config = DcsConfig(access_key="AK1", secret_key=SK, projects=(PROJECT,))
    return DcsClient(config, page_size=2)


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
def test_it_refuses_a_listing_shorter_than_promised(client):
    responses.get(BACKUPS, json={"total_num": 5, "backup_record_response": [_record(1), _record(2)]})
    responses.get(BACKUPS, json={"total_num": 5, "backup_record_response": []})
    with pytest.raises(DcsMalformedResponse, match="2 of 5"):
        list(client.list_backup_records(PROJECT, "i1"))


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
def test_it_takes_the_request_id_from_a_gateway_body(client):
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

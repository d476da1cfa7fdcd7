"""Faults from the API, over real HTTP: the simulator injects them, our real client meets them.

Each fault class is retried to success within the bound, or ends in the typed error with its
status, code and request id; a 4xx is sent once; Retry-After is honoured and capped; broken
bodies end in DcsMalformedResponse or an incomplete Listing, never another exception; pages
that shift are never called complete. A property test throws random faults at the client and
checks it never returns a record the simulator does not have.

The client's sleep is injected (it records the waits and can "heal" the simulator), so no test
waits for a backoff; the simulator and the client share a frozen clock.
"""

from __future__ import annotations

import dataclasses
import random
import socket
from collections import Counter
from datetime import UTC, datetime

import pytest
import requests
from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException
from huaweicloudsdkcore.http.http_config import HttpConfig
from huaweicloudsdkdcs.v2 import DcsClient as SdkDcsClient
from huaweicloudsdkdcs.v2 import ListBackupRecordsRequest, ListInstancesRequest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from backups.dcs.client import DcsClient, Listing
from backups.dcs.errors import (
    DcsAuthError,
    DcsBadRequest,
    DcsError,
    DcsMalformedResponse,
    DcsNotFound,
    DcsServerError,
    DcsThrottled,
    DcsTransportError,
)
from backups.dcs.retry import RetryPolicy
from backups.simulator.faults import (
    DROP_VARIANTS,
    LIST_BACKUP_RECORDS,
    LIST_INSTANCES,
    LIST_RESTORE_RECORDS,
    MALFORMED_VARIANTS,
    THROTTLE,
    Faults,
    FaultSettings,
)
from backups.simulator.server import FAULTS_PATH, DcsSimulator, SimulatorServer
from tests.conftest import PROJECTS, TEST_AK, TEST_SK, make_config, make_simulator

PROJECT = PROJECTS[0]
PID = PROJECT.project_id


def backupable_instances(sim: DcsSimulator) -> list[str]:
    """Instance ids of the first project that have backups, fewest records first."""
    ids = [i["instance_id"] for i in sim.list_instances(PID)]
    counts = {iid: len(sim.list_backups(PID, iid)) for iid in ids}
    return sorted((iid for iid in ids if counts[iid]), key=counts.get)


@pytest.fixture
def sim(sim_clock) -> DcsSimulator:
    return make_simulator(clock=sim_clock)


@pytest.fixture
def server(sim):
    with SimulatorServer(sim) as running:
        yield running


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def make_client(server, sim_clock, sleeps):
    def make(**kwargs) -> DcsClient:
        kwargs.setdefault("sleep", sleeps.append)
        kwargs.setdefault("rng", random.Random(0))
        kwargs.setdefault("read_timeout", 5)
        return DcsClient(make_config(server.url), clock=sim_clock, connect_timeout=2, **kwargs)

    return make


def heal_after(sim: DcsSimulator, retries: int, sleeps: list[float]):
    """A client sleep that records each wait and switches the faults off after ``retries`` of them."""

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        if len(sleeps) == retries:
            sim.faults.reset()

    return sleep


def control(server: SimulatorServer, method: str, body=None, **kwargs) -> requests.Response:
    return requests.request(method, server.url + FAULTS_PATH, json=body, timeout=5, **kwargs)


# --- The switchboard ------------------------------------------------------------------


def test_it_switches_faults_on_and_off_over_http(server, sim):
    assert control(server, "GET").json()["active"] is False
    answer = control(server, "POST", {"error_rate": 0.25, "throttle_rate": 0.1, "retry_after": 2, "seed": 3})
    assert answer.status_code == 200
    state = answer.json()
    assert (state["active"], state["error_rate"], state["retry_after"], state["seed"]) == (True, 0.25, 2.0, 3)
    assert sim.faults.settings.throttle_rate == 0.1
    assert control(server, "GET").json()["throttle_rate"] == 0.1
    reset = control(server, "DELETE").json()
    assert (reset["active"], reset["error_rate"], reset["injected"]) == (
        False,
        0.0,
        {LIST_INSTANCES: {}, LIST_BACKUP_RECORDS: {}, LIST_RESTORE_RECORDS: {}},
    )
    # The switchboard is not part of the API: unsigned, and not counted as API requests.
    assert sim.request_count == 0


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"error_rate": 2}, "error_rate must be a number between 0 and 1"),
        ({"slow_seconds": "never"}, "slow_seconds must be a number between 0 and 300"),
        ({"throttle_burst": 0}, "throttle_burst must be between 1 and 1000"),
        ({"drop_rate": 0.6, "error_rate": 0.6}, "must not add up to more than 1"),
        ({"endpoints": ["DeleteEverything"]}, "'DeleteEverything' is not one of"),
        ({"retry_after_format": "soon"}, "retry_after_format must be one of seconds, http-date"),
        ({"malformed_variants": ["gibberish"]}, "'gibberish' is not one of"),
        ({"per_endpoint": {"ListInstances": {"seed": 1}}}, "may only set"),
        ({"errror_rate": 0.1}, "unknown fault setting(s): errror_rate"),
        ([0.1], "must be a JSON object"),
    ],
)
def test_it_refuses_bad_fault_settings_with_a_clear_400(server, sim, body, message):
    answer = control(server, "POST", body)
    assert answer.status_code == 400
    assert message in answer.json()["error"]
    assert sim.faults.settings == FaultSettings()


def test_it_refuses_a_body_that_is_not_json_and_other_methods(server):
    answer = requests.post(server.url + FAULTS_PATH, data=b"error_rate=1", timeout=5)
    assert answer.status_code == 400
    assert control(server, "PUT", {}).status_code == 405


def _non_loopback_address() -> str | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # no packet is sent: this only picks a route
        except OSError:
            return None
        address = probe.getsockname()[0]
    return None if address.startswith("127.") else address


def test_the_switchboard_answers_only_on_loopback(sim):
    address = _non_loopback_address()
    if address is None:
        pytest.skip("this machine has no non-loopback address")
    with SimulatorServer(sim, host="0.0.0.0", port=0) as server:  # noqa: S104 - reached from this machine only
        answer = requests.post(
            f"http://{address}:{server.port}{FAULTS_PATH}", json={"error_rate": 1}, timeout=5
        )
    assert answer.status_code in (401, 404)  # to anyone else it is just an unknown, unsigned path
    assert "error_rate" not in answer.text
    assert sim.faults.settings.error_rate == 0


def test_a_fault_seed_gives_the_same_faults_again(server, sim, make_client):
    big = backupable_instances(sim)[-1]

    def run() -> tuple:
        sim.faults.configure(error_rate=0.3, drop_rate=0.1, malformed_rate=0.1, throttle_rate=0.1, seed=5)
        client = make_client(page_size=25)
        try:
            outcome = len(client.list_backup_records(PROJECT, big))
        except DcsError as exc:
            outcome = type(exc).__name__
        return outcome, client.api_calls, sim.faults.counts

    first = run()
    assert first == run()
    assert sum(first[2][LIST_BACKUP_RECORDS].values()) > 0


def test_throttling_comes_in_bursts():
    faults = Faults()
    faults.configure(throttle_rate=0.2, throttle_burst=3, seed=1)
    kinds = "".join("T" if faults.decide(LIST_INSTANCES).kind == THROTTLE else "." for _ in range(300))
    runs = [len(run) for run in kinds.rstrip("T").split(".") if run]  # the last burst may be cut off
    assert runs
    assert min(runs) >= 3


# --- 5xx, 429, slow, dropped: retried --------------------------------------------------


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_a_server_error_is_retried_to_success(server, sim, make_client, sleeps, status):
    sim.faults.configure(error_rate=1, error_statuses=[status])
    client = make_client(sleep=heal_after(sim, 2, sleeps))
    listing = client.list_instances(PROJECT)
    assert listing.complete
    assert list(listing) == sim.list_instances(PID)
    assert (client.api_calls, client.retries, sum(client.error_counts.values())) == (3, 2, 2)


@pytest.mark.parametrize(
    ("status", "code", "message"),
    [
        (500, "DCS.5000", "Internal service error."),
        (502, "APIG.0201", "Backend unavailable"),
        (503, "", "503 Service Temporarily Unavailable"),
        (504, "APIG.0201", "Backend timeout"),
    ],
)
def test_a_server_error_that_persists_ends_in_the_typed_error(
    server, sim, make_client, sleeps, status, code, message
):
    sim.faults.configure(error_rate=1, error_statuses=[status])
    client = make_client(retry=RetryPolicy(max_retries=3, backoff=0.01))
    with pytest.raises(DcsServerError) as caught:
        client.list_instances(PROJECT)
    error = caught.value
    assert (error.status, error.error_code, error.attempts) == (status, code, 4)
    assert message in error.error_msg
    assert len(error.request_id) == 32
    assert (client.api_calls, client.retries, len(sleeps), sim.request_count) == (4, 3, 3, 4)
    assert all(0 <= wait <= 0.01 * 2**n for n, wait in enumerate(sleeps))


def test_a_429_waits_for_its_retry_after_in_seconds(server, sim, make_client, sleeps):
    sim.faults.configure(throttle_rate=1, retry_after=2)
    client = make_client(sleep=heal_after(sim, 2, sleeps))
    assert client.list_instances(PROJECT).complete
    assert sleeps == [2.0, 2.0]
    assert (client.api_calls, client.throttles, client.retries) == (3, 2, 2)


def test_a_429_waits_for_its_retry_after_as_an_http_date(server, sim, make_client, sleeps):
    sim.faults.configure(throttle_rate=1, retry_after=3, retry_after_format="http-date")
    client = make_client(sleep=heal_after(sim, 1, sleeps))
    assert client.list_instances(PROJECT).complete
    assert sleeps == [3.0]


def test_a_long_retry_after_is_capped(server, sim, make_client, sleeps):
    sim.faults.configure(throttle_rate=1, retry_after=3600)
    client = make_client(retry=RetryPolicy(retry_after_cap=5), sleep=heal_after(sim, 1, sleeps))
    assert client.list_instances(PROJECT).complete
    assert sleeps == [5.0]


def test_throttling_that_persists_ends_in_dcs_throttled(server, sim, make_client, sleeps):
    sim.faults.configure(throttle_rate=1, retry_after=1)
    client = make_client(retry=RetryPolicy(max_retries=2))
    with pytest.raises(DcsThrottled) as caught:
        client.list_instances(PROJECT)
    error = caught.value
    assert (error.status, error.error_code, error.retry_after, error.attempts) == (429, "APIG.0308", 1.0, 3)
    assert "policy user over ratelimit" in error.error_msg
    assert error.request_id
    assert (client.throttles, sleeps) == (3, [1.0, 1.0])


@pytest.mark.parametrize("variant", DROP_VARIANTS)
def test_a_dropped_connection_is_retried_to_success(server, sim, make_client, sleeps, variant):
    sim.faults.configure(drop_rate=1, drop_variants=[variant])
    client = make_client(sleep=heal_after(sim, 1, sleeps))
    assert list(client.list_instances(PROJECT)) == sim.list_instances(PID)
    assert client.error_counts == {"transport": 1}


@pytest.mark.parametrize("variant", DROP_VARIANTS)
def test_connections_that_keep_dropping_end_in_a_transport_error(server, sim, make_client, variant):
    sim.faults.configure(drop_rate=1, drop_variants=[variant])
    client = make_client(retry=RetryPolicy(max_retries=2))
    with pytest.raises(DcsTransportError) as caught:
        client.list_instances(PROJECT)
    assert caught.value.attempts == 3
    assert sim.faults.counts[LIST_INSTANCES] == {"drop": 3}
    assert TEST_SK not in str(caught.value)


def test_a_slow_answer_past_the_read_timeout_is_retried(server, sim, make_client, sleeps):
    sim.faults.configure(slow_rate=1, slow_seconds=30)
    client = make_client(read_timeout=0.3, sleep=heal_after(sim, 1, sleeps))
    assert client.list_instances(PROJECT).complete
    # The read timeout gave up on the held answer: without it the client would have waited
    # the 30 s for it, and seen no error.
    assert client.error_counts == {"transport": 1}


def test_a_slow_answer_within_the_timeout_is_just_slow(server, sim, make_client):
    sim.faults.configure(slow_rate=1, slow_seconds=0.05)
    client = make_client()
    assert client.list_instances(PROJECT).complete
    assert (client.api_calls, client.retries) == (1, 0)
    assert sim.faults.counts[LIST_INSTANCES] == {"slow": 1}


# --- 4xx: sent once -------------------------------------------------------------------------


def test_a_4xx_is_sent_exactly_once_whatever_the_faults(server, sim, make_client, sleeps):
    client = make_client()
    with pytest.raises(DcsNotFound) as caught:
        client.list_backup_records(PROJECT, "no-such-instance")
    assert (caught.value.error_code, caught.value.attempts, sim.request_count) == ("DCS.3022", 1, 1)

    with pytest.raises(DcsBadRequest) as caught:
        client.get(PROJECT, f"/v2/{PID}/instances", {"limit": 5000})
    assert (caught.value.error_code, sim.request_count) == ("DCS.4800", 2)

    sim.faults.configure(error_rate=1)  # the gateway refuses a bad signature before any fault
    bad = DcsClient(dataclasses.replace(make_config(server.url), secret_key="wrong"), sleep=sleeps.append)
    with pytest.raises(DcsAuthError) as caught:
        bad.list_instances(PROJECT)
    assert (caught.value.error_code, caught.value.attempts, sim.request_count) == ("APIG.0301", 1, 3)
    assert sleeps == []


# --- Malformed bodies ------------------------------------------------------------------------

UNDECODABLE = ("not-json", "truncated")


@pytest.mark.parametrize("variant", MALFORMED_VARIANTS)
@pytest.mark.parametrize("operation", [LIST_INSTANCES, LIST_BACKUP_RECORDS])
def test_a_malformed_body_ends_in_dcs_malformed_response(
    server, sim, make_client, sleeps, variant, operation
):
    sim.faults.configure(malformed_rate=1, malformed_variants=[variant], endpoints=[operation])
    client = make_client(retry=RetryPolicy(max_retries=2))
    with pytest.raises(DcsMalformedResponse) as caught:
        if operation == LIST_INSTANCES:
            client.list_instances(PROJECT)
        else:
            client.list_backup_records(PROJECT, backupable_instances(sim)[0])
    error = caught.value
    assert len(error.request_id) == 32
    # Undecodable bodies may be a hiccup and are retried; a wrong shape would come back the same.
    assert (error.attempts, len(sleeps)) == ((3, 2) if variant in UNDECODABLE else (1, 0))


@pytest.mark.parametrize("variant", UNDECODABLE)
def test_an_undecodable_body_is_retried_to_success(server, sim, make_client, sleeps, variant):
    sim.faults.configure(malformed_rate=1, malformed_variants=[variant])
    client = make_client(sleep=heal_after(sim, 1, sleeps))
    assert list(client.list_instances(PROJECT)) == sim.list_instances(PID)


# --- Records that shift between pages -----------------------------------------------------------


def test_pages_that_shift_are_never_complete_and_the_new_records_stay(server, sim, make_client):
    instance = backupable_instances(sim)[-1]
    before = sim.list_backups(PID, instance)
    sim.faults.configure(shift_rate=1)
    listing = make_client(page_size=100).list_backup_records(PROJECT, instance)

    shifts = sim.faults.counts[LIST_BACKUP_RECORDS]["shift"]
    after = sim.list_backups(PID, instance)
    assert shifts == listing.pages - 1  # every continuation page met a new backup
    assert listing.complete is False
    assert any("repeated" in problem for problem in listing.problems)
    assert len(after) == len(before) + shifts
    assert after[shifts:] == before  # the new ones head the list; nothing else moved or changed
    assert {r["backup_id"] for r in listing} <= {r["backup_id"] for r in after}

    sim.faults.reset()
    again = make_client(page_size=100).list_backup_records(PROJECT, instance)
    assert again.complete
    assert list(again) == after


def test_faults_never_change_the_truth(server, sim, make_client):
    def truth() -> dict:
        return {
            (p.project_id, i["instance_id"]): sim.list_backups(p.project_id, i["instance_id"])
            for p in PROJECTS
            for i in sim.list_instances(p.project_id)
        }

    before = truth()
    sim.faults.configure(
        error_rate=0.2, throttle_rate=0.1, malformed_rate=0.2, drop_rate=0.2, slow_rate=0.1, slow_seconds=0.01
    )
    client = make_client(page_size=50, retry=RetryPolicy(max_retries=1, backoff=0))
    outcomes = Counter()
    for project_id, instance_id in before:
        project = next(p for p in PROJECTS if p.project_id == project_id)
        try:
            outcomes[client.list_backup_records(project, instance_id).complete] += 1
        except DcsError as exc:
            outcomes[type(exc).__name__] += 1
    assert len(outcomes) > 1  # some listings failed, some did not
    assert truth() == before


# --- The official SDK ---------------------------------------------------------------------------


def test_the_official_sdk_still_works_once_faults_are_off():
    now = datetime.now(UTC)
    sim = make_simulator(clock=lambda: now)
    with SimulatorServer(sim) as server:
        config = HttpConfig.get_default_config()
        sdk = (
            SdkDcsClient.new_builder()
            .with_http_config(config)
            .with_credentials(BasicCredentials(TEST_AK, TEST_SK, PID))
            .with_endpoints([server.url])
            .build()
        )
        control(server, "POST", {"throttle_rate": 1, "retry_after": 1})
        with pytest.raises(ClientRequestException) as caught:
            sdk.list_instances(ListInstancesRequest())
        # As with the real gateway, the SDK hides the APIG.0308 body (dcs-api.md §7.7).
        assert caught.value.status_code == 429

        control(server, "DELETE")
        instances = sdk.list_instances(ListInstancesRequest(limit=100))
        assert instances.instance_num == len(sim.list_instances(PID))
        instance = backupable_instances(sim)[0]
        records = sdk.list_backup_records(ListBackupRecordsRequest(instance_id=instance, limit=100))
        assert [r.backup_id for r in records.backup_record_response] == [
            r["backup_id"] for r in sim.list_backups(PID, instance)
        ]


# --- Property: random faults never make phantoms --------------------------------------------------


@pytest.fixture
def smallest_and_largest(sim) -> tuple[str, str]:
    instances = backupable_instances(sim)
    return instances[0], instances[-1]


RATE = st.sampled_from([0.0, 0.0, 0.05, 0.15, 0.25])

FAULT_SETTINGS = st.fixed_dictionaries(
    {
        "error_rate": RATE,
        "throttle_rate": RATE,
        "malformed_rate": RATE,
        "drop_rate": RATE,
        "slow_rate": st.sampled_from([0.0, 0.1]),
        "slow_seconds": st.just(0.005),
        "shift_rate": st.sampled_from([0.0, 0.2, 0.6]),
        "throttle_burst": st.integers(1, 3),
        "retry_after": st.sampled_from([None, 0, 1]),
        "seed": st.integers(0, 10_000),
    }
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    fault_settings=FAULT_SETTINGS,
    target=st.sampled_from(["instances", "small", "large"]),
    page_size=st.integers(1, 6),
    max_retries=st.integers(0, 4),
)
def test_random_faults_give_a_dcs_error_or_a_listing_without_phantoms(
    server, sim, make_client, smallest_and_largest, fault_settings, target, page_size, max_retries
):
    instance_id = smallest_and_largest[0 if target == "small" else -1]
    sim.faults.configure(**fault_settings)
    client = make_client(
        page_size=page_size * (60 if target == "large" else 1), retry=RetryPolicy(max_retries)
    )
    try:
        if target == "instances":
            listing = client.list_instances(PROJECT)
        else:
            listing = client.list_backup_records(PROJECT, instance_id)
    except DcsError as exc:
        event(f"raised {type(exc).__name__}")
        return
    event("complete listing" if listing.complete else "incomplete listing")
    sim.faults.reset()
    assert isinstance(listing, Listing)
    if target == "instances":
        truth, key = sim.list_instances(PID), "instance_id"
    else:
        truth, key = sim.list_backups(PID, instance_id), "backup_id"
    by_id = {item[key]: item for item in truth}
    assert all(by_id.get(item[key]) == item for item in listing)  # no phantoms, nothing garbled
    assert len({item[key] for item in listing}) == len(listing)  # no repeats
    if listing.complete:
        assert list(listing) == truth

"""The DCS simulator over real HTTP: signed requests, paging, errors, the fleet and its history.

Requests are signed with our own signer; test_sdk_against_simulator.py does the same with the
official SDK. The simulator runs on a hand-moved clock, so every answer here is reproducible.
"""

from __future__ import annotations

import re
import socket
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
import requests
from django.core.management import CommandError, call_command
from huaweicloudsdkdcs.v2.model.backup_record_response import BackupRecordResponse
from huaweicloudsdkdcs.v2.model.instance_list_info import InstanceListInfo

from backups.dcs.signing import DATE_FORMAT, SdkHmacSha256Auth
from backups.management.commands import dcs_simulator as command
from backups.simulator.fleet import build_fleet
from backups.simulator.server import DcsSimulator, SimulatorServer

AK = "SIMTESTACCESSKEY01"
SK = "sim-test-secret-key-not-real"
PROJECT = "5a6b7c8d9e0f11223344556677889900"
OTHER_PROJECT = "00998877665544332211f0e9d8c7b6a5"
REGIONS = {PROJECT: "cn-north-4", OTHER_PROJECT: "ap-southeast-1"}
START = datetime(2026, 3, 10, 12, 0, 0, tzinfo=UTC)
ACTIVE = ("waiting", "backuping")


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def make_sim(clock=None, *, instances: int = 12, seed: int = 5, **kwargs) -> DcsSimulator:
    return DcsSimulator(
        projects=REGIONS, credentials={AK: SK}, instances=instances, seed=seed, clock=clock, **kwargs
    )


class Api:
    """Signed GETs against a running simulator, on the simulator's clock."""

    def __init__(self, server: SimulatorServer, clock: Clock) -> None:
        self.url = server.url
        self.auth = SdkHmacSha256Auth(AK, SK, project_id=PROJECT, clock=clock)
        self.session = requests.Session()

    def get(self, path: str, *, auth=None, headers=None, **params) -> requests.Response:
        return self.session.get(
            self.url + path, params=params, auth=auth or self.auth, headers=headers, timeout=5
        )

    def instances(self, project: str = PROJECT, **params) -> requests.Response:
        return self.get(f"/v2/{project}/instances", **params)

    def backups(self, instance_id: str, project: str = PROJECT, **params) -> requests.Response:
        return self.get(f"/v2/{project}/instances/{instance_id}/backups", **params)


@pytest.fixture
def clock() -> Clock:
    return Clock(START)


@pytest.fixture
def sim(clock) -> DcsSimulator:
    return make_sim(clock)


@pytest.fixture
def api(sim, clock):
    with SimulatorServer(sim) as server:
        yield Api(server, clock)


def backupable(sim: DcsSimulator, project: str = PROJECT) -> dict:
    return next(
        i for i in sim.list_instances(project) if ".single" not in i["spec_code"] and i["status"] == "RUNNING"
    )


def single_node(sim: DcsSimulator, project: str = PROJECT) -> dict:
    return next(i for i in sim.list_instances(project) if ".single" in i["spec_code"])


def all_backups(sim: DcsSimulator, now: datetime) -> list[dict]:
    return [
        record
        for project in REGIONS
        for instance in sim.list_instances(project, now)
        for record in sim.list_backups(project, instance["instance_id"], now)
    ]


def parse_time(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


def compact(moment: datetime) -> str:
    return moment.strftime("%Y%m%d%H%M%S")


def assert_error(response: requests.Response, status: int, code: str, message: str) -> None:
    assert response.status_code == status
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.json() == {"error_code": code, "error_msg": message, "error_ext_msg": None}


# --- ListInstances ------------------------------------------------------------------


def test_it_lists_instances_with_every_field_of_the_sdk_model(api, sim):
    response = api.instances(limit=1000)
    assert response.status_code == 200
    body = response.json()
    assert body["instance_num"] == 6  # 12 instances dealt between two projects
    assert body["instances"] == sim.list_instances(PROJECT)
    for instance in body["instances"]:
        assert set(instance) == set(InstanceListInfo.openapi_types)
        assert instance["port"] in (6379, 11211)
        assert instance["az_codes"] and all(az.startswith("cn-north-4") for az in instance["az_codes"])
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", instance["created_at"])
        assert all(set(tag) == {"key", "value"} for tag in instance["tags"])
        if instance["capacity"] == 0:
            assert instance["capacity_minor"] in (".125", ".25", ".5")
    other = api.instances(OTHER_PROJECT, limit=1000).json()["instances"]
    assert all(az.startswith("ap-southeast-1") for i in other for az in i["az_codes"])


def test_it_makes_a_varied_fleet():
    fleet = build_fleet(REGIONS, 40, seed=1)
    assert len(fleet) == 40
    assert len({i.instance_id for i in fleet}) == 40
    assert len({i.name for i in fleet}) == 40
    assert 4 <= sum(i.is_single_node for i in fleet) <= 6  # 10-15 %
    assert sum(i.status == "RUNNING" for i in fleet) >= 30
    assert {i.engine for i in fleet} == {"Redis", "Memcached"}
    assert any(not i.name.isascii() for i in fleet)
    assert any(".cluster." in i.spec_code for i in fleet) and any(".ha." in i.spec_code for i in fleet)
    # Data grows over time, so backups of one instance get bigger.
    instance = fleet[0]
    start = instance.created_ms
    assert instance.data_bytes_at(start) < instance.data_bytes_at(start + 30 * 86_400_000)


def test_it_pages_and_filters_instances(api, sim):
    truth = sim.list_instances(PROJECT)
    first = api.instances(limit=4).json()
    second = api.instances(limit=4, offset=4).json()
    assert first["instance_num"] == second["instance_num"] == len(truth)
    assert first["instances"] + second["instances"] == truth
    assert api.instances(offset=100).json() == {"instance_num": len(truth), "instances": []}
    assert len(api.instances().json()["instances"]) == min(10, len(truth))

    target = truth[2]
    by_id = api.instances(instance_id=target["instance_id"]).json()
    assert by_id == {"instance_num": 1, "instances": [target]}
    fuzzy = api.instances(name=target["name"][1:-1]).json()["instances"]
    assert target in fuzzy
    exact = api.instances(name=target["name"][1:-1], name_equal="true").json()
    assert exact["instance_num"] == 0
    statuses = api.instances(status="RUNNING", limit=1000).json()["instances"]
    assert statuses == [i for i in truth if i["status"] == "RUNNING"]


# --- ListBackupRecords --------------------------------------------------------------


def test_it_pages_backup_records_with_the_total(api, sim):
    instance_id = backupable(sim)["instance_id"]
    truth = sim.list_backups(PROJECT, instance_id)
    assert len(truth) > 20
    pages, offset = [], 0
    while offset < len(truth):
        body = api.backups(instance_id, offset=offset, limit=7).json()
        assert body["total_num"] == len(truth)  # the total, not the page size
        pages += body["backup_record_response"]
        offset += 7
    assert pages == truth
    created = [parse_time(r["created_at"]) for r in truth]
    assert created == sorted(created, reverse=True)
    assert len(api.backups(instance_id).json()["backup_record_response"]) == 10
    past_the_end = api.backups(instance_id, offset=len(truth))
    assert past_the_end.status_code == 200
    assert past_the_end.json() == {"total_num": len(truth), "backup_record_response": []}


def test_it_answers_204_with_no_body_for_a_single_node_instance(api, sim):
    instance_id = single_node(sim)["instance_id"]
    assert sim.list_backups(PROJECT, instance_id) == []
    response = api.backups(instance_id)
    assert response.status_code == 204
    assert response.content == b""
    assert "Content-Type" not in response.headers
    assert re.fullmatch(r"[0-9a-f]{32}", response.headers["X-Request-Id"])


def test_it_filters_on_created_at_with_inclusive_whole_second_bounds(api, sim):
    instance_id = backupable(sim)["instance_id"]
    truth = sim.list_backups(PROJECT, instance_id)
    newest, oldest = parse_time(truth[5]["created_at"]), parse_time(truth[20]["created_at"])
    window = api.backups(instance_id, begin_time=compact(oldest), end_time=compact(newest), limit=1000).json()
    assert window["backup_record_response"] == truth[5:21]
    assert window["total_num"] == 16

    one_second = api.backups(instance_id, begin_time=compact(newest), end_time=compact(newest)).json()
    assert one_second["backup_record_response"] == [truth[5]]
    since = api.backups(instance_id, begin_time=compact(newest), limit=1000).json()
    assert since["backup_record_response"] == truth[:6]
    until = api.backups(instance_id, end_time=compact(oldest), limit=1000).json()
    assert until["backup_record_response"] == truth[20:]

    nothing = api.backups(instance_id, begin_time="20010101000000", end_time="20010102000000")
    assert nothing.status_code == 204
    assert nothing.content == b""


@pytest.mark.parametrize(
    ("param", "value"),
    [
        ("limit", "0"),
        ("limit", "1001"),
        ("limit", "ten"),
        ("limit", "2.5"),
        ("limit", ""),
        ("offset", "-1"),
        ("offset", "x"),
        ("offset", "1e3"),
        ("begin_time", "2024-01-01"),
        ("begin_time", "20241301000000"),
        ("begin_time", "2024010100000"),
        ("end_time", "20240101250000"),
        ("end_time", "abc"),
    ],
)
def test_it_rejects_invalid_backup_parameters(api, sim, param, value):
    instance_id = backupable(sim)["instance_id"]
    response = api.backups(instance_id, **{param: value})
    assert_error(response, 400, "DCS.4800", f"Invalid {param} in the request.")


@pytest.mark.parametrize(("param", "value"), [("limit", "0"), ("limit", "1001"), ("offset", "-5")])
def test_it_rejects_invalid_instance_paging(api, param, value):
    assert_error(api.instances(**{param: value}), 400, "DCS.4800", f"Invalid {param} in the request.")


def test_it_rejects_an_end_time_before_the_begin_time(api, sim):
    instance_id = backupable(sim)["instance_id"]
    response = api.backups(instance_id, begin_time="20240102000000", end_time="20240101235959")
    assert_error(response, 400, "DCS.4025", "The end time must be later than the start time.")


# --- Errors, authentication, headers ----------------------------------------------------


def test_it_answers_404_for_unknown_instances_projects_and_paths(api):
    assert_error(
        api.backups("00000000-0000-0000-0000-000000000000"),
        404,
        "DCS.3022",
        "This DCS instance does not exist.",
    )
    for path in ("/v2/unknown-project/instances", "/v1.0/instances", "/v2/" + PROJECT + "/nothing", "/"):
        assert_error(api.get(path), 404, "DCS.4001", "The requested URL does not exist.")


def test_it_answers_405_to_other_methods_on_known_paths(api, sim):
    instance_id = backupable(sim)["instance_id"]
    for method, path in [
        ("POST", f"/v2/{PROJECT}/instances/{instance_id}/backups"),
        ("DELETE", f"/v2/{PROJECT}/instances"),
        ("PUT", f"/v2/{PROJECT}/instances"),
    ]:
        response = api.session.request(method, api.url + path, auth=api.auth, json={"remark": "r"}, timeout=5)
        assert_error(response, 405, "DCS.5001", "The method is not allowed.")


def assert_unauthorized(response: requests.Response, reason: str) -> None:
    assert response.status_code == 401
    body = response.json()
    assert body["error_code"] == "APIG.0301"
    assert body["error_msg"].startswith("Incorrect IAM authentication information: ")
    assert reason in body["error_msg"]
    assert body["request_id"] == response.headers["X-Request-Id"]


def test_it_rejects_missing_wrong_and_unknown_credentials(api, clock):
    path = api.url + f"/v2/{PROJECT}/instances"
    assert_unauthorized(requests.get(path, timeout=5), "Authorization")
    wrong_sk = SdkHmacSha256Auth(AK, "not-the-secret", project_id=PROJECT, clock=clock)
    assert_unauthorized(api.get(f"/v2/{PROJECT}/instances", auth=wrong_sk), "verify aksk signature fail")
    unknown_ak = SdkHmacSha256Auth("UNKNOWNAK", SK, project_id=PROJECT, clock=clock)
    assert_unauthorized(api.get(f"/v2/{PROJECT}/instances", auth=unknown_ak), "ak not exist")
    # A signed query that was changed on the way fails too.
    signed = requests.Request("GET", path, params={"limit": "5"}).prepare()
    api.auth(signed)
    signed.url = signed.url.replace("limit=5", "limit=6")
    assert_unauthorized(api.session.send(signed, timeout=5), "verify aksk signature fail")


def test_it_rejects_a_signing_time_more_than_15_minutes_off(api, clock):
    for skew, expected in [
        (timedelta(minutes=16), 401),
        (timedelta(minutes=-16), 401),
        (timedelta(minutes=14), 200),
    ]:
        date = (clock.now + skew).strftime(DATE_FORMAT)
        response = api.instances(headers={"X-Sdk-Date": date})
        assert response.status_code == expected
        if expected == 401:
            assert_unauthorized(response, "signature expired")


def test_it_sends_a_fresh_request_id_with_every_answer(api):
    ids = {api.instances().headers["X-Request-Id"] for _ in range(3)}
    ids.add(api.get("/nowhere").headers["X-Request-Id"])
    assert len(ids) == 4
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)


def test_it_stops_answering_when_stopped(sim, clock):
    server = SimulatorServer(sim).start()
    api = Api(server, clock)
    assert api.instances().status_code == 200
    server.stop()
    # The session's kept-alive connection is closed too, not left answering.
    with pytest.raises(requests.ConnectionError):
        api.instances()


def test_it_counts_requests_per_operation(api, sim):
    instance_id = backupable(sim)["instance_id"]
    api.instances()
    api.instances(limit=0)
    api.backups(instance_id)
    requests.get(api.url + f"/v2/{PROJECT}/instances", timeout=5)  # unsigned: still answered
    api.session.post(api.url + f"/v2/{PROJECT}/instances", auth=api.auth, timeout=5)
    assert sim.request_count == 5
    assert sim.endpoint_counts == {"ListInstances": 3, "ListBackupRecords": 1, "other": 1}
    sim.reset_counts()
    assert sim.request_count == 0


def test_it_answers_a_1000_record_page_from_its_cached_history(clock):
    sim = DcsSimulator(
        projects={PROJECT: "cn-north-4"}, credentials={AK: SK}, instances=3, seed=2, clock=clock
    )
    with SimulatorServer(sim) as server:
        api = Api(server, clock)
        instance_id = backupable(sim)["instance_id"]
        first = api.backups(instance_id, limit=1000).json()  # generates and caches the history
        body = api.backups(instance_id, limit=1000).json()
    assert body["total_num"] >= 900  # one of only three instances gets a third of the stream
    assert len(body["backup_record_response"]) == min(1000, body["total_num"])
    assert body == first


# --- The history -------------------------------------------------------------------------


def test_it_is_deterministic_for_a_seed(clock):
    first, again, other = make_sim(clock, seed=3), make_sim(clock, seed=3), make_sim(clock, seed=4)
    assert first.list_instances(PROJECT) == again.list_instances(PROJECT)
    instance_id = backupable(first)["instance_id"]
    # Asking about another moment first must not change what is said about this one.
    first.list_backups(PROJECT, instance_id, START + timedelta(days=5))
    assert first.list_backups(PROJECT, instance_id) == again.list_backups(PROJECT, instance_id)
    other_ids = {i["instance_id"] for i in other.list_instances(PROJECT)}
    assert not other_ids & {i["instance_id"] for i in first.list_instances(PROJECT)}


def test_it_keeps_a_record_the_same_whenever_it_is_asked_about(sim):
    instance_id = backupable(sim)["instance_id"]
    earlier = {r["backup_id"]: r for r in sim.list_backups(PROJECT, instance_id, START)}
    later = {r["backup_id"]: r for r in sim.list_backups(PROJECT, instance_id, START + timedelta(hours=30))}
    common = earlier.keys() & later.keys()
    assert len(common) > 10
    for backup_id in common:
        before, after = earlier[backup_id], later[backup_id]
        for field in ("created_at", "backup_name", "backup_type", "remark", "period"):
            assert before[field] == after[field]
        if before["status"] not in ACTIVE:
            assert (before["size"], before["updated_at"]) == (after["size"], after["updated_at"])


def test_it_shows_realistic_records_across_the_fleet():
    sim = make_sim(instances=40, seed=1)
    records = all_backups(sim, START)
    assert len(records) > 1000
    assert all(set(r) <= set(BackupRecordResponse.openapi_types) for r in records)
    assert all(parse_time(r["created_at"]) <= START for r in records)  # nothing from the future
    failed = [r for r in records if r["status"] == "failed"]
    assert 0.03 <= len(failed) / len(records) <= 0.1
    assert all(re.fullmatch(r"dcs\.08\.000[1-8]", r["error_code"]) and r["size"] in (0, None) for r in failed)
    auto_failures = [r["error_code"] for r in failed if r["backup_type"] == "auto"]
    assert auto_failures.count("dcs.08.0008") > len(auto_failures) / 2
    for record in records:
        created = parse_time(record["created_at"])
        assert record["backup_name"] == f"backup_{created + timedelta(hours=8):%Y%m%d%H%M%S}"
        assert record["is_support_restore"] == ("TRUE" if record["status"] == "succeed" else "FALSE")
        assert re.fullmatch(r"\d{1,3}\.\d\d", record["progress"])
        if record["backup_type"] == "auto":
            assert re.fullmatch(r"\d\d:00-\d\d:00", record["period"])
        else:
            assert record["period"] is None
        if record["status"] == "succeed":
            assert record["progress"] == "100.00" and record["size"] > 0 and record["updated_at"]
    assert {r["status"] for r in records} >= {"succeed", "failed", "expired", "deleted"}
    assert any(r["status"] in ACTIVE for r in records)
    assert any("backup_format" not in r for r in records)
    assert any("execution_at" not in r for r in records)
    assert {r.get("backup_format") for r in records} >= {"rdb", "aof", "RDB"}
    assert any(not r["remark"].isascii() for r in records)
    oldest_manual = min(parse_time(r["created_at"]) for r in records if r["backup_type"] == "manual")
    assert START - oldest_manual > timedelta(weeks=4)


def first_manual_backup_after(sim: DcsSimulator, moment: datetime) -> tuple[str, dict]:
    later = moment + timedelta(minutes=10)
    candidates = [
        (parse_time(record["created_at"]), instance["instance_id"], record)
        for instance in sim.list_instances(PROJECT, later)
        for record in sim.list_backups(PROJECT, instance["instance_id"], later)
        if record["backup_type"] == "manual" and parse_time(record["created_at"]) > moment
    ]
    _, instance_id, record = min(candidates, key=lambda c: c[0])
    return instance_id, record


def test_it_runs_a_backup_from_waiting_through_backuping_to_its_end(api, sim, clock):
    instance_id, planned = first_manual_backup_after(sim, START)
    clock.now = parse_time(planned["created_at"])
    just_created = api.backups(instance_id, limit=1).json()["backup_record_response"][0]
    assert just_created["backup_id"] == planned["backup_id"]
    assert (just_created["status"], just_created["progress"]) == ("waiting", "0.00")
    assert just_created["updated_at"] is None and just_created["size"] == 0

    seen = []
    while not seen or seen[-1]["status"] in ACTIVE:
        clock.now += timedelta(seconds=3)
        record = next(
            r for r in sim.list_backups(PROJECT, instance_id) if r["backup_id"] == planned["backup_id"]
        )
        seen.append(record)
        assert clock.now - START < timedelta(minutes=20)
    statuses = [r["status"] for r in seen]
    assert statuses[-1] in ("succeed", "failed")
    running = [float(r["progress"]) for r in seen if r["status"] == "backuping"]
    assert len(running) > 10 and running == sorted(running) and len(set(running)) == len(running)
    assert statuses == sorted(statuses, key=["waiting", "backuping", statuses[-1]].index)
    final = seen[-1]
    assert final == planned  # the future as the simulator told it
    assert final["updated_at"] is not None
    if final["status"] == "succeed":
        assert final["progress"] == "100.00" and final["is_support_restore"] == "TRUE" and final["size"] > 0
    # Over HTTP, the same record finished.
    served = api.backups(instance_id, limit=1000).json()["backup_record_response"]
    assert final in served


def test_it_always_has_a_backup_in_progress_somewhere(sim):
    for minutes in range(0, 24 * 60, 113):
        moment = START + timedelta(minutes=minutes, seconds=minutes % 60)
        active = [r for r in all_backups(sim, moment) if r["status"] in ACTIVE]
        assert active, f"nothing in progress at {moment}"


def test_it_expires_automatic_backups_after_7_days_and_drops_them_after_10(api, sim, clock):
    instance_id = backupable(sim)["instance_id"]
    record = next(
        r
        for r in sim.list_backups(PROJECT, instance_id)
        if r["backup_type"] == "auto" and r["status"] == "succeed"
    )
    created = parse_time(record["created_at"])

    def shown_at(moment: datetime) -> dict | None:
        listed = sim.list_backups(PROJECT, instance_id, moment)
        return next((r for r in listed if r["backup_id"] == record["backup_id"]), None)

    assert shown_at(created + timedelta(days=7, minutes=-1))["status"] == "succeed"
    expired = shown_at(created + timedelta(days=7, minutes=1))
    assert (expired["status"], expired["is_support_restore"]) == ("expired", "FALSE")
    assert shown_at(created + timedelta(days=10, minutes=-1))["status"] == "expired"
    assert shown_at(created + timedelta(days=10, seconds=1)) is None

    clock.now = created + timedelta(days=8)
    served = api.backups(instance_id, limit=1000).json()["backup_record_response"]
    assert next(r for r in served if r["backup_id"] == record["backup_id"])["status"] == "expired"
    for shown in served:
        age = clock.now - parse_time(shown["created_at"])
        if shown["backup_type"] == "auto":
            assert age < timedelta(days=10)
            assert (shown["status"] == "expired") == (age >= timedelta(days=7))


def test_it_renders_empty_values_as_in_the_doc_example_when_asked(clock):
    plain = make_sim(clock, instances=40)
    documented = make_sim(clock, instances=40, doc_example_mode=True)
    with SimulatorServer(documented) as server:
        api = Api(server, clock)
        instances = api.instances(limit=1000).json()["instances"]
        instance_id = backupable(documented)["instance_id"]
        records = api.backups(instance_id, limit=1000).json()["backup_record_response"]
    assert all(isinstance(i["no_password_access"], bool) for i in instances)
    assert 0 in [i["enterprise_project_id"] for i in instances]
    assert all(i["publicip_id"] == {} for i in instances)
    assert {r["period"] for r in records if r["backup_type"] == "auto"} != set()
    assert all(r["period"] == {} for r in records if r["backup_type"] == "manual")
    assert all(r["error_code"] == {} for r in records if r["status"] != "failed")

    plain_instances = plain.list_instances(PROJECT)
    assert all(i["no_password_access"] in ("true", "false") for i in plain_instances)
    assert all(isinstance(i["enterprise_project_id"], str) for i in plain_instances)
    plain_records = plain.list_backups(PROJECT, instance_id)
    assert all(r["period"] is None for r in plain_records if r["backup_type"] == "manual")
    assert all(r["error_code"] is None for r in plain_records if r["status"] != "failed")


def test_it_forgets_deleted_instances_and_dropped_backups(api, sim):
    instance_id = backupable(sim)["instance_id"]
    truth = sim.list_backups(PROJECT, instance_id)
    dropped = truth[3]
    sim.drop_backup(PROJECT, instance_id, dropped["backup_id"])
    body = api.backups(instance_id, limit=1000).json()
    assert body["total_num"] == len(truth) - 1
    assert dropped not in body["backup_record_response"]

    sim.delete_instance(PROJECT, instance_id)
    listed = api.instances(limit=1000).json()
    assert instance_id not in {i["instance_id"] for i in listed["instances"]}
    assert listed["instance_num"] == 5
    assert_error(api.backups(instance_id), 404, "DCS.3022", "This DCS instance does not exist.")


def test_it_does_not_import_django():
    code = "import sys, backups.simulator.server; print(any(m.startswith('django') for m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


# --- manage.py dcs_simulator ------------------------------------------------------------


@pytest.fixture
def configured(settings):
    """Real-credential settings, so the command does not write demo credentials."""
    settings.DCS_DEMO = False
    settings.DCS_AK, settings.DCS_SK = AK, SK
    settings.DCS_PROJECT_ID, settings.DCS_REGION = PROJECT, "cn-north-4"
    settings.DCS_PROJECTS = []
    settings.DCS_ENDPOINT = settings.DCS_SECURITY_TOKEN = ""
    return settings


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ({"port": "65536"}, "--port must be between 0 and 65535"),
        ({"port": "-1"}, "--port must be between 0 and 65535"),
        ({"port": "http"}, "--port must be a whole number"),
        ({"instances": "10001"}, "--instances must be between 0 and 10000"),
        ({"instances": "-3"}, "--instances must be between 0 and 10000"),
        ({"instances": "many"}, "--instances must be a whole number"),
        ({"seed": "1.5"}, "--seed must be a whole number"),
        ({"error_rate": "1.5"}, "--error-rate must be a number between 0 and 1, got '1.5'"),
        ({"throttle_rate": "often"}, "--throttle-rate must be a number between 0 and 1"),
        ({"drop_rate": "0.6", "malformed_rate": "0.6"}, "must not add up to more than 1"),
        ({"slow_seconds": "-2"}, "--slow-seconds must be a number between 0 and 300"),
        ({"retry_after": "nan"}, "--retry-after must be a number between 0 and 3600"),
        ({"throttle_burst": "0"}, "--throttle-burst must be between 1 and 1000"),
        ({"fault_seed": "x"}, "--fault-seed must be a whole number"),
        ({"fault_endpoint": ["DeleteInstance"]}, "--fault-endpoint: 'DeleteInstance' is not one of"),
    ],
)
def test_it_rejects_bad_command_flags(configured, flags, message):
    with pytest.raises(CommandError, match=re.escape(message)):
        call_command("dcs_simulator", **flags)


def test_it_says_so_when_the_port_is_taken(configured):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(CommandError, match=f"cannot listen on 127.0.0.1:{port}"):
            call_command("dcs_simulator", port=str(port), stdout=StringIO())


def test_it_serves_until_interrupted(configured, monkeypatch):
    out = StringIO()
    answers = []

    def serve_one_request_then_interrupt() -> None:
        url = re.search(r"http://127\.0\.0\.1:\d+", out.getvalue())[0]
        auth = SdkHmacSha256Auth(AK, SK, project_id=PROJECT)
        answers.append(requests.get(f"{url}/v2/{PROJECT}/instances", auth=auth, timeout=5))
        raise KeyboardInterrupt

    monkeypatch.setattr(command, "_wait_until_interrupted", serve_one_request_then_interrupt)
    call_command("dcs_simulator", port=0, instances=4, seed=9, stdout=out)
    assert answers[0].status_code == 200
    assert answers[0].json()["instance_num"] == 4
    printed = out.getvalue()
    assert f"project {PROJECT}  region cn-north-4" in printed
    assert SK not in printed
    assert "Stopping" in printed


def test_it_serves_the_faults_its_flags_ask_for(configured, monkeypatch):
    out = StringIO()
    answers = []

    def ask_then_interrupt() -> None:
        url = re.search(r"http://127\.0\.0\.1:\d+", out.getvalue())[0]
        auth = SdkHmacSha256Auth(AK, SK, project_id=PROJECT)
        answers.append(requests.get(f"{url}/v2/{PROJECT}/instances", auth=auth, timeout=5))
        answers.append(requests.get(f"{url}/_simulator/faults", timeout=5))
        raise KeyboardInterrupt

    monkeypatch.setattr(command, "_wait_until_interrupted", ask_then_interrupt)
    call_command(
        "dcs_simulator",
        port=0,
        instances=4,
        error_rate="1",
        retry_after="2",
        fault_seed="3",
        fault_endpoint=["ListInstances"],
        stdout=out,
    )
    api, faults = answers
    assert api.status_code in (500, 502, 503, 504)
    assert faults.json()["endpoints"] == ["ListInstances"]
    assert (faults.json()["error_rate"], faults.json()["seed"]) == (1.0, 3)
    printed = out.getvalue()
    assert "faults --error-rate 1 --retry-after 2 --fault-seed 3 --fault-endpoint ListInstances" in printed
    assert "/_simulator/faults (loopback only)" in printed

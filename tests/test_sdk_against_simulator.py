"""The official huaweicloudsdkdcs client, unchanged, against the simulator.

The SDK signs with the real clock, so the simulator's clock is the real time, frozen for the test:
what the SDK receives can then be compared with the simulator's truth at that same moment.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException
from huaweicloudsdkcore.http.http_config import HttpConfig
from huaweicloudsdkdcs.v2 import DcsClient, ListBackupRecordsRequest, ListInstancesRequest

from backups.simulator.server import DcsSimulator, SimulatorServer

AK = "SDKTESTACCESSKEY01"
SK = "sdk-test-secret-key-not-real"
PROJECT = "3c4d5e6f708192a3b4c5d6e7f8091a2b"
OTHER_PROJECT = "b2a1908f7e6d5c4b3a2918f7e6d5c4b3"


def frozen_now():
    now = datetime.now(UTC)
    return lambda: now


def make_sim(**kwargs) -> DcsSimulator:
    return DcsSimulator(
        projects={PROJECT: "cn-north-4", OTHER_PROJECT: "eu-west-101"},
        credentials={AK: SK},
        instances=kwargs.pop("instances", 14),
        seed=11,
        clock=frozen_now(),
        **kwargs,
    )


def sdk_client(url: str, secret_key: str = SK, project_id: str = PROJECT) -> DcsClient:
    config = HttpConfig.get_default_config()
    config.ignore_ssl_verification = True
    return (
        DcsClient.new_builder()
        .with_http_config(config)
        .with_credentials(BasicCredentials(AK, secret_key, project_id))
        .with_endpoints([url])
        .build()
    )


@pytest.fixture
def sim() -> DcsSimulator:
    return make_sim()


@pytest.fixture
def server(sim):
    with SimulatorServer(sim) as running:
        yield running


@pytest.fixture
def client(server) -> DcsClient:
    return sdk_client(server.url)


def as_served(model) -> dict:
    """What the SDK parsed, as a dict; fields the server left out come back as None."""
    return model.to_dict()


def matches_truth(parsed: dict, truth: dict) -> bool:
    return set(truth) <= set(parsed) and parsed == {key: truth.get(key) for key in parsed}


def most_backed_up_instance(sim: DcsSimulator) -> str:
    instances = sim.list_instances(PROJECT)
    return max(instances, key=lambda i: len(sim.list_backups(PROJECT, i["instance_id"])))["instance_id"]


def test_it_lists_instances_page_by_page(client, sim):
    truth = sim.list_instances(PROJECT)
    parsed, offset = [], 0
    while True:
        response = client.list_instances(ListInstancesRequest(offset=offset, limit=3))
        assert response.status_code == 200
        assert response.instance_num == len(truth)
        if not response.instances:
            break
        parsed += [as_served(i) for i in response.instances]
        offset += len(response.instances)
    assert len(parsed) == len(truth) == 7
    assert all(matches_truth(p, t) for p, t in zip(parsed, truth, strict=True))


def test_it_filters_instances_by_name(client, sim):
    target = sim.list_instances(PROJECT)[1]
    response = client.list_instances(ListInstancesRequest(name=target["name"], name_equal="true"))
    assert response.instance_num == 1
    assert matches_truth(as_served(response.instances[0]), target)


def test_it_lists_backup_records_page_by_page(client, sim):
    instance_id = most_backed_up_instance(sim)
    truth = sim.list_backups(PROJECT, instance_id)
    parsed = []
    while len(parsed) < len(truth):
        request = ListBackupRecordsRequest(instance_id=instance_id, offset=len(parsed), limit=40)
        response = client.list_backup_records(request)
        assert response.status_code == 200
        assert response.total_num == len(truth)
        parsed += [as_served(r) for r in response.backup_record_response]
    assert all(matches_truth(p, t) for p, t in zip(parsed, truth, strict=True))
    assert any(p["execution_at"] is None or p["backup_format"] is None for p in parsed)


def test_it_lists_backup_records_in_a_time_window(client, sim):
    instance_id = most_backed_up_instance(sim)
    truth = sim.list_backups(PROJECT, instance_id)
    newest, oldest = truth[3], truth[12]

    def compact(api_time: str) -> str:
        return api_time[:19].replace("-", "").replace("T", "").replace(":", "")

    request = ListBackupRecordsRequest(
        instance_id=instance_id,
        begin_time=compact(oldest["created_at"]),
        end_time=compact(newest["created_at"]),
        limit=1000,
    )
    response = client.list_backup_records(request)
    assert response.total_num == 10
    parsed = [as_served(r) for r in response.backup_record_response]
    assert all(matches_truth(p, t) for p, t in zip(parsed, truth[3:13], strict=True))


def test_it_gets_an_empty_204_for_an_instance_without_backups(client, sim):
    single = next(i for i in sim.list_instances(PROJECT) if ".single" in i["spec_code"])
    response = client.list_backup_records(ListBackupRecordsRequest(instance_id=single["instance_id"]))
    assert response.status_code == 204
    assert response.total_num is None and response.backup_record_response is None


def test_it_reads_the_doc_example_objects_as_strings():
    sim = make_sim(doc_example_mode=True)
    with SimulatorServer(sim) as server:
        client = sdk_client(server.url)
        instance_id = most_backed_up_instance(sim)
        records = client.list_backup_records(
            ListBackupRecordsRequest(instance_id=instance_id, limit=1000)
        ).backup_record_response
        instances = client.list_instances(ListInstancesRequest(limit=1000)).instances
    # The SDK calls str() on what it finds (dcs-api.md §7.1).
    assert "{}" in {r.period for r in records if r.backup_type == "manual"}
    assert {i.no_password_access for i in instances} <= {"True", "False"}


def test_it_raises_401_apig_0301_for_a_wrong_secret_key(server):
    with pytest.raises(ClientRequestException) as raised:
        sdk_client(server.url, secret_key="not-the-secret").list_instances(ListInstancesRequest())
    error = raised.value
    assert error.status_code == 401
    assert error.error_code == "APIG.0301"
    assert error.error_msg.startswith("Incorrect IAM authentication information")
    assert error.request_id


def test_it_raises_404_dcs_3022_for_a_deleted_instance(client, sim):
    instance_id = most_backed_up_instance(sim)
    sim.delete_instance(PROJECT, instance_id)
    with pytest.raises(ClientRequestException) as raised:
        client.list_backup_records(ListBackupRecordsRequest(instance_id=instance_id))
    assert (raised.value.status_code, raised.value.error_code) == (404, "DCS.3022")


def test_it_serves_each_project_its_own_instances(server, sim):
    other = sdk_client(server.url, project_id=OTHER_PROJECT)
    response = other.list_instances(ListInstancesRequest(limit=1000))
    assert [i.instance_id for i in response.instances] == [
        i["instance_id"] for i in sim.list_instances(OTHER_PROJECT)
    ]
    assert all(zone.startswith("eu-west-101") for i in response.instances for zone in i.az_codes)

"""The official huaweicloudsdkdcs client, unchanged, lists restores from the simulator.

As in test_sdk_against_simulator: the SDK signs with the real clock, so the
simulator's clock is the real time, frozen for the test.
"""

from __future__ import annotations

import pytest
from huaweicloudsdkcore.exceptions.exceptions import ClientRequestException
from huaweicloudsdkdcs.v2 import ListRestoreRecordsRequest

from backups.simulator.server import SimulatorServer
from tests.test_sdk_against_simulator import PROJECT, as_served, make_sim, matches_truth, sdk_client


@pytest.fixture
def sim():
    return make_sim()


@pytest.fixture
def client(sim):
    with SimulatorServer(sim) as server:
        yield sdk_client(server.url)


def most_restored_instance(sim) -> str:
    instances = sim.list_instances(PROJECT)
    return max(instances, key=lambda i: len(sim.list_restores(PROJECT, i["instance_id"])))["instance_id"]


def test_it_lists_the_same_restore_records_page_by_page(client, sim):
    instance_id = most_restored_instance(sim)
    truth = sim.list_restores(PROJECT, instance_id)
    assert len(truth) >= 3
    parsed = []
    while len(parsed) < len(truth):
        request = ListRestoreRecordsRequest(instance_id=instance_id, offset=len(parsed), limit=2)
        response = client.list_restore_records(request)
        assert response.status_code == 200
        assert response.total_num == len(truth)
        parsed += [as_served(r) for r in response.restore_record_response]
    assert all(matches_truth(p, t) for p, t in zip(parsed, truth, strict=True))


def test_it_lists_restores_in_a_time_window(client, sim):
    instance_id = most_restored_instance(sim)
    truth = sim.list_restores(PROJECT, instance_id)

    def compact(api_time: str) -> str:
        return api_time[:19].replace("-", "").replace("T", "").replace(":", "")

    request = ListRestoreRecordsRequest(
        instance_id=instance_id,
        begin_time=compact(truth[2]["created_at"]),
        end_time=compact(truth[1]["created_at"]),
    )
    response = client.list_restore_records(request)
    assert response.total_num == 2
    assert [r.restore_id for r in response.restore_record_response] == [t["restore_id"] for t in truth[1:3]]


def test_it_gets_an_empty_204_for_a_single_node_instance(client, sim):
    single = next(i for i in sim.list_instances(PROJECT) if ".single" in i["spec_code"])
    response = client.list_restore_records(ListRestoreRecordsRequest(instance_id=single["instance_id"]))
    assert response.status_code == 204
    assert response.total_num is None and response.restore_record_response is None


def test_it_raises_404_dcs_3022_for_a_deleted_instance(client, sim):
    instance_id = most_restored_instance(sim)
    sim.delete_instance(PROJECT, instance_id)
    with pytest.raises(ClientRequestException) as raised:
        client.list_restore_records(ListRestoreRecordsRequest(instance_id=instance_id))
    assert (raised.value.status_code, raised.value.error_code) == (404, "DCS.3022")

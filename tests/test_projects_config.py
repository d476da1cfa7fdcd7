"""Many regions and projects, and temporary credentials: DCS_PROJECTS, endpoints, the security token."""

from __future__ import annotations

import logging
import os
import secrets
import subprocess
from datetime import UTC, datetime

import pytest
import requests
from django.core.exceptions import ImproperlyConfigured
from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.sdk_request import SdkRequest
from huaweicloudsdkdcs.v2.region.dcs_region import DcsRegion

from backups.dcs.client import DcsClient
from backups.dcs.config import DcsConfig, DcsProject, check_region, parse_projects
from backups.dcs.errors import DcsAuthError
from backups.dcs.signing import SdkHmacSha256Auth
from backups.simulator.server import SimulatorServer
from tests.conftest import PROJECTS, TEST_AK, TEST_SK, make_config, make_simulator, manage_py

PID_A = "0a1b2c3d4e5f60718293a4b5c6d7e8f9"
PID_B = "f9e8d7c6b5a40392817f6e5d4c3b2a10"
TOKEN = "temporary-token/" + secrets.token_urlsafe(40) + "=="


# --- DCS_PROJECTS ------------------------------------------------------------------


def test_it_reads_several_region_project_pairs():
    assert parse_projects([f"cn-north-4:{PID_A}", f" ap-southeast-1 : {PID_B} "]) == (
        DcsProject("cn-north-4", PID_A),
        DcsProject("ap-southeast-1", PID_B),
    )


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("cn-north-4", "look like 'cn-north-4:<project_id>'"),
        (f":{PID_A}", "look like"),
        ("cn-north-4:", "look like"),
        (f"CN North 4:{PID_A}", "is not a region id"),
        (f"cn-north-4.evil.example:{PID_A}", "is not a region id"),
        (f"cn_north_4:{PID_A}", "is not a region id"),
        ("cn-north-4:../../v1", "project id of cn-north-4 must be"),
        ("cn-north-4:" + "a" * 65, "at most 64"),
    ],
)
def test_it_refuses_a_malformed_entry_with_the_reason(entry, message):
    with pytest.raises(ImproperlyConfigured, match=message):
        parse_projects([entry])


def test_it_refuses_a_project_listed_twice():
    with pytest.raises(ImproperlyConfigured, match="twice"):
        parse_projects([f"cn-north-4:{PID_A}", f"ap-southeast-1:{PID_A}"])


def test_it_derives_each_regions_endpoint_as_the_sdk_does():
    config = DcsConfig(access_key="AK", secret_key="SK", projects=())
    regions = DcsRegion.static_fields
    assert len(regions) > 30
    for region_id, region in regions.items():
        assert check_region(region_id) == region_id
        assert config.endpoint_for(region_id) == region.endpoints[0], region_id


def test_it_sends_every_project_to_its_own_regions_endpoint():
    config = DcsConfig(access_key="AK", secret_key="SK", projects=PROJECTS)
    assert [config.endpoint_for(p.region) for p in config.projects] == [
        "https://dcs.cn-north-4.myhuaweicloud.com",
        "https://dcs.ap-southeast-1.myhuaweicloud.com",
    ]


def test_it_lists_every_projects_instances_with_one_shared_key(dcs_client, simulator):
    # One AK/SK, two projects in two regions: each listing is signed with the
    # same key and carries its own project id.
    listed = {
        project.region: [i["instance_id"] for i in dcs_client.list_instances(project)] for project in PROJECTS
    }
    for project in PROJECTS:
        assert sorted(listed[project.region]) == sorted(
            i["instance_id"] for i in simulator.list_instances(project.project_id)
        )
    assert all(listed.values())


# --- start-up errors -----------------------------------------------------------------


def _check(tmp_path, **env: str) -> subprocess.CompletedProcess:
    base = {
        k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DASHBOARD_", "DCS_", "METRICS_"))
    }
    base = {k: v for k, v in base.items() if not k.startswith("HUAWEICLOUD_")}
    return manage_py(
        "check", env={**base, "DATABASE_URL": "", "REDIS_URL": "", "DASHBOARD_DATA_DIR": str(tmp_path), **env}
    )


CLOUD = {"HUAWEICLOUD_SDK_AK": "AKEXAMPLE", "HUAWEICLOUD_SDK_SK": "sk-example-not-real"}


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({**CLOUD, "DCS_PROJECTS": "cn-north-4"}, "DCS_PROJECTS entries look like"),
        ({**CLOUD, "DCS_PROJECTS": f"Beijing:{PID_A}"}, "is not a region id"),
        (CLOUD, "no project is: set DCS_PROJECTS"),
        ({**CLOUD, "DCS_REGION": "cn north", "HUAWEICLOUD_SDK_PROJECT_ID": PID_A}, "DCS_REGION"),
        ({"HUAWEICLOUD_SDK_SECURITY_TOKEN": TOKEN}, "HUAWEICLOUD_SDK_AK is not"),
        ({"DASHBOARD_TIME_ZONE": "Mars/Olympus"}, "DASHBOARD_TIME_ZONE must be an IANA time zone"),
        ({"DASHBOARD_LOG_FORMAT": "xml"}, "DASHBOARD_LOG_FORMAT must be one of plain, json"),
        ({"DASHBOARD_LOG_LEVEL": "loud"}, "DASHBOARD_LOG_LEVEL must be one of"),
        ({"METRICS_ALLOWED_IPS": "10.0.0.0/8,not-an-ip"}, "METRICS_ALLOWED_IPS must be"),
        ({"METRICS_TOKEN": "short"}, "METRICS_TOKEN must be at least 16"),
        ({"DASHBOARD_RETENTION_GONE_DAYS": "-3"}, "DASHBOARD_RETENTION_GONE_DAYS must be at least 0"),
        ({"DJANGO_CSRF_TRUSTED_ORIGINS": "dcs.example.com"}, "origins like https://dcs.example.com"),
        ({"REDIS_URL": "127.0.0.1:6379"}, "REDIS_URL must start with redis://"),
        ({"REDIS_URL": "http://:pa55word@redis:6379"}, "REDIS_URL must start with"),
    ],
)
def test_it_stops_start_up_on_a_bad_value_without_a_traceback(tmp_path, env, message):
    done = _check(tmp_path, **env)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("Configuration error: ")
    assert message in done.stderr
    assert "Traceback" not in done.stderr
    assert TOKEN not in done.stderr
    assert "pa55word" not in done.stderr


def test_it_starts_with_several_projects_and_a_token(tmp_path):
    env = {
        **CLOUD,
        "DCS_PROJECTS": f"cn-north-4:{PID_A},ap-southeast-1:{PID_B}",
        "HUAWEICLOUD_SDK_SECURITY_TOKEN": TOKEN,
    }
    done = _check(tmp_path, **env)
    assert done.returncode == 0, done.stderr


# --- temporary credentials -----------------------------------------------------------


def test_it_signs_the_security_token_exactly_as_the_sdk_does():
    date = "20261120T120000Z"
    moment = datetime(2026, 11, 20, 12, 0, 0, tzinfo=UTC)
    host = "dcs.cn-north-4.myhuaweicloud.com"
    path = f"/v2/{PID_A}/instances/6f4f2b1c/backups"
    ours = requests.Request("GET", f"https://{host}{path}", params={"limit": "1000", "offset": "0"}).prepare()
    SdkHmacSha256Auth("AKEXAMPLE", "SKEXAMPLE", project_id=PID_A, security_token=TOKEN, clock=lambda: moment)(
        ours
    )

    # The SDK's own path for temporary credentials: BasicCredentials with a
    # token adds X-Security-Token (and X-Project-Id), then signs every header.
    theirs = SdkRequest(
        method="GET",
        schema="https",
        host=host,
        resource_path=path,
        query_params=[("limit", 1000), ("offset", 0)],
        header_params={"X-Sdk-Date": date},
    )
    BasicCredentials("AKEXAMPLE", "SKEXAMPLE", PID_A).with_security_token(TOKEN).sign_request(theirs)

    assert theirs.header_params["X-Security-Token"] == ours.headers["X-Security-Token"] == TOKEN
    assert ours.headers["Authorization"] == theirs.header_params["Authorization"]
    assert "x-security-token" in ours.headers["Authorization"]


def test_it_syncs_with_temporary_credentials_and_never_logs_the_token(simulator_server, caplog):
    client = DcsClient(
        make_config(simulator_server.url, security_token=TOKEN), connect_timeout=2, read_timeout=10
    )
    with caplog.at_level(logging.DEBUG):
        instances = list(client.list_instances(PROJECTS[0]))
        records = list(client.list_backup_records(PROJECTS[0], instances[0]["instance_id"]))
    assert instances and records is not None
    assert TOKEN not in caplog.text
    assert TOKEN not in repr(client) + repr(client.config) + repr(client._auth(PROJECTS[0]))


@pytest.fixture
def temporary_server():
    """A simulator where TEST_AK is a temporary key: accepted only with TOKEN."""
    simulator = make_simulator(security_tokens={TEST_AK: TOKEN})
    with SimulatorServer(simulator, host="127.0.0.1", port=0) as server:
        yield server


# Named ids: the token is random, and pytest-xdist needs every worker to collect the same names.
@pytest.mark.parametrize(
    ("token", "accepted"),
    [(TOKEN, True), ("", False), (TOKEN + "x", False)],
    ids=["its-token", "no-token", "another-token"],
)
def test_a_temporary_key_works_only_with_its_token(temporary_server, token, accepted):
    config = make_config(temporary_server.url, security_token=token)
    client = DcsClient(config, connect_timeout=2, read_timeout=10)  # a 401 is never retried
    if accepted:
        assert list(client.list_instances(PROJECTS[0]))
    else:
        with pytest.raises(DcsAuthError) as caught:
            list(client.list_instances(PROJECTS[0]))
        assert caught.value.error_code == "APIG.0301"
        assert TOKEN not in str(caught.value)


def test_the_official_sdk_with_the_same_token_is_accepted_too(temporary_server):
    from huaweicloudsdkcore.http.http_config import HttpConfig
    from huaweicloudsdkdcs.v2 import DcsClient as SdkDcsClient
    from huaweicloudsdkdcs.v2 import ListInstancesRequest

    config = HttpConfig.get_default_config()
    config.ignore_ssl_verification = True
    credentials = BasicCredentials(TEST_AK, TEST_SK, PROJECTS[0].project_id).with_security_token(TOKEN)
    sdk = (
        SdkDcsClient.new_builder()
        .with_http_config(config)
        .with_credentials(credentials)
        .with_endpoints([temporary_server.url])
        .build()
    )
    response = sdk.list_instances(ListInstancesRequest(limit=1000))
    assert response.instance_num > 0

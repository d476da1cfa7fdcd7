"""Every page narrows to one region or project (one deployment watches several)."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.utils import timezone

from backups.selectors import FleetScope, backup_status_counts
from tests.factories import make_instance, make_record

pytestmark = pytest.mark.django_db

BEIJING, SINGAPORE = "cn-north-4", "ap-southeast-1"


@pytest.fixture
def two_regions():
    now = timezone.now()
    north = make_instance(region=BEIJING, name="north-cache")
    south = make_instance(region=SINGAPORE, name="south-cache")
    for minutes in (5, 90, 200):
        make_record(north, status="succeed", created_at=now - timedelta(minutes=minutes))
    make_record(south, status="failed", created_at=now - timedelta(hours=3))
    make_record(south, status="backuping", created_at=now - timedelta(minutes=1))
    return north, south


def test_it_counts_one_region_or_one_project(two_regions):
    _north, south = two_regions
    since = timezone.now() - timedelta(days=1)

    assert backup_status_counts(since=since).total == 5
    north_counts = backup_status_counts(since=since, scope=FleetScope(region=BEIJING))
    assert (north_counts.total, north_counts.succeeded, north_counts.failed) == (3, 3, 0)
    south_counts = backup_status_counts(since=since, scope=FleetScope(project_id=south.project_id))
    assert (south_counts.total, south_counts.failed) == (2, 1)
    assert (
        backup_status_counts(since=since, scope=FleetScope(region=BEIJING, project_id=south.project_id)).total
        == 0
    )


def test_it_scopes_the_overview_and_keeps_the_scope_in_its_links(admin_client, two_regions):
    response = admin_client.get("/", {"region": SINGAPORE, "window": "7d"})

    assert response.status_code == 200
    counts = response.context["counts"]
    assert counts.total == 2
    assert [item["record"].instance.name for item in response.context["running"]] == ["south-cache"]
    assert f"region={SINGAPORE}" in response.context["at_risk_url"]
    assert re.search(rf'href="\?window=24h&amp;region={SINGAPORE}"', response.text)
    assert "Whole fleet" in response.text


def test_it_takes_any_scope_text_without_failing(admin_client, two_regions):
    response = admin_client.get("/", {"region": "x" * 500 + "'; drop table", "project": "\x00"})

    assert response.status_code == 200
    assert response.context["counts"].total == 0
    assert any("“project” holds a character" in message for message in response.context["param_errors"])


def test_it_filters_the_backups_by_project(admin_client, two_regions):
    north, _south = two_regions
    response = admin_client.get("/backups/", {"project": north.project_id})

    assert response.status_code == 200
    assert {row.instance_id for row in response.context["table"].data.data} == {north.pk}


def test_it_filters_the_fleet_by_project(admin_client, two_regions):
    _north, south = two_regions
    response = admin_client.get("/instances/", {"project": south.project_id})

    assert response.status_code == 200
    assert [row.name for row in response.context["table"].data.data] == ["south-cache"]

"""DASHBOARD_TIME_ZONE: the zone pages use until a viewer picks one; stored times and exports stay UTC."""

from __future__ import annotations

import pytest

from backups.exports import iso_utc
from backups.middleware import TIMEZONE_COOKIE, clean_timezone_name
from tests.factories import make_record

pytestmark = pytest.mark.django_db


@pytest.fixture
def shanghai(settings):
    settings.DASHBOARD_TIME_ZONE = "Asia/Shanghai"


def test_it_shows_pages_in_the_default_zone_until_the_viewer_picks_one(admin_client, shanghai):
    assert "Times are shown in Asia/Shanghai." in admin_client.get("/backups/").content.decode()
    admin_client.cookies[TIMEZONE_COOKIE] = "Europe/Berlin"
    assert "Times are shown in Europe/Berlin." in admin_client.get("/backups/").content.decode()


def test_show_in_utc_still_means_utc(admin_client, shanghai):
    admin_client.cookies[TIMEZONE_COOKIE] = "UTC"
    assert "Times are shown in UTC." in admin_client.get("/backups/").content.decode()


def test_a_bad_cookie_falls_back_to_the_default_zone(shanghai):
    assert clean_timezone_name("Not/AZone") == "Asia/Shanghai"
    assert clean_timezone_name(None) == "Asia/Shanghai"


def test_the_default_is_utc(settings):
    assert settings.DASHBOARD_TIME_ZONE == "UTC"
    assert clean_timezone_name("../../etc/passwd") == "UTC"


def test_exports_stay_in_utc(admin_client, shanghai):
    record = make_record()
    body = b"".join(admin_client.get("/backups/?_export=json").streaming_content).decode()
    assert f'"created_at": "{iso_utc(record.created_at)}"' in body
    assert iso_utc(record.created_at).endswith("Z")

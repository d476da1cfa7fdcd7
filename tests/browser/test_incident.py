"""The incident view in a browser: the as-of stamp, the rebuilt statuses, print, export."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from backups.models import BackupStatusChange
from tests.factories import T0, make_instance, make_record

pytestmark = pytest.mark.django_db(transaction=True)


def test_it_shows_a_frozen_incident_and_prints_without_the_navigation(logged_in, live_server, operator):
    operator.is_superuser = True
    operator.save()
    instance = make_instance(name="orders-cache", instance_id="inst-1")
    record = make_record(instance, backup_id="bk-running", created_at=T0, first_seen=T0, status="succeed")
    BackupStatusChange.objects.create(
        record=record, observed_at=T0, status="backuping", progress=Decimal("40")
    )
    BackupStatusChange.objects.create(
        record=record, observed_at=T0.replace(hour=13), status="succeed", progress=Decimal("100")
    )
    page = logged_in

    page.goto(
        f"{live_server.url}/incident/?start=2025-03-01T11:00:00Z&end=2025-03-01T13:00:00Z"
        "&instance=inst-1&as_of=2025-03-01T12:30:00Z"
    )

    assert page.locator("[data-as-of]").inner_text() == "2025-03-01T12:30:00Z"
    status = page.locator('tr[data-backup-id="bk-running"] [data-status-then]')
    assert status.get_attribute("data-status-then") == "backuping"
    assert page.locator(".site-nav").is_visible()

    page.emulate_media(media="print")
    assert not page.locator(".site-nav").is_visible()
    assert not page.locator(".incident-actions").is_visible()
    assert page.locator("[data-as-of]").is_visible()
    page.emulate_media(media="screen")

    with page.expect_download() as download:
        page.locator('[data-export="csv"]').click()
    text = Path(download.value.path()).read_text(encoding="utf-8")
    assert "bk-running" in text and "backuping" in text

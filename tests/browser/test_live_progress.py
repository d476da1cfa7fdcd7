"""A newcomer logs in and watches a running backup's progress move, without a reload."""

from __future__ import annotations

import pytest

from backups import sync
from backups.models import BackupRecord

pytestmark = pytest.mark.django_db(transaction=True)


def test_it_shows_synced_records_and_moves_progress_without_a_reload(
    logged_in, live_server, clocked_client, sim_clock
):
    sync.sync_fleet(client=clocked_client)
    record = BackupRecord.objects.filter(status="backuping").order_by("-created_at").first()
    if record is None:  # the stream had just started a backup: let it run
        sim_clock.advance(seconds=45)
        sync.sync_active_instances(client=clocked_client)
        record = BackupRecord.objects.filter(status="backuping").order_by("-created_at").first()
    assert record is not None

    page = logged_in
    page.goto(f"{live_server.url}/backups/")
    row = page.locator("tr", has_text=record.backup_name)
    bar = row.locator("progress")
    before = bar.get_attribute("value")
    page.evaluate("window.__not_reloaded = true")

    sim_clock.advance(seconds=40)
    sync.sync_active_instances(client=clocked_client)
    record.refresh_from_db()
    assert str(record.progress) != before or record.status != "backuping"

    # The table region re-fetches itself every 5 s.
    page.wait_for_function(
        """([name, before]) => {
            const row = [...document.querySelectorAll('tr')].find(r => r.textContent.includes(name));
            if (!row) return false;
            const bar = row.querySelector('progress');
            return !bar || bar.getAttribute('value') !== before;
        }""",
        arg=[record.backup_name, before],
        timeout=15_000,
    )
    assert page.evaluate("window.__not_reloaded === true")

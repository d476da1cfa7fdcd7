import pytest, threading
from django.db import connection
from backups import sync
from backups.models import BackupRecord, SyncRun
pytestmark = pytest.mark.django_db(transaction=True)
def count_in_thread():
    out = {}
    def f():
        out["n"] = BackupRecord.objects.count(); out["runs"] = list(SyncRun.objects.values_list("outcome", flat=True)); connection.close()
    t = threading.Thread(target=f); t.start(); t.join(); return out
def test_probe(clocked_client):
    run = sync.sync_fleet(client=clocked_client)
    print("\nMAIN", BackupRecord.objects.count(), run.outcome, connection.in_atomic_block, connection.get_autocommit())
    print("THREAD", count_in_thread())

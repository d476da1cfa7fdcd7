"""``manage.py export_backups``: the web export's bytes, from the shell, with clear errors."""

from __future__ import annotations

import json
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from backups.models import AuditEvent
from tests.factories import make_instance, make_record

pytestmark = pytest.mark.django_db


@pytest.fixture
def fleet():
    east = make_instance(name="prod-east", region="cn-north-4")
    west = make_instance(name="prod-west", region="ap-southeast-1")
    make_record(east, status="succeed", remark='=HYPERLINK("x")')
    make_record(east, status="failed", error_code="dcs.08.0002")
    make_record(west, status="failed", backup_name="工作日备份")
    make_record(west, status="expired", size=None)
    return east, west


def web_export(client, query: str) -> bytes:
    response = client.get(f"/backups/?{query}")
    assert response.status_code == 200
    return b"".join(response.streaming_content)


def export(tmp_path: Path, *args: str) -> bytes:
    target = tmp_path / "out"
    call_command("export_backups", *args, "--output", str(target), stderr=StringIO())
    return target.read_bytes()


@pytest.mark.parametrize("export_format", ["csv", "json"])
def test_it_writes_the_same_bytes_as_the_web_export(admin_client, fleet, tmp_path, export_format):
    assert export(tmp_path, "--format", export_format) == web_export(admin_client, f"_export={export_format}")


@pytest.mark.parametrize(
    ("args", "query"),
    [
        (["--status", "failed", "--status", "expired"], "status=failed&status=expired"),
        (["--region", "ap-southeast-1"], "region=ap-southeast-1"),
        (["--instance", "prod-east"], "instance=prod-east"),
        (
            ["--since", "2025-03-01", "--until", "2025-03-01"],
            "created_after=2025-03-01&created_before=2025-03-01",
        ),
        (["--sort=-size"], "sort=-size"),
        (["--filter", "backup_type=auto", "--search", "prod"], "backup_type=auto&q=prod"),
    ],
)
def test_it_filters_and_sorts_as_the_list_page(admin_client, fleet, tmp_path, args, query):
    assert export(tmp_path, "--format", "json", *args) == web_export(admin_client, f"_export=json&{query}")


def test_it_filters_by_status(fleet, tmp_path):
    rows = json.loads(export(tmp_path, "--format", "json", "--status", "failed"))
    assert sorted(row["status"] for row in rows) == ["failed", "failed"]


def test_it_streams_to_standard_output(fleet, capfdbinary):
    call_command("export_backups", "--format", "csv")
    out = capfdbinary.readouterr().out
    assert out.startswith(b"Instance,Instance id,")
    assert out.count(b"\r\n") == 5  # the header and four records


def test_it_writes_the_file_whole_or_not_at_all(fleet, tmp_path):
    target = tmp_path / "backups.csv"
    err = StringIO()
    call_command("export_backups", "--format", "csv", "--output", str(target), stderr=err)
    assert "Wrote 4 records" in err.getvalue()
    assert [p.name for p in tmp_path.iterdir()] == ["backups.csv"]  # no temporary file left


def test_it_audits_the_export(fleet, tmp_path):
    export(tmp_path, "--format", "csv", "--status", "failed")
    event = AuditEvent.objects.get(action="export")
    assert event.username == "manage.py"
    assert event.detail["format"] == "csv"
    assert event.detail["params"] == {"status": "failed"}
    assert event.detail["records"] == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--status", "faild"], "“faild” is not a value we know"),
        (["--since", "yesterdayish"], "is not a date"),
        (["--sort", "bogus"], "sort by one of"),
        (["--filter", "nope=1"], "'nope' is not a filter"),
        (["--filter", "novalue"], "NAME=VALUE"),
    ],
)
def test_it_refuses_bad_flags_with_exit_code_2(db, tmp_path, args, message):
    with pytest.raises(CommandError, match=message) as caught:
        call_command("export_backups", "--format", "csv", *args, "--output", str(tmp_path / "x"))
    assert caught.value.returncode == 2
    assert not (tmp_path / "x").exists()


def test_it_exits_1_when_the_output_cannot_be_written(db, tmp_path):
    with pytest.raises(CommandError, match="No such file or directory") as caught:
        call_command("export_backups", "--format", "csv", "--output", str(tmp_path / "missing" / "x.csv"))
    assert caught.value.returncode == 1


def test_it_refuses_an_unknown_format_through_argparse(db):
    with pytest.raises(CommandError, match="invalid choice"):
        call_command("export_backups", "--format", "xml")


def test_it_filters_by_project_as_the_list_page(admin_client, fleet, tmp_path):
    east, _west = fleet
    query = f"_export=csv&project={east.project_id}"
    exported = export(tmp_path, "--format", "csv", "--project", east.project_id)
    assert exported == web_export(admin_client, query)
    assert exported.count(b"\r\n") == 3  # the header and east's two records

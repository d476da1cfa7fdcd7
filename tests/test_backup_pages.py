import re
from contextlib import contextmanager
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.cache import cache
from django.db import IntegrityError, connection
from django.template.loader import render_to_string
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from backups.models import BackupRecord
from backups.tables import BackupRecordTable
from tests.factories import T0, make_instance, make_record

LIST_URL = "/backups/"
# Pinned: session, user, count of records (cached, so counted on a cache miss
# only), one page of records (with their instances joined). The instance page
# adds the instance itself (with its backup count) and its chart's data; its
# notes and restores only when it has some.
LIST_QUERIES = 4
DETAIL_QUERIES = 5


def rows_of(html: str) -> list[str]:
    """The <tr> elements of the table body, in order."""
    body = html.split("<tbody", 1)[1].split("</tbody>", 1)[0]
    return re.findall(r"<tr\b.*?</tr>", body, flags=re.S)


def detail_url(instance) -> str:
    return reverse("backups:instance-detail", args=[instance.instance_id])


# --- URLs ------------------------------------------------------------------


def test_it_names_the_urls():
    assert reverse("backups:home") == "/"
    assert reverse("backups:backup-list") == "/backups/"
    assert reverse("backups:instance-detail", args=["abc"]) == "/instances/abc/"


@pytest.mark.django_db
def test_it_links_every_page_from_the_navigation(admin_client):
    response = admin_client.get("/")

    assert response.status_code == 200
    for url in ("/", "/instances/", LIST_URL):
        assert f'href="{url}"' in response.content.decode()


# --- The list --------------------------------------------------------------


@pytest.mark.django_db
def test_it_lists_records_newest_first(admin_client):
    instance = make_instance()
    make_record(instance, backup_name="middle", created_at=T0 + timedelta(hours=1))
    make_record(instance, backup_name="oldest", created_at=T0)
    make_record(instance, backup_name="newest", created_at=T0 + timedelta(hours=2))

    response = admin_client.get(LIST_URL)

    assert response.status_code == 200
    names = [re.search(r'class="backup__name">([^<]*)<', row).group(1) for row in rows_of(response.text)]
    assert names == ["newest", "middle", "oldest"]


@pytest.mark.django_db
def test_it_breaks_ties_in_time_by_newest_id(admin_client):
    instance = make_instance()
    first = make_record(instance, backup_name="first", created_at=T0)
    second = make_record(instance, backup_name="second", created_at=T0)

    rows = rows_of(admin_client.get(LIST_URL).text)

    assert second.backup_name in rows[0]
    assert first.backup_name in rows[1]


@pytest.mark.django_db
def test_it_has_a_caption_and_column_headers(admin_client):
    make_record()

    html = admin_client.get(LIST_URL).text

    assert "<caption" in html
    assert html.count('<th scope="col"') == len(BackupRecordTable.base_columns)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("status", "label", "color"),
    [
        ("succeed", "Succeeded", "green"),
        ("failed", "Failed", "red"),
        ("backuping", "Backing up", "cyan"),
        ("waiting", "Waiting", "blue"),
        ("expired", "Expired", "orange"),
        ("deleted", "Deleted", "gray"),
    ],
)
def test_it_colours_status_badges_from_the_choices(admin_client, status, label, color):
    make_record(status=status)

    html = admin_client.get(LIST_URL).text

    assert f'<span class="badge badge--{color}">{label}</span>' in html


@pytest.mark.django_db
def test_it_shows_type_and_format_badges(admin_client):
    make_record(backup_type="manual", backup_format="aof")

    html = admin_client.get(LIST_URL).text

    assert '<span class="badge badge--purple">Manual</span>' in html
    assert '<span class="badge badge--teal">AOF</span>' in html


@pytest.mark.django_db
def test_it_shows_an_unknown_status_as_received_in_the_neutral_colour(admin_client):
    make_record(status="frozen_by_ops", backup_type="scheduled_v2")

    response = admin_client.get(LIST_URL)

    assert response.status_code == 200
    assert '<span class="badge badge--gray">frozen_by_ops</span>' in response.text
    assert '<span class="badge badge--gray">scheduled_v2</span>' in response.text


@pytest.mark.django_db
def test_it_escapes_api_text(admin_client):
    make_record(
        status="<b>x</b>",
        backup_name="<script>alert(1)</script>",
        remark='"><img src=x onerror=alert(1)>',
        instance=make_instance(name="<i>evil</i>"),
    )

    html = admin_client.get(LIST_URL).text

    assert "<script>alert(1)" not in html
    assert "<img src=x" not in html
    assert "<i>evil</i>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert '<span class="badge badge--gray">&lt;b&gt;x&lt;/b&gt;</span>' in html


@pytest.mark.django_db
def test_it_shows_progress_bars_for_running_records_only(admin_client):
    make_record(status="backuping", progress=Decimal("42.50"), backup_name="running")
    make_record(status="waiting", progress=None, backup_name="queued")
    make_record(status="succeed", progress=Decimal("100.00"), backup_name="done")
    make_record(status="failed", progress=Decimal("13.00"), backup_name="broken")

    rows = {
        re.search(r'class="backup__name">([^<]*)<', row).group(1): row
        for row in rows_of(admin_client.get(LIST_URL).text)
    }

    assert '<progress class="progress" max="100" value="42.5"' in rows["running"]
    assert '<span class="progress__text">42.5%</span>' in rows["running"]
    # Waiting, no progress yet: an indeterminate bar, no made-up percentage.
    assert '<progress class="progress" max="100" aria-label="Backup progress"></progress>' in rows["queued"]
    assert "<progress" not in rows["done"]
    assert "<progress" not in rows["broken"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("size", "text", "title"),
    [
        (0, "0 B", "0 bytes"),
        (1, "1 B", "1 byte"),
        (1023, "1023 B", "1,023 bytes"),
        (1536, "1.5 KiB", "1,536 bytes"),
        (5 * 1024**2, "5.0 MiB", "5,242,880 bytes"),
        (3 * 1024**3 + 1024**3 // 2, "3.5 GiB", "3,758,096,384 bytes"),
        (2 * 1024**4, "2.0 TiB", "2,199,023,255,552 bytes"),
    ],
)
def test_it_shows_sizes_in_binary_units(admin_client, size, text, title):
    make_record(size=size)

    html = admin_client.get(LIST_URL).text

    assert f'<span class="bytes" title="{title}">{text}</span>' in html


@pytest.mark.django_db
def test_it_shows_times_in_utc(admin_client):
    make_record(created_at=T0, updated_at=T0 + timedelta(minutes=3, seconds=7))

    html = admin_client.get(LIST_URL).text

    assert (
        '<time datetime="2025-03-01T12:00:00+00:00" title="2025-03-01T12:00:00+00:00">'
        "2025-03-01 12:00:00 UTC</time>"
    ) in html
    assert ">2025-03-01 12:03:07 UTC</time>" in html


@pytest.mark.django_db
def test_it_explains_known_error_codes(admin_client):
    make_record(status="failed", error_code="dcs.08.0002")
    make_record(status="failed", error_code="dcs.99.9999")

    html = admin_client.get(LIST_URL).text

    assert '<code class="error-code" title="The backup timed out.">dcs.08.0002</code>' in html
    assert '<span class="error-code__meaning">The backup timed out.</span>' in html
    assert ">dcs.99.9999</code>" in html


@pytest.mark.django_db
def test_it_links_the_instance(admin_client):
    instance = make_instance(name="orders-cache")
    make_record(instance)

    html = admin_client.get(LIST_URL).text

    assert f'<a class="instance__name" href="{detail_url(instance)}">orders-cache</a>' in html
    assert f'<code class="instance__id">{instance.instance_id}</code>' in html


@pytest.mark.django_db
def test_it_shows_an_instance_id_the_url_cannot_carry_unlinked(admin_client):
    make_record(make_instance(name="", instance_id="a/b"))

    response = admin_client.get(LIST_URL)

    assert response.status_code == 200
    assert '<span class="instance__name">a/b</span>' in response.text


@pytest.mark.django_db
def test_it_marks_gone_records(admin_client):
    make_record(backup_name="kept", gone_at=T0 + timedelta(days=8))
    make_record(backup_name="listed")

    rows = rows_of(admin_client.get(LIST_URL).text)
    gone = next(row for row in rows if "kept" in row)
    listed = next(row for row in rows if "listed" in row)

    assert "row--gone" in gone
    assert 'class="marker marker--gone"' in gone
    assert "2025-03-09 12:00:00 UTC" in gone
    assert "marker--gone" not in listed


@pytest.mark.django_db
def test_it_says_yes_or_no_for_restorable(admin_client):
    make_record(is_support_restore=True)
    make_record(is_support_restore=False)

    html = admin_client.get(LIST_URL).text

    assert '<span class="true">Yes</span>' in html
    assert '<span class="false">No</span>' in html


@pytest.mark.django_db
def test_it_shows_the_demo_banner(admin_client, settings):
    settings.DCS_DEMO = True

    html = admin_client.get(LIST_URL).text

    assert "Demo mode — data comes from the built-in DCS simulator, not Huawei Cloud." in html


@pytest.mark.django_db
def test_it_hides_the_demo_banner_with_real_credentials(admin_client, settings):
    settings.DCS_DEMO = False

    html = admin_client.get(LIST_URL).text

    assert "Demo mode" not in html


@pytest.mark.django_db
def test_it_serves_htmx_from_our_static_files(admin_client):
    html = admin_client.get(LIST_URL).text

    scripts = re.findall(r"<script\b[^>]*>", html)
    assert scripts, "htmx is loaded"
    assert all('src="/static/' in tag for tag in scripts)
    assert "<script>" not in html  # no inline scripts: a CSP comes later


@pytest.mark.django_db
def test_it_shows_an_empty_table(admin_client):
    response = admin_client.get(LIST_URL)

    assert response.status_code == 200
    assert "No backup records yet." in response.text


@pytest.mark.django_db
def test_it_gives_plain_text_values_for_exports():
    make_record(
        instance=make_instance(name="orders-cache", instance_id="inst-1"),
        backup_name="nightly",
        status="failed",
        backup_type="manual",
        backup_format="aof",
        progress=Decimal("37.50"),
        size=1536,
        error_code="dcs.08.0002",
        created_at=T0,
        updated_at=None,
        is_support_restore=False,
    )
    table = BackupRecordTable(BackupRecord.objects.select_related("instance"))

    header, row = list(table.as_values())

    values = dict(zip(header, row, strict=True))
    assert values == {
        "Instance": "orders-cache (inst-1)",
        "Backup": "nightly",
        "Type": "Manual",
        "Status": "Failed",
        "Progress": "37.5",
        "Size": "1536",
        "Format": "AOF",
        "Created": "2025-03-01T12:00:00Z",
        "Finished": None,
        "Duration": None,
        "Anomaly": None,
        "Error": "dcs.08.0002: The backup timed out.",
        "Remark": None,
        "Restorable": "False",
    }


# --- Paging and sorting ----------------------------------------------------


@pytest.fixture
def sixty_records(db):
    instance = make_instance()
    return [make_record(instance, created_at=T0 + timedelta(minutes=i)) for i in range(60)]


@pytest.mark.django_db
def test_it_pages_by_25(admin_client, sixty_records):
    first = admin_client.get(LIST_URL)
    third = admin_client.get(LIST_URL + "?page=3")

    assert len(rows_of(first.text)) == 25
    assert len(rows_of(third.text)) == 10
    assert first.context["table"].page.number == 1
    assert third.context["table"].page.number == 3
    assert 'href="?page=2"' in first.text
    assert "1\u201325 of 60" in first.text  # an en dash


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("per_page", "rows"),
    [("50", 50), ("100", 60), ("250", 60), ("1000000000", 60), ("x", 25), ("0", 25), ("-5", 25), ("30", 25)],
)
def test_it_takes_only_the_page_sizes_it_offers(admin_client, sixty_records, per_page, rows):
    response = admin_client.get(LIST_URL, {"per_page": per_page})

    assert response.status_code == 200
    assert len(rows_of(response.text)) == rows
    assert response.context["table"].paginator.per_page in (25, 50, 100, 250)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("page", "number"),
    [("abc", 1), ("", 1), ("2.5", 1), ("999", 3), ("-1", 3), ("0", 3), ("99999999999999999999999", 3)],
)
def test_it_never_fails_on_a_bad_page(admin_client, sixty_records, page, number):
    response = admin_client.get(LIST_URL, {"page": page})

    assert response.status_code == 200
    assert response.context["table"].page.number == number


@pytest.mark.django_db
def test_it_shows_the_last_page_when_asked_past_the_end_with_bigger_pages(admin_client, sixty_records):
    response = admin_client.get(LIST_URL, {"page": "3", "per_page": "50"})

    assert response.status_code == 200
    assert response.context["table"].page.number == 2
    assert len(rows_of(response.text)) == 10


@pytest.mark.django_db
@pytest.mark.parametrize("sort", ["bogus", "-", "", ",", "--created_at", "instance__name", "-status"])
def test_it_ignores_an_unknown_sort(admin_client, sixty_records, sort):
    response = admin_client.get(LIST_URL, {"sort": sort})

    assert response.status_code == 200
    rows = rows_of(response.text)
    assert sixty_records[-1].backup_name in rows[0]


@pytest.mark.django_db
def test_it_sorts_by_created_both_ways(admin_client, sixty_records):
    oldest_first = admin_client.get(LIST_URL, {"sort": "created_at"})
    newest_first = admin_client.get(LIST_URL, {"sort": "-created_at"})

    assert sixty_records[0].backup_name in rows_of(oldest_first.text)[0]
    assert sixty_records[-1].backup_name in rows_of(newest_first.text)[0]
    assert 'aria-sort="ascending"' in oldest_first.text
    assert 'aria-sort="descending"' in newest_first.text


@pytest.mark.django_db
def test_it_keeps_the_sort_when_paging(admin_client, sixty_records):
    html = admin_client.get(LIST_URL, {"sort": "created_at", "per_page": "50"}).text

    assert 'href="?sort=created_at&amp;per_page=50&amp;page=2"' in html


# --- Live progress with HTMX ----------------------------------------------


@pytest.mark.django_db
def test_it_polls_while_a_backup_is_running(admin_client):
    make_record(status="backuping", progress=Decimal("10"))

    html = admin_client.get(LIST_URL + "?per_page=50").text

    container = re.search(r'<div id="backup-table"[^>]*>', html).group(0)
    assert 'hx-get="/backups/?per_page=50"' in container
    assert 'hx-trigger="every 5s"' in container
    assert 'hx-select="#backup-table"' in container


@pytest.mark.django_db
@pytest.mark.parametrize(
    "fields",
    [
        {"status": "succeed"},
        {"status": "failed"},
        # Frozen at its last status: the API stopped listing it.
        {"status": "backuping", "gone_at": T0},
    ],
)
def test_it_does_not_poll_when_nothing_is_running(admin_client, fields):
    make_record(**fields)

    html = admin_client.get(LIST_URL).text

    assert "hx-trigger" not in html


@pytest.mark.django_db
def test_it_answers_htmx_with_the_table_only(admin_client):
    make_record(status="backuping", progress=Decimal("55"))

    response = admin_client.get(LIST_URL, headers={"HX-Request": "true"})

    assert response.status_code == 200
    html = response.text.strip()
    assert html.startswith('<div id="backup-table"')
    assert "<html" not in html
    assert "site-header" not in html
    assert "<table" in html
    assert "HX-Request" in response.headers["Vary"]


@pytest.mark.django_db
def test_it_answers_an_htmx_history_restore_with_the_whole_page(admin_client):
    make_record()

    response = admin_client.get(
        LIST_URL, headers={"HX-Request": "true", "HX-History-Restore-Request": "true"}
    )

    assert "<html" in response.text


# --- The instance page -----------------------------------------------------


@pytest.mark.django_db
def test_it_shows_an_instance_and_only_its_backups(admin_client):
    instance = make_instance(
        name="orders-cache",
        engine="Redis",
        engine_version="6.0",
        capacity=0,
        capacity_minor=".125",
        spec_code="redis.single.xu1.tiny.128",
        ip="10.0.0.7",
        port=6379,
        region="ap-southeast-1",
    )
    make_record(instance, backup_name="mine")
    make_record(make_instance(), backup_name="someone-elses")

    response = admin_client.get(detail_url(instance))

    assert response.status_code == 200
    html = response.text
    assert "orders-cache" in html
    assert instance.instance_id in html
    assert instance.project_id in html
    assert "ap-southeast-1" in html
    assert "Redis 6.0" in html
    assert "0.125 GB" in html
    assert "redis.single.xu1.tiny.128" in html
    assert "10.0.0.7" in html
    assert "6379" in html
    assert ">2025-03-01 12:00:00 UTC</time>" in html  # first/last seen
    rows = rows_of(html)
    assert len(rows) == 1
    assert "mine" in rows[0]
    assert "instance__name" not in html  # no instance column on its own page


@pytest.mark.django_db
def test_it_marks_a_gone_instance(admin_client):
    instance = make_instance(gone_at=T0 + timedelta(days=1))

    html = admin_client.get(detail_url(instance)).text

    assert "marker--gone" in html
    assert ">2025-03-02 12:00:00 UTC</time>" in html


@pytest.mark.django_db
def test_it_shows_the_listed_instance_when_two_projects_share_an_id(admin_client):
    make_instance(instance_id="shared", name="old-one", gone_at=T0)
    make_instance(instance_id="shared", name="live-one")

    html = admin_client.get("/instances/shared/").text

    assert "live-one" in html
    assert "old-one" not in html


@pytest.mark.django_db
def test_it_gives_a_friendly_404_for_an_unknown_instance(admin_client):
    response = admin_client.get("/instances/no-such-instance/")

    assert response.status_code == 404
    assert "Page not found" in response.text
    assert "site-header" in response.text  # our layout, not Django's plain page
    assert 'href="/backups/"' in response.text


@pytest.mark.django_db
def test_it_pages_an_instance_tolerantly(admin_client):
    instance = make_instance()
    for i in range(30):
        make_record(instance, created_at=T0 + timedelta(minutes=i))

    for params in ({"page": "zzz"}, {"page": "99"}, {"per_page": "1000000000"}, {"sort": "nope"}):
        assert admin_client.get(detail_url(instance), params).status_code == 200


@pytest.mark.django_db
def test_it_answers_htmx_on_the_instance_page_with_the_table_only(admin_client):
    instance = make_instance()
    make_record(instance, status="waiting", progress=None)

    response = admin_client.get(detail_url(instance), headers={"HX-Request": "true"})

    html = response.text.strip()
    assert html.startswith('<div id="backup-table"')
    assert f'hx-get="{detail_url(instance)}"' in html


# --- Error pages -----------------------------------------------------------


@pytest.mark.django_db
def test_it_renders_the_500_page_without_the_database():
    with CaptureQueriesContext(connection) as queries:
        html = render_to_string("500.html")

    assert len(queries) == 0
    assert "Something went wrong" in html


@contextmanager
def table_out_of_reach(table: str):
    """A real failure of the page's database, not a stand-in: the table cannot be read.

    PostgreSQL: another session holds it locked, as a long migration does, and
    this one gives up waiting (an OperationalError). SQLite: the table is
    gone for the test (the test's transaction puts it back).
    """
    if connection.vendor != "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(f"ALTER TABLE {table} RENAME TO {table}_away")
        yield
        return
    import psycopg

    settings = connection.settings_dict
    with psycopg.connect(dbname=settings["NAME"], host=settings["HOST"], port=settings["PORT"] or 5432,
                         user=settings["USER"], password=settings["PASSWORD"]) as other:  # fmt: skip
        other.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL lock_timeout = '200ms'")
        yield
        other.rollback()


@pytest.mark.django_db
def test_a_database_that_fails_under_a_page_is_a_503_that_says_so(admin_user, client):
    client.raise_request_exception = False
    client.force_login(admin_user)  # signed in first: the sessions stay in reach

    with table_out_of_reach("backups_syncrun"):
        response = client.get("/sync/")

    assert response.status_code == 503
    assert response["Retry-After"] == "30"
    html = response.content.decode()
    assert "The dashboard's database cannot be used right now" in html
    assert "Nothing is lost" in html
    assert "Traceback" not in html and "backups_syncrun" not in html


@pytest.mark.parametrize("error", [ValueError("a bug of ours"), IntegrityError("a bug of ours too")])
def test_any_other_error_is_still_the_500_page(rf, error):
    from dashboard.views import server_error

    try:
        raise error
    except (ValueError, IntegrityError):
        response = server_error(rf.get("/"))

    assert response.status_code == 500
    assert "Something went wrong on our side" in response.content.decode()
    assert "Retry-After" not in response


# --- Query counts ----------------------------------------------------------


def count_queries(client, url) -> int:
    """Queries of one page view on a cold cache (the worst case)."""
    cache.clear()
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
    assert response.status_code == 200
    return len(queries)


def make_rows(count: int):
    instances = [make_instance() for _ in range(max(1, count // 3))]
    for i in range(count):
        make_record(
            instances[i % len(instances)],
            status=["succeed", "backuping", "failed", "waiting"][i % 4],
            gone_at=T0 if i % 7 == 0 else None,
        )
    return instances


@pytest.mark.django_db
@pytest.mark.parametrize("extra", ["", "&sort=created_at"])
def test_it_lists_any_number_of_rows_in_the_same_queries(admin_client, extra):
    make_rows(5)
    few = count_queries(admin_client, f"{LIST_URL}?per_page=100{extra}")
    make_rows(55)
    many = count_queries(admin_client, f"{LIST_URL}?per_page=100{extra}")

    assert few == many == LIST_QUERIES


@pytest.mark.django_db
def test_it_shows_an_instance_with_any_number_of_rows_in_the_same_queries(admin_client):
    instance = make_instance()
    for _ in range(5):
        make_record(instance)
    few = count_queries(admin_client, detail_url(instance) + "?per_page=100")
    for i in range(55):
        make_record(instance, status="backuping" if i % 2 else "succeed")
    many = count_queries(admin_client, detail_url(instance) + "?per_page=100")

    assert few == many == DETAIL_QUERIES


@pytest.mark.django_db
def test_it_answers_htmx_in_the_same_queries(admin_client, django_assert_num_queries):
    make_rows(60)

    with django_assert_num_queries(LIST_QUERIES):
        admin_client.get(LIST_URL, headers={"HX-Request": "true"})

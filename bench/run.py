"""``make bench``: every target of issue 6, measured on this machine, next to the alternatives.

    .venv/bin/python bench/run.py [--records N] [--instances N] [--reuse] [--output bench/RESULTS.md]

It works on a database of its own next to the one configured: ``bench`` on
the PostgreSQL server of ``DATABASE_URL``, or ``bench.sqlite3`` in the data
folder (``BENCH_DATABASE_URL`` names another). It seeds it (``seed_bench``),
then measures:

- pages: p50/p95 server time and queries of each page, in process through
  django.test.Client, warm; and the Django admin changelist side by side;
- ingest: records/s of the bulk upsert, and of a naive loop (pages of 10
  from the simulator over HTTP, ``update_or_create`` per row);
- sync: a full sync of a simulated fleet over HTTP under a rate limit, then
  an incremental sync of the unchanged fleet;
- export: the streamed CSV of every record, in a subprocess: rows/s and
  peak RSS.

Sizes come from flags or the environment (BENCH_RECORDS, BENCH_INSTANCES,
BENCH_REQUESTS, ...; see ``Sizes``), so a smoke run takes a minute. Results
are printed and written to ``bench/RESULTS.md``, one section per database.
Nothing here asserts a speed: the report says pass or miss.
"""

from __future__ import annotations

import argparse
import dataclasses
import html
import json
import math
import os
import platform
import re
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urljoin, urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PAGE_P50_MS = 60
PAGE_P95_MS = 120
INGEST_PER_SECOND = 20_000
EXPORT_PER_SECOND = 50_000
EXPORT_RSS_MB = 150
QUERY_BUDGET = 6
MIN_SAMPLES = 3
PER_PAGE = 50
HOST = "127.0.0.1"


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw.replace("_", ""))
    except ValueError:
        sys.exit(f"{name} must be a whole number, got {raw!r}")


@dataclasses.dataclass
class Sizes:
    records: int = env_int("BENCH_RECORDS", 2_000_000)
    instances: int = env_int("BENCH_INSTANCES", 2000)
    requests: int = env_int("BENCH_REQUESTS", 30)
    warmup: int = env_int("BENCH_WARMUP", 3)
    # How many "next" links the deep page is away from page 1.
    deep_hops: int = env_int("BENCH_DEEP_HOPS", 40)
    deep_page: int = env_int("BENCH_DEEP_PAGE", 2000)
    ingest_records: int = env_int("BENCH_INGEST_RECORDS", 200_000)
    # Processes that ingest at once, as the Celery worker pool: one per core.
    ingest_workers: int = env_int("BENCH_INGEST_WORKERS", os.cpu_count() or 2)
    naive_records: int = env_int("BENCH_NAIVE_RECORDS", 5000)
    sync_instances: int = env_int("BENCH_SYNC_INSTANCES", 2000)
    rate_limit: int = env_int("DCS_RATE_LIMIT", 50)
    seed: int = env_int("BENCH_SEED", 1)
    # Timing of one URL stops after this long, once it has MIN_SAMPLES.
    seconds_per_page: int = env_int("BENCH_SECONDS_PER_PAGE", 20)


# --- Which database -------------------------------------------------------------


def bench_database_url() -> str:
    """The benchmark's own database, beside the configured one: never the one tests or people use."""
    explicit = os.environ.get("BENCH_DATABASE_URL", "").strip()
    if explicit:
        return explicit
    current = os.environ.get("DATABASE_URL", "").strip()
    if current.startswith(("postgres://", "postgresql://")):
        return urlunsplit(urlsplit(current)._replace(path="/bench"))
    data_dir = Path(os.environ.get("DASHBOARD_DATA_DIR") or ROOT / "var").resolve()
    return f"sqlite:///{data_dir / 'bench.sqlite3'}"


def ensure_postgres_database(url: str) -> None:
    import psycopg
    from psycopg import sql

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    maintenance = urlunsplit(parts._replace(path="/postgres"))
    with psycopg.connect(maintenance, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def setup_django(url: str) -> None:
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")
    if url.startswith(("postgres://", "postgresql://")):
        ensure_postgres_database(url)
    import django

    django.setup()


# --- Measuring ------------------------------------------------------------------


def percentile(samples: list[float], share: float) -> float:
    """Nearest rank: the smallest sample with at least ``share`` of them at or below it."""
    ordered = sorted(samples)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


@dataclasses.dataclass
class Timing:
    label: str
    url: str
    p50: float = 0.0  # milliseconds
    p95: float = 0.0
    queries: int = 0
    status: int = 0
    note: str = ""

    @property
    def ok(self) -> bool:
        return self.status == 200 and self.p50 <= PAGE_P50_MS and self.p95 <= PAGE_P95_MS

    @property
    def verdict(self) -> str:
        if self.status != 200:
            return f"HTTP {self.status}"
        return "pass" if self.ok else "miss"


def time_page(client, label: str, url: str, sizes: Sizes, note: str = "") -> Timing:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    timing = Timing(label, url, note=note)
    warmed = time.perf_counter()
    for _ in range(max(1, sizes.warmup)):
        # The queries are counted on a warm-up request, which is not timed.
        with CaptureQueriesContext(connection) as captured:
            response = client.get(url)
        timing.queries = len(captured)
        timing.status = response.status_code
        if timing.status != 200:
            return timing
        if time.perf_counter() - warmed > sizes.seconds_per_page / 2:
            break
    samples = []
    begun = time.perf_counter()
    for _ in range(sizes.requests):
        started = time.perf_counter()
        response = client.get(url)
        samples.append((time.perf_counter() - started) * 1000)
        if len(samples) >= MIN_SAMPLES and time.perf_counter() - begun > sizes.seconds_per_page:
            # A page of seconds (the admin's date hierarchy on SQLite) would
            # take the benchmark hours at 30 requests; fewer samples say enough.
            timing.note = (timing.note + "; " if timing.note else "") + f"{len(samples)} samples (time cap)"
            break
    timing.p50, timing.p95 = percentile(samples, 0.5), percentile(samples, 0.95)
    return timing


_TAG = re.compile(r"<(?:a|link)\b[^>]*>", re.IGNORECASE)
_ATTRIBUTE = re.compile(r"""([\w:-]+)\s*=\s*(?:"([^"]*)"|'([^']*)')""")


def next_link(page: str) -> str:
    """The href of the page's "next" link: rel="next" first, else a class with "next" in it."""
    by_class = ""
    for tag in _TAG.findall(page):
        attributes = {name.lower(): a or b for name, a, b in _ATTRIBUTE.findall(tag)}
        href = attributes.get("href")
        if not href:
            continue
        if "next" in attributes.get("rel", "").lower().split():
            return html.unescape(href)
        if not by_class and any("next" in c for c in attributes.get("class", "").lower().split()):
            by_class = html.unescape(href)
    return by_class


def follow_next(client, url: str, hops: int) -> tuple[str, int]:
    """The URL ``hops`` "next" links after ``url``, and how many were followed."""
    for hop in range(hops):
        response = client.get(url)
        link = next_link(response.content.decode()) if response.status_code == 200 else ""
        if not link:
            return url, hop
        url = urljoin(url, link)
    return url, hops


def with_params(path: str, **params) -> str:
    from django.http import QueryDict

    query = QueryDict(mutable=True)
    for key, value in params.items():
        if value is not None:
            query[key] = str(value)
    return f"{path}?{query.urlencode()}" if query else path


# --- The runs -------------------------------------------------------------------


def bench_users():
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    from backups.roles import VIEWER

    user_model = get_user_model()
    # The password is made unusable once, when the user is made: setting it
    # again changes the session hash, which signs out every client of a
    # bench part running at the same time (pages and export share the users).
    viewer, created = user_model.objects.get_or_create(username="bench-viewer")
    if created:
        viewer.set_unusable_password()
        viewer.save()
    viewer.groups.add(Group.objects.get(name=VIEWER))
    admin, created = user_model.objects.get_or_create(
        username="bench-admin", defaults={"is_staff": True, "is_superuser": True}
    )
    if created:
        admin.set_unusable_password()
        admin.save()
    return viewer, admin


def logged_in(user):
    from django.test import Client

    client = Client(HTTP_HOST=HOST)
    client.force_login(user)
    return client


def sample_instance():
    """The instance with the most records: its history page is the heaviest."""
    from django.db.models import Count

    from backups.models import DcsInstance

    return (
        DcsInstance.objects.filter(gone_at__isnull=True)
        .annotate(n=Count("backups"))
        .order_by("-n", "pk")
        .first()
    )


def vacuum_records() -> None:
    """PostgreSQL: VACUUM (ANALYZE) the tables the bench itself writes to and deletes from.

    An earlier run's ingest and sync (``--reuse``) leave hundreds of
    thousands of dead rows at the new end of the records' indexes, which
    autovacuum reclaims in a while; pages timed before it walk past them
    (the default page 52 ms, 42 ms after).
    """
    from django.db import connection

    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        for table in ("backups_backuprecord", "backups_dcsinstance", "backups_backuphourlycount"):
            cursor.execute(f"VACUUM (ANALYZE) {table}")


def bench_pages(sizes: Sizes) -> tuple[list[Timing], list[tuple[Timing, Timing]]]:
    from django.contrib import admin

    from backups.models import BackupRecord

    vacuum_records()
    viewer, superuser = bench_users()
    ours = logged_in(viewer)
    theirs = logged_in(superuser)
    instance = sample_instance()
    base = "/backups/"
    views = [
        ("default", with_params(base, per_page=PER_PAGE), {}),
        ("status=failed", with_params(base, status="failed", per_page=PER_PAGE), {"status__exact": "failed"}),
        (
            "instance=<id>",
            with_params(base, instance=instance.instance_id, per_page=PER_PAGE),
            {"instance__id__exact": instance.pk},
        ),
    ]
    for sort in ("status", "-status", "size", "-size", "updated_at", "-updated_at", "created_at"):
        views.append((f"sort={sort}", with_params(base, sort=sort, per_page=PER_PAGE), {}))
    timings: list[Timing] = []
    pairs: list[tuple[Timing, Timing]] = []
    admin_per_page = admin.site._registry[BackupRecord].list_per_page
    admin_base = "/admin/backups/backuprecord/"
    for label, url, admin_params in views:
        page1 = time_page(ours, f"/backups/ {label}", url, sizes)
        timings.append(page1)
        deep_url, hops = follow_next(ours, url, sizes.deep_hops)
        note = f"{hops} next links from page 1" if hops else "no next link on page 1"
        if hops:
            timings.append(time_page(ours, f"/backups/ {label}, deep", deep_url, sizes, note=note))
        else:
            timings.append(Timing(f"/backups/ {label}, deep", url, status=0, note=note))
        if label in ("default", "status=failed", "instance=<id>"):
            clean = admin_params
            pairs.append(
                (page1, time_page(theirs, f"admin {label}", with_params(admin_base, **clean), sizes))
            )
            if hops:
                # The same rows: the admin's page holding the deep page's first row.
                page = (hops * PER_PAGE) // admin_per_page + 1
                pairs.append(
                    (
                        timings[-1],
                        time_page(
                            theirs, f"admin {label}, deep", with_params(admin_base, p=page, **clean), sizes
                        ),
                    )
                )
    far = with_params(base, page=sizes.deep_page, per_page=PER_PAGE)
    timings.append(time_page(ours, f"/backups/ ?page={sizes.deep_page}", far, sizes))
    page = ((sizes.deep_page - 1) * PER_PAGE) // admin_per_page + 1
    pairs.append((timings[-1], time_page(theirs, f"admin p={page}", with_params(admin_base, p=page), sizes)))
    timings.append(time_page(ours, "/instances/", "/instances/", sizes))
    timings.append(time_page(ours, "/instances/<id>/", f"/instances/{instance.instance_id}/", sizes))
    timings.append(time_page(ours, "/", "/", sizes))
    return timings, pairs


@dataclasses.dataclass
class Simulator:
    process: subprocess.Popen
    url: str

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def start_simulator(instances: int, seed: int) -> Simulator:
    from backups.dcs.config import get_dcs_config

    get_dcs_config()  # makes the demo credentials before the simulator reads them
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "manage.py",
            "dcs_simulator",
            "--host",
            HOST,
            "--port",
            str(port),
            "--instances",
            str(instances),
            "--seed",
            str(seed),
            "--frozen",
        ],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"the simulator exited with {process.returncode}")
        with socket.socket() as probe:
            if probe.connect_ex((HOST, port)) == 0:
                return Simulator(process, f"http://{HOST}:{port}")
        time.sleep(0.1)
    process.kill()
    sys.exit("the simulator did not start within 60 s")


def simulator_client(url: str, *, page_size: int, rate: float = 0):
    from backups.dcs.client import DcsClient
    from backups.dcs.config import get_dcs_config
    from backups.dcs.ratelimit import build_rate_limiter

    config = dataclasses.replace(get_dcs_config(), endpoint_override=url)
    return DcsClient(config, page_size=page_size, rate_limiter=build_rate_limiter(rate))


def forget_projects(project_ids: list[str]) -> None:
    """Delete what a benchmark wrote for these projects, so the data set stays as seeded."""
    from django.db import transaction

    from backups.models import BackupRecord, BackupStatusChange, DcsInstance

    with transaction.atomic():
        BackupStatusChange.objects.filter(record__instance__project_id__in=project_ids)._raw_delete("default")
        BackupRecord.objects.filter(instance__project_id__in=project_ids)._raw_delete("default")
        DcsInstance.objects.filter(project_id__in=project_ids).delete()


# The two shapes of an ingest: where in time the records of a listing fall.
# A first sync of an instance with a long history, or one that comes back,
# lists records spread over years: each lands somewhere else in every
# index on created_at, size and finish time. A sync of new backups lists
# recent ones, which land together at the new end of those indexes.
INGEST_SHAPES = {
    "history": ("1,000 records over 15 months each (a first sync of an old instance)", 730),
    "recent": ("1,000 records of the last 7 days each (new backups)", 7),
}


def _ingest_listings(sizes: Sizes, shape: str, project_id: str, records: int) -> tuple[list, datetime]:
    """Fresh instances of ``project_id`` and their listings of 1,000 parsed records, ``records`` in all."""
    from django.db import connection
    from django.utils import timezone

    from backups.dcs.records import parse_backup_record, parse_instance
    from backups.management.commands.seed_bench import RECORD_FIELDS, _Clock, generate_records
    from backups.models import DcsInstance
    from backups.simulator.fleet import build_fleet, instance_payload

    forget_projects([project_id])
    per_instance = 1000
    count = max(1, math.ceil(records / per_instance))
    fleet = [sim for sim in build_fleet({project_id: "bench"}, count * 2, sizes.seed + 7) if sim.backupable][
        :count
    ]
    now = timezone.now().replace(microsecond=0)
    now_ms = int(now.timestamp() * 1000)
    instances = []
    for sim in fleet:
        data = parse_instance(instance_payload(sim, now_ms))
        instances.append(
            DcsInstance.objects.create(
                region="bench",
                project_id=project_id,
                instance_id=data.instance_id,
                first_seen=now,
                last_seen=now,
                **data.model_values(),
            )
        )
    raw_at = RECORD_FIELDS.index("raw")
    clock = _Clock(sqlite=connection.vendor == "sqlite")
    listings = []
    remaining = records
    for sim, instance in zip(fleet, instances, strict=True):
        take = min(per_instance, remaining)
        remaining -= take
        rows = generate_records(
            sim,
            instance.pk,
            take,
            seed=sizes.seed,
            now_ms=now_ms,
            gone_ms=None,
            clock=clock,
            history_days=INGEST_SHAPES[shape][1],
        )
        parsed = {}
        for row in rows:
            data = parse_backup_record(json.loads(row[raw_at]))
            parsed.setdefault(data.backup_id, data)
        listings.append((instance, parsed))
    return listings, now


def _store_listings(listings: list, now: datetime) -> int:
    """Store each listing as a sync's writer does (store_backups, one transaction each); new records."""
    from django.db import transaction

    from backups.db import bulk_writer
    from backups.sync.listings import store_backups

    new = 0
    with bulk_writer():  # as the sync's drivers write
        for instance, records in listings:
            with transaction.atomic():
                new += store_backups(
                    instance=instance, records=records, now=now, windowed=False, complete=True
                ).new
    return new


def bench_ingest(sizes: Sizes, shape: str) -> dict:
    """Our bulk upsert (store_backups) of parsed records into fresh instances, one listing per transaction."""
    project_id = f"bench-ingest-{sizes.seed}"
    listings, now = _ingest_listings(sizes, shape, project_id, sizes.ingest_records)
    total = sum(len(records) for _, records in listings)
    started = time.perf_counter()
    new = _store_listings(listings, now)
    stored = time.perf_counter() - started
    forget_projects([project_id])
    return {"records": total, "new": new, "seconds": stored, "per_second": total / stored}


def _ingest_worker(url: str, sizes: Sizes, shape: str, project_id: str, records: int, barrier, queue) -> None:
    """One process of :func:`bench_ingest_workers`: its listings made, then stored once all are ready."""
    try:
        setup_django(url)
        listings, now = _ingest_listings(sizes, shape, project_id, records)
        barrier.wait()
        started = time.monotonic()
        new = _store_listings(listings, now)
        queue.put((started, time.monotonic(), sum(len(r) for _, r in listings), new, ""))
    except Exception as exc:  # the parent reports it; a stuck barrier would hang the run
        barrier.abort()
        queue.put((0.0, 0.0, 0, 0, f"{type(exc).__name__}: {exc}"))


def bench_ingest_workers(sizes: Sizes, shape: str, workers: int) -> dict:
    """The same ingest shared by ``workers`` processes at once, each with its own connection.

    What the Celery worker pool does (``--concurrency``): each process
    stores the items it is given, in its own transactions. Records/s is all
    the records over the time from the first process's start to the last
    one's end.
    """
    import multiprocessing

    from django.db import connections

    url = os.environ["DATABASE_URL"]
    context = multiprocessing.get_context("spawn")
    barrier, queue = context.Barrier(workers), context.Queue()
    projects = [f"bench-ingest-{sizes.seed}-w{n}" for n in range(workers)]
    share = max(1000, sizes.ingest_records // workers)
    connections.close_all()
    processes = [
        context.Process(target=_ingest_worker, args=(url, sizes, shape, project, share, barrier, queue))
        for project in projects
    ]
    for process in processes:
        process.start()
    reports = [queue.get(timeout=3600) for _ in processes]
    for process in processes:
        process.join()
    forget_projects(projects)
    errors = [error for *_, error in reports if error]
    if errors:
        raise RuntimeError(f"an ingest worker failed: {errors[0]}")
    seconds = max(end for _, end, *_ in reports) - min(start for start, *_ in reports)
    total = sum(count for _, _, count, _, _ in reports)
    new = sum(new for _, _, _, new, _ in reports)
    return {
        "records": total,
        "new": new,
        "seconds": seconds,
        "per_second": total / seconds,
        "workers": workers,
    }


def bench_naive(sizes: Sizes, simulator: Simulator) -> dict:
    """A loop a team would write first: the SDK's default page of 10, update_or_create per row."""
    from django.utils import timezone

    from backups.dcs.records import parse_backup_record, parse_instance
    from backups.models import BackupRecord, DcsInstance

    client = simulator_client(simulator.url, page_size=10)
    projects = [p.project_id for p in client.config.projects]
    forget_projects(projects)
    started = time.perf_counter()
    stored = 0
    now = timezone.now()
    for project in client.config.projects:
        for raw_instance in client.list_instances(project):
            data = parse_instance(raw_instance)
            instance, _ = DcsInstance.objects.update_or_create(
                project_id=project.project_id,
                instance_id=data.instance_id,
                defaults={"region": project.region, "last_seen": now, **data.model_values()},
                create_defaults={
                    "region": project.region,
                    "first_seen": now,
                    "last_seen": now,
                    **data.model_values(),
                },
            )
            for raw in client.list_backup_records(project, instance.instance_id):
                record = parse_backup_record(raw, instance_id=instance.instance_id)
                values = {**record.model_values(), "last_seen": now, "gone_at": None}
                BackupRecord.objects.update_or_create(
                    instance=instance,
                    backup_id=record.backup_id,
                    defaults=values,
                    create_defaults={**values, "first_seen": now},
                )
                stored += 1
            if stored >= sizes.naive_records:
                break
        if stored >= sizes.naive_records:
            break
    seconds = time.perf_counter() - started
    calls = client.api_calls
    forget_projects(projects)
    return {"records": stored, "seconds": seconds, "per_second": stored / seconds, "calls": calls}


def _writes(queries: list[dict]) -> dict[str, int]:
    """Write statements by table, of the tables that hold data (not the sync's own bookkeeping)."""
    counts: dict[str, int] = {}
    for query in queries:
        sql = query["sql"].lstrip().upper()
        if not sql.startswith(("INSERT", "UPDATE", "DELETE")):
            continue
        match = re.search(r'(?:INTO|UPDATE|FROM)\s+"?(\w+)"?', query["sql"], re.IGNORECASE)
        table = match.group(1) if match else "?"
        if table in ("backups_backuprecord", "backups_backupstatuschange", "backups_dcsinstance"):
            counts[table] = counts.get(table, 0) + 1
    return counts


def bench_sync(sizes: Sizes, simulator: Simulator) -> dict:
    from django.db import connection

    from backups.models import BackupRecord, SyncKind, SyncRun
    from backups.sync import sync_fleet

    client = simulator_client(simulator.url, page_size=1000, rate=sizes.rate_limit)
    projects = [p.project_id for p in client.config.projects]
    forget_projects(projects)
    first_run = SyncRun.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
    started = time.perf_counter()
    full = sync_fleet(client=client, kind=SyncKind.FULL)
    full_seconds = time.perf_counter() - started
    records_before = BackupRecord.objects.count()
    again = simulator_client(simulator.url, page_size=1000, rate=sizes.rate_limit)
    # Every statement of this thread, the only one that writes (CaptureQueriesContext keeps the last 9,000).
    statements: list[dict] = []

    def keep(execute, sql, params, many, context):
        statements.append({"sql": sql})
        return execute(sql, params, many, context)

    with connection.execute_wrapper(keep):
        started = time.perf_counter()
        incremental = sync_fleet(client=again, kind=SyncKind.INCREMENTAL)
        incremental_seconds = time.perf_counter() - started
    result = {
        "rate": sizes.rate_limit,
        "full": {
            "outcome": full.outcome,
            "instances": full.instances_seen,
            "records": full.records_new,
            "calls": full.api_calls,
            "seconds": full_seconds,
            "calls_per_second": full.api_calls / full_seconds,
        },
        "incremental": {
            "outcome": incremental.outcome,
            "instances": incremental.instances_seen,
            "calls": incremental.api_calls,
            "seconds": incremental_seconds,
            "calls_per_instance": incremental.api_calls / max(1, incremental.instances_seen),
            "rows_written": incremental.records_new + incremental.records_updated + incremental.records_gone,
            "records_added": BackupRecord.objects.count() - records_before,
            "write_statements": _writes(statements),
        },
    }
    forget_projects(projects)
    SyncRun.objects.filter(pk__gt=first_run).delete()
    return result


def export_probe() -> None:
    """Runs in its own process: stream the whole CSV export and say how fast."""
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.get(username="bench-viewer")
    client = logged_in(user)
    started, cpu_started = time.perf_counter(), time.process_time()
    response = client.get("/backups/", {"_export": "csv"})
    lines = size = 0
    for chunk in response.streaming_content:
        lines += chunk.count(b"\n")
        size += len(chunk)
    seconds = time.perf_counter() - started
    # A cell with a line break inside holds more than one; the API text here has none.
    result = {"status": response.status_code, "rows": lines - 1, "bytes": size, "seconds": seconds}
    # This process's CPU alone (not the PostgreSQL server's): on a busy
    # machine it says what the export costs when the seconds above do not.
    result["cpu_seconds"] = time.process_time() - cpu_started
    print(json.dumps({**result, "peak_rss_mb": peak_rss_mb()}))


def peak_rss_mb() -> float:
    """This process's own peak RSS since it started (VmHWM).

    Not getrusage(): on Linux a child's ru_maxrss keeps the high-water mark
    of the memory it was forked with, so it reports the parent's size.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench_export() -> dict:
    bench_users()
    process = subprocess.run(
        [sys.executable, __file__, "--export-probe"], cwd=ROOT, stdout=subprocess.PIPE, env=os.environ
    )
    if process.returncode != 0:
        return {"error": f"the export probe exited with {process.returncode}"}
    result = json.loads(process.stdout.decode().strip().splitlines()[-1])
    result["per_second"] = result["rows"] / result["seconds"]
    result["cpu_per_second"] = result["rows"] / result["cpu_seconds"]
    return result


# --- The report -----------------------------------------------------------------


def machine() -> dict:
    from django.db import connection

    def first(path: str, key: str) -> str:
        try:
            for line in Path(path).read_text().splitlines():
                if line.startswith(key):
                    return line.split(":", 1)[1].strip()
        except OSError:
            pass
        return "?"

    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SHOW server_version")
            database = f"PostgreSQL {cursor.fetchone()[0]}"
        else:
            cursor.execute("SELECT sqlite_version()")
            database = f"SQLite {cursor.fetchone()[0]}"
        settings = database_settings(cursor, connection.vendor)
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "?"
    memory_kib = first("/proc/meminfo", "MemTotal").split()[0]
    import django

    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": commit,
        "cpu": first("/proc/cpuinfo", "model name"),
        "cores": os.cpu_count(),
        "memory": f"{int(memory_kib) / 1024**2:.1f} GiB" if memory_kib.isdigit() else "?",
        "load": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "python_loop": python_loop_seconds(),
        "python": platform.python_version(),
        "django": django.get_version(),
        "database": database,
        "settings": settings,
        "vendor": connection.vendor,
    }


# The server's settings that most move the numbers. PostgreSQL's are the
# server's own, not ours to set: a first sync of long histories writes all
# over indexes far larger than Debian's default shared_buffers (128 MB).
PG_SETTINGS = ("shared_buffers", "synchronous_commit", "max_wal_size")
SQLITE_PRAGMAS = ("journal_mode", "synchronous", "cache_size", "wal_autocheckpoint")


def database_settings(cursor, vendor: str) -> str:
    """``name value`` of each setting that matters here, as the bench's connection has them."""
    found = []
    for name in PG_SETTINGS if vendor == "postgresql" else SQLITE_PRAGMAS:
        cursor.execute(f"SHOW {name}" if vendor == "postgresql" else f"PRAGMA {name}")
        found.append(f"{name} {cursor.fetchone()[0]}")
    return ", ".join(found)


def python_loop_seconds() -> float:
    """The best of three runs of a fixed loop of 10M additions: how fast this machine runs Python.

    Machines of the same name differ (the same "AMD EPYC" ran our pages 2.5x
    slower one day than the day before), and a page's time is mostly Python:
    this says which machine a run had.
    """
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        total = 0
        for n in range(10_000_000):
            total += n
        best = min(best, time.perf_counter() - started)
    return round(best, 2)


def ms(value: float) -> str:
    return f"{value:.1f}"


def report(info: dict, sizes: Sizes, results: dict, seed_seconds: float | None) -> str:
    lines = [
        f"### {info['database']}",
        "",
        f"{info['date']}, commit `{info['commit']}`; {info['cpu']}, {info['cores']} cores, {info['memory']}; "
        f"Python {info['python']}, Django {info['django']}; load average at the start {info['load']} "
        "(the machine is shared)"
        + (
            f"; a loop of 10M Python additions takes {info['python_loop']:.2f} s here."
            if "python_loop" in info
            else "."
        )
        + (f" Database settings: {info['settings']}." if info.get("settings") else ""),
        "",
        f"{sizes.records:,} backup records over {sizes.instances:,} instances"
        + (f", seeded in {seed_seconds:.0f} s" if seed_seconds else "")
        + f". Pages: {sizes.warmup} warm-up requests (queries counted on one), then {sizes.requests} timed "
        f"(fewer past {sizes.seconds_per_page} s a page), {PER_PAGE} rows a page, "
        f"server time in process. Targets p50 ≤ {PAGE_P50_MS} ms, p95 ≤ {PAGE_P95_MS} ms, "
        f"≤ {QUERY_BUDGET} queries.",
        "",
    ]
    measured = results.get("measured", {})
    if len(set(measured.values())) > 1:
        lines += [
            "Parts measured in different runs: " + "; ".join(f"{k} {v}" for k, v in measured.items()),
            "",
        ]
    loops = results.get("loops", {})
    if loops:
        lines += [
            "Python's speed just before each part (the loop of 10M additions; the machine is shared and "
            "its speed moves, so compare a part with its own): "
            + ", ".join(f"{part} {seconds:.2f} s" for part, seconds in loops.items()),
            "",
        ]
    if "pages" in results:
        lines += ["| page | p50 ms | p95 ms | queries | result | note |", "|---|---:|---:|---:|---|---|"]
        for t in results["pages"]:
            queries = f"{t.queries}" + ("" if t.queries <= QUERY_BUDGET else " (over)")
            lines.append(
                f"| {display_url(t)} | {ms(t.p50)} | {ms(t.p95)} | {queries} | {t.verdict} | {t.note} |"
            )
        lines += [
            "",
            "Against the Django admin changelist `/admin/backups/backuprecord/` (superuser, its own "
            "page size of 100), the same filter and the page holding the same rows:",
            "",
            "| view | ours p50 / p95 ms | admin p50 / p95 ms | admin ÷ ours (p50) |",
            "|---|---:|---:|---:|",
        ]
        for ours, theirs in results["admin"]:
            ratio = f"{theirs.p50 / ours.p50:.1f}x" if ours.p50 and theirs.status == 200 else "-"
            admin_cell = (
                f"{ms(theirs.p50)} / {ms(theirs.p95)}" if theirs.status == 200 else f"HTTP {theirs.status}"
            )
            lines.append(
                f"| {theirs.label.removeprefix('admin ')} | {ms(ours.p50)} / {ms(ours.p95)} "
                f"| {admin_cell} | {ratio} |"
            )
        lines.append("")
    if "ingest" in results:
        naive = results["naive"]
        lines += [
            f"**Ingest** (target ≥ {INGEST_PER_SECOND:,} records/s), into fresh instances beside the "
            "data set, one listing a transaction:",
            "",
            "| path | records | seconds | records/s | result |",
            "|---|---:|---:|---:|---|",
        ]
        for shape, ingest in results["ingest"].items():
            verdict = "pass" if ingest["per_second"] >= INGEST_PER_SECOND else "miss"
            lines.append(
                f"| ours: `store_backups` bulk upsert of parsed records, {INGEST_SHAPES[shape][0]} "
                f"| {ingest['records']:,} | {ingest['seconds']:.1f} | {ingest['per_second']:,.0f} "
                f"| {verdict} |"
            )
        for shape, ingest in results.get("ingest_workers", {}).items():
            verdict = "pass" if ingest["per_second"] >= INGEST_PER_SECOND else "miss"
            lines.append(
                f"| ours, {ingest['workers']} processes at once (the Celery worker pool), "
                f"{INGEST_SHAPES[shape][0]} | {ingest['records']:,} | {ingest['seconds']:.1f} "
                f"| {ingest['per_second']:,.0f} | {verdict} |"
            )
        slowest = min(ingest["per_second"] for ingest in results["ingest"].values())
        lines += [
            f"| naive: simulator over HTTP at limit=10 ({naive['calls']:,} calls), "
            "`update_or_create` per row | "
            f"{naive['records']:,} | {naive['seconds']:.1f} | {naive['per_second']:,.0f} | "
            f"{slowest / naive['per_second']:.0f}x slower than our slowest |",
            "",
        ]
    if "sync" in results:
        sync = results["sync"]
        full, inc = sync["full"], sync["incremental"]
        limited = full["calls_per_second"] >= 0.9 * sync["rate"] if sync["rate"] else True
        writes = (
            ", ".join(f"{k.removeprefix('backups_')} {v}" for k, v in inc["write_statements"].items())
            or "none"
        )
        lines += [
            f"**Sync** from the simulator over HTTP, DCS_RATE_LIMIT={sync['rate']}/s:",
            "",
            "| sync | outcome | instances | API calls | seconds | calls/s | result |",
            "|---|---|---:|---:|---:|---:|---|",
            f"| full | {full['outcome']} | {full['instances']:,} | {full['calls']:,} "
            f"| {full['seconds']:.1f} | {full['calls_per_second']:.1f} of {sync['rate'] or 'unlimited'} "
            f"| {'rate-bound' if limited else 'below the rate'} |",
            f"| incremental, unchanged fleet | {inc['outcome']} | {inc['instances']:,} | {inc['calls']:,} | "
            f"{inc['seconds']:.1f} | {inc['calls'] / inc['seconds']:.1f} | "
            f"{inc['calls_per_instance']:.2f} calls/instance, {inc['rows_written']} records written |",
            "",
            f"Full sync: {full['records']:,} records new. "
            f"Incremental: write statements on data tables: {writes}.",
            "",
        ]
    if "export" in results:
        export = results["export"]
        if "error" in export:
            lines += [f"**Export**: {export['error']}", ""]
        else:
            fast = export["per_second"] >= EXPORT_PER_SECOND
            flat = export["peak_rss_mb"] < EXPORT_RSS_MB
            # Results kept by a run before the probe reported its CPU have none.
            cpu = f"{export['cpu_seconds']:.1f}" if "cpu_seconds" in export else "n/a"
            cpu_rate = f"{export['cpu_per_second']:,.0f}" if "cpu_per_second" in export else "n/a"
            lines += [
                f"**Export** of every record as CSV (`/backups/?_export=csv`), in a subprocess "
                f"(targets ≥ {EXPORT_PER_SECOND:,} rows/s, peak RSS < {EXPORT_RSS_MB} MB):",
                "",
                "| rows | MB | seconds | rows/s | probe CPU s | rows per CPU s | peak RSS MB | result |",
                "|---:|---:|---:|---:|---:|---:|---:|---|",
                f"| {export['rows']:,} | {export['bytes'] / 1e6:,.0f} | {export['seconds']:.1f} | "
                f"{export['per_second']:,.0f} | {cpu} | {cpu_rate} | {export['peak_rss_mb']:.0f} | "
                f"{'pass' if fast else 'miss'} (speed), {'pass' if flat else 'miss'} (memory) |",
                "",
                "The probe's CPU is its own process only (not the database server's): on a busy "
                "machine it says what the export costs where the wall clock cannot.",
                "",
            ]
    return "\n".join(lines)


def display_url(timing: Timing) -> str:
    url = timing.url
    if len(url) > 70:
        url = url[:67] + "…"
    return url.replace("|", "%7C")


def write_results(path: Path, vendor: str, section: str) -> None:
    """Replace this database's section of the results file, keep the other one."""
    begin, end = f"<!-- bench:{vendor} -->", f"<!-- /bench:{vendor} -->"
    text = path.read_text() if path.exists() else RESULTS_HEADER
    block = f"{begin}\n{section}\n{end}"
    if begin in text and end in text:
        text = text[: text.index(begin)] + block + text[text.index(end) + len(end) :]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)


RESULTS_HEADER = """# Benchmark results

Made by `make bench` (`bench/run.py`); each database's section is replaced by
its latest run. See README.md, "Benchmarks", for what is measured and how.
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, help="backup records to seed (BENCH_RECORDS, 2,000,000)")
    parser.add_argument("--instances", type=int, help="instances to seed (BENCH_INSTANCES, 2,000)")
    parser.add_argument("--reuse", action="store_true", help="keep the data set when it has the asked size")
    parser.add_argument(
        "--only",
        default="pages,export,ingest,sync",
        help="comma-separated parts to run: pages, export, ingest, sync (default all); seed: none; "
        "report: none, the report again from the numbers kept (with --reuse)",
    )
    parser.add_argument("--output", default=str(ROOT / "bench" / "RESULTS.md"), help="the results file")
    parser.add_argument("--export-probe", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.export_probe:
        setup_django(os.environ["DATABASE_URL"])
        export_probe()
        return
    sizes = Sizes()
    if args.records is not None:
        sizes.records = args.records
    if args.instances is not None:
        sizes.instances = args.instances
    url = bench_database_url()
    setup_django(url)
    from django.core.management import call_command

    from backups.models import BackupRecord, DcsInstance

    parts = {part.strip() for part in args.only.split(",") if part.strip()}
    call_command("migrate", verbosity=0)
    info = machine()
    from django.db import connection

    print(f"Benchmark on {info['database']}, database {connection.settings_dict['NAME']}")
    seed_seconds = None
    same = BackupRecord.objects.count() == sizes.records and DcsInstance.objects.count() == sizes.instances
    if not (args.reuse and same):
        started = time.perf_counter()
        call_command(
            "seed_bench", records=sizes.records, instances=sizes.instances, seed=sizes.seed, replace=True
        )
        seed_seconds = time.perf_counter() - started
    if not parts - {"seed"}:
        return  # "report" alone writes the kept numbers again, measuring nothing
    # What each part measured is kept as it comes, so a part that fails, or
    # a later run of some parts (--reuse --only ...), keeps the others' numbers.
    saved = saved_results(info["vendor"], sizes) if args.reuse else {}
    results: dict = {**saved}

    def begin(doing: str) -> float:
        # The machine is shared and its speed moves by the minute (the same
        # loop took 0.22 s and 0.7 s within an hour): each part says how fast
        # Python ran just before it.
        print(f"{doing}...")
        return python_loop_seconds()

    def stamp(part: str, loop_seconds: float) -> None:
        results.setdefault("measured", {})[part] = f"{info['date']}, `{info['commit']}`, load {info['load']}"
        results.setdefault("loops", {})[part] = loop_seconds

    try:
        if "pages" in parts:
            print("Timing pages...")
            results["pages"], results["admin"] = bench_pages(sizes)
            stamp("pages", info["python_loop"])  # measured at the start, just before
            keep_results(info["vendor"], sizes, results)
        if "export" in parts:
            loop = begin("Exporting")
            results["export"] = bench_export()
            stamp("export", loop)
            keep_results(info["vendor"], sizes, results)
        if "ingest" in parts or "sync" in parts:
            simulator = start_simulator(sizes.sync_instances, sizes.seed)
            try:
                if "ingest" in parts:
                    loop = begin("Ingesting")
                    results["ingest"] = {shape: bench_ingest(sizes, shape) for shape in INGEST_SHAPES}
                    if sizes.ingest_workers > 1:
                        results["ingest_workers"] = {
                            shape: bench_ingest_workers(sizes, shape, sizes.ingest_workers)
                            for shape in INGEST_SHAPES
                        }
                    results["naive"] = bench_naive(sizes, simulator)
                    stamp("ingest", loop)
                    keep_results(info["vendor"], sizes, results)
                if "sync" in parts:
                    loop = begin("Syncing")
                    results["sync"] = bench_sync(sizes, simulator)
                    stamp("sync", loop)
                    keep_results(info["vendor"], sizes, results)
            finally:
                simulator.stop()
    finally:
        section = report(info, sizes, results, seed_seconds)
        write_results(Path(args.output), info["vendor"], section)
    print()
    print(section)
    print(f"\nWritten to {args.output}")


def _results_path(vendor: str) -> Path:
    from django.conf import settings

    return Path(settings.DATA_DIR) / f"bench-results-{vendor}.json"


def keep_results(vendor: str, sizes: Sizes, results: dict) -> None:
    data = {
        "records": sizes.records,
        "instances": sizes.instances,
        **{key: value for key, value in results.items() if key not in ("pages", "admin")},
        "pages": [dataclasses.asdict(t) for t in results.get("pages", [])],
        "admin": [[dataclasses.asdict(a), dataclasses.asdict(b)] for a, b in results.get("admin", [])],
    }
    _results_path(vendor).write_text(json.dumps(data, indent=1))


def saved_results(vendor: str, sizes: Sizes) -> dict:
    """The parts kept by an earlier run on a data set of the same size."""
    path = _results_path(vendor)
    if not path.exists():
        return {}
    data = json.loads(path.read_text())
    if (data.pop("records"), data.pop("instances")) != (sizes.records, sizes.instances):
        return {}
    data["pages"] = [Timing(**t) for t in data["pages"]]
    data["admin"] = [(Timing(**a), Timing(**b)) for a, b in data["admin"]]
    if "records" in data.get("ingest", {}):
        data["ingest"] = None  # one shape, from before INGEST_SHAPES: measure it again
    return {key: value for key, value in data.items() if value}


if __name__ == "__main__":
    main()

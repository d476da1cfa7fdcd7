"""Regenerate the screenshots of the README (``docs/screenshots/*.png``).

    DASHBOARD_DATA_DIR=/tmp/shots .venv/bin/python tools/screenshots.py

Everything it needs it starts itself, in a throwaway folder under
``DASHBOARD_DATA_DIR`` (or the system's temporary folder) that it deletes at
the end: a SQLite database it migrates, the DCS simulator with the demo fleet
(40 instances, seed 1, as ``make run`` has), a real sync of that fleet, and
Django's live server. It never touches the database of ``DATABASE_URL`` or a
real cloud account: both are taken out of the environment first.

The simulator runs on a clock that replays the last quarter of an hour: the
fleet is synced as it was 15 minutes ago, then the running backups are
re-listed minute by minute up to now, as the workers would. So some backups
have a status history, and the times shown match the real clock.

Then Playwright drives Debian's chromium (``/usr/bin/chromium``) at 1440x900:
it signs in through the login form and saves one PNG per page. Chinese needs
a CJK font (Debian: ``fonts-noto-cjk``); without one the Chinese page is
skipped, as chromium would draw its text as empty boxes. Options: ``--out DIR``
(default ``docs/screenshots``), ``--keep`` (keep the throwaway folder, to look
at the data), ``--without-chinese-font``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
VIEWPORT = {"width": 1440, "height": 900}
USERNAME = "dba"
# Made up for the throwaway database and simulator, which are deleted at the end.
PASSWORD = "screenshots-only-pass-1"  # noqa: S105
FLEET_SIZE = 40
FLEET_SEED = 1
REPLAY_MINUTES = 15
# Fixed ids, so two runs sign in to the same made-up projects.
PROJECTS = {
    "5d1c0ffee0a14e7c9b3a2f6d8e4b7a01": "cn-north-4",
    "5d1c0ffee0a14e7c9b3a2f6d8e4b7a02": "ap-southeast-1",
    "5d1c0ffee0a14e7c9b3a2f6d8e4b7a03": "eu-west-101",
}
ACCESS_KEY = "SCREENSHOTS0000000"
SECRET_KEY = "screenshots-secret-not-a-real-one"  # noqa: S105


class ReplayClock:
    """The real time minus a lag that the script shrinks to zero, step by step."""

    def __init__(self, lag: timedelta) -> None:
        self.lag = lag

    def __call__(self) -> datetime:
        return datetime.now(UTC) - self.lag


def isolate_environment(data_dir: Path) -> None:
    """Point Django at the throwaway folder, and at nothing real."""
    os.environ["DASHBOARD_DATA_DIR"] = str(data_dir)
    os.environ["DATABASE_URL"] = f"sqlite:///{data_dir / 'dashboard.sqlite3'}"
    for name in (
        "HUAWEICLOUD_SDK_AK",
        "HUAWEICLOUD_SDK_SK",
        "HUAWEICLOUD_SDK_PROJECT_ID",
        "HUAWEICLOUD_SDK_SECURITY_TOKEN",
        "DCS_PROJECTS",
        "DCS_ENDPOINT",
        "REDIS_URL",
        "DJANGO_DEBUG",
    ):
        os.environ.pop(name, None)
    os.environ["DJANGO_SETTINGS_MODULE"] = "dashboard.settings"
    # Playwright's sync API runs an event loop in this thread; our ORM calls
    # around it are plain synchronous calls.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    os.environ.setdefault("DASHBOARD_LOG_LEVEL", "WARNING")


def fill_database(clock: ReplayClock, simulator_url: str) -> None:
    """A full sync as of REPLAY_MINUTES ago, then the running backups re-listed each minute up to now."""
    from backups import sync
    from backups.dcs.client import DcsClient
    from backups.dcs.config import DcsConfig, DcsProject

    config = DcsConfig(
        access_key=ACCESS_KEY,
        secret_key=SECRET_KEY,
        projects=tuple(DcsProject(region, project_id) for project_id, region in PROJECTS.items()),
        endpoint_override=simulator_url,
    )
    client = DcsClient(config, connect_timeout=2, read_timeout=30, clock=clock)
    sync.sync_fleet(client=client)
    for minutes in range(REPLAY_MINUTES - 1, -1, -1):
        clock.lag = timedelta(minutes=minutes)
        sync.sync_active_instances(client=client)
    # The overview's data freshness: a fleet sync that just finished.
    sync.sync_fleet(client=client, kind="incremental")


def record_worker_heartbeat() -> None:
    """This process did the syncs a worker does: say so, as a worker's heartbeat would.

    Without it the overview warns that no worker has reported, which is true
    of this script but not of the installation the screenshots show.
    """
    from django.utils import timezone

    from backups.models import WorkerHeartbeat

    now = timezone.now()
    WorkerHeartbeat.objects.update_or_create(
        hostname="screenshots@localhost", defaults={"started_at": now, "last_seen": now}
    )


def has_chinese_font() -> bool:
    """Whether chromium can draw Chinese: without a CJK font it draws empty boxes."""
    try:
        found = subprocess.run(
            ["fc-list", ":lang=zh", "family"], capture_output=True, text=True, timeout=10, check=False
        )
    except OSError:
        return False
    return bool(found.stdout.strip())


def pick_examples() -> tuple[str, str]:
    """An instance with a varied history, and a backup whose status history has several steps.

    Among equals, one with a plain ASCII name: the README should not depend
    on the reader's (or the screenshot machine's) fonts for its examples.
    """
    from django.db.models import Count, Q

    from backups.models import BackupRecord, DcsInstance

    def plain(text: str) -> bool:
        return (text or "").isascii()

    instances = (
        DcsInstance.objects.annotate(
            n=Count("backups"), failed=Count("backups", filter=Q(backups__status="failed"))
        )
        .filter(n__gt=0)
        .order_by("-failed", "-n", "instance_id")[:20]
    )
    instance = next((i for i in instances if plain(i.name)), instances[0])
    records = (
        BackupRecord.objects.select_related("instance")
        .annotate(steps=Count("status_changes"))
        .order_by("-steps", "-created_at")[:20]
    )
    record = next((r for r in records if plain(r.instance.name) and plain(r.remark)), records[0])
    return instance.instance_id, record.backup_id


def take_screenshots(
    base_url: str, out: Path, instance_id: str, backup_id: str, *, chinese_font: bool
) -> list[Path]:
    from django.conf import settings
    from playwright.sync_api import sync_playwright

    from backups.middleware import TIMEZONE_COOKIE

    saved: list[Path] = []

    def shot(page, name: str, *, down_to: str = "", extra: int = 24) -> None:
        """The viewport, or the page from its top down to the bottom of ``down_to`` (+ ``extra`` px)."""
        path = out / f"{name}.png"
        # The table and overview poll every 5 s: wait until a swap is not half done.
        page.wait_for_load_state("networkidle")
        options = {"path": str(path), "animations": "disabled", "caret": "hide"}
        if down_to:
            box = page.locator(down_to).first.bounding_box()
            bottom = page.evaluate("window.scrollY") + box["y"] + box["height"] + extra
            options.update(
                full_page=True, clip={"x": 0, "y": 0, "width": VIEWPORT["width"], "height": bottom}
            )
        page.screenshot(**options)
        saved.append(path)
        print(f"  {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"],
        )

        def context(scheme: str = "light", language: str = "en", zone: str = ""):
            ctx = browser.new_context(
                viewport=VIEWPORT, device_scale_factor=1, color_scheme=scheme, locale="en-US"
            )
            cookies = [{"name": settings.LANGUAGE_COOKIE_NAME, "value": language, "url": base_url}]
            if zone:
                cookies.append({"name": TIMEZONE_COOKIE, "value": zone, "url": base_url})
            ctx.add_cookies(cookies)
            return ctx

        def sign_in(ctx):
            page = ctx.new_page()
            page.goto(f"{base_url}/accounts/login/")
            page.locator("#id_username").fill(USERNAME)
            page.locator("#id_password").fill(PASSWORD)
            with page.expect_navigation():
                page.locator("form.form button[type=submit]").click()
            return page

        light = context()
        page = light.new_page()
        page.goto(f"{base_url}/accounts/login/")
        shot(page, "login")
        page.close()

        page = sign_in(light)
        page.goto(f"{base_url}/")
        shot(page, "overview")
        # "What failed on the production instances this week?"
        page.goto(f"{base_url}/backups/?q=prod&status=failed&status=expired&created_after=7d")
        shot(page, "backups-filtered")
        page.goto(f"{base_url}/instances/")
        shot(page, "fleet")
        # Down to the chart's bottom edge: the facts, then the chart with its gaps.
        page.goto(f"{base_url}/instances/{instance_id}/")
        shot(page, "instance-history", down_to=".chart-figure")
        # Down to the end of the status history, and the start of the raw JSON.
        page.goto(f"{base_url}/backups/{backup_id}/")
        shot(page, "backup-detail", down_to="pre.raw-json", extra=-120)
        light.close()

        dark = context("dark")
        page = sign_in(dark)
        page.goto(f"{base_url}/backups/")
        shot(page, "backups-dark")
        dark.close()

        if chinese_font:
            chinese = context(language="zh-hans", zone="Asia/Shanghai")
            page = sign_in(chinese)
            page.goto(f"{base_url}/backups/")
            shot(page, "backups-zh")
            chinese.close()

        browser.close()
    return saved


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    parser.add_argument("--keep", action="store_true", help="keep the throwaway data folder")
    parser.add_argument(
        "--without-chinese-font",
        action="store_true",
        help="take the Chinese screenshot even without a Chinese font installed",
    )
    args = parser.parse_args()
    if not Path(CHROMIUM).exists():
        print(f"{CHROMIUM} is missing: apt-get install chromium", file=sys.stderr)
        return 1

    parent = os.environ.get("DASHBOARD_DATA_DIR") or None
    if parent:
        Path(parent).mkdir(parents=True, exist_ok=True)
    data_dir = Path(tempfile.mkdtemp(prefix="screenshots-", dir=parent))
    isolate_environment(data_dir)
    sys.path.insert(0, str(ROOT))

    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.contrib.staticfiles.handlers import StaticFilesHandler
    from django.core.management import call_command
    from django.test.testcases import LiveServerThread

    from backups.simulator.server import DcsSimulator, SimulatorServer

    server = None
    try:
        call_command("migrate", verbosity=0, interactive=False)
        get_user_model().objects.create_user(USERNAME, password=PASSWORD)
        clock = ReplayClock(timedelta(minutes=REPLAY_MINUTES))
        simulator = DcsSimulator(
            projects=PROJECTS,
            credentials={ACCESS_KEY: SECRET_KEY},
            instances=FLEET_SIZE,
            seed=FLEET_SEED,
            clock=clock,
        )
        with SimulatorServer(simulator, host="127.0.0.1", port=0) as simulator_server:
            print(f"Syncing {FLEET_SIZE} simulated instances into {data_dir} …")
            fill_database(clock, simulator_server.url)
        instance_id, backup_id = pick_examples()

        server = LiveServerThread("localhost", StaticFilesHandler, port=0)
        server.daemon = True
        server.start()
        server.is_ready.wait()
        if server.error:
            raise server.error
        args.out.mkdir(parents=True, exist_ok=True)
        print(f"Saving screenshots to {args.out}:")
        chinese_font = has_chinese_font() or args.without_chinese_font
        if not chinese_font:
            print(
                "No Chinese font (fc-list :lang=zh is empty): chromium would draw Chinese as empty boxes.\n"
                "  Skipping backups-zh.png; install one (apt-get install fonts-noto-cjk) and run again,\n"
                "  or pass --without-chinese-font to take it anyway.",
                file=sys.stderr,
            )
        record_worker_heartbeat()
        take_screenshots(
            f"http://localhost:{server.port}", args.out, instance_id, backup_id, chinese_font=chinese_font
        )
    finally:
        if server is not None:
            server.terminate()
        if args.keep:
            print(f"Data kept in {data_dir}")
        else:
            shutil.rmtree(data_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

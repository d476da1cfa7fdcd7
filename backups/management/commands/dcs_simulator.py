"""``manage.py dcs_simulator``: serve the local DCS API stand-in until Ctrl-C.

It accepts the same AK/SK and projects the dashboard signs with: the demo
credentials in demo mode, otherwise the configured ones.
"""

from __future__ import annotations

import signal
import threading
import time

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError

from backups.dcs.config import demo_credentials, get_dcs_config
from backups.simulator.server import DcsSimulator, SimulatorServer

MAX_INSTANCES = 10_000


def _whole_number(value: object, flag: str, minimum: int | None = None, maximum: int | None = None) -> int:
    # Values arrive as text from the command line and as anything from
    # call_command, so both go through here.
    try:
        number = int(str(value).strip())
    except ValueError:
        raise CommandError(f"{flag} must be a whole number, got {value!r}") from None
    if (minimum is not None and number < minimum) or (maximum is not None and number > maximum):
        raise CommandError(f"{flag} must be between {minimum} and {maximum}, got {number}")
    return number


def _wait_until_interrupted() -> None:
    while True:
        time.sleep(3600)


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


class Command(BaseCommand):
    help = "Serve a deterministic DCS API simulator (ListInstances, ListBackupRecords) until Ctrl-C."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
        parser.add_argument(
            "--port",
            default=None,
            help="port to listen on, 0 for any free one (default DCS_SIMULATOR_PORT, 8765)",
        )
        parser.add_argument(
            "--instances", default="40", help=f"instances in the fleet, 0-{MAX_INSTANCES} (default 40)"
        )
        parser.add_argument(
            "--seed", default="1", help="the fleet and its history follow from it (default 1)"
        )
        parser.add_argument(
            "--doc-example",
            action="store_true",
            help="render empty period/error_code as {} and the type drift of the API doc's examples",
        )

    def handle(
        self, *args, host="127.0.0.1", port=None, instances="40", seed="1", doc_example=False, **options
    ):
        port_number = _whole_number(settings.DCS_SIMULATOR_PORT if port is None else port, "--port", 0, 65535)
        instance_count = _whole_number(instances, "--instances", 0, MAX_INSTANCES)
        seed_number = _whole_number(seed, "--seed")
        access_key, secret_key, projects = self._credentials()

        simulator = DcsSimulator(
            projects=projects,
            credentials={access_key: secret_key},
            instances=instance_count,
            seed=seed_number,
            doc_example_mode=doc_example,
        )
        server = SimulatorServer(simulator, host=host, port=port_number)
        try:
            server.start()
        except OSError as exc:
            raise CommandError(f"cannot listen on {host}:{port_number}: {exc.strerror or exc}") from None

        mode = ", doc-example mode" if doc_example else ""
        self.stdout.write(
            self.style.SUCCESS(
                f"DCS simulator at {server.url} (seed {seed_number}, {instance_count} instances{mode})"
            )
        )
        for project_id, region in projects.items():
            self.stdout.write(f"  project {project_id}  region {region}")
        # Enough of the AK to tell which one it is; the SK is never shown.
        self.stdout.write(f"  access key {access_key[:4]}…")
        self.stdout.write("Quit with CONTROL-C.")
        # A process manager (honcho, systemd) stops us with SIGTERM: treat it
        # as Ctrl-C so that ends cleanly too. Signals only work in the main thread.
        in_main_thread = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGTERM, _interrupt) if in_main_thread else None
        try:
            _wait_until_interrupted()
        except KeyboardInterrupt:
            self.stdout.write("Stopping the DCS simulator.")
        finally:
            server.stop()
            if in_main_thread:
                signal.signal(signal.SIGTERM, previous)

    def _credentials(self) -> tuple[str, str, dict[str, str]]:
        """(AK, SK, {project id: region}) the dashboard signs with."""
        if settings.DCS_DEMO:
            demo = demo_credentials()
            projects = {p["project_id"]: p["region"] for p in demo["projects"]}
            return demo["access_key"], demo["secret_key"], projects
        try:
            config = get_dcs_config()
        except ImproperlyConfigured as exc:
            raise CommandError(f"configuration: {exc}") from None
        return config.access_key, config.secret_key, {p.project_id: p.region for p in config.projects}

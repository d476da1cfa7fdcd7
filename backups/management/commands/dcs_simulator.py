"""``manage.py dcs_simulator``: serve the local DCS API stand-in until Ctrl-C.

It accepts the same AK/SK and projects the dashboard signs with: the demo
credentials in demo mode, otherwise the configured ones. The fault flags
(``--error-rate 0.1 --throttle-rate 0.05 --retry-after 1 ...``) make it
misbehave the way the real API and its gateway do; a test can also change the
faults while it runs, through ``/_simulator/faults`` on loopback.
"""

from __future__ import annotations

import signal
import threading
import time
from datetime import UTC, datetime

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError

from backups.dcs.config import demo_credentials, get_dcs_config
from backups.simulator.faults import (
    FAULT_OPERATIONS,
    MAX_SLOW_SECONDS,
    RETRY_AFTER_FORMATS,
    FaultConfigError,
    FaultSettings,
)
from backups.simulator.server import FAULTS_PATH, DcsSimulator, SimulatorServer

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


# Command-line flag -> FaultSettings field.
_FAULT_FLAGS = {
    "error_rate": "error_rate",
    "throttle_rate": "throttle_rate",
    "throttle_burst": "throttle_burst",
    "retry_after": "retry_after",
    "retry_after_format": "retry_after_format",
    "slow_rate": "slow_rate",
    "slow_seconds": "slow_seconds",
    "malformed_rate": "malformed_rate",
    "drop_rate": "drop_rate",
    "shift_rate": "shift_rate",
    "fault_seed": "seed",
    "fault_endpoint": "endpoints",
}
_FLAG_OF_FIELD = {field: "--" + option.replace("_", "-") for option, field in _FAULT_FLAGS.items()}


def _fault_settings(options: dict) -> FaultSettings:
    given = {
        field: options[option] for option, field in _FAULT_FLAGS.items() if options.get(option) is not None
    }
    try:
        return FaultSettings.from_dict(given, name=lambda field: _FLAG_OF_FIELD.get(field, field))
    except FaultConfigError as exc:
        raise CommandError(str(exc)) from None


def _describe_faults(fault_settings: FaultSettings) -> str:
    """The fault flags in effect, as they would be typed, seed included."""
    defaults = FaultSettings()
    words = []
    for option, field in _FAULT_FLAGS.items():
        value = getattr(fault_settings, field)
        if value != getattr(defaults, field) or field == "seed":
            shown = (
                ",".join(value)
                if field == "endpoints"
                else f"{value:g}"
                if isinstance(value, float)
                else value
            )
            words.append(f"--{option.replace('_', '-')} {shown}")
    return " ".join(words)


def _frozen_clock():
    # Signatures are still checked against this time, so a frozen simulator
    # serves for as long as the signing clock skew allows (15 minutes).
    started = datetime.now(UTC)
    return lambda: started


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
            "--frozen",
            action="store_true",
            help="stop the clock at start-up: an unchanged fleet, for benchmarks of incremental syncs",
        )
        parser.add_argument(
            "--doc-example",
            action="store_true",
            help="render empty period/error_code as {} and the type drift of the API doc's examples",
        )
        faults = parser.add_argument_group(
            "faults", f"injected per request (rates 0-1); change them at run time through {FAULTS_PATH}"
        )
        faults.add_argument("--error-rate", help="500 DCS.5000, 502/504 APIG.0201 and 503 text answers")
        faults.add_argument("--throttle-rate", help="429 APIG.0308 answers (each starts a burst)")
        faults.add_argument("--throttle-burst", help="429s in a row once throttling starts (default 1)")
        faults.add_argument("--retry-after", help="seconds sent as Retry-After with a 429 (default: none)")
        faults.add_argument(
            "--retry-after-format", choices=RETRY_AFTER_FORMATS, help="Retry-After as seconds or an HTTP-date"
        )
        faults.add_argument("--slow-rate", help="answers held back by --slow-seconds")
        faults.add_argument(
            "--slow-seconds", help=f"delay of a slow answer, 0-{MAX_SLOW_SECONDS:g} (default 1)"
        )
        faults.add_argument(
            "--malformed-rate", help="200s that are not JSON, cut short, or of the wrong types"
        )
        faults.add_argument("--drop-rate", help="connections closed before the answer or mid-body")
        faults.add_argument(
            "--shift-rate", help="continuation pages of ListBackupRecords after a new backup started"
        )
        faults.add_argument("--fault-seed", help="the same seed meets the same faults (default 0)")
        faults.add_argument(
            "--fault-endpoint",
            action="append",
            choices=FAULT_OPERATIONS,
            help="only this operation gets faults; repeat for both (default both)",
        )

    def handle(
        self,
        *args,
        host="127.0.0.1",
        port=None,
        instances="40",
        seed="1",
        doc_example=False,
        frozen=False,
        **options,
    ):
        port_number = _whole_number(settings.DCS_SIMULATOR_PORT if port is None else port, "--port", 0, 65535)
        instance_count = _whole_number(instances, "--instances", 0, MAX_INSTANCES)
        seed_number = _whole_number(seed, "--seed")
        fault_settings = _fault_settings(options)
        access_key, secret_key, projects = self._credentials()

        simulator = DcsSimulator(
            projects=projects,
            credentials={access_key: secret_key},
            instances=instance_count,
            seed=seed_number,
            doc_example_mode=doc_example,
            clock=_frozen_clock() if frozen else None,
        )
        simulator.faults.configure(fault_settings)
        server = SimulatorServer(simulator, host=host, port=port_number)
        try:
            server.start()
        except OSError as exc:
            raise CommandError(f"cannot listen on {host}:{port_number}: {exc.strerror or exc}") from None

        mode = (", doc-example mode" if doc_example else "") + (", clock stopped" if frozen else "")
        self.stdout.write(
            self.style.SUCCESS(
                f"DCS simulator at {server.url} (seed {seed_number}, {instance_count} instances{mode})"
            )
        )
        for project_id, region in projects.items():
            self.stdout.write(f"  project {project_id}  region {region}")
        # Enough of the AK to tell which one it is; the SK is never shown.
        self.stdout.write(f"  access key {access_key[:4]}…")
        if fault_settings.active:
            self.stdout.write(f"  faults {_describe_faults(fault_settings)}")
        self.stdout.write(f"  fault control {server.url}{FAULTS_PATH} (loopback only)")
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

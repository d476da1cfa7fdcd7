"""Where the DCS API is and who we are to it, resolved from settings.

With no AK configured the dashboard is in demo mode: the endpoint is the
built-in simulator on loopback, and a random AK/SK and project ids are made
once and kept in the data folder, so the simulator and the sync agree on them
without anything secret in the repository.
"""

from __future__ import annotations

import json
import secrets
import uuid
from dataclasses import dataclass, field

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

DEMO_REGIONS = ("cn-north-4", "ap-southeast-1", "eu-west-101")


@dataclass(frozen=True)
class DcsProject:
    region: str
    project_id: str


@dataclass(frozen=True)
class DcsConfig:
    access_key: str
    secret_key: str = field(repr=False)
    projects: tuple[DcsProject, ...]
    endpoint_override: str = ""
    security_token: str = field(default="", repr=False)
    demo: bool = False

    def endpoint_for(self, region: str) -> str:
        if self.endpoint_override:
            return self.endpoint_override.rstrip("/")
        return f"https://dcs.{region}.myhuaweicloud.com"


def parse_projects(entries: list[str]) -> tuple[DcsProject, ...]:
    projects = []
    for entry in entries:
        region, sep, project_id = entry.partition(":")
        if not sep or not region.strip() or not project_id.strip():
            raise ImproperlyConfigured(
                f"DCS_PROJECTS entries look like 'cn-north-4:<project_id>', got {entry!r}"
            )
        projects.append(DcsProject(region.strip(), project_id.strip()))
    return tuple(projects)


def demo_credentials() -> dict:
    """The demo AK/SK and projects, made on first use and kept in DATA_DIR."""
    path = settings.DATA_DIR / "demo-credentials.json"
    if path.exists():
        return json.loads(path.read_text())
    data = {
        "access_key": "DEMO" + secrets.token_hex(8).upper(),
        "secret_key": secrets.token_urlsafe(30),
        "projects": [{"region": r, "project_id": uuid.uuid4().hex} for r in DEMO_REGIONS],
    }
    path.write_text(json.dumps(data, indent=2))
    path.chmod(0o600)
    return data


def get_dcs_config() -> DcsConfig:
    if settings.DCS_DEMO:
        demo = demo_credentials()
        return DcsConfig(
            access_key=demo["access_key"],
            secret_key=demo["secret_key"],
            projects=tuple(DcsProject(p["region"], p["project_id"]) for p in demo["projects"]),
            endpoint_override=settings.DCS_ENDPOINT or f"http://127.0.0.1:{settings.DCS_SIMULATOR_PORT}",
            demo=True,
        )
    projects = parse_projects(settings.DCS_PROJECTS)
    if not projects:
        if not settings.DCS_PROJECT_ID:
            raise ImproperlyConfigured("Set HUAWEICLOUD_SDK_PROJECT_ID (with DCS_REGION) or DCS_PROJECTS")
        projects = (DcsProject(settings.DCS_REGION, settings.DCS_PROJECT_ID),)
    return DcsConfig(
        access_key=settings.DCS_AK,
        secret_key=settings.DCS_SK,
        projects=projects,
        endpoint_override=settings.DCS_ENDPOINT,
        security_token=settings.DCS_SECURITY_TOKEN,
    )

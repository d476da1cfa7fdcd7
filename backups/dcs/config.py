"""Where the DCS API is and who we are to it, resolved from settings.

With no AK configured the dashboard is in demo mode: the endpoint is the
built-in simulator on loopback, and a random AK/SK and project ids are made
once and kept in the data folder, so the simulator and the sync agree on them
without anything secret in the repository.
"""

from __future__ import annotations

import json
import re
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


# Huawei Cloud region ids: "cn-north-4", "ap-southeast-1", "eu-west-101",
# "my-kualalumpur-1". The endpoint is built from the name, so anything that
# is not a plain DNS label is refused rather than put into a host name.
REGION_RE = re.compile(r"^[a-z]{2}(-[a-z0-9]+)+$")
# Project ids are 32 hex characters; we accept any id the database column
# (64 characters) can hold, but nothing that would change the URL's path.
PROJECT_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
PROJECTS_EXAMPLE = "cn-north-4:<project_id>,ap-southeast-1:<project_id>"


def check_region(region: str, *, name: str = "DCS_REGION") -> str:
    if not REGION_RE.match(region):
        raise ImproperlyConfigured(f"{name}: {region!r} is not a region id like cn-north-4 or ap-southeast-1")
    return region


def parse_projects(entries: list[str]) -> tuple[DcsProject, ...]:
    """``["cn-north-4:<id>", ...]`` (DCS_PROJECTS split at commas) → projects, or a clear error."""
    projects: list[DcsProject] = []
    for entry in entries:
        region, sep, project_id = entry.partition(":")
        region, project_id = region.strip(), project_id.strip()
        if not sep or not region or not project_id:
            raise ImproperlyConfigured(
                f"DCS_PROJECTS entries look like 'cn-north-4:<project_id>', got {entry!r} "
                f"(the whole value looks like {PROJECTS_EXAMPLE!r})"
            )
        check_region(region, name="DCS_PROJECTS")
        if not PROJECT_ID_RE.match(project_id):
            raise ImproperlyConfigured(
                f"DCS_PROJECTS: the project id of {region} must be letters, digits, '-' or '_' "
                f"(at most 64), got {project_id!r}"
            )
        # A project id belongs to one region; listing it twice would sync it
        # twice, or under two regions with one set of instance rows.
        if any(p.project_id == project_id for p in projects):
            raise ImproperlyConfigured(f"DCS_PROJECTS lists the project id {project_id!r} twice")
        projects.append(DcsProject(region, project_id))
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

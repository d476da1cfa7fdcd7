"""The simulated fleet: which DCS instances exist and what ListInstances says
about them (dcs-api.md §2.1).

Every instance is a pure function of the seed, its position in the fleet and
its project; only ``used_memory`` moves with the time asked about. Nothing
here reads the real clock, so tests can ask about any moment.
"""

from __future__ import annotations

import math
import random
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

MS_PER_SECOND = 1000
MS_PER_HOUR = 3_600_000
MS_PER_DAY = 86_400_000
GIB = 1024**3

# Instances are created before this fixed date, so the fleet stays the same
# whichever "now" a caller asks about.
FLEET_ANCHOR_MS = int(datetime(2024, 1, 1, tzinfo=UTC).timestamp() * MS_PER_SECOND)

SINGLE_NODE_SHARE = 0.125  # the brief's 10-15 % of instances that cannot be backed up
NOT_RUNNING_SHARE = 0.15
NOT_RUNNING_STATUSES = ("FROZEN", "ERROR", "RESTARTING", "EXTENDING", "RESTORING", "FLUSHING", "UPGRADING")

_SERVICES = (
    "orders-cache", "session-store", "cart", "inventory", "user-profile", "rate-limiter",
    "leaderboard", "feed-timeline", "search-suggest", "payments-idempotency", "geo-cache",
    "config-center", "checkout", "catalog", "notification-queue", "coupon", "risk-control",
    "recommendation", "pricing", "auth-tokens",
)  # fmt: skip
_UNICODE_NAMES = (
    "订单缓存", "会员中心缓存", "秒杀库存", "推荐系统-特征缓存", "支付-幂等键", "商品详情页缓存",
    "Kundensitzungen",
)  # fmt: skip
_ENVIRONMENTS = ("prod", "prod", "prod", "staging", "dev", "test")
_TEAMS = ("payments", "checkout", "growth", "platform", "search", "数据平台")
_DESCRIPTIONS = (
    "", "", "", "Session store for the web tier", "支付幂等键缓存,请勿删除",
    "Migrated from self-hosted Redis in 2023", "热点数据缓存 / hot keys cache", "Owned by on-call team B",
)  # fmt: skip
_MAINTENANCE_WINDOWS = (("18:00:00", "22:00:00"), ("22:00:00", "02:00:00"), ("02:00:00", "06:00:00"))

_REDIS_VERSIONS = ("4.0", "5.0", "6.0", "7.0")
_REDIS_VERSION_WEIGHTS = (2, 4, 3, 2)
_SUB_GB_MB = (128, 256, 512)


def seeded_random(seed: int, *parts: object) -> random.Random:
    """A generator for one thing (an instance, a day, a slot) of one fleet.

    Random hashes a string seed with SHA-512, so the same parts give the same
    numbers in every process and Python version, unlike hash().
    """
    return random.Random(":".join(str(part) for part in (seed, *parts)))


def random_uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def to_ms(moment: datetime) -> int:
    if moment.tzinfo is None:
        raise ValueError("the simulator needs an aware datetime")
    return int(moment.timestamp() * MS_PER_SECOND)


def api_time(ms: int) -> str:
    """UTC with milliseconds, as the API writes it: 2017-03-31T12:24:46.297Z."""
    moment = datetime.fromtimestamp(ms // MS_PER_SECOND, UTC)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{ms % MS_PER_SECOND:03d}Z"


@dataclass(frozen=True)
class SimInstance:
    """The fixed facts of one instance; :func:`instance_payload` renders them."""

    index: int
    project_id: str
    region: str
    instance_id: str
    name: str
    engine: str
    engine_version: str
    spec_code: str
    capacity_mb: int
    status: str
    created_ms: int
    updated_ms: int
    # Backup behaviour, used by the history generator.
    backup_hour: int
    preferred_format: str
    compression: float
    fill_start: float
    fill_max: float
    fill_tau_days: float
    # Static listing fields, already in their JSON form.
    listing: dict

    @property
    def is_single_node(self) -> bool:
        return ".single" in self.spec_code

    @property
    def backupable(self) -> bool:
        """Only master/standby and cluster instances have backups (dcs-api.md §2.2)."""
        return not self.is_single_node

    def data_bytes_at(self, ms: int) -> float:
        """How much data the instance holds: it fills up over months, then levels off."""
        age_days = max(0.0, (ms - self.created_ms) / MS_PER_DAY)
        fill = self.fill_max - (self.fill_max - self.fill_start) * math.exp(-age_days / self.fill_tau_days)
        return fill * self.capacity_mb * 1024 * 1024


def build_fleet(projects: dict[str, str], count: int, seed: int) -> list[SimInstance]:
    """``count`` instances dealt round-robin to the projects, in their given order."""
    project_ids = list(projects)
    if not project_ids or count <= 0:
        return []
    plan_rng = seeded_random(seed, "fleet", count)
    indexes = list(range(count))
    single = set(plan_rng.sample(indexes, round(count * SINGLE_NODE_SHARE)))
    not_running = set(plan_rng.sample(indexes, round(count * NOT_RUNNING_SHARE)))
    project_facts = {pid: _project_facts(seed, pid, region) for pid, region in projects.items()}
    fleet = []
    used_names: set[str] = set()
    for index in indexes:
        project_id = project_ids[index % len(project_ids)]
        instance = _build_instance(
            seed,
            index,
            project_id,
            projects[project_id],
            project_facts[project_id],
            single=index in single,
            running=index not in not_running,
            used_names=used_names,
        )
        fleet.append(instance)
    return fleet


def _project_facts(seed: int, project_id: str, region: str) -> dict:
    rng = seeded_random(seed, "project", project_id)
    return {
        "vpc_id": random_uuid(rng),
        "vpc_name": f"vpc-{region}-{rng.choice(('prod', 'core', 'shared'))}",
        "subnet_id": random_uuid(rng),
        "subnet_octet": rng.randrange(0, 250),
        "security_group_id": random_uuid(rng),
        "user_id": uuid.UUID(int=rng.getrandbits(128)).hex,
        "user_name": rng.choice(("dcs-admin", "ops_center", "张伟")),
        "enterprise_project_ids": ("0", "0", random_uuid(rng)),
    }


def _unique_name(rng: random.Random, used: set[str]) -> tuple[str, str]:
    """(name, environment); a repeated name gets a -2, -3 ... suffix, as people do."""
    env = rng.choice(_ENVIRONMENTS)
    base = rng.choice(_UNICODE_NAMES) if rng.random() < 0.12 else f"{rng.choice(_SERVICES)}-{env}"
    name, suffix = base, 2
    while name in used:
        name, suffix = f"{base}-{suffix}", suffix + 1
    used.add(name)
    return name, env


def _choose_shape(rng: random.Random, single: bool) -> tuple[str, str, str, int]:
    """(engine, version, spec_code, capacity in MB) for one instance."""
    if rng.random() < 0.15:
        capacity_mb = rng.choice((1, 2, 4, 8)) * 1024
        spec = "dcs.memcached.single_node" if single else "dcs.memcached.master_standby"
        return "Memcached", "1.5", spec, capacity_mb
    version = rng.choices(_REDIS_VERSIONS, _REDIS_VERSION_WEIGHTS)[0]
    kind = "single" if single else rng.choices(("ha", "cluster"), (7, 3))[0]
    if kind == "cluster":
        gb = rng.choice((4, 8, 16, 32, 64, 128))
        return "Redis", version, f"redis.cluster.xu1.large.r2.{gb}", gb * 1024
    if rng.random() < 0.25:
        mb = rng.choice(_SUB_GB_MB)
        spec = f"redis.{kind}.xu1.tiny.r2.{mb}" if kind == "ha" else f"redis.single.xu1.tiny.{mb}"
        return "Redis", version, spec, mb
    gb = rng.choice((1, 2, 4, 8, 16, 32, 64))
    spec = f"redis.{kind}.xu1.large.r2.{gb}" if kind == "ha" else f"redis.single.xu1.large.{gb}"
    return "Redis", version, spec, gb * 1024


def _build_instance(
    seed: int,
    index: int,
    project_id: str,
    region: str,
    project: dict,
    *,
    single: bool,
    running: bool,
    used_names: set[str],
) -> SimInstance:
    rng = seeded_random(seed, "instance", index)
    instance_id = random_uuid(rng)
    name, env = _unique_name(rng, used_names)
    engine, version, spec_code, capacity_mb = _choose_shape(rng, single)
    status = "RUNNING" if running else rng.choice(NOT_RUNNING_STATUSES)
    created_ms = FLEET_ANCHOR_MS - rng.randrange(30 * MS_PER_DAY, 6 * 365 * MS_PER_DAY)
    updated_ms = created_ms + rng.randrange(0, 200 * MS_PER_DAY)
    redis = engine == "Redis"
    modern = redis and version >= "6.0"
    cluster = ".cluster." in spec_code
    octet = project["subnet_octet"]
    node_count = rng.randrange(3, 7) if cluster else 1
    ips = [f"192.168.{octet}.{rng.randrange(2, 254)}" for _ in range(node_count)]
    zones = [f"{region}a"] if single else rng.choice(([f"{region}a"], [f"{region}a", f"{region}b"]))
    whole_gb = capacity_mb >= 1024
    tags = [{"key": "env", "value": env}, {"key": "team", "value": rng.choice(_TEAMS)}]
    if rng.random() < 0.3:
        tags.append(
            rng.choice(({"key": "cost-center", "value": "CC-1042"}, {"key": "负责人", "value": "王芳"}))
        )
    charging_mode = 1 if rng.random() < 0.3 else 0
    maintain_begin, maintain_end = rng.choice(_MAINTENANCE_WINDOWS)
    prefix = "redis" if redis else "memcached"
    listing = {
        "vpc_name": project["vpc_name"],
        "charging_mode": charging_mode,
        "vpc_id": project["vpc_id"],
        "subnet_id": project["subnet_id"],
        # Redis 4.0+ instances use whitelists; the API then shows this
        # literal placeholder (dcs-api.md §7.2).
        "security_group_id": "securityGroupId" if redis and cluster else project["security_group_id"],
        "enable_ssl": modern and rng.random() < 0.3,
        "max_memory": capacity_mb,
        "publicip_address": None,
        "capacity": capacity_mb // 1024,
        "capacity_minor": "" if whole_gb else f"{capacity_mb / 1024:.3f}".lstrip("0").rstrip("0"),
        "order_id": f"CS{rng.randrange(10**15, 10**16)}" if charging_mode else None,
        "maintain_begin": maintain_begin,
        "maintain_end": maintain_end,
        "engine": engine,
        "engine_version": version,
        "service_upgrade": False,
        "no_password_access": "true" if (not redis or rng.random() < 0.1) else "false",
        "service_task_id": "",
        "ip": ",".join(ips),
        "access_user": "default" if modern and rng.random() < 0.3 else "",
        "instance_id": instance_id,
        "enable_publicip": False,
        "port": 6379 if redis else 11211,
        "user_id": project["user_id"],
        "user_name": project["user_name"],
        "domain_name": f"{prefix}-{instance_id}.dcs.huaweicloud.com",
        "readonly_domain_name": (
            f"{prefix}-{instance_id}-readonly.dcs.huaweicloud.com" if redis and ".ha." in spec_code else ""
        ),
        "name": name,
        "spec_code": spec_code,
        "status": status,
        "tags": tags,
        "enterprise_project_id": rng.choice(project["enterprise_project_ids"]),
        "description": rng.choice(_DESCRIPTIONS),
        "cpu_type": "aarch64" if rng.random() < 0.15 else "x86_64",
        "az_codes": zones,
        "features": {
            "support_acl": modern,
            "support_transparent_client_ip": not cluster,
            "support_ssl": modern,
            "support_audit_log": redis and version >= "5.0" and not single,
        },
        "sub_status": "normal",
    }
    return SimInstance(
        index=index,
        project_id=project_id,
        region=region,
        instance_id=instance_id,
        name=name,
        engine=engine,
        engine_version=version,
        spec_code=spec_code,
        capacity_mb=capacity_mb,
        status=status,
        created_ms=created_ms,
        updated_ms=updated_ms,
        backup_hour=rng.randrange(24),
        preferred_format="aof" if redis and version < "6.0" and rng.random() < 0.4 else "rdb",
        compression=rng.uniform(0.3, 0.6),
        fill_start=rng.uniform(0.02, 0.1),
        fill_max=rng.uniform(0.3, 0.85),
        fill_tau_days=rng.uniform(60, 400),
        listing=listing,
    )


def instance_payload(instance: SimInstance, now_ms: int, *, doc_example_mode: bool = False) -> dict:
    """The InstanceListInfo as ListInstances serves it at ``now_ms``."""
    payload = {"publicip_id": {} if doc_example_mode else None}
    payload.update(instance.listing)
    payload["created_at"] = api_time(instance.created_ms)
    payload["updated_at"] = api_time(instance.updated_ms)
    payload["used_memory"] = int(instance.data_bytes_at(now_ms) / (1024 * 1024))
    payload["tags"] = [dict(tag) for tag in instance.listing["tags"]]
    payload["az_codes"] = list(instance.listing["az_codes"])
    payload["features"] = dict(instance.listing["features"])
    if doc_example_mode:
        # The documented example's type drift (dcs-api.md §7.2).
        payload["no_password_access"] = payload["no_password_access"] == "true"  # noqa: S105 - not a password
        if payload["enterprise_project_id"] == "0":
            payload["enterprise_project_id"] = 0
    return payload

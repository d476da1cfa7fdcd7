"""RPO policies: how old an instance's last successful backup may be.

A policy names a region, a tag (``key=value`` on ``DcsInstance.tags``) or one
instance, with a maximum age. The most specific one that matches wins:
instance, then tag, then region, then the default (``DASHBOARD_RPO_HOURS``).
Several tags of one instance may each have a policy: the strictest (the
smallest maximum age) wins, so adding a tag never loosens an instance's RPO.
Single-node instances cannot be backed up and are exempt whatever applies.

The result is kept on the instance (``rpo``, ``rpo_source``) so the fleet
pages filter and rank by it in SQL. An instance the default applies to keeps
``rpo`` NULL and the queries read the setting in its place
(``selectors.rpo_expression``): a change of ``DASHBOARD_RPO_HOURS`` takes
effect at once, with no recompute. ``recompute_rpo`` runs when a policy is
saved or deleted (the service below, and signals for the admin) and after a
sync upserted a project's instances (their region or tags may have changed).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver
from django.utils.translation import gettext_lazy as _

from backups.models import DcsInstance, RpoPolicy

Scope = RpoPolicy.Scope
BATCH_SIZE = 500
# rpo_source of an instance the default applies to, and of a single-node one.
# Stored data, so not translated; pages show them through source_label().
DEFAULT_SOURCE = "default"
EXEMPT_SOURCE = "exempt: single node"


def default_rpo() -> timedelta:
    return timedelta(hours=settings.DASHBOARD_RPO_HOURS)


@dataclass(frozen=True)
class EffectiveRpo:
    max_age: timedelta | None  # None: exempt (single node)
    source: str
    policy: RpoPolicy | None = None

    @property
    def stored_rpo(self) -> timedelta | None:
        """What goes in ``DcsInstance.rpo``: NULL for the default (read from the setting) and exempt."""
        return self.policy.max_age if self.policy is not None else None


def policy_source(policy: RpoPolicy) -> str:
    """``tag env=prod``, ``region cn-north-4``, ``instance <id>``: where an RPO comes from."""
    if policy.scope == Scope.TAG:
        return f"tag {policy.tag_key}={policy.tag_value}"
    if policy.scope == Scope.REGION:
        return f"region {policy.region}"
    return "instance"


def source_label(source: str) -> str:
    """A stored ``rpo_source`` for a page; "" (never computed yet) is the default."""
    if not source or source == DEFAULT_SOURCE:
        return str(_("default"))
    if source == EXEMPT_SOURCE:
        return str(_("exempt: single node"))
    return source


class PolicyIndex:
    """The policies, looked up by what they apply to: built once, asked per instance."""

    def __init__(self, policies: Iterable[RpoPolicy]):
        self.by_instance: dict[int, RpoPolicy] = {}
        self.by_tag: dict[tuple[str, str], RpoPolicy] = {}
        self.by_region: dict[str, RpoPolicy] = {}
        for policy in policies:
            if policy.scope == Scope.INSTANCE and policy.instance_id is not None:
                self.by_instance[policy.instance_id] = policy
            elif policy.scope == Scope.TAG:
                self.by_tag[(policy.tag_key, policy.tag_value)] = policy
            elif policy.scope == Scope.REGION:
                self.by_region[policy.region] = policy


def effective_rpo(instance: DcsInstance, policies: Iterable[RpoPolicy] | PolicyIndex) -> EffectiveRpo:
    """The RPO that applies to ``instance`` among ``policies``, and where it comes from."""
    if instance.is_single_node:
        return EffectiveRpo(None, EXEMPT_SOURCE)
    index = policies if isinstance(policies, PolicyIndex) else PolicyIndex(policies)
    policy = index.by_instance.get(instance.pk)
    if policy is not None:
        return EffectiveRpo(policy.max_age, policy_source(policy), policy)
    tags = instance.tags if isinstance(instance.tags, dict) else {}
    matching = [
        index.by_tag[(str(key), str(value))]
        for key, value in tags.items()
        if (str(key), str(value)) in index.by_tag
    ]
    if matching:
        # The strictest; at equal ages the first by key, so the source is stable.
        policy = min(matching, key=lambda p: (p.max_age, p.tag_key, p.tag_value))
        return EffectiveRpo(policy.max_age, policy_source(policy), policy)
    policy = index.by_region.get(instance.region)
    if policy is not None:
        return EffectiveRpo(policy.max_age, policy_source(policy), policy)
    return EffectiveRpo(default_rpo(), DEFAULT_SOURCE)


_COLUMNS = ("pk", "region", "tags", "spec_code", "rpo", "rpo_source")


def recompute_rpo(*, instances: Iterable[DcsInstance] | None = None) -> int:
    """Store each instance's RPO and its source; returns how many changed.

    ``instances`` (loaded with at least region, tags, spec_code, rpo and
    rpo_source) or, when None, the whole fleet, read in batches. Only the rows
    whose RPO changed are written, so a recompute of an unchanged fleet costs
    one query for the policies and the reads.
    """
    index = PolicyIndex(RpoPolicy.objects.all())
    if instances is None:
        # Read whole before writing (a fleet is thousands of rows, each a few
        # columns): SQLite leaves undefined what a cursor still open over a
        # table sees of writes to it.
        instances = list(DcsInstance.objects.only(*_COLUMNS).order_by("pk"))
    changed: list[DcsInstance] = []
    total = 0
    for instance in instances:
        rpo = effective_rpo(instance, index)
        if (instance.rpo, instance.rpo_source) != (rpo.stored_rpo, rpo.source):
            instance.rpo, instance.rpo_source = rpo.stored_rpo, rpo.source
            changed.append(instance)
        if len(changed) >= BATCH_SIZE:
            total += _write(changed)
            changed = []
    return total + _write(changed)


def _write(instances: list[DcsInstance]) -> int:
    if instances:
        DcsInstance.objects.bulk_update(instances, ["rpo", "rpo_source"], batch_size=BATCH_SIZE)
    return len(instances)


class DuplicatePolicy(Exception):
    """A policy for the same region, tag or instance exists already."""


def rpo_policy_save(*, policy: RpoPolicy, user=None) -> RpoPolicy:
    """Create or change a policy; the fleet's RPOs follow (recomputed by the post_save receiver).

    Raises DuplicatePolicy when one for the same region, tag or instance exists.
    """
    if policy.pk is None and user is not None and getattr(user, "pk", None):
        policy.created_by = user
    # Only the fields of its scope are kept: a region policy has no tag.
    if policy.scope != Scope.REGION:
        policy.region = ""
    if policy.scope != Scope.TAG:
        policy.tag_key = policy.tag_value = ""
    if policy.scope != Scope.INSTANCE:
        policy.instance = None
    try:
        with transaction.atomic():
            policy.save()
    except IntegrityError as exc:
        raise DuplicatePolicy(str(policy)) from exc
    return policy


def rpo_policy_delete(*, policy: RpoPolicy) -> None:
    policy.delete()


@receiver(post_save, sender=RpoPolicy, dispatch_uid="rpo-recompute-on-save")
@receiver(post_delete, sender=RpoPolicy, dispatch_uid="rpo-recompute-on-delete")
def _recompute_after_policy_change(sender, instance, **kwargs):
    # In the same transaction as the change: should it roll back, the RPOs
    # written here roll back with it.
    recompute_rpo()


__all__ = [
    "DEFAULT_SOURCE",
    "EXEMPT_SOURCE",
    "DuplicatePolicy",
    "EffectiveRpo",
    "PolicyIndex",
    "default_rpo",
    "effective_rpo",
    "policy_source",
    "recompute_rpo",
    "rpo_policy_delete",
    "rpo_policy_save",
    "source_label",
]

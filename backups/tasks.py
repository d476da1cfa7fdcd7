"""Celery tasks: thin wrappers that take ids and call the sync service."""

from __future__ import annotations

from celery import shared_task
from celery.signals import worker_ready
from django.conf import settings

from backups import sync
from backups.models import DcsInstance


@shared_task(name="backups.sync_fleet")
def sync_fleet() -> int:
    return sync.sync_fleet().pk


@shared_task(name="backups.sync_instance")
def sync_instance(instance_pk: int) -> int | None:
    instance = DcsInstance.objects.filter(pk=instance_pk).first()
    if instance is None:  # deleted since the task was queued: nothing to do
        return None
    return sync.sync_instance(instance=instance).pk


@shared_task(name="backups.sync_active_instances")
def sync_active_instances() -> int | None:
    run = sync.sync_active_instances()
    return run.pk if run else None


@worker_ready.connect
def sync_when_a_worker_starts(sender, **kwargs) -> None:
    # Without this, a fresh deployment shows nothing until beat's first tick.
    if settings.DCS_SYNC_ON_WORKER_START:
        sync_fleet.apply_async(expires=settings.DCS_SYNC_INTERVAL)

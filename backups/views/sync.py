"""Pages about the syncs: the runs (``/sync/``), one run, and "Sync now".

"Sync now" is a POST with its CSRF token, for users with the
``backups.trigger_sync`` permission (superusers have it). It queues the sync
through the broker after the request's transaction commits; when the broker is
down it says so at once (``tasks.request_sync`` gives up within about half a
second) and the page the user came from is shown again, never an error page.
"""

from __future__ import annotations

import logging

from django.contrib import messages
from django.contrib.auth.mixins import PermissionRequiredMixin
from django.core.cache import cache
from django.http import Http404, HttpResponseRedirect
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views import View
from django.views.generic import DetailView
from django_tables2 import SingleTableView
from kombu.exceptions import KombuError

from backups import audit, selectors, tasks
from backups.choices import SyncOutcome
from backups.filters.sync import SyncRunFilterSet
from backups.models import DcsInstance, SyncRun
from backups.tables.columns import duration_text
from backups.tables.instances import instance_url
from backups.tables.sync import SyncErrorTable, SyncRunItemTable, SyncRunTable, scope_html
from backups.views.mixins import TablePageMixin

logger = logging.getLogger(__name__)

PERMISSION = "backups.trigger_sync"
# Whether to show the button is remembered this long per user: checking costs
# two queries (the user's and the groups' permissions), which would push the
# instance page over its budget. The POST itself always checks afresh.
PERMISSION_CACHE_SECONDS = 60
# A run of a big fleet has thousands of items, and each item up to 20 errors:
# the page shows the first ones and says how many there are.
MAX_ERRORS_SHOWN = 200
MAX_ITEMS_SHOWN = 500


def can_trigger_sync(request) -> bool:
    """Whether to show "Sync now" to this user; no query for a superuser or a remembered answer."""
    user = request.user
    if not user.is_active:
        return False
    if user.is_superuser:
        return True
    key = f"dashboard:can-trigger-sync:{user.pk}"
    allowed = cache.get(key)
    if allowed is None:
        allowed = user.has_perm(PERMISSION)
        cache.set(key, allowed, PERMISSION_CACHE_SECONDS)
    return allowed


class SyncRunListView(TablePageMixin, SingleTableView):
    """Every sync run, newest first, filterable, sortable, exportable.

    Four queries (six for a user who is not a superuser, the first time in a
    minute): session, user, the count (cached for a minute without filters,
    capped with them) and one page of runs with their user and instance joined.
    """

    model = SyncRun
    table_class = SyncRunTable
    filterset_class = SyncRunFilterSet
    export_filename = "dcs-syncs"
    template_name = "backups/syncrun_list.html"
    filtered_empty_text = gettext_lazy("No sync runs match these filters.")
    time_bound_params = ("started_after", "started_before")

    def get_queryset(self):
        return SyncRun.objects.select_related("requested_by", "instance").order_by("-started_at", "-id")

    def get_context_data(self, **kwargs) -> dict:
        context = super().get_context_data(**kwargs)
        context["can_sync"] = can_trigger_sync(self.request)
        return context


class SyncRunDetailView(DetailView):
    """One run: every field, its errors and its instances.

    Five queries: session, user, the run with its user and instance, its
    errors, its items (kept for a day after the run, see ``prune_history``).
    """

    model = SyncRun
    context_object_name = "run"
    template_name = "backups/syncrun_detail.html"

    def get_queryset(self):
        return SyncRun.objects.select_related("requested_by", "instance")

    def get_context_data(self, **kwargs) -> dict:
        context = super().get_context_data(**kwargs)
        run = self.object
        errors = list(
            run.sync_errors.select_related("instance").order_by("occurred_at", "id")[:MAX_ERRORS_SHOWN]
        )
        items = list(run.items.select_related("instance").order_by("position")[: MAX_ITEMS_SHOWN + 1])
        more_items = len(items) > MAX_ITEMS_SHOWN
        items = items[:MAX_ITEMS_SHOWN]
        context.update(
            scope=scope_html(run),
            outcome_color=SyncOutcome.color_of(run.outcome),
            outcome_label=SyncOutcome.label_of(run.outcome),
            duration=duration_text(run.duration, units=4) if run.duration is not None else "",
            error_table=SyncErrorTable(errors, prefix="errors-"),
            errors_shown=len(errors),
            errors_more=max(run.error_count - len(errors), 0) if len(errors) == MAX_ERRORS_SHOWN else 0,
            item_table=SyncRunItemTable(items, prefix="items-") if items else None,
            items_more=more_items,
            is_running=run.outcome == SyncOutcome.RUNNING,
            list_url=reverse("backups:sync-list"),
        )
        return context


# --- "Sync now" -----------------------------------------------------------------


def next_url(request, default: str) -> str:
    """Where to go back to: the form's ``next`` when it is a page of this site, else ``default``."""
    candidate = request.POST.get("next", "")
    if candidate and url_has_allowed_host_and_scheme(
        candidate, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return candidate
    return default


class SyncNowView(PermissionRequiredMixin, View):
    """Queue a sync of the whole fleet (``backups:sync-now``), then go back."""

    permission_required = PERMISSION
    # Signed in without the permission: 403, not a login page they cannot use.
    raise_exception = True
    http_method_names = ["post"]

    def get_instance(self) -> DcsInstance | None:
        return None

    def default_next(self, instance: DcsInstance | None) -> str:
        return reverse("backups:sync-list")

    def post(self, request, *args, **kwargs):
        instance = self.get_instance()
        back = next_url(request, self.default_next(instance))
        if instance is not None and instance.gone_at is not None:
            messages.error(
                request,
                _("%(instance)s is no longer listed by the API, so there is nothing to sync.")
                % {"instance": instance},
            )
            return HttpResponseRedirect(back)
        audit.record(
            "sync_triggered", request=request, detail={"instance": instance.instance_id if instance else None}
        )
        try:
            tasks.request_sync(instance=instance, user=request.user)
        except tasks.SyncUnavailable as exc:
            messages.error(request, self.unavailable_text(str(exc)))
        except (KombuError, OSError) as exc:
            # The broker answered the ping, then failed to take the message.
            logger.warning("sync now: could not queue the sync: %s", type(exc).__name__)
            messages.error(request, self.unavailable_text(type(exc).__name__))
        else:
            messages.success(request, self.queued_text(instance))
        return HttpResponseRedirect(back)

    def unavailable_text(self, reason: str) -> str:
        text = _(
            "The sync could not be queued: the task broker (Redis) is unreachable. The pages keep "
            "working from the database; try again when the broker is back."
        )
        # The reason names the broker's host: for the people who run it.
        if self.request.user.is_staff and reason:
            text += " " + _("Reason: %(reason)s") % {"reason": reason[:200]}
        return text

    def queued_text(self, instance: DcsInstance | None) -> str:
        if instance is not None:
            return _("Sync of %(instance)s queued: it runs as soon as a worker is free.") % {
                "instance": instance
            }
        text = _("Sync of the fleet queued: it runs as soon as a worker is free.")
        if SyncRun.objects.fleet().running().exists():
            text += " " + _(
                "A fleet sync is already running; the new one is skipped if that one is still going then."
            )
        return text


class InstanceSyncNowView(SyncNowView):
    """Queue a full sync of one instance (``backups:instance-sync-now``), then go back."""

    def get_instance(self) -> DcsInstance:
        instance = selectors.instance_by_id(self.kwargs["instance_id"])
        if instance is None:
            raise Http404(_("No DCS instance with this id."))
        return instance

    def default_next(self, instance: DcsInstance | None) -> str:
        return (instance_url(instance) if instance is not None else "") or reverse("backups:instance-list")

"""The alert history (``/alerts/``): every alert, open or recovered, with its notifications.

Read by every role (``backups.view_alert``, which Viewers have); nothing here
writes. Five queries: session, user, the count, one page of alerts with
their instance and record joined, and the page's deliveries.
"""

from __future__ import annotations

from django.db.models import Prefetch
from django.utils.translation import gettext_lazy
from django_tables2 import SingleTableView

from backups.filters.alerts import AlertFilterSet
from backups.models import Alert, AlertDelivery
from backups.tables.alerts import AlertTable
from backups.views.mixins import TablePageMixin


class AlertListView(TablePageMixin, SingleTableView):
    model = Alert
    table_class = AlertTable
    filterset_class = AlertFilterSet
    export_filename = "dcs-alerts"
    template_name = "backups/alert_list.html"
    filtered_empty_text = gettext_lazy("No alerts match these filters.")
    time_bound_params = ("opened_after", "opened_before")

    def get_queryset(self):
        return (
            Alert.objects.select_related("instance", "record")
            .defer("instance__raw", "record__raw")
            .prefetch_related(
                Prefetch("deliveries", queryset=AlertDelivery.objects.order_by("sent_at", "id"))
            )
            .order_by("-opened_at", "-id")
        )

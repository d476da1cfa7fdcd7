"""Pages about DCS instances."""

from __future__ import annotations

from django.db.models import F
from django.http import Http404
from django.utils.translation import gettext as _
from django.views.generic import DetailView

from backups.models import DcsInstance
from backups.tables import BackupRecordTable
from backups.views.mixins import TablePageMixin


class InstanceDetailView(TablePageMixin, DetailView):
    model = DcsInstance
    context_object_name = "instance"
    table_class = BackupRecordTable
    template_name = "backups/dcsinstance_detail.html"
    partial_template_name = "backups/_backup_table.html"

    def get_object(self, queryset=None) -> DcsInstance:
        # instance_id is unique per project only. Two projects sharing one is
        # unlikely; if it happens, show the one still listed, then the oldest.
        instance = (
            DcsInstance.objects.filter(instance_id=self.kwargs["instance_id"])
            .order_by(F("gone_at").asc(nulls_first=True), "pk")
            .first()
        )
        if instance is None:
            raise Http404(_("No DCS instance with this id."))
        return instance

    def get_table_data(self):
        # The reverse relation sets record.instance to self.object, so the
        # rows need no join and no query of their own.
        return self.object.backups.newest_first()

    def get_table_kwargs(self) -> dict:
        return {
            "exclude": ("instance",),
            "caption": _("Backups of %(instance)s") % {"instance": self.object},
        }

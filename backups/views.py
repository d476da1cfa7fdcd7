from django.views.generic import TemplateView


class BackupRecordListView(TemplateView):
    template_name = "backups/backuprecord_list.html"

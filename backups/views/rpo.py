"""RPO policies (``/rpo/``): every Viewer reads them; Operators add, change and delete them.

Changes are POSTs with their CSRF token from users with
``roles.RPO_PERMISSION``; anyone else gets 403. Saving or deleting a policy
recomputes every instance's RPO (backups.rpo), in the same transaction.
"""

from __future__ import annotations

from datetime import timedelta

from django import forms
from django.contrib import messages
from django.contrib.auth.mixins import PermissionRequiredMixin
from django.db.models import Count
from django.http import HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views import View
from django.views.generic import TemplateView

from backups import roles, selectors
from backups.models import DcsInstance, RpoPolicy
from backups.rpo import (
    DEFAULT_SOURCE,
    DuplicatePolicy,
    default_rpo,
    policy_source,
    rpo_policy_delete,
    rpo_policy_save,
)
from backups.tables.columns import duration_text

Scope = RpoPolicy.Scope
# As DASHBOARD_RPO_HOURS: whole hours, up to a year.
MAX_HOURS = 24 * 365


def can_set_rpo(request) -> bool:
    return request.user.has_perm(roles.RPO_PERMISSION)


class RpoPolicyForm(forms.Form):
    scope = forms.ChoiceField(label=gettext_lazy("Applies to"), choices=Scope.choices)
    region = forms.CharField(
        label=gettext_lazy("Region"),
        max_length=64,
        required=False,
        help_text=gettext_lazy("A region we sync, or one to come (any name is accepted)."),
    )
    tag_key = forms.CharField(label=gettext_lazy("Tag key"), max_length=128, required=False)
    tag_value = forms.CharField(label=gettext_lazy("Tag value"), max_length=255, required=False)
    instance = forms.CharField(
        label=gettext_lazy("Instance id"),
        max_length=64,
        required=False,
        help_text=gettext_lazy("The DCS instance id, as on the instance's page."),
    )
    hours = forms.IntegerField(
        label=gettext_lazy("Maximum age of the last successful backup (hours)"),
        min_value=1,
        max_value=MAX_HOURS,
    )
    reason = forms.CharField(label=gettext_lazy("Reason"), max_length=255, required=False)

    def __init__(self, *args, policy: RpoPolicy | None = None, **kwargs):
        self.policy = policy
        if policy is not None and "initial" not in kwargs:
            kwargs["initial"] = {
                "scope": policy.scope,
                "region": policy.region,
                "tag_key": policy.tag_key,
                "tag_value": policy.tag_value,
                "instance": policy.instance.instance_id if policy.instance_id else "",
                "hours": int(policy.max_age.total_seconds() // 3600),
                "reason": policy.reason,
            }
        super().__init__(*args, **kwargs)

    def clean(self):
        data = super().clean()
        scope = data.get("scope")
        # A NUL in any field was refused already (Django's CharField does).
        if scope == Scope.REGION and not data.get("region"):
            self.add_error("region", _("Name the region this policy applies to."))
        if scope == Scope.TAG and not data.get("tag_key"):
            self.add_error("tag_key", _("Name the tag key this policy applies to."))
        if scope == Scope.INSTANCE:
            instance_id = data.get("instance", "")
            instance = selectors.instance_by_id(instance_id) if instance_id else None
            if instance is None:
                self.add_error(
                    "instance",
                    _("No DCS instance with the id “%(id)s”.") % {"id": instance_id[:64]}
                    if instance_id
                    else _("Name the instance this policy applies to."),
                )
            data["instance_object"] = instance
        if not self.errors and self.duplicate(data) is not None:
            raise forms.ValidationError(
                _("There is a policy for this %(scope)s already: change that one.")
                % {"scope": Scope(scope).label.lower()}
            )
        return data

    def duplicate(self, data) -> RpoPolicy | None:
        scope = data["scope"]
        if scope == Scope.REGION:
            same = RpoPolicy.objects.filter(scope=scope, region=data["region"])
        elif scope == Scope.TAG:
            same = RpoPolicy.objects.filter(scope=scope, tag_key=data["tag_key"], tag_value=data["tag_value"])
        else:
            same = RpoPolicy.objects.filter(scope=scope, instance=data["instance_object"])
        if self.policy is not None:
            same = same.exclude(pk=self.policy.pk)
        return same.first()

    def apply_to(self, policy: RpoPolicy) -> RpoPolicy:
        data = self.cleaned_data
        policy.scope = data["scope"]
        policy.region = data["region"]
        policy.tag_key = data["tag_key"]
        policy.tag_value = data["tag_value"]
        policy.instance = data.get("instance_object")
        policy.max_age = timedelta(hours=data["hours"])
        policy.reason = data["reason"]
        return policy


def policy_target(policy: RpoPolicy) -> str:
    if policy.scope == Scope.INSTANCE:
        return str(policy.instance) if policy.instance_id else "?"
    if policy.scope == Scope.TAG:
        return f"{policy.tag_key}={policy.tag_value}"
    return policy.region


def describe(policy: RpoPolicy) -> str:
    """``Tag env=prod: 4 h``, for the messages."""
    return f"{policy.get_scope_display()} {policy_target(policy)}: {duration_text(policy.max_age, units=2)}"


class RpoPolicyListView(TemplateView):
    """The default and every policy, with how many instances each applies to: two queries after the user."""

    template_name = "backups/rpo_list.html"

    def get_context_data(self, **kwargs) -> dict:
        context = super().get_context_data(**kwargs)
        policies = list(RpoPolicy.objects.select_related("instance", "created_by"))
        # Instances per source, as recompute_rpo stored it: one grouped query.
        applied = dict(
            DcsInstance.objects.present()
            .order_by()
            .values_list("rpo_source")
            .annotate(n=Count("pk"))
            .values_list("rpo_source", "n")
        )
        rows = []
        for policy in policies:
            source = policy_source(policy)
            count = applied.get(source, 0) if policy.scope != Scope.INSTANCE else None
            rows.append(
                {
                    "policy": policy,
                    "target": policy_target(policy),
                    "max_age": duration_text(policy.max_age, units=2),
                    "instances": count,
                    "instance_url": (
                        reverse("backups:instance-detail", args=[policy.instance.instance_id])
                        if policy.instance_id
                        and policy.instance.instance_id
                        and "/" not in policy.instance.instance_id
                        else ""
                    ),
                }
            )
        context.update(
            rows=rows,
            default_text=duration_text(default_rpo(), units=2),
            default_instances=applied.get(DEFAULT_SOURCE, 0) + applied.get("", 0),
            can_set_rpo=can_set_rpo(self.request),
        )
        return context


class RpoPolicyEditView(PermissionRequiredMixin, View):
    """The form to add (no pk) or change a policy: GET shows it, POST saves it."""

    permission_required = roles.RPO_PERMISSION
    raise_exception = True  # a Viewer gets 403, not the login page again
    http_method_names = ["get", "post"]
    template_name = "backups/rpo_form.html"

    def get_policy(self) -> RpoPolicy | None:
        pk = self.kwargs.get("pk")
        return get_object_or_404(RpoPolicy.objects.select_related("instance"), pk=pk) if pk else None

    def get(self, request, *args, **kwargs):
        policy = self.get_policy()
        return self.show(request, RpoPolicyForm(policy=policy), policy)

    def post(self, request, *args, **kwargs):
        policy = self.get_policy()
        form = RpoPolicyForm(request.POST, policy=policy)
        if form.is_valid():
            changed = form.apply_to(policy or RpoPolicy())
            try:
                rpo_policy_save(policy=changed, user=request.user)
            except DuplicatePolicy:
                # Another Operator saved the same one meanwhile.
                form.add_error(None, _("There is a policy for this already: change that one."))
                return self.show(request, form, policy, status=400)
            messages.success(
                request,
                (_("RPO policy changed: %(policy)s.") if policy else _("RPO policy added: %(policy)s."))
                % {"policy": describe(changed)},
            )
            return HttpResponseRedirect(reverse("backups:rpo-list"))
        return self.show(request, form, policy, status=400)

    def show(self, request, form, policy, status=200):
        return render(
            request,
            self.template_name,
            {"form": form, "policy": policy, "default_text": duration_text(default_rpo(), units=2)},
            status=status,
        )


class RpoPolicyDeleteView(PermissionRequiredMixin, View):
    permission_required = roles.RPO_PERMISSION
    raise_exception = True
    http_method_names = ["post"]

    def post(self, request, pk: int):
        policy = get_object_or_404(RpoPolicy.objects.select_related("instance"), pk=pk)
        text = describe(policy)
        rpo_policy_delete(policy=policy)
        messages.success(request, _("RPO policy deleted: %(policy)s.") % {"policy": text})
        return HttpResponseRedirect(reverse("backups:rpo-list"))

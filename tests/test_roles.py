import pytest
from django.contrib.auth.models import Group

from backups import roles


@pytest.mark.django_db
def test_it_creates_the_three_roles():
    assert set(Group.objects.values_list("name", flat=True)) >= {"Viewer", "Operator", "Admin"}


@pytest.mark.django_db
@pytest.mark.parametrize(
    "role,has,lacks",
    [
        (
            "Viewer",
            ["backups.view_backuprecord", "backups.view_syncrun"],
            ["backups.trigger_sync", "backups.view_auditevent"],
        ),
        (
            "Operator",
            ["backups.view_backuprecord", "backups.trigger_sync"],
            ["backups.view_auditevent", "auth.change_user"],
        ),
        (
            "Admin",
            ["backups.trigger_sync", "backups.view_auditevent", "auth.change_user", "auth.add_group"],
            [],
        ),
    ],
)
def test_it_gives_each_role_its_permissions(role, has, lacks):
    names = {
        f"{p.content_type.app_label}.{p.codename}" for p in Group.objects.get(name=role).permissions.all()
    }

    assert set(has) <= names
    assert not set(lacks) & names


@pytest.mark.django_db
def test_it_makes_a_new_account_a_viewer_by_default(django_user_model):
    user = django_user_model.objects.create_user("new", password="x")

    assert [g.name for g in user.groups.all()] == ["Viewer"]


@pytest.mark.django_db
def test_it_gives_no_role_when_the_default_is_off(django_user_model, settings):
    settings.DASHBOARD_DEFAULT_ROLE = ""

    user = django_user_model.objects.create_user("new", password="x")

    assert not user.groups.exists()
    assert not roles.permission_names("Viewer", ["backups.view_auditevent"])

import io
from unittest import mock

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

from backups.models import AuditEvent

GOOD = "a-long-and-unusual-passphrase-7"


def run(*args, stdin: str = GOOD + "\n", **kwargs) -> str:
    out = io.StringIO()
    with mock.patch("sys.stdin", io.StringIO(stdin)):
        call_command("createuser", *args, stdout=out, **kwargs)
    return out.getvalue()


@pytest.mark.django_db
@pytest.mark.parametrize(
    "role,group,staff",
    [("viewer", "Viewer", False), ("operator", "Operator", False), ("admin", "Admin", True)],
)
def test_it_creates_a_user_with_a_role(role, group, staff):
    out = run("alice", "--role", role, "--email", "a@example.com")

    user = get_user_model().objects.get(username="alice")
    assert [g.name for g in user.groups.all()] == [group]
    assert user.is_staff is staff and not user.is_superuser
    assert user.check_password(GOOD) and user.email == "a@example.com"
    assert GOOD not in out
    assert AuditEvent.objects.filter(action="user_created", username="alice", detail__role=role).exists()


@pytest.mark.django_db
def test_it_reads_the_password_from_an_environment_variable(monkeypatch):
    monkeypatch.setenv("NEW_PASSWORD", GOOD)

    run("bob", "--role", "viewer", "--password-env", "NEW_PASSWORD", stdin="")

    assert get_user_model().objects.get(username="bob").check_password(GOOD)


@pytest.mark.django_db
def test_it_names_an_unset_variable():
    with pytest.raises(CommandError, match="NOPE_NOT_SET is not set"):
        run("bob", "--role", "viewer", "--password-env", "NOPE_NOT_SET")


@pytest.mark.django_db
@pytest.mark.parametrize(
    "password,message", [("123", "too short"), ("password1", "too common"), ("", "empty")]
)
def test_it_refuses_a_weak_password_clearly(password, message):
    with pytest.raises(CommandError, match=message) as excinfo:
        run("carol", "--role", "viewer", stdin=password + "\n")

    assert password not in str(excinfo.value) or not password
    assert not get_user_model().objects.filter(username="carol").exists()


@pytest.mark.django_db
def test_it_refuses_an_existing_user_unless_updating():
    run("dave", "--role", "viewer")

    with pytest.raises(CommandError, match="--update"):
        run("dave", "--role", "admin")
    run("dave", "--role", "operator", "--update", stdin="\n")

    user = get_user_model().objects.get(username="dave")
    assert [g.name for g in user.groups.all()] == ["Operator"]
    assert user.check_password(GOOD)  # an empty line keeps the password
    assert AuditEvent.objects.filter(action="user_created").count() == 1

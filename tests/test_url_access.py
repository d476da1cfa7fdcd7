"""Every URL for every role: anonymous, no role, Viewer, Operator, Admin, superuser."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.test import Client
from django.urls import get_resolver

from backups import roles
from backups.models import RpoPolicy
from tests.factories import make_instance, make_record, make_sync_run

ROLES = ("anonymous", "norole", "viewer", "operator", "admin", "superuser")
OK, LOGIN, FORBIDDEN, BACK = 200, "login", 403, 302

# url, method, expected for each of ROLES (BACK: a redirect back, not to the login page).
READ = (LOGIN, FORBIDDEN, OK, OK, OK, OK)
TABLE = [
    ("/", "get", READ),
    ("/backups/", "get", READ),
    ("/backups/?_export=csv", "get", READ),
    ("/backups/?_export=json", "get", READ),
    ("/backups/{backup_id}/", "get", READ),
    ("/instances/", "get", READ),
    ("/instances/?_export=csv", "get", READ),
    ("/instances/?_export=json", "get", READ),
    ("/instances/{instance_id}/", "get", READ),
    ("/sync/", "get", READ),
    ("/sync/?_export=csv", "get", READ),
    ("/sync/?_export=json", "get", READ),
    ("/sync/{run_pk}/", "get", READ),
    ("/sync/now/", "get", (LOGIN, FORBIDDEN, FORBIDDEN, 405, 405, 405)),
    ("/sync/now/", "post", (LOGIN, FORBIDDEN, FORBIDDEN, BACK, BACK, BACK)),
    ("/instances/{instance_id}/sync/", "post", (LOGIN, FORBIDDEN, FORBIDDEN, BACK, BACK, BACK)),
    ("/backups/{backup_id}/notes/", "post", (LOGIN, FORBIDDEN, FORBIDDEN, BACK, BACK, BACK)),
    ("/instances/{instance_id}/notes/", "post", (LOGIN, FORBIDDEN, FORBIDDEN, BACK, BACK, BACK)),
    (
        "/incident/?start=2025-03-01&end=2025-03-02&instance={instance_id}&as_of=2025-03-03T00:00:00Z",
        "get",
        READ,
    ),
    (
        "/incident/?start=2025-03-01&end=2025-03-02&instance={instance_id}&as_of=2025-03-03&format=csv",
        "get",
        READ,
    ),
    ("/alerts/", "get", READ),
    ("/alerts/?_export=csv", "get", READ),
    ("/alerts/?state=open&kind=rpo", "get", READ),
    ("/alerts/", "post", (LOGIN, FORBIDDEN, 405, 405, 405, 405)),
    ("/calendar/", "get", READ),
    ("/calendar/?days=90&at_risk=1&region=cn-north-4", "get", READ),
    ("/calendar/", "post", (LOGIN, FORBIDDEN, 405, 405, 405, 405)),
    ("/errors/", "get", READ),
    ("/errors/?code=dcs.08.0002", "get", READ),
    ("/errors/", "post", (LOGIN, FORBIDDEN, 405, 405, 405, 405)),
    ("/rpo/", "get", READ),
    ("/rpo/", "post", (LOGIN, FORBIDDEN, 405, 405, 405, 405)),
    ("/rpo/new/", "get", (LOGIN, FORBIDDEN, FORBIDDEN, OK, OK, OK)),
    # Not a valid policy: the form again, with what is wrong.
    ("/rpo/new/", "post", (LOGIN, FORBIDDEN, FORBIDDEN, 400, 400, 400)),
    ("/rpo/{policy_pk}/", "get", (LOGIN, FORBIDDEN, FORBIDDEN, OK, OK, OK)),
    ("/rpo/{policy_pk}/delete/", "get", (LOGIN, FORBIDDEN, FORBIDDEN, 405, 405, 405)),
    ("/rpo/{policy_pk}/delete/", "post", (LOGIN, FORBIDDEN, FORBIDDEN, BACK, BACK, BACK)),
    ("/audit/", "get", (LOGIN, FORBIDDEN, FORBIDDEN, FORBIDDEN, OK, OK)),
    ("/audit/?_export=csv", "get", (LOGIN, FORBIDDEN, FORBIDDEN, FORBIDDEN, OK, OK)),
    ("/audit/?_export=json", "get", (LOGIN, FORBIDDEN, FORBIDDEN, FORBIDDEN, OK, OK)),
    ("/admin/", "get", ("admin-login", "admin-login", "admin-login", "admin-login", OK, OK)),
    ("/admin/auth/user/", "get", ("admin-login", "admin-login", "admin-login", "admin-login", OK, OK)),
    (
        "/admin/backups/auditevent/",
        "get",
        ("admin-login", "admin-login", "admin-login", "admin-login", OK, OK),
    ),
    # Usable on the login page too (login_not_required).
    ("/preferences/timezone/", "post", (BACK,) * 6),
    ("/preferences/language/", "post", (BACK,) * 6),
    ("/accounts/login/", "get", (OK, OK, OK, OK, OK, OK)),
    # For machines: the same answer whoever asks. 503: no worker, the broker is down (ids).
    ("/healthz", "get", (503,) * 6),
    # Neither METRICS_TOKEN nor METRICS_ALLOWED_IPS: absent, even for a superuser.
    ("/metrics", "get", (404,) * 6),
]
COVERED_ROUTES = {
    "",
    "backups/",
    "backups/<str:backup_id>/",
    "instances/",
    "instances/<str:instance_id>/",
    "instances/<str:instance_id>/sync/",
    "backups/<str:backup_id>/notes/",
    "instances/<str:instance_id>/notes/",
    "incident/",
    "sync/",
    "sync/now/",
    "sync/<int:pk>/",
    "audit/",
    "calendar/",
    "errors/",
    "alerts/",
    "rpo/",
    "rpo/new/",
    "rpo/<int:pk>/",
    "rpo/<int:pk>/delete/",
    "preferences/timezone/",
    "preferences/language/",
}


def user_for(role: str, django_user_model):
    if role == "anonymous":
        return None
    if role == "superuser":
        return django_user_model.objects.create_superuser("root", password="not-a-real-password-1")
    with roles.no_default_role():
        user = django_user_model.objects.create_user(role, password="not-a-real-password-1")
    if role in roles.ROLES:
        user.groups.add(Group.objects.get(name=roles.ROLES[role]))
        user.is_staff = role == "admin"
        user.save()
    return user


@pytest.fixture
def ids(settings):
    # A broker that is down: "Sync now" says so and goes back, nothing is queued.
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/0"
    instance = make_instance()
    record = make_record(instance)
    run = make_sync_run()
    policy = RpoPolicy.objects.create(scope="region", region="cn-north-4", max_age=timedelta(hours=4))
    return {
        "instance_id": instance.instance_id,
        "backup_id": record.backup_id,
        "run_pk": run.pk,
        "policy_pk": policy.pk,
    }


def test_it_covers_every_route_of_the_dashboard():
    routes = {str(p.pattern) for p in get_resolver().url_patterns[-1].url_patterns}
    assert routes <= COVERED_ROUTES


@pytest.mark.django_db
@pytest.mark.parametrize("role_index,role", list(enumerate(ROLES)))
@pytest.mark.parametrize("url,method,expected", TABLE)
def test_it_answers_each_role_as_the_table_says(
    ids, django_user_model, role_index, role, url, method, expected
):
    client = Client()
    user = user_for(role, django_user_model)
    if user is not None:
        client.force_login(user)
    path = url.format(**ids)

    data = {"timezone": "UTC", "language": "en"} if method == "post" else None
    response = getattr(client, method)(path, data) if data else getattr(client, method)(path)

    want = expected[role_index]
    if want == LOGIN:
        assert response.status_code == 302 and response.url.startswith("/accounts/login/?next=")
    elif want == "admin-login":
        # Anonymous: the admin index has its own login page, deeper pages ours.
        assert response.status_code == 302 and "/login/?next=" in response.url
    elif want == BACK:
        assert response.status_code == 302 and "login" not in response.url
    else:
        assert response.status_code == want


@pytest.mark.django_db
def test_it_tells_a_user_without_a_role_to_ask_for_one(django_user_model):
    client = Client()
    client.force_login(user_for("norole", django_user_model))

    response = client.get("/backups/")

    assert response.status_code == 403
    assert "has no role yet" in response.text


@pytest.mark.django_db
@pytest.mark.parametrize(
    "role,shown", [("viewer", False), ("operator", False), ("admin", True), ("superuser", True)]
)
def test_it_shows_the_audit_link_only_to_admins(django_user_model, role, shown):
    client = Client()
    client.force_login(user_for(role, django_user_model))

    html = client.get("/backups/").text

    assert ('href="/audit/"' in html) is shown


@pytest.mark.django_db
@pytest.mark.parametrize("role,shown", [("viewer", False), ("operator", True)])
def test_it_shows_sync_now_only_to_operators(django_user_model, role, shown):
    client = Client()
    client.force_login(user_for(role, django_user_model))

    html = client.get("/sync/").text

    assert ('action="/sync/now/"' in html) is shown


# --- single sign-on through the proxy's header ---------------------------------------

REMOTE = "HTTP_X_REMOTE_USER"


@pytest.fixture
def sso(settings):
    settings.DASHBOARD_REMOTE_USER_HEADER = REMOTE
    auth = settings.MIDDLEWARE.index("django.contrib.auth.middleware.AuthenticationMiddleware")
    settings.MIDDLEWARE = [
        *settings.MIDDLEWARE[: auth + 1],
        "backups.access.DashboardRemoteUserMiddleware",
        *settings.MIDDLEWARE[auth + 1 :],
    ]
    settings.AUTHENTICATION_BACKENDS = [
        "axes.backends.AxesStandaloneBackend",
        "backups.access.DashboardRemoteUserBackend",
        "django.contrib.auth.backends.ModelBackend",
    ]
    return settings


@pytest.mark.django_db
def test_it_signs_in_a_known_user_from_the_proxy_header(sso, django_user_model):
    django_user_model.objects.create_user("sso-viewer")

    response = Client().get("/backups/", **{REMOTE: "sso-viewer"})

    assert response.status_code == 200
    assert "sso-viewer" in response.text


@pytest.mark.django_db
def test_it_refuses_an_unknown_proxy_user_unless_told_to_create_them(sso, django_user_model):
    assert Client().get("/backups/", **{REMOTE: "stranger"}).status_code == 302

    sso.DASHBOARD_REMOTE_USER_CREATE = True
    assert Client().get("/backups/", **{REMOTE: "stranger"}).status_code == 200
    assert django_user_model.objects.get(username="stranger").groups.get().name == "Viewer"


@pytest.mark.django_db
def test_it_ignores_the_header_when_single_sign_on_is_off(django_user_model):
    django_user_model.objects.create_user("sso-viewer")

    response = Client().get("/backups/", **{REMOTE: "sso-viewer"})

    assert response.status_code == 302 and "/login/" in response.url

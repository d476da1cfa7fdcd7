import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from tests.factories import make_instance

LOGIN_URL = "/accounts/login/"


@pytest.fixture
def user(db):
    return get_user_model().objects.create_user(username="dba", password="correct horse battery")


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/", "/backups/", "/instances/x/", "/backups/?page=2"])
def test_it_sends_anonymous_visitors_to_the_login_page(client, path):
    response = client.get(path)

    assert response.status_code == 302
    assert response.url.startswith(LOGIN_URL + "?next=")


@pytest.mark.django_db
def test_it_renders_the_login_page(client):
    response = client.get(LOGIN_URL + "?next=/backups/")

    assert response.status_code == 200
    html = response.content.decode()
    assert '<label for="id_username">' in html
    assert '<label for="id_password">' in html
    assert 'name="next" value="/backups/"' in html
    assert 'autocomplete="current-password"' in html
    assert "Log out" not in html


@pytest.mark.django_db
def test_it_shows_the_demo_banner_on_the_login_page(client, settings):
    settings.DCS_DEMO = True

    response = client.get(LOGIN_URL)

    assert "Demo mode — data comes from the built-in DCS simulator, not Huawei Cloud." in response.text


@pytest.mark.django_db
def test_it_logs_in_and_goes_to_next(client, user):
    response = client.post(
        LOGIN_URL, {"username": "dba", "password": "correct horse battery", "next": "/backups/"}
    )

    assert response.status_code == 302
    assert response.url == "/backups/"
    page = client.get("/backups/")
    assert page.status_code == 200
    assert "dba" in page.text


@pytest.mark.django_db
def test_it_logs_in_to_the_backup_list_by_default(client, user):
    response = client.post(LOGIN_URL, {"username": "dba", "password": "correct horse battery"})

    assert response.status_code == 302
    assert response.url == reverse("backups:backup-list")


@pytest.mark.django_db
def test_it_rejects_a_wrong_password(client, user):
    response = client.post(LOGIN_URL, {"username": "dba", "password": "wrong"})

    assert response.status_code == 200
    assert 'role="alert"' in response.text
    assert "_auth_user_id" not in client.session


@pytest.mark.django_db
def test_it_ignores_an_offsite_next(client, user):
    response = client.post(
        LOGIN_URL,
        {"username": "dba", "password": "correct horse battery", "next": "https://evil.example/"},
    )

    assert response.status_code == 302
    assert response.url == reverse("backups:backup-list")


@pytest.mark.django_db
def test_it_has_a_logout_form_that_posts(client, user):
    client.force_login(user)

    html = client.get("/backups/").text

    assert f'<form method="post" action="{reverse("logout")}"' in html
    assert 'name="csrfmiddlewaretoken"' in html


@pytest.mark.django_db
def test_it_logs_out_by_post(client, user):
    client.force_login(user)

    response = client.post(reverse("logout"))

    assert response.status_code == 302
    assert response.url == LOGIN_URL
    assert "_auth_user_id" not in client.session
    assert client.get("/backups/").status_code == 302


@pytest.mark.django_db
def test_it_does_not_log_out_on_get(client, user):
    client.force_login(user)

    response = client.get(reverse("logout"))

    assert response.status_code == 405
    assert client.get("/backups/").status_code == 200


@pytest.mark.django_db
def test_it_sends_anonymous_visitors_of_a_real_instance_to_login(client):
    instance = make_instance()

    response = client.get(reverse("backups:instance-detail", args=[instance.instance_id]))

    assert response.status_code == 302
    assert response.url.startswith(LOGIN_URL)

"""Browser tests: Playwright drives Debian's chromium against a live server.

Downloaded browsers do not work on our machines, so the tests launch
/usr/bin/chromium. Without it they are skipped on a developer's machine and
fail in CI, where `.ci/run` installs it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")

PASSWORD = "browser-test-pass-1"


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/browser/" in str(item.fspath):
            item.add_marker(pytest.mark.browser)


@pytest.fixture(scope="module")
def browser():
    """Chromium, for the tests of one module.

    Playwright's sync API runs an event loop in this thread, and from then on
    the thread counts as async: Django refuses the ORM calls the tests make
    around the browser unless ``DJANGO_ALLOW_ASYNC_UNSAFE`` is set, and
    asgiref gives them connections of their own, apart from the thread's.
    So the loop runs for this module's tests only (the next module's, which
    pytest sets up after this teardown, find none: the autouse check in
    tests/conftest.py), and the connections opened while it ran are closed
    before it stops, while they can still be reached. Kept for the session,
    the loop put every later test of the worker on such a connection, and
    the last one (a rolled-back test's) stayed open: PostgreSQL then
    refused to drop the test database ("being accessed by other users").
    """
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail("CI must have Debian's chromium at /usr/bin/chromium (.ci/run installs it)")
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    from django.db import connections
    from playwright.sync_api import sync_playwright

    with pytest.MonkeyPatch.context() as patch, sync_playwright() as playwright:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        try:
            yield browser
        finally:
            try:
                browser.close()
            finally:
                connections.close_all()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1440, "height": 1000}, locale="en-US")
    page = context.new_page()
    page.set_default_timeout(10_000)
    yield page
    context.close()


@pytest.fixture
def operator(django_user_model):
    return django_user_model.objects.create_user(username="dba", password=PASSWORD)


@pytest.fixture
def logged_in(page, live_server, operator):
    """A page logged in through the real login form."""
    page.goto(f"{live_server.url}/accounts/login/")
    page.get_by_label("Username").fill(operator.username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_load_state()
    return page

"""RPO policies: which one applies, what "at risk" and "overdue" become, the pages that set them."""

from __future__ import annotations

import json
import os
import re
import subprocess
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.utils import timezone

from backups import roles
from backups.models import DcsInstance, RpoPolicy
from backups.rpo import effective_rpo, recompute_rpo, rpo_policy_save
from backups.selectors import by_overdue, fleet_risk, instances_with_stats, with_risk
from backups.sync import sync_fleet
from tests.conftest import manage_py
from tests.factories import T0, make_instance, make_record

pytestmark = pytest.mark.django_db
HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
NOW = T0 + timedelta(days=40)
PASSWORD = "not-a-real-password-1"
Scope = RpoPolicy.Scope


def policy(scope, hours, **fields) -> RpoPolicy:
    return RpoPolicy.objects.create(scope=scope, max_age=timedelta(hours=hours), **fields)


def row_of(instance, now=NOW) -> DcsInstance:
    return with_risk(DcsInstance.objects.filter(pk=instance.pk), now=now).get()


# --- Which policy applies ----------------------------------------------------------


def test_it_takes_the_default_without_a_policy(settings):
    settings.DASHBOARD_RPO_HOURS = 30
    rpo = effective_rpo(make_instance(), [])

    assert (rpo.max_age, rpo.source, rpo.stored_rpo) == (30 * HOUR, "default", None)


def test_it_prefers_the_instance_then_the_tag_then_the_region():
    instance = make_instance(region="cn-north-4", tags={"env": "prod"})
    region = policy(Scope.REGION, 48, region="cn-north-4")
    tag = policy(Scope.TAG, 12, tag_key="env", tag_value="prod")
    own = policy(Scope.INSTANCE, 72, instance=instance)

    assert effective_rpo(instance, [region]).source == "region cn-north-4"
    assert effective_rpo(instance, [region, tag]).source == "tag env=prod"
    # Most specific wins even when it is looser.
    assert effective_rpo(instance, [region, tag, own]).max_age == 72 * HOUR
    assert effective_rpo(instance, [region, tag, own]).source == "instance"


def test_it_takes_the_strictest_of_several_matching_tags():
    instance = make_instance(tags={"env": "prod", "team": "pay", "tier": "gold"})
    policies = [
        policy(Scope.TAG, 12, tag_key="env", tag_value="prod"),
        policy(Scope.TAG, 6, tag_key="team", tag_value="pay"),
        policy(Scope.TAG, 6, tag_key="tier", tag_value="gold"),
        policy(Scope.TAG, 1, tag_key="env", tag_value="dev"),  # not its value
    ]

    rpo = effective_rpo(instance, policies)

    # A tie on the age goes to the first key, so the source does not flicker.
    assert (rpo.max_age, rpo.source) == (6 * HOUR, "tag team=pay")


def test_it_ignores_a_policy_of_another_region_or_instance():
    instance = make_instance(region="cn-north-4")
    others = [
        policy(Scope.REGION, 2, region="ap-southeast-1"),
        policy(Scope.INSTANCE, 2, instance=make_instance()),
    ]

    assert effective_rpo(instance, others).source == "default"


def test_it_exempts_single_node_instances_whatever_applies():
    single = make_instance(spec_code="redis.single.xu1.tiny.128", region="cn-north-4")
    policies = [policy(Scope.REGION, 1, region="cn-north-4"), policy(Scope.INSTANCE, 1, instance=single)]

    rpo = effective_rpo(single, policies)

    assert rpo.max_age is None and rpo.source == "exempt: single node"
    assert row_of(single).at_risk is False


# --- Stored, and recomputed ------------------------------------------------------------


def test_it_stores_each_instances_rpo_and_writes_only_what_changed(django_assert_num_queries):
    prod = make_instance(tags={"env": "prod"})
    plain = make_instance()
    policy(Scope.TAG, 4, tag_key="env", tag_value="prod")
    DcsInstance.objects.update(rpo=None, rpo_source="")

    assert recompute_rpo() == 2
    prod.refresh_from_db()
    plain.refresh_from_db()
    assert (prod.rpo, prod.rpo_source) == (4 * HOUR, "tag env=prod")
    # The default is read from the setting by the queries: nothing to store.
    assert (plain.rpo, plain.rpo_source) == (None, "default")
    with django_assert_num_queries(2):  # the policies, the instances; no write
        assert recompute_rpo() == 0


def test_it_recomputes_when_a_policy_is_saved_changed_or_deleted():
    instance = make_instance(region="cn-north-4")

    region = rpo_policy_save(policy=RpoPolicy(scope=Scope.REGION, region="cn-north-4", max_age=8 * HOUR))
    instance.refresh_from_db()
    assert (instance.rpo, instance.rpo_source) == (8 * HOUR, "region cn-north-4")

    region.max_age = 3 * HOUR
    rpo_policy_save(policy=region)
    instance.refresh_from_db()
    assert instance.rpo == 3 * HOUR

    region.delete()  # as the admin does: the signal recomputes
    instance.refresh_from_db()
    assert (instance.rpo, instance.rpo_source) == (None, "default")


def test_it_keeps_only_the_fields_of_the_policys_scope():
    saved = rpo_policy_save(
        policy=RpoPolicy(scope=Scope.TAG, tag_key="env", tag_value="prod", region="stray", max_age=HOUR)
    )

    assert saved.region == "" and saved.instance is None


def test_it_follows_a_change_of_the_default_at_once(settings):
    instance = make_instance()
    make_record(instance, status="succeed", created_at=NOW - 30 * HOUR)
    recompute_rpo()

    assert row_of(instance).at_risk is True  # 26 h by default
    settings.DASHBOARD_RPO_HOURS = 48
    assert row_of(instance).at_risk is False


def test_it_gives_a_synced_instance_its_rpo(dcs_client):
    sync_fleet(client=dcs_client, kind="full")
    tagged = DcsInstance.objects.exclude(tags={}).order_by("pk").first()
    key, value = next(iter(tagged.tags.items()))
    # Written behind the receivers' back, and the RPOs wiped: only the sync can put them right.
    RpoPolicy.objects.bulk_create(
        [RpoPolicy(scope=Scope.TAG, tag_key=key, tag_value=value, max_age=5 * HOUR)]
    )
    DcsInstance.objects.update(rpo=None, rpo_source="")

    sync_fleet(client=dcs_client, kind="incremental")

    tagged.refresh_from_db()
    assert (tagged.rpo, tagged.rpo_source) == (5 * HOUR, f"tag {key}={value}")
    assert not DcsInstance.objects.filter(rpo_source="").exists()


# --- At risk and overdue ------------------------------------------------------------------


def test_it_puts_an_instance_at_risk_by_its_own_rpo():
    strict = make_instance(name="strict", tags={"env": "prod"})
    make_record(strict, status="succeed", created_at=NOW - 5 * HOUR)
    loose = make_instance(name="loose")
    make_record(loose, status="succeed", created_at=NOW - 5 * HOUR)
    policy(Scope.TAG, 4, tag_key="env", tag_value="prod")

    assert row_of(strict).at_risk is True
    assert row_of(strict).overdue == HOUR
    assert row_of(loose).at_risk is False
    assert row_of(loose).overdue is None


def test_it_keeps_a_success_exactly_at_the_rpo_in_time():
    instance = make_instance()
    policy(Scope.INSTANCE, 4, instance=instance)
    make_record(instance, status="succeed", created_at=NOW - 4 * HOUR)

    assert row_of(instance).at_risk is False
    assert row_of(instance, now=NOW + timedelta(seconds=1)).overdue == timedelta(seconds=1)


@pytest.mark.parametrize("micros", [0, 1, 999_999, 500_000])
@pytest.mark.parametrize("offset_us", [-1, 0, 1])
def test_it_measures_a_success_age_exactly_at_the_microsecond(micros, offset_us):
    # The age is computed in SQL (selectors.Age; on SQLite from the stored
    # text): the RPO's edge to the microsecond, whole seconds stored without
    # a fraction, and ages that cross a second, as Python computes them.
    instance = make_instance()
    policy(Scope.INSTANCE, 4, instance=instance)
    success = (NOW - 4 * HOUR).replace(microsecond=micros)
    DcsInstance.objects.filter(pk=instance.pk).update(last_success_at=success)
    now = success + 4 * HOUR + timedelta(microseconds=offset_us)

    row = row_of(instance, now=now)

    assert row.success_age == now - success
    assert row.at_risk is (offset_us > 0)
    assert row.overdue == (timedelta(microseconds=offset_us) if offset_us > 0 else None)


def test_it_treats_an_rpo_never_computed_as_the_default():
    instance = make_instance()
    make_record(instance, status="succeed", created_at=NOW - 27 * HOUR)
    DcsInstance.objects.filter(pk=instance.pk).update(rpo=None, rpo_source="")

    row = row_of(instance)

    assert row.effective_rpo == 26 * HOUR and row.rpo_from == "default"
    assert row.at_risk is True and row.overdue == HOUR


def test_it_ranks_the_at_risk_list_by_how_far_over_its_rpo():
    # b's success is older, but a's RPO is so much stricter that a is further over.
    a = make_instance(name="a-strict")
    make_record(a, status="succeed", created_at=NOW - 30 * HOUR)
    policy(Scope.INSTANCE, 2, instance=a)  # 28 h over
    b = make_instance(name="b-default")
    make_record(b, status="succeed", created_at=NOW - 40 * HOUR)  # 14 h over
    never = make_instance(name="z-never")
    fine = make_instance(name="fine")
    make_record(fine, status="succeed", created_at=NOW - HOUR)

    assert fleet_risk(now=NOW).at_risk == [never, a, b]
    ordered = instances_with_stats(now=NOW).filter(gone_at__isnull=True)
    assert list(by_overdue(ordered)) == [never, a, b, fine]
    assert list(by_overdue(ordered, descending=False)) == [fine, b, a, never]


# --- Settings ---------------------------------------------------------------------------


def manage(tmp_path, *args, **env) -> subprocess.CompletedProcess:
    clean = {
        k: v for k, v in os.environ.items() if k not in ("DASHBOARD_RPO_HOURS", "DASHBOARD_AT_RISK_HOURS")
    }
    return manage_py(*args, env={**clean, "DASHBOARD_DATA_DIR": str(tmp_path), **env})


PRINT_RPO = ("shell", "-c", "from django.conf import settings; print(settings.DASHBOARD_RPO_HOURS)")


@pytest.mark.parametrize(
    ("env", "hours"),
    [
        ({}, "26"),
        ({"DASHBOARD_AT_RISK_HOURS": "12"}, "12"),
        ({"DASHBOARD_AT_RISK_HOURS": "12", "DASHBOARD_RPO_HOURS": "8"}, "8"),
    ],
)
def test_it_reads_the_rpo_setting_and_its_older_name(tmp_path, env, hours):
    # The last line: the shell may say first what it imported.
    assert manage(tmp_path, *PRINT_RPO, **env).stdout.strip().splitlines()[-1] == hours


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DASHBOARD_RPO_HOURS": "0"}, "DASHBOARD_RPO_HOURS must be at least 1"),
        ({"DASHBOARD_AT_RISK_HOURS": "soon"}, "DASHBOARD_AT_RISK_HOURS must be a whole number"),
    ],
)
def test_it_refuses_a_bad_rpo_setting_at_start(tmp_path, env, message):
    result = manage(tmp_path, "check", **env)

    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr


# --- Pages -----------------------------------------------------------------------------


def user_with(role: str, django_user_model, name: str):
    with roles.no_default_role():
        user = django_user_model.objects.create_user(name, password=PASSWORD)
    user.groups.add(Group.objects.get(name=role))
    return user


@pytest.fixture
def operator_client(client, django_user_model):
    client.force_login(user_with(roles.OPERATOR, django_user_model, "dba"))
    return client


@pytest.fixture
def viewer_client(client, django_user_model):
    client.force_login(user_with(roles.VIEWER, django_user_model, "support"))
    return client


def test_it_lists_the_policies_and_the_default_to_a_viewer(viewer_client, django_assert_max_num_queries):
    instance = make_instance(name="orders-cache", tags={"env": "prod"})
    make_instance(tags={"env": "prod"})
    policy(Scope.TAG, 4, tag_key="env", tag_value="prod", reason="payments")
    policy(Scope.INSTANCE, 2, instance=instance)
    recompute_rpo()

    with django_assert_max_num_queries(6):
        response = viewer_client.get("/rpo/")

    assert response.status_code == 200
    html = response.text
    assert "1 d 2 h" in html  # the default, 26 h
    assert "env=prod" in html and "payments" in html and "orders-cache" in html
    assert "/rpo/new/" not in html and "Delete" not in html  # a Viewer changes nothing


def test_it_answers_403_to_a_viewer_who_posts(viewer_client):
    existing = policy(Scope.REGION, 4, region="cn-north-4")
    data = {"scope": "region", "region": "x", "hours": "4"}

    assert viewer_client.post("/rpo/new/", data).status_code == 403
    assert viewer_client.get("/rpo/new/").status_code == 403
    assert viewer_client.post(f"/rpo/{existing.pk}/", data).status_code == 403
    assert viewer_client.post(f"/rpo/{existing.pk}/delete/").status_code == 403
    assert RpoPolicy.objects.get().region == "cn-north-4"


def test_it_lets_an_operator_add_change_and_delete_a_policy(operator_client):
    instance = make_instance(instance_id="inst-1", region="cn-north-4")

    response = operator_client.post(
        "/rpo/new/", {"scope": "instance", "instance": "inst-1", "hours": "6", "reason": "INC-7"}, follow=True
    )
    created = RpoPolicy.objects.get()
    assert (created.instance, created.max_age, created.created_by.username) == (instance, 6 * HOUR, "dba")
    assert "RPO policy added" in response.text
    instance.refresh_from_db()
    assert instance.rpo == 6 * HOUR

    operator_client.post(f"/rpo/{created.pk}/", {"scope": "instance", "instance": "inst-1", "hours": "9"})
    instance.refresh_from_db()
    assert instance.rpo == 9 * HOUR

    response = operator_client.post(f"/rpo/{created.pk}/delete/", follow=True)
    assert "RPO policy deleted" in response.text
    assert not RpoPolicy.objects.exists()
    instance.refresh_from_db()
    assert instance.rpo is None


def test_it_only_deletes_by_post(operator_client):
    existing = policy(Scope.REGION, 4, region="cn-north-4")

    assert operator_client.get(f"/rpo/{existing.pk}/delete/").status_code == 405
    assert RpoPolicy.objects.exists()


def test_it_needs_the_csrf_token(django_user_model):
    from django.test import Client

    csrf_client = Client(enforce_csrf_checks=True)
    csrf_client.force_login(user_with(roles.OPERATOR, django_user_model, "dba"))

    response = csrf_client.post("/rpo/new/", {"scope": "region", "region": "x", "hours": "4"})

    assert response.status_code == 403
    assert not RpoPolicy.objects.exists()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"scope": "region", "region": "", "hours": "4"}, "Name the region"),
        ({"scope": "tag", "tag_key": "", "tag_value": "prod", "hours": "4"}, "Name the tag key"),
        ({"scope": "instance", "instance": "nope", "hours": "4"}, "No DCS instance with the id “nope”"),
        ({"scope": "region", "region": "x", "hours": "0"}, "greater than or equal to 1"),
        ({"scope": "region", "region": "x", "hours": "-2"}, "greater than or equal to 1"),
        ({"scope": "region", "region": "x", "hours": "soon"}, "Enter a whole number"),
        ({"scope": "galaxy", "region": "x", "hours": "4"}, "Select a valid choice"),
        ({"scope": "region", "region": "a\x00b", "hours": "4"}, "Null characters are not allowed"),
    ],
)
def test_it_refuses_bad_input_with_a_clear_message(operator_client, data, message):
    response = operator_client.post("/rpo/new/", data)

    assert response.status_code == 400
    assert message in response.content.decode()
    assert not RpoPolicy.objects.exists()


def test_it_rejects_a_duplicate_with_a_message(operator_client):
    policy(Scope.TAG, 4, tag_key="env", tag_value="prod")

    response = operator_client.post(
        "/rpo/new/", {"scope": "tag", "tag_key": "env", "tag_value": "prod", "hours": "2"}
    )

    assert response.status_code == 400
    assert "There is a policy for this tag already" in response.text
    assert RpoPolicy.objects.get().max_age == 4 * HOUR


def test_it_lets_a_policy_be_saved_unchanged(operator_client):
    existing = policy(Scope.REGION, 4, region="cn-north-4")

    response = operator_client.post(
        f"/rpo/{existing.pk}/", {"scope": "region", "region": "cn-north-4", "hours": "5"}
    )

    assert response.status_code == 302
    assert RpoPolicy.objects.get().max_age == 5 * HOUR


def test_it_answers_404_for_an_unknown_policy(operator_client):
    assert operator_client.get("/rpo/999/").status_code == 404


def test_it_shows_rpo_source_and_overdue_on_the_overview_most_overdue_first(admin_client):
    now = timezone.now()
    a = make_instance(name="a-slightly", tags={"env": "prod"})
    make_record(a, status="succeed", created_at=now - 5 * HOUR)  # 1 h over 4 h
    b = make_instance(name="b-badly")
    make_record(b, status="succeed", created_at=now - 36 * HOUR)  # 10 h over 26 h
    rpo_policy_save(policy=RpoPolicy(scope=Scope.TAG, tag_key="env", tag_value="prod", max_age=4 * HOUR))

    html = admin_client.get("/").text
    names = re.findall(r'class="instance__name" href="[^"]+">([^<]+)</a>', html)
    assert names == ["b-badly", "a-slightly"]
    assert "tag env=prod" in html and ">10 h<" in html

    by_name = admin_client.get("/", {"risk_sort": "name"}).text
    assert re.findall(r'class="instance__name" href="[^"]+">([^<]+)</a>', by_name) == [
        "a-slightly",
        "b-badly",
    ]

    # The other orders keep the period and the scope.
    kept = admin_client.get("/", {"window": "7d", "region": "cn-north-4"}).text
    assert 'href="?window=7d&amp;region=cn-north-4&amp;risk_sort=name#risk-title"' in kept

    bad = admin_client.get("/", {"risk_sort": "<b>"})
    assert bad.status_code == 200
    assert "is not an order of the at-risk list" in bad.text and "<b>" not in bad.text.split("</header>")[-1]


def exported(response) -> list[dict]:
    return json.loads(b"".join(response.streaming_content))


def test_it_sorts_the_fleet_by_over_rpo_and_filters_by_policy(admin_client):
    now = timezone.now()
    far = make_instance(name="far")
    make_record(far, status="succeed", created_at=now - 50 * HOUR)
    near = make_instance(name="near", tags={"env": "prod"})
    make_record(near, status="succeed", created_at=now - 5 * HOUR)
    fine = make_instance(name="fine")
    make_record(fine, status="succeed", created_at=now - HOUR)
    rpo_policy_save(policy=RpoPolicy(scope=Scope.TAG, tag_key="env", tag_value="prod", max_age=4 * HOUR))

    response = admin_client.get("/instances/", {"sort": "-overdue", "_export": "json"})
    rows = exported(response)
    assert [row["instance_id"] for row in rows] == [far.instance_id, near.instance_id, fine.instance_id]
    assert rows[1]["rpo_seconds"] == 4 * 3600 and rows[1]["rpo_source"] == "tag env=prod"
    assert rows[1]["overdue_seconds"] == pytest.approx(3600, abs=60)
    assert rows[0]["rpo_source"] == "default" and rows[2]["overdue_seconds"] is None
    header = admin_client.get("/instances/", {"_export": "csv"}).streaming_content
    assert b"RPO (s),RPO from,Over RPO by (s)" in b"".join(header)

    filtered = exported(admin_client.get("/instances/", {"rpo_policy": "yes", "_export": "json"}))
    assert [row["instance_id"] for row in filtered] == [near.instance_id]

    page = admin_client.get("/instances/", {"sort": "-overdue"})
    assert page.status_code == 200 and "Over RPO by" in page.text


def test_it_shows_the_instances_rpo_on_its_page(admin_client):
    instance = make_instance(name="orders", instance_id="inst-9", region="eu-west-0")
    make_record(instance, status="succeed", created_at=timezone.now() - 3 * HOUR)
    rpo_policy_save(policy=RpoPolicy(scope=Scope.REGION, region="eu-west-0", max_age=2 * HOUR))

    html = admin_client.get("/instances/inst-9/").text

    assert "region eu-west-0" in html
    assert "At risk: the last successful backup was" in html and "more than 2 hours ago." in html


def test_it_keeps_the_rpos_when_the_admin_adds_a_policy(admin_client):
    instance = make_instance(region="cn-north-4")

    response = admin_client.post(
        "/admin/backups/rpopolicy/add/",
        {"scope": "region", "region": "cn-north-4", "max_age": "06:00:00", "reason": "admin"},
    )

    assert response.status_code == 302
    assert RpoPolicy.objects.get().created_by.is_superuser
    instance.refresh_from_db()
    assert (instance.rpo, instance.rpo_source) == (6 * HOUR, "region cn-north-4")
    assert admin_client.get("/admin/backups/rpopolicy/").status_code == 200

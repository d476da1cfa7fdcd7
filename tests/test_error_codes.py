"""The error code catalogue (backups.dcs.error_codes), its page (/errors/), and every code a page shows."""

from __future__ import annotations

import html as html_lib
import re
from pathlib import Path

import pytest
from django.utils import translation

from backups.choices import describe_api_error_code, describe_error_code
from backups.dcs.error_codes import BACKUP, CATALOGUE, DCS, GATEWAY, explain
from tests.factories import make_instance, make_record, make_sync_run

URL = "/errors/"
EN_DASH = "\u2013"  # the contract writes ranges with an en dash
# The API contract, next to the repository on a developer's machine. The
# product never reads it; this test checks the catalogue covers it.
CONTRACT = Path(__file__).resolve().parents[2] / "shared" / "dcs-api.md"


def contract_codes() -> set[str]:
    """Every code in §1.3, §3.2 and §3.3 of the contract, spelled as the catalogue spells it."""
    text = CONTRACT.read_text(encoding="utf-8")
    sections = (
        text[text.index("### 1.3") : text.index("## 2.")] + text[text.index("### 3.2") : text.index("## 4.")]
    )
    codes = {f"dcs.08.{n:04d}" for n in range(1, 9)} if "dcs.08.0001` to `dcs.08.0008" in sections else set()
    codes |= {m.lower() for m in re.findall(r"dcs\.08\.\d{4}", sections, re.I)}
    for first, last in re.findall(r"DCS\.(\d{4})[\u2013-]DCS\.(\d{4})", sections):
        codes |= {f"DCS.{n}" for n in range(int(first), int(last) + 1)}
    # The busy codes Terraform retries are quoted as bare numbers after "DCS.4026,".
    busy = re.search(r"TF treats these 400 codes[^:]*: ([^(]*)\(", sections)
    if busy:
        for part in re.findall(r"\d{4}(?:\u2013\d{4})?", busy.group(1)):
            first, _, last = part.partition(EN_DASH)
            codes |= {f"DCS.{n}" for n in range(int(first), int(last or first) + 1)}
    codes |= set(re.findall(r"DCS\.\d{4}", sections))
    codes |= set(re.findall(r"\b111\d{6}\b", sections))
    for first, rest in re.findall(r"(APIG\.\d{4})((?:\s*/\s*\d{4})*)", sections):
        codes.add(first)
        codes |= {f"APIG.{n}" for n in re.findall(r"\d{4}", rest)}
    return codes


# --- The catalogue ------------------------------------------------------------------------


@pytest.mark.skipif(not CONTRACT.exists(), reason="the API contract (../shared/dcs-api.md) is not here")
def test_it_explains_every_code_of_the_api_contract():
    codes = contract_codes()
    missing = sorted(code for code in codes if explain(code) is None)

    assert len(codes) > 80
    assert missing == []


def test_it_gives_every_code_a_meaning_and_a_next_step():
    for explanation in CATALOGUE:
        assert str(explanation.meaning).strip(), explanation.code
        assert str(explanation.next_step).strip(), explanation.code
        assert explanation.family in (BACKUP, DCS, GATEWAY)


def test_it_lists_each_code_once():
    spellings = [code.upper() for e in CATALOGUE for code in (e.code, *e.aliases)]

    assert len(spellings) == len(set(spellings))


@pytest.mark.parametrize(
    ("asked", "code"),
    [
        ("dcs.08.0002", "dcs.08.0002"),
        ("  DCS.08.0002\n", "dcs.08.0002"),
        ("dcs.3022", "DCS.3022"),
        ("111404022", "DCS.3022"),
        (" 111400062 ", "DCS.4062"),
        ("apig.0308", "APIG.0308"),
        ("APIGW.0301", "APIG.0301"),
        ("apigw. 0301", "APIG.0301"),
        ("DCS.4115", "DCS.4115"),
    ],
)
def test_it_finds_a_code_whatever_its_case_and_spacing(asked, code):
    assert explain(asked).code == code


@pytest.mark.parametrize("asked", ["", None, "   ", "DCS.0000", "APIG.9999", "dcs.08.0009", "<b>", "111"])
def test_it_knows_nothing_of_other_codes(asked):
    assert explain(asked) is None


def test_it_marks_the_busy_codes_as_worth_a_retry():
    assert explain("DCS.4096").transient
    assert explain("APIG.0308").transient
    assert not explain("APIG.0301").transient


def test_it_keeps_the_table_cells_meanings():
    assert describe_error_code("DCS.08.0002") == "The backup timed out."
    assert "rate limit" in describe_api_error_code("APIG.0308")
    assert describe_api_error_code("DCS.0000") == ""


def test_it_translates_the_meanings_it_had_before():
    with translation.override("zh-hans"):
        assert describe_error_code("dcs.08.0002") == "备份超时。"


# --- The page ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_it_lists_every_code_on_one_page(admin_client, django_assert_max_num_queries):
    with django_assert_max_num_queries(2):
        html = admin_client.get(URL).text

    for explanation in CATALOGUE:
        assert f'id="code-{explanation.code}"' in html
    assert "What to do" in html
    assert "error-codes__row--found" not in html


@pytest.mark.django_db
def test_it_highlights_the_code_asked_for(admin_client):
    html = admin_client.get(URL, {"code": " apigw.0308 "}).text

    found = re.findall(r'<tr id="code-([^"]+)" class="error-codes__row--found"', html)
    assert found == ["APIG.0308"]
    assert 'href="#code-APIG.0308"' in html
    assert "not in our catalogue" not in html


@pytest.mark.django_db
def test_it_says_an_unknown_code_is_not_in_the_catalogue_and_escapes_it(admin_client):
    evil = '"><script>alert(1)</script>'

    response = admin_client.get(URL, {"code": evil})

    assert response.status_code == 200
    assert "<script>alert(1)" not in response.text
    assert "is not in our catalogue" in response.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in response.text
    assert "error-codes__row--found" not in response.text


@pytest.mark.django_db
def test_it_is_open_to_viewers_and_read_only(client, django_user_model):
    client.force_login(django_user_model.objects.create_user("viewer"))

    assert client.get(URL).status_code == 200
    assert client.post(URL).status_code == 405


# --- The code where pages show it ------------------------------------------------------------


def help_link(html: str, code: str) -> tuple[str, str]:
    """(href, title) of the "?" beside ``code``."""
    match = re.search(r'<a class="error-code__help" href="([^"]*)" title="([^"]*)"', html)
    assert match, f"no help link for {code}"
    return html_lib.unescape(match.group(1)), html_lib.unescape(match.group(2))


@pytest.mark.django_db
def test_it_links_a_failed_backups_code_in_the_list_to_its_explanation(admin_client):
    make_record(status="failed", error_code="dcs.08.0002")

    html = admin_client.get("/backups/").text
    href, title = help_link(html, "dcs.08.0002")

    assert href == "/errors/?code=dcs.08.0002#code-dcs.08.0002"
    assert title == str(explain("dcs.08.0002").next_step)
    assert '<span class="error-code__meaning">The backup timed out.</span>' in html
    highlighted = admin_client.get(href).text
    assert re.findall(r'<tr id="code-([^"]+)" class="error-codes__row--found"', highlighted) == [
        "dcs.08.0002"
    ]


@pytest.mark.django_db
def test_it_explains_the_code_on_the_backup_page(admin_client):
    record = make_record(status="failed", error_code="DCS.08.0008")

    html = admin_client.get(f"/backups/{record.backup_id}/").text

    assert "The scheduled backup did not run" in html
    assert html_lib.escape(str(explain("dcs.08.0008").next_step), quote=False) in html
    assert help_link(html, "DCS.08.0008")[0] == "/errors/?code=DCS.08.0008#code-dcs.08.0008"


@pytest.mark.django_db
def test_it_links_an_unknown_code_to_the_catalogue_as_received(admin_client):
    record = make_record(status="failed", error_code="dcs.99.<x>")

    html = admin_client.get(f"/backups/{record.backup_id}/").text
    href, _title = help_link(html, "dcs.99.<x>")

    assert "Error code not documented" in html
    assert "dcs.99.<x>" not in html
    assert href == "/errors/?code=dcs.99.%3Cx%3E"
    assert "“dcs.99.&lt;x&gt;” is not in our catalogue" in admin_client.get(href).text


@pytest.mark.django_db
def test_it_explains_a_sync_errors_code(admin_client):
    run = make_sync_run(outcome="partial", error_count=1)
    run.sync_errors.create(
        scope=make_instance().instance_id,
        error="DcsClientError",
        error_msg="The throttling threshold has been reached",
        status=429,
        error_code="APIG.0308",
        occurred_at=run.started_at,
    )

    html = admin_client.get(f"/sync/{run.pk}/").text
    href, title = help_link(html, "APIG.0308")

    assert href == "/errors/?code=APIG.0308#code-APIG.0308"
    assert "DCS_RATE_LIMIT" in title
    assert 'href="/errors/">every error code</a>' in html

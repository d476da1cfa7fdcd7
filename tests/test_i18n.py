"""English and Simplified Chinese: the switch, the browser's language, the catalogue."""

from __future__ import annotations

import ast
import gettext
import re
from pathlib import Path

import pytest
from django.conf import settings
from django.core.cache import cache
from django.utils import translation

from backups.choices import BackupFormat, BackupStatus, BackupType, SyncOutcome, describe_error_code
from tests.factories import make_record

LOCALE = Path(settings.BASE_DIR) / "locale" / "zh_Hans" / "LC_MESSAGES"
PO = LOCALE / "django.po"
MO = LOCALE / "django.mo"
LOGIN_URL = "/accounts/login/"
SET_LANGUAGE_URL = "/preferences/language/"
ZH = {"HTTP_ACCEPT_LANGUAGE": "zh-CN,zh;q=0.9,en;q=0.5"}


@pytest.fixture(autouse=True)
def _fresh_cache():
    # The backup list caches its row count for a minute; a count left over
    # from another test would hide this test's rows.
    cache.clear()


# --- The browser's language and the switch -------------------------------


@pytest.mark.django_db
def test_it_speaks_english_by_default(admin_client):
    html = admin_client.get("/backups/", HTTP_ACCEPT_LANGUAGE="en-GB").text

    assert '<html lang="en">' in html
    assert "Skip to main content" in html


@pytest.mark.django_db
def test_it_follows_the_browsers_language_on_the_list(admin_client):
    make_record(status="succeed", backup_type="manual")

    html = admin_client.get("/backups/", **ZH).text

    assert '<html lang="zh-hans">' in html
    assert "跳到主要内容" in html  # skip link
    assert "备份记录" in html  # the table's caption
    assert ">成功</span>" in html  # the status badge
    assert ">手动备份</span>" in html  # the type badge
    assert "时间以 UTC 显示。" in html  # the footer
    assert "Skip to main content" not in html


@pytest.mark.django_db
def test_it_follows_the_browsers_language_on_the_login_page(client):
    html = client.get(LOGIN_URL, **ZH).text

    assert '<html lang="zh-hans">' in html
    assert "登录后查看您的 DCS 实例的备份。" in html
    assert "用户名" in html  # Django's own catalogue translates the form
    assert "Sign in" not in html


@pytest.mark.django_db
def test_it_switches_language_before_login(client):
    response = client.post(SET_LANGUAGE_URL, {"language": "zh-hans", "next": LOGIN_URL})

    assert response.status_code == 302
    assert response.url == LOGIN_URL
    assert client.cookies[settings.LANGUAGE_COOKIE_NAME].value == "zh-hans"
    assert "登录后查看您的 DCS 实例的备份。" in client.get(LOGIN_URL, HTTP_ACCEPT_LANGUAGE="en").text


@pytest.mark.django_db
def test_it_switches_language_when_signed_in(admin_client):
    make_record()
    admin_client.post("/i18n/setlang/", {"language": "zh-hans", "next": "/backups/"})

    assert "跳到主要内容" in admin_client.get("/backups/", HTTP_ACCEPT_LANGUAGE="en").text

    admin_client.post(SET_LANGUAGE_URL, {"language": "en", "next": "/backups/"})

    assert "Skip to main content" in admin_client.get("/backups/", **ZH).text


@pytest.mark.django_db
def test_it_does_not_follow_an_off_site_next_when_switching_language(client):
    response = client.post(SET_LANGUAGE_URL, {"language": "zh-hans", "next": "https://evil.example/"})

    assert response.status_code == 302
    assert "evil.example" not in response.url


@pytest.mark.django_db
def test_it_has_a_labelled_language_switch_in_the_header(client):
    html = client.get(LOGIN_URL).text
    form = html.split(f'action="{SET_LANGUAGE_URL}"', 1)[1].split("</form>", 1)[0]

    assert 'name="csrfmiddlewaretoken"' in form
    assert '<label class="prefs__label" for="pref-language">' in form
    assert '<select id="pref-language" name="language"' in form
    assert '<option value="en" lang="en" selected>English</option>' in form
    assert '<option value="zh-hans" lang="zh-hans">简体中文</option>' in form


# --- The enums and error codes ----------------------------------------------


@pytest.mark.parametrize(
    ("label", "chinese"),
    [
        (BackupStatus.WAITING.label, "等待中"),
        (BackupStatus.BACKUPING.label, "备份中"),
        (BackupStatus.SUCCEED.label, "成功"),
        (BackupStatus.FAILED.label, "失败"),
        (BackupStatus.EXPIRED.label, "已过期"),
        (BackupStatus.DELETED.label, "已删除"),
        (BackupType.AUTO.label, "自动备份"),
        (BackupType.MANUAL.label, "手动备份"),
        (BackupFormat.RDB.label, "RDB"),
        (SyncOutcome.PARTIAL.label, "部分成功"),
    ],
)
def test_it_translates_the_enums(label, chinese):
    with translation.override("zh-hans"):
        assert str(label) == chinese


def test_it_translates_every_error_code():
    with translation.override("zh-hans"):
        assert describe_error_code("dcs.08.0002") == "备份超时。"
        for code in (f"dcs.08.{n:04d}" for n in range(1, 9)):
            meaning = describe_error_code(code)
            assert meaning and not re.search(r"[A-Za-z]{4,}", meaning.replace("AK/SK", "")), code


# --- The catalogue ------------------------------------------------------------


def unquote(text: str) -> str:
    return ast.literal_eval(text)


def read_po(path: Path) -> list[dict]:
    """The entries of a .po file: their flags, msgid(s) and msgstr(s).

    Just enough of the format for these checks (polib is not a dependency).
    """
    entries = []
    for block in path.read_text(encoding="utf-8").strip().split("\n\n"):
        entry: dict = {"flags": set(), "obsolete": False}
        key = None
        for line in block.splitlines():
            if line.startswith("#~"):
                entry["obsolete"] = True
            elif line.startswith("#,"):
                entry["flags"] |= {flag.strip() for flag in line[2:].split(",")}
            elif line.startswith("#"):
                continue
            elif match := re.match(r"^(msgctxt|msgid_plural|msgid|msgstr(?:\[\d+\])?) (\".*\")$", line):
                key = match[1]
                entry[key] = unquote(match[2])
            elif line.startswith('"') and key:
                entry[key] += unquote(line)
        entries.append(entry)
    return entries


ENTRIES = read_po(PO)
MESSAGES = [e for e in ENTRIES if e.get("msgid") and not e["obsolete"]]


def test_it_has_a_catalogue_with_a_clean_header():
    header = next(e for e in ENTRIES if e.get("msgid") == "")

    assert "fuzzy" not in header["flags"]
    assert "Language: zh_Hans" in header["msgstr"]
    assert "Plural-Forms: nplurals=1; plural=0;" in header["msgstr"]
    assert len(MESSAGES) > 100


def test_it_has_no_untranslated_or_fuzzy_entry():
    untranslated = [
        e["msgid"] for e in MESSAGES if not all(v for k, v in e.items() if k.startswith("msgstr"))
    ]
    fuzzy = [e["msgid"] for e in MESSAGES if "fuzzy" in e["flags"]]

    assert untranslated == []
    assert fuzzy == []


def test_it_keeps_every_placeholder_in_the_translations():
    placeholder = re.compile(r"%\(\w+\)[sd]")
    for entry in MESSAGES:
        wanted = set(placeholder.findall(entry["msgid"])) | set(
            placeholder.findall(entry.get("msgid_plural", ""))
        )
        for key in (k for k in entry if k.startswith("msgstr")):
            assert set(placeholder.findall(entry[key])) <= wanted, entry["msgid"]
            if "msgid_plural" not in entry:
                assert set(placeholder.findall(entry[key])) == wanted, entry["msgid"]


def test_it_ships_the_compiled_catalogue_of_this_po():
    with MO.open("rb") as handle:
        compiled = gettext.GNUTranslations(handle)

    for entry in MESSAGES:
        if "msgid_plural" in entry:
            assert compiled.ngettext(entry["msgid"], entry["msgid_plural"], 2) == entry["msgstr[0]"]
        else:
            assert compiled.gettext(entry["msgid"]) == entry["msgstr"], "run compilemessages"


def template_strings() -> set[str]:
    """The literal strings of ``{% translate "..." %}`` in our templates."""
    found = set()
    for path in (Path(settings.BASE_DIR) / "templates").rglob("*.html"):
        for _quote, text in re.findall(r"{%\s*(?:translate|trans)\s+([\"'])(.*?)\1", path.read_text()):
            found.add(text)
    return found


def test_it_has_every_template_string_in_the_catalogue():
    missing = template_strings() - {e["msgid"] for e in MESSAGES}

    assert not missing, f"run makemessages and translate: {sorted(missing)}"


GETTEXT_CALLS = {"_", "gettext", "gettext_lazy", "ngettext", "pgettext", "pgettext_lazy"}


def python_strings() -> set[str]:
    """The literal first argument of every gettext call (``_("...")``) in our Python code."""
    found = set()
    for folder in ("backups", "dashboard"):
        for path in (Path(settings.BASE_DIR) / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
                if (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Name)
                    and node.func.id in GETTEXT_CALLS
                    and node.args
                    and isinstance(node.args[0], ast.Constant)
                    and isinstance(node.args[0].value, str)
                ):
                    found.add(node.args[0].value)
    return found


def test_it_has_every_python_string_in_the_catalogue():
    strings = python_strings()
    missing = strings - {e["msgid"] for e in MESSAGES}

    assert len(strings) > 200
    assert not missing, f"run makemessages and translate: {sorted(missing)}"

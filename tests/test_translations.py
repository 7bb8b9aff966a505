"""The Spanish catalogues are complete and sound, and staff pages come out in Spanish.

The catalogues are read as text (the .mo files are built from them by ``make messages``; the
page tests need those, as the reporter site's do)."""

import functools
import html
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from django.conf import settings
from django.urls import reverse

from cases.services import case_create

CATALOGUES = sorted((Path(settings.BASE_DIR) / "locale" / "es" / "LC_MESSAGES").glob("*.po"))
SPANISH = {"HTTP_ACCEPT_LANGUAGE": "es"}
ENGLISH = {"HTTP_ACCEPT_LANGUAGE": "en"}


@dataclass
class Message:
    msgid: str = ""
    msgid_plural: str | None = None
    msgstr: dict[int, str] = field(default_factory=dict)
    flags: set[str] = field(default_factory=set)
    line: int = 0


def _unquote(text: str) -> str:
    body = text.strip()[1:-1]
    escapes = {"n": "\n", "t": "\t", '"': '"', "\\": "\\"}
    return re.sub(r"\\(.)", lambda m: escapes.get(m.group(1), m.group(0)), body)


def read_catalogue(path: Path) -> list[Message]:
    """The messages of a .po file, header and obsolete (#~) entries left out."""
    messages: list[Message] = []
    current, target = Message(), None
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            if target is not None:
                messages.append(current)
            current, target = Message(), None
        elif line.startswith("#,"):
            current.flags |= {flag.strip() for flag in line[2:].split(",")}
        elif line.startswith("#"):
            continue
        elif line.startswith('"'):
            value = _unquote(line)
            if target == "msgid":
                current.msgid += value
            elif target == "msgid_plural":
                current.msgid_plural = (current.msgid_plural or "") + value
            elif isinstance(target, int):
                current.msgstr[target] += value
        else:
            keyword, _, value = line.partition(" ")
            if keyword == "msgid":
                current.line, target, current.msgid = number, "msgid", _unquote(value)
            elif keyword == "msgid_plural":
                target, current.msgid_plural = "msgid_plural", _unquote(value)
            elif keyword.startswith("msgstr"):
                index = int(keyword[7:-1]) if "[" in keyword else 0
                target, current.msgstr[index] = index, _unquote(value)
    if target is not None:
        messages.append(current)
    return [m for m in messages if m.msgid]


PERCENT = re.compile(r"%(?:\((\w+)\))?[-#0 +]*\d*(?:\.\d+)?[sdifr%]")
BRACES = re.compile(r"\{\w*\}")
TAG = re.compile(r"</?[a-zA-Z][^>]*>")


def placeholders(text: str) -> Counter:
    """What a translation must carry over unchanged: %-placeholders (and %%), {name} fields
    and HTML tags with their attributes."""
    found = [m.group(0) for m in PERCENT.finditer(text)]
    found += BRACES.findall(text) + TAG.findall(text)
    return Counter(found)


@functools.cache
def all_messages() -> list[tuple[str, Message]]:
    return [(path.name, m) for path in CATALOGUES for m in read_catalogue(path)]


def test_the_spanish_catalogues_exist_and_are_read():
    names = {path.name for path in CATALOGUES}
    assert names == {"django.po", "djangojs.po"}
    messages = all_messages()
    assert len(messages) > 400
    plural = next(m for _, m in messages if m.msgid == "%(count)d other partner")
    assert plural.msgid_plural == "All %(count)d other partners"
    assert sorted(plural.msgstr) == [0, 1, 2]  # Spanish has three forms: one, millions, other


def test_every_message_is_translated_and_none_is_fuzzy():
    problems = [
        f"{name}:{m.line} {m.msgid!r}"
        for name, m in all_messages()
        if "fuzzy" in m.flags or not m.msgstr or any(not s for s in m.msgstr.values())
    ]
    assert not problems, "untranslated or fuzzy:\n" + "\n".join(problems)


def test_plural_messages_have_every_spanish_form():
    # Plural-Forms: nplurals=3 (1; exact millions; other), as Django's own Spanish catalogue.
    problems = [
        f"{name}:{m.line} {m.msgid!r}"
        for name, m in all_messages()
        if m.msgid_plural is not None and sorted(m.msgstr) != [0, 1, 2]
    ]
    assert not problems


def test_translations_keep_the_placeholders_and_tags_of_the_english():
    problems = []
    for name, m in all_messages():
        for index, translation in m.msgstr.items():
            english = m.msgid if index == 0 or m.msgid_plural is None else m.msgid_plural
            if placeholders(translation) != placeholders(english):
                problems.append(f"{name}:{m.line} {english!r} -> {translation!r}")
    assert not problems, "placeholders differ:\n" + "\n".join(problems)


def test_the_placeholder_check_catches_a_broken_translation():
    assert placeholders("Paso %(step)s de %(total)s") == placeholders("Step %(step)s of %(total)s")
    assert placeholders("Paso %(paso)s de %(total)s") != placeholders("Step %(step)s of %(total)s")
    assert placeholders("el 90 %% en %(p90)s") == placeholders("90%% within %(p90)s")
    assert placeholders("{key}") != placeholders("{clave}")
    assert placeholders('<a href="/x">a</a>') != placeholders('<a href="/y">a</a>')


# ------------------------------------------------------------------------------------------------
# Staff pages in Spanish
# ------------------------------------------------------------------------------------------------


def page_text(response) -> str:
    """The text a person reads: tags dropped, entities decoded, spaces collapsed."""
    body = re.sub(
        r"<(script|style)\b.*?</\1>|<!--.*?-->", " ", response.content.decode(), flags=re.S
    )
    return re.sub(r"\s+", " ", html.unescape(TAG.sub(" ", body)))


def english_leftovers(english: str, spanish: str) -> list[str]:
    """Catalogue phrases shown on the English page that the Spanish page still shows in English."""
    phrases = {
        m.msgid
        for _, m in all_messages()
        if m.msgid_plural is None
        and " " in m.msgid
        and m.msgstr.get(0) not in ("", m.msgid)
        and not placeholders(m.msgid)
    }
    return sorted(p for p in phrases if p in english and p in spanish)


def test_the_leftover_check_finds_a_phrase_left_in_english():
    english = "Cases by status. Show the data. Take It Down"
    assert english_leftovers(english, "Casos por estado. Show the data. Take It Down") == [
        "Show the data"
    ]
    assert english_leftovers(english, "Casos por estado. Ver los datos. Take It Down") == []


@pytest.fixture
def case(default_list, image_item):
    case, _pin = case_create(reporter="self", under_18_when_made=True, items=[image_item])
    return case


@pytest.fixture
def staff_client(client, staff_user):
    client.force_login(staff_user)
    return client


def test_the_case_queue_is_in_spanish(staff_client, case):
    url = reverse("admin:cases_case_changelist")
    spanish = staff_client.get(url, **SPANISH)
    assert spanish.status_code == 200
    assert '<html lang="es"' in spanish.text
    text = page_text(spanish)
    for phrase in (
        "Por asignación",  # a filter's title, in Django's "By ..." wording
        "Asignados a mí",
        "Menos de un día",
        "Con casi duplicados",
        "Aceptar: publicar los hashes",
        "No aceptar (con un motivo)",
        "Marcar como duplicado de otro caso",
        "Recibido",  # the case's status
        "1 img.",  # the files column
        "tidportal: equipo",  # the site's header
    ):
        assert phrase in text, phrase
    assert case.case_number in text
    leftovers = english_leftovers(page_text(staff_client.get(url, **ENGLISH)), text)
    assert not leftovers


def test_a_case_page_is_in_spanish(staff_client, case):
    url = reverse("admin:cases_case_change", args=[case.pk])
    spanish = page_text(staff_client.get(url, **SPANISH))
    for phrase in (
        "Decisión",
        "Casi duplicados en otros casos y en entradas de listas",
        "Notas internas (nunca se muestran a quien denuncia)",
        "Ningún otro caso tiene casi duplicados de estos archivos.",
        "Ninguna plataforma participante ha notificado todavía una coincidencia.",
    ):
        assert phrase in spanish, phrase
    assert not english_leftovers(page_text(staff_client.get(url, **ENGLISH)), spanish)


def test_case_actions_ask_and_answer_in_spanish(staff_client, case):
    url = reverse("admin:cases_case_changelist")
    form = staff_client.post(url, {"action": "reject", "_selected_action": [case.pk]}, **SPANISH)
    text = page_text(form)
    assert "No aceptar estos casos" in text
    assert "¿Por qué no se acepta? Quien denuncia ve esta categoría." in text
    assert "No cumple los requisitos (no era menor cuando se hizo)" in text  # a reason's label
    done = staff_client.post(
        url, {"action": "assign_to_me", "_selected_action": [case.pk]}, follow=True, **SPANISH
    )
    assert "1 caso(s) asignado(s) a ti." in page_text(done)


def test_the_dashboard_is_in_spanish(staff_client, case):
    url = reverse("admin_dashboard")
    spanish = staff_client.get(url, **SPANISH)
    assert spanish.status_code == 200
    text = page_text(spanish)
    for phrase in (
        "Panel de control",
        "Las semanas empiezan el lunes.",
        "1 caso a la espera de una decisión",  # one case waiting: singular
        "Denuncias por día, últimos 30 días",
        "Casos por estado",
        "Tiempo desde la denuncia hasta la decisión",
        "Todavía no hay decisiones.",
    ):
        assert phrase in text, phrase
    assert not english_leftovers(page_text(staff_client.get(url, **ENGLISH)), text)


def test_the_admin_index_links_the_dashboard_in_spanish(staff_client):
    text = page_text(staff_client.get(reverse("admin:index"), **SPANISH))
    assert "Supervisión" in text
    assert "Denuncias, decisiones, coincidencias y retiradas de un vistazo" in text
    assert "Casos" in text and "Listas de hashes" in text

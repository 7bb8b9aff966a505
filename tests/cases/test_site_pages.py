"""The reporter site's pages as the server renders them: content, cookies and the strict CSP."""

import re

import pytest
from django.urls import reverse

from partners.models import Partner
from partners.services import partner_create

PAGES = ["site:home", "site:report", "site:status"]


@pytest.mark.parametrize("name", PAGES)
def test_pages_render_in_english_and_spanish(client, db, name):
    english = client.get(reverse(name), HTTP_ACCEPT_LANGUAGE="en")
    spanish = client.get(reverse(name), HTTP_ACCEPT_LANGUAGE="es")
    assert english.status_code == spanish.status_code == 200
    assert '<html lang="en">' in english.text and '<html lang="es">' in spanish.text
    assert "Take It Down" in english.text
    # The Spanish page is translated, not the English one with another lang attribute.
    assert "Tu privacidad" in client.get(reverse("site:home"), HTTP_ACCEPT_LANGUAGE="es").text


@pytest.mark.parametrize("name", PAGES)
def test_pages_satisfy_the_strict_content_security_policy(client, db, name):
    response = client.get(reverse(name))
    policy = response["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "style-src 'self'" in policy
    html = response.text
    # No inline script, style block, style attribute or event handler attribute anywhere.
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html)
    assert "<style" not in html
    assert not re.search(r"\sstyle=", html)
    assert not re.search(r"\son[a-z]+=", html)
    # Nothing loaded from elsewhere: every src and stylesheet is a path on this site.
    for url in re.findall(r'(?:src|href)="([^"]+)"', html):
        if url.startswith("http"):
            assert re.search(r'<a [^>]*href="' + re.escape(url), html), url  # links only


@pytest.mark.parametrize("name", ["site:report", "site:status"])
def test_pages_that_call_the_api_set_the_csrf_cookie(client, db, name):
    response = client.get(reverse(name))
    assert "csrftoken" in response.cookies
    # The scripts read it, so it cannot be HttpOnly.
    assert not response.cookies["csrftoken"]["httponly"]


def test_the_landing_page_names_active_partners_only(client, default_list):
    partner_create(name="Photo Site", readable_lists=[default_list])
    suspended = partner_create(name="Gone Site", readable_lists=[default_list])
    Partner.objects.filter(pk=suspended.pk).update(status=Partner.Status.SUSPENDED)
    html = client.get(reverse("site:home")).text
    assert "Photo Site" in html and "Gone Site" not in html
    assert "No platforms are taking part yet" not in html


def test_the_landing_page_says_so_when_no_platform_takes_part_yet(client, db):
    html = client.get(reverse("site:home")).text
    assert "No platforms are taking part yet" in html
    assert reverse("site:report") in html and reverse("site:status") in html
    assert "https://stopncii.org/" in html

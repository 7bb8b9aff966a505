"""The partner API's OpenAPI document (/api/v1/schema/): valid, generated without a warning,
limited to the partner APIs, and complete: every operation, field and error described, with
examples of what to send. The docs page is tested in tests/browser/test_api_docs.py; the API's
answers against this document in tests/test_schemathesis.py."""

import json

import pytest
import yaml
from django.core.management import call_command
from django.test import Client
from drf_spectacular.drainage import GENERATOR_STATS
from drf_spectacular.validation import validate_schema

pytestmark = pytest.mark.django_db

METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


@pytest.fixture(scope="module")
def schema(django_db_blocker) -> dict:
    with django_db_blocker.unblock():
        response = Client().get("/api/v1/schema/", {"format": "json"})
    assert response.status_code == 200
    return json.loads(response.content)


def operations(schema: dict):
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield f"{method.upper()} {path}", operation


def test_the_schema_is_valid_openapi_3_in_yaml_and_json(schema):
    served_yaml = Client().get("/api/v1/schema/")
    assert served_yaml["Content-Type"].startswith("application/vnd.oai.openapi")
    assert yaml.safe_load(served_yaml.content) == schema
    assert schema["openapi"].startswith("3.0")
    validate_schema(schema)  # the OpenAPI 3.0 JSON Schema; raises on any violation


def test_the_schema_is_cached_per_format_and_language():
    """Public and unthrottled, so served from the cache; JSON, YAML and each language apart."""
    client = Client()
    first = client.get("/api/v1/schema/", HTTP_ACCEPT="application/json")
    yaml_answer = client.get("/api/v1/schema/")
    again = client.get("/api/v1/schema/", HTTP_ACCEPT="application/json")
    assert "json" in first["Content-Type"]
    assert yaml_answer["Content-Type"].startswith("application/vnd.oai.openapi")
    assert not yaml_answer["Content-Type"].endswith("json")
    assert "max-age=300" in again["Cache-Control"] and again.content == first.content
    assert "Accept" in again["Vary"] and "Accept-Language" in again["Vary"]


def test_the_schema_generates_without_a_warning_or_an_error(tmp_path):
    GENERATOR_STATS.reset()  # count only this generation's warnings
    # Raises SchemaGenerationError on a warning, SchemaValidationError on an invalid document.
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", tmp_path / "api.yaml")
    assert yaml.safe_load((tmp_path / "api.yaml").read_text())["paths"]


def test_the_schema_covers_the_partner_apis_and_not_the_reporter_site(schema):
    paths = set(schema["paths"])
    assert {
        "/api/v1/lists/",
        "/api/v1/lists/{slug}/changes",
        "/api/v1/lists/{slug}/snapshot",
        "/api/v1/lists/{slug}/snapshot/download",
        "/api/v1/keys",
        "/api/v1/matches",
        "/api/v1/matches/{report_id}",
        "/api/v1/lookup",
        "/api/compat/stopncii/v1/FetchHashes",
        "/api/compat/stopncii/v1/SubmitFeedback",
    } <= paths
    assert all(p.startswith(("/api/v1/", "/api/compat/stopncii/v1/")) for p in paths)
    assert not any("schema" in p or "docs" in p for p in paths)


def test_partner_endpoints_declare_their_authentication(schema):
    schemes = schema["components"]["securitySchemes"]
    assert schemes["PartnerKey"] == {**schemes["PartnerKey"], "type": "http", "scheme": "bearer"}
    for name, operation in operations(schema):
        if name == "GET /api/v1/keys":
            assert not operation.get("security"), "the signing keys are public"
            continue
        assert operation.get("security"), f"{name} declares no authentication"
        responses = operation["responses"]
        assert {"401", "403", "429"} <= set(responses), name
        assert "WWW-Authenticate" in responses["401"].get("headers", {}), name
        assert "Retry-After" in responses["429"].get("headers", {}), name


def test_every_operation_says_what_it_does_and_documents_its_errors(schema):
    error_ref = "#/components/schemas/Error"
    for name, operation in operations(schema):
        assert operation.get("summary") and operation.get("description"), name
        responses = operation["responses"]
        assert any(code.startswith("2") for code in responses), name
        for code, response in responses.items():
            assert response.get("description"), f"{name} {code} has no description"
            if code.startswith(("4", "5")):
                content = response["content"]["application/json"]
                assert content["schema"] == {"$ref": error_ref}, f"{name} {code}"
                assert content.get("examples"), f"{name} {code} has no example"
        parameters = operation.get("parameters", [])
        if any(p["in"] == "path" for p in parameters):
            assert "404" in responses, f"{name} has a path parameter but no 404"
        if operation.get("requestBody") or any(p["in"] == "query" for p in parameters):
            assert "400" in responses, f"{name} takes input but documents no 400"
        for parameter in parameters:
            assert parameter.get("description"), f"{name}: parameter {parameter['name']}"


def test_every_request_body_has_an_example(schema):
    for name, operation in operations(schema):
        body = operation.get("requestBody")
        if body is None:
            continue
        for media_type, content in body["content"].items():
            assert content.get("examples") or content.get("example"), f"{name} {media_type}"


def test_every_field_has_a_description(schema):
    undocumented = []
    for component, definition in schema["components"]["schemas"].items():
        for field, spec in definition.get("properties", {}).items():
            if not spec.get("description"):
                undocumented.append(f"{component}.{field}")
    assert undocumented == []


@pytest.mark.parametrize(
    "path", ["/api/v1/lists/not.a.slug/changes", "/api/v1/nothing-here", "/api/compat/x"]
)
def test_an_api_url_that_matches_no_route_answers_in_the_documented_error_shape(path):
    response = Client().get(path)
    assert response.status_code == 404
    assert response.json() == {"error": "not_found", "detail": "Not found.", "fields": {}}


def test_a_site_url_that_matches_no_route_still_gets_a_page():
    response = Client().get("/no-such-page/")
    assert response.status_code == 404 and response["Content-Type"].startswith("text/html")

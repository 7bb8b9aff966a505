"""How the partner API's authentication appears in its OpenAPI document (drf-spectacular).

drf-spectacular finds an extension by the authentication class it describes; this module only has
to be imported before the schema is generated (tidportal/api_docs.py imports it).
"""

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    """``Authorization: Bearer tid_<prefix>_<secret>`` (partners.api.authentication)."""

    target_class = "partners.api.authentication.ApiKeyAuthentication"
    name = "PartnerKey"

    def get_security_definition(self, auto_schema: object) -> dict:
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "tid_<prefix>_<secret>",
            "description": (
                "A partner API key, created by staff in the admin and shown once. Keys carry "
                "scopes (`lists:read`, `matches:write`), may expire and can be revoked at once; "
                "every key of a suspended partner is refused."
            ),
        }

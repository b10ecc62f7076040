from drf_spectacular.extensions import OpenApiAuthenticationExtension


class PartnerBearerScheme(OpenApiAuthenticationExtension):
    target_class = "tests.foreign_host.shop.authentication.PartnerBearerAuthentication"
    name = "PartnerBearer"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "description": "A partner's token."}

"""The adopting project's own routes behave exactly as they did before taskruns was added, and
the two authentication worlds stay apart: a taskruns key is nobody on a host route, a host
token is nobody on a taskruns route, each works on its own.

Collected only with ``--ds=tests.foreign_host.settings`` (tests/conftest.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from taskruns.models import TaskRun

from ..conftest import bearer, run_url
from ..test_schema import EXPECTED_PATCH_COMPONENT
from .shop.models import PartnerToken, Product

ROOT = Path(__file__).resolve().parents[2]
CHECK_SEED_SCHEMA = ROOT.parent / "shared" / "tools" / "check_seed_schema.py"


@pytest.fixture
def products(db):
    return [Product.objects.create(name=f"p{i}", price_cents=100 * i) for i in range(3)]


@pytest.fixture
def host_token(user) -> str:
    return Token.objects.create(user=user).key


@pytest.fixture
def partner_token(user) -> str:
    return PartnerToken.objects.create(user=user, token="partner-secret").token


def token_client(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


def test_the_user_model_is_the_hosts(user):
    assert get_user_model()._meta.label == "shop.Customer"
    assert user.loyalty_tier == "bronze"


def test_a_host_route_keeps_its_token_auth_and_pagination(products, host_token):
    response = token_client(host_token).get("/api/products/")
    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 3 and len(body["results"]) == 2
    assert body["next"].endswith("/api/products/?page=2")


def test_a_host_route_without_credentials_keeps_its_401(products):
    response = APIClient().get("/api/products/")
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Token"
    assert response.json() == {"detail": "Authentication credentials were not provided."}


def test_a_taskruns_key_is_refused_on_a_host_route(products, raw_key):
    response = bearer(raw_key).get("/api/products/")
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Token"
    assert response.json() == {"detail": "Unknown partner token."}
    creating = bearer(raw_key).post("/api/products/", {"name": "x", "price_cents": 1})
    assert creating.status_code == 401
    assert Product.objects.count() == 3


def test_the_hosts_bearer_scheme_works_on_its_routes(products, partner_token):
    assert bearer(partner_token).get("/api/products/").status_code == 200


def test_a_host_bearer_token_is_a_401_on_a_taskruns_route(run, partner_token):
    response = bearer(partner_token).get(run_url(run))
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer realm="api"'
    assert response.json()["errors"][0]["code"] == "not_authenticated"


def test_a_host_token_is_a_401_on_a_taskruns_route(run, host_token):
    response = token_client(host_token).patch(run_url(run), {"state": {"a": 1}}, format="json")
    assert response.status_code == 401
    assert TaskRun.objects.get(pk=run.pk).state == {}


def test_a_taskruns_key_works_on_a_taskruns_route(run, raw_key):
    response = bearer(raw_key).patch(run_url(run), {"state": {"a": 1}})
    assert response.status_code == 200
    assert TaskRun.objects.get(pk=run.pk).state == {"a": 1}


def test_host_errors_keep_drfs_default_shape(host_token):
    response = token_client(host_token).post("/api/products/", {}, format="json")
    assert response.status_code == 400
    assert response.json() == {
        "name": ["This field is required."],
        "price_cents": ["This field is required."],
    }


def test_taskruns_errors_name_their_code_and_field_under_the_hosts_default_handler(run, raw_key):
    response = bearer(raw_key).patch(run_url(run), {"status": "nonsense", "state_remove_keys": ["a", 1]})
    assert response.status_code == 400
    codes = {error["attr"]: error["code"] for error in response.json()["errors"]}
    assert codes == {"status": "invalid_choice", "state_remove_keys.1": "invalid"}


def schema_under(settings_module: str, tmp_path: Path) -> dict:
    out = tmp_path / f"{settings_module}.yml"
    subprocess.run(
        [sys.executable, "manage.py", "spectacular", "--validate", "--fail-on-warn", "--file", str(out)],
        cwd=ROOT,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": settings_module},
        check=True,
        capture_output=True,
    )
    return yaml.safe_load(out.read_text())


@pytest.fixture(scope="module")
def schemas(tmp_path_factory) -> tuple[dict, dict]:
    """The host's schema with taskruns and, as it was, without it."""
    tmp_path = tmp_path_factory.mktemp("schemas")
    return (
        schema_under("tests.foreign_host.settings", tmp_path),
        schema_under("tests.foreign_host.settings_without_taskruns", tmp_path),
    )


def test_the_hosts_operations_are_unchanged_by_taskruns(schemas):
    with_app, without_app = schemas
    for path, operations in without_app["paths"].items():
        assert with_app["paths"][path] == operations, path
    ids = [op["operationId"] for ops in without_app["paths"].values() for op in ops.values()]
    assert "products_list" in ids and "todos_partial_update" in ids


def test_the_hosts_components_are_unchanged_by_taskruns(schemas):
    with_app, without_app = schemas
    for name, component in without_app["components"]["schemas"].items():
        assert with_app["components"]["schemas"][name] == component, name
    assert set(with_app["components"]["schemas"]["Task"]["properties"]) == {"id", "title", "done"}


def test_the_patch_component_is_posthogs_under_the_hosts_component_split(schemas):
    with_app, _ = schemas
    assert with_app["components"]["schemas"]["PatchedTaskRunUpdate"] == EXPECTED_PATCH_COMPONENT
    assert "PatchedTaskRunUpdateRequest" not in with_app["components"]["schemas"]


def test_the_reference_check_passes_in_the_foreign_host():
    result = subprocess.run(
        [sys.executable, str(CHECK_SEED_SCHEMA)],
        cwd=ROOT,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "tests.foreign_host.settings"},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "PatchedTaskRunUpdate: matches the reference" in result.stdout


def test_the_apps_routes_are_mounted_where_the_host_put_them(run, raw_key):
    response = bearer(raw_key).get(f"/v1/projects/{run.project_id}/tasks/{run.task_id}/runs/{run.pk}/")
    assert response.status_code == 200
    assert json.loads(response.content)["id"] == str(run.pk)


def test_the_hosts_filters_do_not_reach_the_apps_lists(run, raw_key):
    response = bearer(raw_key).get(f"/v1/projects/{run.project_id}/tasks/", {"search": "nothing-matches"})
    assert response.status_code == 200 and response.json()["count"] == 1

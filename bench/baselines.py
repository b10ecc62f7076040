"""The baselines the benchmark measures the app against. Not part of the app.

- PostHog-style: DRF, the same authentication and serializers, but a PATCH locks the row
  (SELECT … FOR UPDATE), merges in Python and saves: correct, with the lock held across several
  round trips and application code.
- Naive: the same without the lock — a read-modify-write that loses concurrent keys.
- Floor: a plain Django view (no DRF) doing the key lookup and a single UPDATE: the least this
  stack can do per request.
- DRF floor: the floor's work in a DRF view (the app's authentication, DRF's request, parsing,
  content negotiation and response): what DRF itself costs on top of the floor.
- Floor heartbeat: the key lookup and one plain UPDATE of ``last_heartbeat_at``
  (bench/lifecycle.py).
- Floor, key in its UPDATE: the floor with the trick taskruns used on a run's GET and PATCH
  until it authenticated every request in DRF's authentication step — the key checked by the
  statement itself, not looked up first — to show what giving the trick up costs.
"""

from __future__ import annotations

import json

from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt
from rest_framework import generics
from rest_framework.authentication import get_authorization_header
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from taskruns.access import visible_projects
from taskruns.authentication import ApiKeyAuthentication
from taskruns.keys import PREFIX_LENGTH, find_active_key, hash_key
from taskruns.models import ApiKey, TaskRun
from taskruns.rules import OutputChange, merged_output, merged_state
from taskruns.serializers import TaskRunSerializer, TaskRunUpdateSerializer


class BaselineAPIView(APIView):
    """A DRF baseline authenticates as the app's routes do by default."""

    authentication_classes = [ApiKeyAuthentication]
    permission_classes = [IsAuthenticated]


class PostHogStyleRunView(BaselineAPIView):
    lock = True

    def get(self, request, run_id):
        run = TaskRun.objects.get(pk=run_id, project__in=visible_projects(request))
        return Response(TaskRunSerializer(run, context={"request": request}).data)

    def patch(self, request, run_id):
        serializer = TaskRunUpdateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        changes = serializer.validated_data
        with transaction.atomic():
            runs = TaskRun.objects.filter(project__in=visible_projects(request))
            run = (runs.select_for_update(of=("self",)) if self.lock else runs).get(pk=run_id)
            for name in ("status", "stage", "branch", "error_message"):
                if name in changes:
                    setattr(run, name, changes[name])
            if "output" in changes:
                run.output = merged_output(run.output, OutputChange.of(changes["output"]))
            if "state" in changes or "state_remove_keys" in changes:
                run.state = merged_state(
                    run.state, changes.get("state") or {}, changes.get("state_remove_keys") or []
                )
            run.version += 1
            run.save()
        return Response(TaskRunSerializer(run, context={"request": request}).data)


class NaiveRunView(PostHogStyleRunView):
    lock = False


class PostHogStyleRunList(generics.ListAPIView):
    authentication_classes = [ApiKeyAuthentication]
    permission_classes = [IsAuthenticated]
    serializer_class = TaskRunSerializer
    pagination_class = LimitOffsetPagination

    def get_queryset(self):
        return TaskRun.objects.filter(
            task_id=self.kwargs["task_id"], project__in=visible_projects(self.request)
        ).order_by("-created_at")


def _authenticated(request) -> bool:
    parts = get_authorization_header(request).split()
    return len(parts) == 2 and find_active_key(parts[1].decode()) is not None


def _floor_update(run_id, state: dict) -> dict:
    """The floor's write: one UPDATE merging ``state``, answered with the id and version."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {TaskRun._meta.db_table} SET state = state || %s::jsonb, version = version + 1, "
            "updated_at = now() WHERE id = %s RETURNING id, version",
            [json.dumps(state), run_id],
        )
        run_id, version = cursor.fetchone()
    return {"id": str(run_id), "version": version}


def _floor_read(run_id) -> dict | None:
    return TaskRun.objects.filter(pk=run_id).values().first()


@csrf_exempt
def floor_run(request, run_id):
    if not _authenticated(request):
        return JsonResponse({"detail": "unauthorized"}, status=401)
    if request.method == "GET":
        return JsonResponse(_floor_read(run_id), json_dumps_params={"default": str})
    return JsonResponse(_floor_update(run_id, json.loads(request.body).get("state") or {}))


class DRFFloorRunView(BaselineAPIView):
    def get(self, request, run_id):
        return Response(_floor_read(run_id))

    def patch(self, request, run_id):
        return Response(_floor_update(run_id, request.data.get("state") or {}))


@csrf_exempt
def floor_patch_key_in_statement(request, run_id):
    """The floor's PATCH, its key checked by its UPDATE (by taskruns' own rule) instead of
    looked up first. No row: a bad key or an unknown run, which the floor does not tell apart."""
    parts = get_authorization_header(request).split()
    if request.method != "PATCH" or len(parts) != 2:
        return JsonResponse({"detail": "unauthorized"}, status=401)
    raw_key = parts[1].decode()
    key_sql = (
        f"SELECT 1 FROM {ApiKey._meta.db_table} k JOIN {get_user_model()._meta.db_table} u "
        "ON u.id = k.user_id WHERE k.prefix = %s AND k.key_hash = %s AND k.revoked_at IS NULL "
        "AND (k.expires_at IS NULL OR k.expires_at > now()) AND u.is_active"
    )
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {TaskRun._meta.db_table} SET state = state || %s::jsonb, version = version + 1, "
            f"updated_at = now() WHERE id = %s AND EXISTS ({key_sql}) RETURNING id, version",
            [
                json.dumps(json.loads(request.body).get("state") or {}),
                run_id,
                raw_key[:PREFIX_LENGTH],
                hash_key(raw_key),
            ],
        )
        row = cursor.fetchone()
    if row is None:
        return JsonResponse({"detail": "unauthorized"}, status=401)
    return JsonResponse({"id": str(row[0]), "version": row[1]})


def floor_run_list(request, task_id):
    if not _authenticated(request):
        return JsonResponse({"detail": "unauthorized"}, status=401)
    rows = list(TaskRun.objects.filter(task_id=task_id).order_by("-created_at").values()[:100])
    return JsonResponse({"results": rows}, json_dumps_params={"default": str})


@csrf_exempt
def floor_heartbeat(request, run_id):
    """The floor's heartbeat: the key lookup and one plain UPDATE of the run's heartbeat time,
    answering the run's status and version (no access check, no 404/409 distinction)."""
    if not _authenticated(request):
        return JsonResponse({"detail": "unauthorized"}, status=401)
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {TaskRun._meta.db_table} SET last_heartbeat_at = now() "
            "WHERE id = %s AND status = 'in_progress' RETURNING status, version",
            [run_id],
        )
        row = cursor.fetchone()
    if row is None:
        return JsonResponse({"detail": "not in progress"}, status=409)
    return JsonResponse({"status": row[0], "version": row[1]})

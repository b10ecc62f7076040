"""The baselines the benchmark measures the app against. Not part of the app.

- PostHog-style: DRF, the same authentication and serializers, but a PATCH locks the row
  (SELECT … FOR UPDATE), merges in Python and saves: correct, with the lock held across several
  round trips and application code.
- Naive: the same without the lock — a read-modify-write that loses concurrent keys.
- Floor: a plain Django view (no DRF) doing the key lookup and a single UPDATE: the least this
  stack can do per request.
- DRF floor: the floor's work in a DRF view (the app's authentication, DRF's request, parsing,
  content negotiation and response): what DRF itself costs on top of the floor.
- Floor, key in its UPDATE: the floor with the trick taskruns uses on a run's GET and PATCH —
  the key is checked by the statement itself, not looked up first — to show how much of
  taskruns' standing against the floor that trick makes.
"""

from __future__ import annotations

import json

from django.db import connection, transaction
from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt
from rest_framework import generics
from rest_framework.authentication import get_authorization_header
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.response import Response
from rest_framework.views import APIView

from taskruns.access import visible_projects
from taskruns.keys import authenticating_key_sql, find_active_key
from taskruns.models import TaskRun
from taskruns.serializers import TaskRunSerializer, TaskRunUpdateSerializer
from taskruns.updates import merged_output, merged_state


class PostHogStyleRunView(APIView):
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
                run.output = merged_output(run.output, changes["output"])
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


class DRFFloorRunView(APIView):
    def get(self, request, run_id):
        return Response(_floor_read(run_id))

    def patch(self, request, run_id):
        return Response(_floor_update(run_id, request.data.get("state") or {}))


@csrf_exempt
def floor_patch_key_in_statement(request, run_id):
    """The floor's PATCH, its key checked by its UPDATE (by taskruns' own rule) instead of
    looked up first. No row: a bad key or an unknown run, which the floor does not tell apart."""
    parts = get_authorization_header(request).split()
    key = authenticating_key_sql(parts[1].decode()) if len(parts) == 2 else None
    if request.method != "PATCH" or key is None:
        return JsonResponse({"detail": "unauthorized"}, status=401)
    key_sql, key_params = key
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {TaskRun._meta.db_table} SET state = state || %s::jsonb, version = version + 1, "
            f"updated_at = now() WHERE id = %s AND EXISTS (SELECT 1 FROM {key_sql}) RETURNING id, version",
            [json.dumps(json.loads(request.body).get("state") or {}), run_id, *key_params],
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

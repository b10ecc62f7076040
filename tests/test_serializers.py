"""The hand-written run representation equals DRF's field-by-field one."""

from __future__ import annotations

import pytest
from rest_framework import serializers
from rest_framework.renderers import JSONRenderer
from rest_framework.test import APIRequestFactory

from taskruns import updates
from taskruns.models import TaskRun
from taskruns.serializers import TaskRunSerializer


def rendered(data) -> bytes:
    """What a client receives: the JSON bytes."""
    return JSONRenderer().render(data)


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {
            "stage": "plan",
            "branch": "b",
            "error_message": "",
            "output": [1, {"a": None}],
            "state": {"k": [1]},
        },
        {"status": "completed", "environment": "cloud", "output": "text"},
    ],
)
@pytest.mark.parametrize("with_log", [False, True])
def test_fast_representation_matches_drf_fields(run, fields, with_log):
    TaskRun.objects.filter(pk=run.pk).update(**fields)
    updates.update_run(run.pk, {"status": "in_progress"} if "status" not in fields else {})
    if with_log:
        updates.append_log(run, [{"a": 1}])
    row = updates.runs_with_log_flag().get(pk=run.pk)
    request = APIRequestFactory().get("/")
    serializer = TaskRunSerializer(row, context={"request": request})
    drf_fields = serializers.ModelSerializer.to_representation(serializer, row)
    assert rendered(serializer.data) == rendered(drf_fields)
    assert (serializer.data["log_url"] is not None) == with_log


def test_update_serializers_bind_their_own_field_copies():
    """TaskRunUpdateSerializer copies its declared fields shallowly: each instance must still
    own its fields, and one body's errors must not show in another's validation."""
    from taskruns.serializers import TaskRunUpdateSerializer

    bad = TaskRunUpdateSerializer(data={"status": "nope", "state_remove_keys": [1]})
    good = TaskRunUpdateSerializer(data={"status": "queued", "state_remove_keys": ["a"]})
    assert not bad.is_valid()
    assert set(bad.errors) == {"status", "state_remove_keys"}
    assert good.is_valid(), good.errors
    assert good.validated_data == {"status": "queued", "state_remove_keys": ["a"]}
    for name, field in good.fields.items():
        assert field is not bad.fields[name]
        assert field is not TaskRunUpdateSerializer._declared_fields[name]
        assert field.parent is good and field.field_name == name

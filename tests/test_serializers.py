"""The hand-written run representation equals DRF's field-by-field one."""

from __future__ import annotations

import pytest
from rest_framework import serializers
from rest_framework.renderers import JSONRenderer
from rest_framework.test import APIRequestFactory

from taskruns import updates
from taskruns.models import TaskRun
from taskruns.serializers import NamedFieldsOnly, TaskRunSerializer, TaskRunUpdateSerializer


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
    row = TaskRun.objects.get(pk=run.pk)
    request = APIRequestFactory().get("/")
    serializer = TaskRunSerializer(row, context={"request": request})
    drf_fields = serializers.ModelSerializer.to_representation(serializer, row)
    assert rendered(serializer.data) == rendered(drf_fields)
    assert (serializer.data["log_url"] is not None) == with_log


class EveryFieldUpdateSerializer(TaskRunUpdateSerializer):
    """TaskRunUpdateSerializer as DRF builds a serializer: every declared field, deep-copied."""

    def get_fields(self):
        return serializers.Serializer.get_fields(self)


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"state": {"a": 1}},
        {"state": [1]},
        {"state_remove_keys": []},
        {"state_remove_keys": ["a", 1]},
        {"status": "nope", "branch": 3, "unknown": 1},
        {"status": "queued", "stage": None, "output": {"x": [1]}, "environment": "local"},
        {"environment": "cloud", "error_message": ""},
        {"branch": "b" * 300},
        {"state": {f"k{i}": i for i in range(2000)}},
        [],
        "text",
    ],
)
def test_update_serializer_building_only_named_fields_validates_like_drf(body):
    ours, drf = TaskRunUpdateSerializer(data=body), EveryFieldUpdateSerializer(data=body)
    assert ours.is_valid() == drf.is_valid()
    assert ours.errors == drf.errors
    if not drf.errors:
        assert ours.validated_data == drf.validated_data
    if isinstance(body, dict):
        assert set(ours.fields) == set(body) & set(TaskRunUpdateSerializer._declared_fields)


def test_update_serializer_without_a_body_has_every_field():
    assert list(TaskRunUpdateSerializer().fields) == list(TaskRunUpdateSerializer._declared_fields)


def test_only_optional_fields_without_defaults_may_be_left_out():
    with pytest.raises(TypeError, match="optional fields without defaults"):

        class Required(NamedFieldsOnly, serializers.Serializer):
            name = serializers.CharField()

    with pytest.raises(TypeError, match="optional fields without defaults"):

        class Defaulted(NamedFieldsOnly, serializers.Serializer):
            name = serializers.CharField(required=False, default="x")


def test_update_serializers_bind_their_own_field_copies():
    """TaskRunUpdateSerializer copies its declared fields shallowly: each instance must still
    own its fields, and one body's errors must not show in another's validation."""
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


@pytest.mark.parametrize("zone", ["UTC", "Europe/Paris", "Asia/Kolkata"])
def test_timestamps_follow_the_active_time_zone_as_drf_writes_them(run, zone):
    from django.utils import timezone

    updates.update_run(run.pk, {"status": "in_progress"})
    row = TaskRun.objects.get(pk=run.pk)
    request = APIRequestFactory().get("/")
    with timezone.override(zone):
        ours = TaskRunSerializer(row, context={"request": request}).data
        drf = serializers.ModelSerializer.to_representation(
            TaskRunSerializer(row, context={"request": request}), row
        )
    for name in ("created_at", "updated_at", "started_at", "completed_at"):
        assert ours[name] == drf[name]
    assert ours["started_at"].endswith("Z") == (zone == "UTC")

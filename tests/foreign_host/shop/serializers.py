from rest_framework import serializers

from .models import Product, Task


class ProductSerializer(serializers.ModelSerializer):
    class Meta:
        model = Product
        fields = ["id", "name", "price_cents"]


class TaskSerializer(serializers.ModelSerializer):
    """Named as taskruns' own TaskSerializer is: both would be the component "Task"."""

    class Meta:
        model = Task
        fields = ["id", "title", "done"]

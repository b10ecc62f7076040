"""The host's own models: a custom user model (e-mail login, its own table) and its API's data."""

from __future__ import annotations

from django.contrib.auth.models import AbstractUser, UserManager
from django.db import models


class CustomerManager(UserManager):
    def create_user(self, username, email=None, password=None, **extra_fields):
        extra_fields.setdefault("email", email or f"{username}@shop.example")
        return super().create_user(username, password=password, **extra_fields)


class Customer(AbstractUser):
    """The host's user model: AUTH_USER_MODEL = "shop.Customer"."""

    loyalty_tier = models.CharField(max_length=20, default="bronze")

    objects = CustomerManager()

    class Meta:
        db_table = "shop_customers"


class Product(models.Model):
    name = models.CharField(max_length=100)
    price_cents = models.PositiveIntegerField()

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return self.name


class Task(models.Model):
    """The host's own "task" (a to-do), whose serializer is named TaskSerializer as taskruns' is."""

    title = models.CharField(max_length=100)
    done = models.BooleanField(default=False)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return self.title


class PartnerToken(models.Model):
    """The host's own Bearer scheme: partners call its API with ``Bearer <token>``."""

    token = models.CharField(max_length=64, unique=True)
    user = models.ForeignKey(Customer, on_delete=models.CASCADE)

    def __str__(self) -> str:
        return f"partner token of {self.user}"

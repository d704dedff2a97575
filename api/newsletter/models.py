"""Subscribers, newsletters, and one Delivery row per (newsletter, subscriber): the idempotent effect."""

from django.db import models


class Subscriber(models.Model):
    email = models.EmailField(unique=True)
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.email


class Newsletter(models.Model):
    job_id = models.BigIntegerField(unique=True)  # one newsletter per job, however often it is retried
    subject = models.CharField(max_length=200)
    created_at = models.DateTimeField(auto_now_add=True)


class Delivery(models.Model):
    newsletter = models.ForeignKey(Newsletter, on_delete=models.CASCADE, related_name="deliveries")
    subscriber = models.ForeignKey(Subscriber, on_delete=models.CASCADE)
    delivered_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["newsletter", "subscriber"], name="one_delivery_each")]

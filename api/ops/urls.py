"""Routes of the ops pages: /ops/queues, its JSON, and the DLQ replay."""

from django.urls import path

from api.ops import views

urlpatterns = [
    path("queues", views.queues_page, name="ops-queues"),
    path("queues.json", views.queues_data, name="ops-queues-data"),
    path("queues/<str:queue>/replay", views.dlq_replay, name="ops-dlq-replay"),
]

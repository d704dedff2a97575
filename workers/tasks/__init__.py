"""Every task of the project; importing this package registers them (app.autodiscover_tasks)."""

from workers.tasks import demo, newsletter  # noqa: F401

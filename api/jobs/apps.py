"""The jobs app; its ready() runs the publish-side start-up checks and connects the Job's receivers."""

from django.apps import AppConfig


class JobsConfig(AppConfig):
    name = "api.jobs"
    label = "jobs"

    def ready(self) -> None:
        from django.conf import settings

        from workers.celery_app import app
        from workers.startup_checks import StartupRefused, check_queues, check_required_settings, check_unknown_settings

        problems = (
            check_unknown_settings(dir(settings))
            + check_required_settings(app.conf)
            + check_queues(app.conf, settings.QUEUE_TOPOLOGY)
        )
        if problems:
            raise StartupRefused(problems)

        from api.jobs.receivers import job_expire_on_discard
        from workers.discards import message_discarded

        message_discarded.connect(job_expire_on_discard, dispatch_uid="jobs.job_expire_on_discard")

        from api.jobs.receivers import job_run_lost
        from workers.gate_request import run_lost

        run_lost.connect(job_run_lost, dispatch_uid="jobs.job_run_lost")

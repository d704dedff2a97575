"""manage.py dlq replay|summary: the DLQ Lambdas' own code against the configured endpoint (local parity).

A DLQ it could not read is an error (exit 1) naming it; `summary` shows the DLQs it did read first.
"""

from __future__ import annotations

import json

from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from api.ops.aws import sqs_client
from api.ops.services import dlq_replay_run
from core.dlq.request import ReplayRequestError
from core.dlq.summary import format_alert, summarise_dlq
from core.queue_urls import QueueNotFoundError


class Command(BaseCommand):
    help = "Rehearse a DLQ replay (dry run unless --execute) or print a DLQ summary, as the Lambdas do."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        replay = sub.add_parser("replay", help="replay a queue's DLQ (dry run unless --execute)")
        replay.add_argument("--queue", required=True, help="a topology queue key, e.g. default")
        mode = replay.add_mutually_exclusive_group()
        mode.add_argument("--dry-run", action="store_true", default=True, help="report only (the default)")
        mode.add_argument("--execute", action="store_true", help="move the matching messages")
        replay.add_argument("--max-messages", type=int, default=100)
        replay.add_argument("--task-name", action="append", dest="task_names")
        replay.add_argument("--task-id", action="append", dest="task_ids")
        replay.add_argument("--min-age", type=int, dest="min_age_seconds")
        replay.add_argument("--max-age", type=int, dest="max_age_seconds")
        replay.add_argument("--reset-retries", action="store_true")
        replay.add_argument("--rate", type=float, default=10, dest="rate_per_second")
        summary = sub.add_parser("summary", help="what the alert Lambda would publish")
        summary.add_argument("--queue", action="append", dest="queues", help="default: every topology queue")

    def handle(self, *args, action: str, **options):
        if action == "summary":
            sqs, topology, prefix = sqs_client(), settings.QUEUE_TOPOLOGY, settings.SQS_BROKER.queue_prefix
            keys = options["queues"] or list(topology.queues)
            summaries, failed = [], []
            for key in keys:
                try:
                    summaries.append(summarise_dlq(sqs, topology, key, prefix=prefix))
                except (ClientError, BotoCoreError, QueueNotFoundError) as exc:
                    failed.append(f"{key} ({type(exc).__name__}: {exc})")
            if summaries:
                hint = "python manage.py dlq replay --queue <queue>   (add --execute to move)"
                subject, message = format_alert(summaries, service="local", replay_hint=hint)
                self.stdout.write(f"{subject}\n\n{message}")
            if failed:
                raise CommandError(f"could not read {len(failed)} of {len(keys)} DLQs: {'; '.join(failed)}")
            return
        payload = {
            key: options[key]
            for key in ("queue", "max_messages", "task_names", "task_ids", "min_age_seconds", "max_age_seconds")
            if options[key] is not None
        }
        payload.update(
            dry_run=not options["execute"],
            reset_retries=options["reset_retries"],
            rate_per_second=options["rate_per_second"],
        )
        try:
            report = dlq_replay_run(payload=payload)
        except ReplayRequestError as exc:
            raise CommandError(str(exc)) from None
        except (ClientError, BotoCoreError, QueueNotFoundError) as exc:
            raise CommandError(f"could not read the {payload['queue']} DLQ: {type(exc).__name__}: {exc}") from None
        self.stdout.write(json.dumps(report.as_dict(), indent=2))

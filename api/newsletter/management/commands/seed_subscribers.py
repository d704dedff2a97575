"""manage.py seed_subscribers --count N: the small table of users the newsletter tasks page through."""

from django.core.management.base import BaseCommand

from api.newsletter.services import subscribers_seed


class Command(BaseCommand):
    help = "Create subscribers user1..userN@example.com (idempotent)."

    def add_arguments(self, parser):
        parser.add_argument("--count", type=int, default=25)

    def handle(self, *args, count: int, **options):
        added = subscribers_seed(count=count)
        self.stdout.write(f"subscribers: {added} added, {count} wanted")

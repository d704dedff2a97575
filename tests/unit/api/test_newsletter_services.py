"""Unit tests of api/newsletter/services.py: keyset pages, idempotent delivery and seeding."""

from __future__ import annotations

import pytest

from api.newsletter.models import Delivery, Newsletter, Subscriber
from api.newsletter.services import newsletter_deliver, subscriber_id_pages, subscribers_seed

pytestmark = pytest.mark.django_db


def _subscribers(count: int) -> list[int]:
    return [Subscriber.objects.create(email=f"s{i}@example.com").pk for i in range(count)]


def test_pages_cover_every_active_subscriber_once():
    # GIVEN 7 active subscribers
    ids = _subscribers(7)
    # WHEN paged 3 at a time
    pages = list(subscriber_id_pages(page_size=3))
    # THEN pages of 3, 3, 1, ascending, without repeats, covering all
    assert [len(p) for p in pages] == [3, 3, 1]
    flat = [i for p in pages for i in p]
    assert flat == sorted(flat)
    assert len(set(flat)) == len(flat)
    assert flat == sorted(ids)


def test_pages_skip_inactive_subscribers():
    # GIVEN 7 subscribers, two of them inactive
    ids = _subscribers(7)
    Subscriber.objects.filter(pk__in=[ids[1], ids[5]]).update(active=False)
    # WHEN paged 3 at a time
    pages = list(subscriber_id_pages(page_size=3))
    # THEN only the active ones, in pages of 3 and 2
    assert [len(p) for p in pages] == [3, 2]
    assert [i for p in pages for i in p] == [i for n, i in enumerate(ids) if n not in (1, 5)]


def test_page_size_equal_to_count_gives_one_page():
    # GIVEN 3 subscribers
    ids = _subscribers(3)
    # WHEN paged 3 at a time THEN one page (and no trailing empty page)
    assert list(subscriber_id_pages(page_size=3)) == [ids]


def test_no_subscribers_no_pages():
    # GIVEN no subscribers
    # WHEN paged THEN nothing is yielded
    assert list(subscriber_id_pages(page_size=3)) == []


def test_pages_are_keyset_not_offset():
    # GIVEN 6 subscribers, paged 3 at a time
    ids = _subscribers(6)
    pages = subscriber_id_pages(page_size=3)
    first = next(pages)
    # WHEN a subscriber of the first page is deleted before the next page is read
    Subscriber.objects.filter(pk=first[0]).delete()
    # THEN the next page still starts after the last id seen (OFFSET would skip one)
    assert next(pages) == ids[3:6]


def test_deliver_is_idempotent():
    # GIVEN a newsletter and 3 subscribers
    ids = _subscribers(3)
    newsletter = Newsletter.objects.create(job_id=1, subject="Hi")
    # WHEN delivered twice to the same subscribers
    first = newsletter_deliver(newsletter_id=newsletter.pk, subscriber_ids=ids)
    second = newsletter_deliver(newsletter_id=newsletter.pk, subscriber_ids=ids)
    # THEN the second delivery does nothing
    assert first == 3
    assert second == 0
    assert Delivery.objects.filter(newsletter=newsletter).count() == 3


def test_deliver_only_adds_the_missing_ones():
    # GIVEN 2 of 4 subscribers already delivered
    ids = _subscribers(4)
    newsletter = Newsletter.objects.create(job_id=2, subject="Hi")
    newsletter_deliver(newsletter_id=newsletter.pk, subscriber_ids=ids[:2])
    # WHEN delivered to all 4
    added = newsletter_deliver(newsletter_id=newsletter.pk, subscriber_ids=ids)
    # THEN only the other 2 are added
    assert added == 2
    assert sorted(Delivery.objects.values_list("subscriber_id", flat=True)) == sorted(ids)


def test_deliveries_are_per_newsletter():
    # GIVEN one subscriber delivered newsletter A
    [sid] = _subscribers(1)
    a = Newsletter.objects.create(job_id=3, subject="A")
    b = Newsletter.objects.create(job_id=4, subject="B")
    newsletter_deliver(newsletter_id=a.pk, subscriber_ids=[sid])
    # WHEN newsletter B is delivered to them THEN it counts
    assert newsletter_deliver(newsletter_id=b.pk, subscriber_ids=[sid]) == 1
    assert Delivery.objects.count() == 2


def test_seed_is_idempotent():
    # GIVEN no subscribers
    # WHEN seeded with 5, then again with 5, then with 8
    first = subscribers_seed(count=5)
    second = subscribers_seed(count=5)
    third = subscribers_seed(count=8)
    # THEN 5, then none, then the 3 missing ones; emails user1..user8
    assert (first, second, third) == (5, 0, 3)
    assert Subscriber.objects.count() == 8
    assert set(Subscriber.objects.values_list("email", flat=True)) == {f"user{i}@example.com" for i in range(1, 9)}

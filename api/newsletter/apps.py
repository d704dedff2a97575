"""The newsletter app."""

from django.apps import AppConfig


class NewsletterConfig(AppConfig):
    name = "api.newsletter"
    label = "newsletter"

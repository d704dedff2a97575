"""The Django secret key in Secrets Manager: injected by ECS into the containers, never plain env."""

from __future__ import annotations

from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from infra.config import InfraConfig
from infra.naming import resource_name


class AppSecrets(Construct):
    """DJANGO_SECRET_KEY: an existing secret by name (context), else created here with a random value.
    API_TOKENS (the api only): the jobs API's bearer tokens, an existing secret by name (context), else created
    here with one random token; to rotate,
    put "new,old" in the secret, redeploy the api, then "new". (The database's credentials: infra/database.py.)"""

    def __init__(self, scope: Construct, construct_id: str, *, config: InfraConfig) -> None:
        super().__init__(scope, construct_id)
        self.django_secret_key = self._secret(
            "DjangoSecretKey",
            existing=config.django_secret_key_secret_name,
            name=resource_name(config.stage, "django-secret-key"),
            description="DJANGO_SECRET_KEY of the Django api, workers and beat",
        )
        self.api_tokens = self._secret(
            "ApiTokens",
            existing=config.api_tokens_secret_name,
            name=resource_name(config.stage, "api-tokens"),
            description="API_TOKENS of the jobs API: comma-separated bearer tokens (api/jobs/auth.py)",
        )

    def _secret(self, construct_id: str, *, existing: str | None, name: str, description: str):
        if existing:
            # The partial ARN "<name>-??????" in policies: exact up to Secrets Manager's random suffix.
            return secretsmanager.Secret.from_secret_name_v2(self, construct_id, existing)
        return secretsmanager.Secret(
            self,
            construct_id,
            secret_name=name,
            description=description,
            generate_secret_string=secretsmanager.SecretStringGenerator(password_length=64, exclude_punctuation=True),
        )

    def container_secrets(self) -> dict[str, ecs.Secret]:
        """For ContainerDefinition `secrets`: ECS reads them with the execution role at task start."""
        return {"DJANGO_SECRET_KEY": ecs.Secret.from_secrets_manager(self.django_secret_key)}

    def api_container_secrets(self) -> dict[str, ecs.Secret]:
        """The api container's own: workers and beat never read the jobs API's tokens."""
        return {"API_TOKENS": ecs.Secret.from_secrets_manager(self.api_tokens)}

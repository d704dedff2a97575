"""The ECS services: api behind an ALB, one worker service per worker group, exactly one beat; their
containers' commands, health checks, environment, secrets and logs."""

from __future__ import annotations

import json

from tests.infra.conftest import PREFIX, env_of

API = ["bin/start-api"]
WORKER = ["bin/start-worker"]
BEAT = ["bin/start-beat"]


def test_beat_runs_exactly_one_task_and_never_two_during_a_deployment(synthesized):
    # GIVEN the one task definition running bin/start-beat
    [task_id] = synthesized.task_definitions_running(BEAT)

    # WHEN its service is looked at
    service_id, service = synthesized.service_of(task_id)

    # THEN it wants one task, and a deployment stops the old one before starting the new one
    assert service["DesiredCount"] == 1
    assert service["DeploymentConfiguration"]["MinimumHealthyPercent"] == 0
    assert service["DeploymentConfiguration"]["MaximumPercent"] == 100
    # AND nothing scales it
    targets = synthesized.of_type("AWS::ApplicationAutoScaling::ScalableTarget").values()
    assert not [t for t in targets if service_id in str(t["Properties"]["ResourceId"])]
    # AND its health check is the beat liveness file
    container = synthesized.containers()[task_id]
    assert container["HealthCheck"]["Command"] == ["CMD", "python", "-m", "workers.healthcheck", "beat"]


def test_there_is_one_worker_service_per_worker_group_consuming_the_groups_queues(synthesized, topology):
    # GIVEN the task definitions running bin/start-worker
    task_ids = synthesized.task_definitions_running(WORKER)

    # WHEN their WORKER_QUEUES are read
    by_queues = {env_of(synthesized.containers()[t])["WORKER_QUEUES"]: t for t in task_ids}

    # THEN there is exactly one per worker group, consuming that group's queues (topology keys)
    assert len(task_ids) == len(topology.worker_groups)
    assert set(by_queues) == {",".join(g.queues) for g in topology.worker_groups.values()}
    for group in topology.worker_groups.values():
        task_id = by_queues[",".join(group.queues)]
        assert env_of(synthesized.containers()[task_id])["WORKER_CONCURRENCY"] == str(group.concurrency)
        service_id, service = synthesized.service_of(task_id)
        # AND a deployment never resets its count: no DesiredCount (CloudFormation would set it on every
        # update, in the middle of a backlog; aws-cdk #3919); the scalable target's minimum starts it
        assert "DesiredCount" not in service
        assert synthesized.scalable_target_of(service_id)["MinCapacity"] == group.min_tasks >= 2


def test_workers_get_the_full_ecs_grace_period_and_a_consumer_liveness_health_check(synthesized):
    # GIVEN every worker container
    containers = [synthesized.containers()[t] for t in synthesized.task_definitions_running(WORKER)]
    assert containers

    for container in containers:
        # WHEN its stop timeout and health check are read
        health = container["HealthCheck"]

        # THEN SIGKILL comes 120 s after SIGTERM (the soft shutdown fits inside it)
        assert container["StopTimeout"] == 120
        # AND ECS replaces a worker whose consumer liveness file is stale
        assert health["Command"] == ["CMD", "python", "-m", "workers.healthcheck", "worker"]
        assert (health["Interval"], health["Retries"], health["StartPeriod"]) == (30, 3, 60)


def test_the_api_sits_behind_an_alb_checking_healthz_with_at_least_two_tasks(synthesized):
    # GIVEN the task definition running bin/start-api
    [task_id] = synthesized.task_definitions_running(API)

    # WHEN its service and the target group it registers with are read
    service_id, service = synthesized.service_of(task_id)
    [load_balancer] = service["LoadBalancers"]
    target_group = synthesized.props(load_balancer["TargetGroupArn"]["Ref"])

    # THEN it runs at least two tasks (the scalable target's minimum: no DesiredCount, which every deploy
    # would reset to), and the ALB checks /healthz for a 200
    assert "DesiredCount" not in service
    assert synthesized.scalable_target_of(service_id)["MinCapacity"] >= 2
    assert load_balancer["ContainerPort"] == 8000
    assert target_group["HealthCheckPath"] == "/healthz"
    assert target_group["Matcher"] == {"HttpCode": "200"}
    # AND Django accepts the ALB's host name (alone here: no allowedHosts context)
    allowed = env_of(synthesized.containers()[task_id])["DJANGO_ALLOWED_HOSTS"]
    [alb_id] = synthesized.of_type("AWS::ElasticLoadBalancingV2::LoadBalancer")
    assert allowed == {"Fn::GetAtt": [alb_id, "DNSName"]}


def test_the_api_scales_on_cpu(synthesized):
    # GIVEN the api service
    [task_id] = synthesized.task_definitions_running(API)
    service_id, _ = synthesized.service_of(task_id)

    # WHEN the scaling policies of its scalable target are found
    [(target_id, target)] = [
        (k, t["Properties"])
        for k, t in synthesized.of_type("AWS::ApplicationAutoScaling::ScalableTarget").items()
        if service_id in str(t["Properties"]["ResourceId"])
    ]
    policies = [
        p["Properties"]
        for p in synthesized.of_type("AWS::ApplicationAutoScaling::ScalingPolicy").values()
        if p["Properties"]["ScalingTargetId"] == {"Ref": target_id}
    ]

    # THEN one tracks average CPU, never below two tasks
    [policy] = policies
    config = policy["TargetTrackingScalingPolicyConfiguration"]
    assert config["PredefinedMetricSpecification"]["PredefinedMetricType"] == "ECSServiceAverageCPUUtilization"
    assert target["MinCapacity"] >= 2


def test_every_container_knows_every_queue_url_and_runs_production_settings(synthesized, topology):
    # GIVEN the queues' logical ids (a queue's Ref is its URL)
    ids = synthesized.queue_ids_by_name()
    containers = synthesized.containers()
    # api, beat, the outbox relay, the migration task, the workers
    assert len(containers) == 4 + len(topology.worker_groups)

    for container in containers.values():
        # WHEN its environment is read
        env = env_of(container)

        # THEN it runs the production settings with the stage prefix and every queue's URL
        assert env["DJANGO_SETTINGS_MODULE"] == "api.settings.production"
        assert env["AWS_DEFAULT_REGION"] == {"Ref": "AWS::Region"}
        assert env["SQS_QUEUE_PREFIX"] == PREFIX
        assert env["LOG_LEVEL"] == "INFO"
        for key, spec in topology.queues.items():
            assert env[f"SQS_QUEUE_URL_{key.upper()}"] == {"Ref": ids[PREFIX + spec.name]}
        # AND no DLQ URL is handed to the app (only the Lambdas touch DLQs)
        assert not [k for k, v in env.items() if isinstance(v, dict) and "dlq" in str(v).lower()]


def test_secrets_come_from_secrets_manager_never_from_plain_environment(synthesized):
    # GIVEN the stack's secrets (the Django key, and the created database's credentials)
    secret_ids = set(synthesized.of_type("AWS::SecretsManager::Secret"))
    secret_ids |= set(synthesized.of_type("AWS::SecretsManager::SecretTargetAttachment"))
    secret_names = {"DJANGO_SECRET_KEY", "DATABASE_USER", "DATABASE_PASSWORD"}

    for container in synthesized.containers().values():
        # WHEN the container's secrets and environment are read
        secrets = {s["Name"]: json.dumps(s["ValueFrom"]) for s in container["Secrets"]}
        env = env_of(container)

        # THEN the Django key and the database's user and password are injected by ECS from Secrets Manager
        # (and the api's bearer tokens into the api alone)
        assert set(secrets) == secret_names | ({"API_TOKENS"} if container["Command"] == API else set())
        assert all(any(secret_id in ref for secret_id in secret_ids) for ref in secrets.values())
        # AND none is in the plain environment, nor a DATABASE_URL
        assert not (secret_names | {"DATABASE_URL", "API_TOKENS"}) & set(env)


def test_the_api_gets_its_bearer_tokens_from_a_generated_secret_and_nothing_else_does(synthesized):
    # GIVEN the api container and the secret named api-tokens
    [api] = [c for c in synthesized.containers().values() if c["Command"] == API]
    [(secret_id, secret)] = [
        (k, r["Properties"])
        for k, r in synthesized.of_type("AWS::SecretsManager::Secret").items()
        if r["Properties"]["Name"].endswith("api-tokens")
    ]

    # WHEN the api's secrets are read
    secrets = {s["Name"]: s["ValueFrom"] for s in api["Secrets"]}

    # THEN API_TOKENS comes from that secret, generated (a random token, never in the template)
    assert secrets["API_TOKENS"] == {"Ref": secret_id}
    assert secret["GenerateSecretString"]["PasswordLength"] >= 32
    assert "SecretString" not in secret
    # AND no other container can read it
    others = [c for c in synthesized.containers().values() if c["Command"] != API]
    assert all("API_TOKENS" not in {s["Name"] for s in c["Secrets"]} for c in others)


def test_without_a_certificate_the_api_runs_the_http_only_mode(synthesized):
    # GIVEN the default synth (no certificateArn: the ALB listens on HTTP only)
    [api] = [c for c in synthesized.containers().values() if c["Command"] == API]
    # WHEN its environment is read THEN Django runs the HTTP-only mode, so the admin login works over HTTP
    assert env_of(api)["DJANGO_HTTP_ONLY"] == "true"
    # AND only the api is told (the others serve no HTTP)
    others = [c for c in synthesized.containers().values() if c["Command"] != API]
    assert all("DJANGO_HTTP_ONLY" not in env_of(c) for c in others)


def test_every_container_logs_to_its_own_log_group_kept_a_month(synthesized):
    # GIVEN the log groups
    groups = synthesized.of_type("AWS::Logs::LogGroup")

    # WHEN each container's log configuration is read
    used = [c["LogConfiguration"]["Options"]["awslogs-group"]["Ref"] for c in synthesized.containers().values()]

    # THEN each has its own group, and every group has a retention
    assert sorted(used) == sorted(set(used)) and set(used) <= set(groups)
    assert all(g["Properties"]["RetentionInDays"] == 30 for g in groups.values())


def test_the_cluster_has_container_insights_for_running_task_counts(synthesized):
    # GIVEN the cluster
    [cluster] = synthesized.of_type("AWS::ECS::Cluster").values()

    # WHEN its settings are read
    settings = cluster["Properties"]["ClusterSettings"]

    # THEN Container Insights is on (RunningTaskCount feeds worker scaling)
    assert {"Name": "containerInsights", "Value": "enabled"} in settings


def test_the_outputs_name_what_a_one_off_task_and_a_client_need(synthesized):
    # GIVEN the stack's outputs
    outputs = synthesized.template["Outputs"]
    [api_task] = synthesized.task_definitions_running(API)
    # WHEN the runbook's first login and first API call read them THEN they are there
    assert outputs["ApiTaskDefinitionArn"]["Value"] == {"Ref": api_task}
    assert "Fn::Join" in outputs["PrivateSubnetIds"]["Value"]
    assert {"ClusterName", "TaskSecurityGroupId", "ApiTokensSecretName", "DlqAlarmTopicArn"} <= set(outputs)


def test_the_outbox_relay_runs_as_its_own_service_and_may_only_publish(synthesized, topology):
    # GIVEN the task definition running bin/start-outbox-relay
    [task_id] = synthesized.task_definitions_running(["bin/start-outbox-relay"])

    # WHEN its service and task role are read
    _, service = synthesized.service_of(task_id)
    role_id = synthesized.role_id(synthesized.props(task_id)["TaskRoleArn"])
    statements = synthesized.statements_of_role(role_id)
    [statement] = [s for s in statements if any(a.startswith("sqs:") for a in _actions(s))]

    # THEN one task runs (more would be safe: every attempt is claimed by compare-and-set)
    assert service["DesiredCount"] == 1
    # AND ECS replaces it when it stops sweeping
    container = synthesized.containers()[task_id]
    assert container["HealthCheck"]["Command"] == ["CMD", "python", "manage.py", "outbox_relay", "--check"]
    # AND it may publish to the task queues and nothing else
    from infra.permissions import PUBLISH_ACTIONS

    assert sorted(_actions(statement)) == sorted(PUBLISH_ACTIONS)
    # AND, like every producer, store a body too large for its queue (the claim check), nothing more
    others = {a for s in statements if s is not statement for a in _actions(s)}
    assert others <= {"s3:PutObject"}, others


def _actions(statement: dict) -> list[str]:
    action = statement["Action"]
    return [action] if isinstance(action, str) else action

"""The cloud as code (AWS CDK): the queues of queues.yml, the ECS services that use them, their alarms."""

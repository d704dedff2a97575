"""The VPC the services run in: a new one (two zones, NAT), or an existing one given by its attributes."""

from __future__ import annotations

from aws_cdk import Stack
from aws_cdk import aws_ec2 as ec2
from constructs import Construct

from infra.config import InfraConfig
from infra.dependencies import drop_redundant_dependency


def build_vpc(scope: Construct, config: InfraConfig) -> ec2.IVpc:
    """Never Vpc.from_lookup: synth stays offline, so an existing VPC comes in by explicit IDs."""
    existing = config.existing_vpc
    if existing is not None:
        return ec2.Vpc.from_vpc_attributes(
            scope,
            "Vpc",
            vpc_id=existing.vpc_id,
            availability_zones=list(existing.availability_zones),
            private_subnet_ids=list(existing.private_subnet_ids),
            public_subnet_ids=list(existing.public_subnet_ids),
        )
    # Public subnets hold the ALB and the NAT gateway(s); tasks run in the private ones and reach SQS,
    # ECR, Secrets Manager and CloudWatch through NAT. One NAT gateway by default (cost); natGateways=2
    # keeps egress up when one zone fails.
    vpc = ec2.Vpc(
        scope,
        "Vpc",
        max_azs=2,
        nat_gateways=config.nat_gateways,
        subnet_configuration=[
            ec2.SubnetConfiguration(name="public", subnet_type=ec2.SubnetType.PUBLIC, cidr_mask=24),
            ec2.SubnetConfiguration(name="private", subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS, cidr_mask=20),
        ],
    )
    # The feature flag @aws-cdk/aws-ec2:restrictDefaultSecurityGroup (infra/cdk.json) removes the rules
    # of the VPC's default security group with a custom resource, whose handler CDK makes DependsOn its
    # role although it already refers to it.
    provider = Stack.of(scope).node.try_find_child("Custom::VpcRestrictDefaultSGCustomResourceProvider")
    if provider is not None:
        drop_redundant_dependency(provider.node.find_child("Handler"), provider.node.find_child("Role"))
    return vpc

"""Drop a DependsOn entry that a Ref or GetAtt already implies (cfn-lint W3005), keeping the others."""

from __future__ import annotations

import jsii
from aws_cdk import CfnResource, IResolvable, IResolveContext, Stack, Token


@jsii.implements(IResolvable)
class _DependsOnWithout:
    """A token resolved after CDK has turned construct-level dependencies into resource ones."""

    def __init__(self, resource: CfnResource, redundant: CfnResource) -> None:
        self._resource = resource
        self._redundant = redundant.node.path

    @property
    def creation_stack(self) -> list[str]:
        return []

    def to_string(self) -> str:
        return "DependsOnWithout"

    def resolve(self, context: IResolveContext) -> list[str] | None:
        # The DependsOn CDK would render, in its order (by construct path), less the redundant one.
        stack = Stack.of(self._resource)
        kept = sorted(
            (d for d in self._resource.obtain_dependencies() if d.node.path != self._redundant),
            key=lambda d: d.node.path,
        )
        return [stack.get_logical_id(d) for d in kept] or None


def drop_redundant_dependency(resource: CfnResource, redundant: CfnResource) -> None:
    """CDK adds `redundant` to `resource`'s DependsOn although a property of `resource` already refers
    to it (so CloudFormation orders them anyway): an ECS service on its target group (it depends on
    the whole listener construct), a custom resource provider's handler on its role."""
    resource.add_override("DependsOn", Token.as_any(_DependsOnWithout(resource, redundant)))

"""Apply a synthesized cloud assembly to the local endpoint, as CloudFormation applies it
to an account: stack by stack in the assembly's dependency order, and within a stack
resource by resource in the order their references impose (Ref, Fn::GetAtt, Fn::Sub,
DependsOn), every intrinsic resolved to the physical ids and attributes of what was
applied before it, across stacks through the exports.

Each resource type has an applier (deploy/resources.py) that makes the resource through
the wire API any client would call, so the local services behind it see what a deployed
account holds. A type the local platform does not apply has a stated reason and is listed
(`Report.unapplied`), as is anything that uses such a resource: never skipped in silence.

What was applied is recorded, as CloudFormation keeps its stacks, in the assets bucket
`cdk bootstrap` makes (the files and zips the templates point to are published there too,
as `cdk deploy` does): a resource whose resolved properties did not change is not applied
again, so a second `dp local up` makes no calls but the reads.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dataplatform.runtime.local.deploy import resources
from dataplatform.runtime.local.deploy.model import (
    Applied,
    DeployError,
    Out,
    Pending,
    Report,
    Unapplied,
    Unresolved,
)

__all__ = [
    "Applied",
    "Assembly",
    "DeployError",
    "Deployment",
    "Out",
    "Pending",
    "Report",
    "Unapplied",
]

Clients = Callable[[str], Any]
RECORDS_PREFIX = "dp-local/stacks/"


# --------------------------------------------------------------------------- the assembly


@dataclass
class Stack:
    artifact_id: str
    name: str
    template: dict
    tags: dict[str, str]
    dependencies: list[str]


class Assembly:
    """The cloud assembly's stacks (manifest.json) and file assets (*.assets.json)."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        manifest = json.loads((self.folder / "manifest.json").read_text())
        artifacts = manifest["artifacts"]
        self.stacks: dict[str, Stack] = {}
        self.assets: dict[tuple[str, str], Path] = {}  # (bucket, key) -> local source
        self.packaging: dict[tuple[str, str], str] = {}
        for artifact_id, artifact in artifacts.items():
            if artifact["type"] == "aws:cloudformation:stack":
                props = artifact["properties"]
                self.stacks[artifact_id] = Stack(
                    artifact_id=artifact_id,
                    name=props.get("stackName", artifact_id),
                    template=json.loads((self.folder / props["templateFile"]).read_text()),
                    tags=dict(props.get("tags", {})),
                    dependencies=[
                        d
                        for d in artifact.get("dependencies", [])
                        if artifacts.get(d, {}).get("type") == "aws:cloudformation:stack"
                    ],
                )
            elif artifact["type"] == "cdk:asset-manifest":
                assets = json.loads((self.folder / artifact["properties"]["file"]).read_text())
                for asset in assets.get("files", {}).values():
                    for destination in asset["destinations"].values():
                        where = (destination["bucketName"], destination["objectKey"])
                        self.assets[where] = self.folder / asset["source"]["path"]
                        self.packaging[where] = asset["source"].get("packaging", "file")

    @property
    def bootstrap_bucket(self) -> str | None:
        return next(iter(self.assets))[0] if self.assets else None

    def ordered_stacks(self, only: Iterable[str] | None = None) -> list[Stack]:
        """Every stack after those it depends on; with `only` (artifact ids, e.g. "Serving"),
        those and what they depend on."""
        order: list[Stack] = []
        done: set[str] = set()

        def visit(artifact_id: str, trail: tuple[str, ...]) -> None:
            if artifact_id in done:
                return
            if artifact_id in trail:
                raise DeployError(f"stacks depend on each other in a cycle: {trail}")
            for dependency in self.stacks[artifact_id].dependencies:
                visit(dependency, (*trail, artifact_id))
            done.add(artifact_id)
            order.append(self.stacks[artifact_id])

        for artifact_id in self.stacks if only is None else only:
            visit(artifact_id, ())
        return order

    def asset_bytes(self, bucket: str, key: str) -> bytes:
        """An asset as `cdk deploy` publishes it: a file as it is, a folder zipped."""
        source = self.assets[(bucket, key)]
        if self.packaging[(bucket, key)] != "zip" or source.is_file():
            return source.read_bytes()
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for path in sorted(p for p in source.rglob("*") if p.is_file()):
                info = zipfile.ZipInfo(path.relative_to(source).as_posix(), (1980, 1, 1, 0, 0, 0))
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = (0o755 if path.stat().st_mode & 0o111 else 0o644) << 16
                archive.writestr(info, path.read_bytes())
        return buffer.getvalue()


def read_records(s3, bucket: str, stack_name: str) -> dict:
    """What the last deployment recorded of a stack ({} before the first): its resources
    and the resources it deferred."""
    try:
        body = s3.get_object(Bucket=bucket, Key=f"{RECORDS_PREFIX}{stack_name}.json")["Body"]
    except s3.exceptions.NoSuchKey:
        return {}
    return json.loads(body.read())


# --------------------------------------------------------------------------- references


def references(value: Any) -> Iterator[str]:
    """The logical ids (and pseudo parameters) a property value refers to."""
    if isinstance(value, list):
        for item in value:
            yield from references(item)
    elif isinstance(value, dict):
        if len(value) == 1:
            ((fn, arg),) = value.items()
            if fn == "Ref" and isinstance(arg, str):
                yield arg
                return
            if fn == "Fn::GetAtt":
                yield (arg[0] if isinstance(arg, list) else arg.split(".", 1)[0])
                return
            if fn == "Fn::Sub":
                text, variables = (arg, {}) if isinstance(arg, str) else arg
                for name in re.findall(r"\$\{([^}!][^}]*)\}", text):
                    if name not in variables:
                        yield name.split(".", 1)[0]
                yield from references(variables)
                return
        for item in value.values():
            yield from references(item)


def resource_order(template: dict) -> list[str]:
    resources = template.get("Resources", {})
    order: list[str] = []
    state: dict[str, int] = {}

    def visit(lid: str) -> None:
        if state.get(lid) == 2:
            return
        if state.get(lid) == 1:
            raise DeployError(f"resources refer to each other in a cycle through {lid}")
        state[lid] = 1
        resource = resources[lid]
        depends = resource.get("DependsOn", [])
        for dependency in [depends] if isinstance(depends, str) else depends:
            visit(dependency)
        for name in references(resource.get("Properties", {})):
            if name in resources:
                visit(name)
        state[lid] = 2
        order.append(lid)

    for lid in resources:
        visit(lid)
    return order


# --------------------------------------------------------------------------- the engine


class Deployment:
    def __init__(
        self,
        assembly: Assembly,
        clients: Clients,
        *,
        region: str,
        account: str,
        progress: Callable[[str], None] | None = None,
    ):
        self.assembly = assembly
        self._clients = clients
        self._conforming: dict[str, Any] = {}
        self.region, self.account = region, account
        self.progress = progress or (lambda _: None)
        self.appliers = resources.APPLIERS
        self.deferred_types = resources.DEFERRED
        self.exports: dict[str, Any] = {}
        self.report = Report()
        self._zones: list[str] | None = None

    def clients(self, service: str) -> Any:
        """The service's client, whose calls take the template's scalars as CloudFormation
        does: `true` where the API wants the string "true", "5" where it wants 5."""
        if service not in self._conforming:
            self._conforming[service] = ConformingClient(self._clients(service))
        return self._conforming[service]

    # ------------------------------------------------------------------ assets, records
    def ensure_bootstrap(self) -> None:
        """The assets bucket `cdk bootstrap` makes (versioned, public access blocked)."""
        bucket = self.assembly.bootstrap_bucket
        if bucket is None:
            return
        s3 = self.clients("s3")
        existing = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
        if bucket not in existing:
            kwargs = (
                {"CreateBucketConfiguration": {"LocationConstraint": self.region}}
                if self.region != "us-east-1"
                else {}
            )
            s3.create_bucket(Bucket=bucket, **kwargs)
            s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
            s3.put_public_access_block(
                Bucket=bucket,
                PublicAccessBlockConfiguration={
                    "BlockPublicAcls": True,
                    "IgnorePublicAcls": True,
                    "BlockPublicPolicy": True,
                    "RestrictPublicBuckets": True,
                },
            )

    def publish(self, bucket: str, key: str) -> None:
        """An asset the template points to, put where it points (unless already there)."""
        if (bucket, key) not in self.assembly.assets:
            return  # not one of this assembly's: the applier reads it as it is
        s3 = self.clients("s3")
        try:
            s3.head_object(Bucket=bucket, Key=key)
            return
        except s3.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in ("404", "NoSuchKey", "NotFound"):
                raise
        s3.put_object(Bucket=bucket, Key=key, Body=self.assembly.asset_bytes(bucket, key))

    def _records(self, stack: Stack) -> dict[str, Applied]:
        bucket = self.assembly.bootstrap_bucket
        if bucket is None:
            return {}
        return {
            lid: Applied(**{**record, "created": False})
            for lid, record in read_records(self.clients("s3"), bucket, stack.name)
            .get("resources", {})
            .items()
        }

    def _save_records(self, stack: Stack, applied: dict[str, Applied]) -> None:
        bucket = self.assembly.bootstrap_bucket
        if bucket is None:
            return
        body = {
            "stack": stack.name,
            "deferred": self.report.deferred.get(stack.name, {}),
            "resources": {
                lid: {
                    "stack": a.stack,
                    "logical_id": a.logical_id,
                    "type": a.type,
                    "physical_id": a.physical_id,
                    "attributes": a.attributes,
                    "digest": a.digest,
                    "notes": a.notes,
                }
                for lid, a in applied.items()
            },
        }
        self.clients("s3").put_object(
            Bucket=bucket,
            Key=f"{RECORDS_PREFIX}{stack.name}.json",
            Body=json.dumps(body, indent=1, sort_keys=True, default=str).encode(),
        )

    # ------------------------------------------------------------------ zones
    def zone(self, name: str) -> str:
        """A synthesized availability zone: CDK writes dummy1a, dummy1b, ... when it
        synthesizes without looking the account up; the local region's zones in order."""
        match = re.fullmatch(r"dummy1([a-z])", name)
        if not match:
            return name
        if self._zones is None:
            self._zones = sorted(
                z["ZoneName"]
                for z in self.clients("ec2").describe_availability_zones()["AvailabilityZones"]
            )
        return self._zones[(ord(match.group(1)) - ord("a")) % len(self._zones)]

    # ------------------------------------------------------------------ resolution
    def resolve(self, stack: Stack, applied: dict[str, Applied], value: Any) -> Any:
        if isinstance(value, list):
            out = [self.resolve(stack, applied, v) for v in value]
            return [v for v in out if v is not NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((fn, arg),) = value.items()
            if fn == "Ref":
                return self._ref(stack, applied, arg)
            if fn == "Fn::GetAtt":
                lid, attribute = arg if isinstance(arg, list) else arg.split(".", 1)
                return self._get_att(stack, applied, lid, self.resolve(stack, applied, attribute))
            if fn == "Fn::ImportValue":
                name = self.resolve(stack, applied, arg)
                if name not in self.exports:
                    raise Unresolved(str(name), "imported, but no applied stack exports it")
                return self.exports[name]
            if fn == "Fn::Join":
                separator, parts = arg
                resolved = self.resolve(stack, applied, parts)
                return separator.join(str(p) for p in resolved)
            if fn == "Fn::Select":
                index, items = arg
                return self.resolve(stack, applied, items)[int(self.resolve(stack, applied, index))]
            if fn == "Fn::Split":
                separator, text = arg
                return str(self.resolve(stack, applied, text)).split(separator)
            if fn == "Fn::Sub":
                text, variables = (arg, {}) if isinstance(arg, str) else arg
                variables = self.resolve(stack, applied, variables)

                def substitute(match: re.Match) -> str:
                    name = match.group(1)
                    if name.startswith("!"):
                        return "${" + name[1:] + "}"
                    if name in variables:
                        return str(variables[name])
                    if "." in name:
                        lid, attribute = name.split(".", 1)
                        return str(self._get_att(stack, applied, lid, attribute))
                    return str(self._ref(stack, applied, name))

                return re.sub(r"\$\{([^}]+)\}", substitute, text)
            if fn == "Fn::Base64":
                import base64

                return base64.b64encode(str(self.resolve(stack, applied, arg)).encode()).decode()
            if fn == "Fn::GetAZs":
                return [self.zone(f"dummy1{c}") for c in "abc"]
            if fn == "Fn::If":
                condition, yes, no = arg
                chosen = yes if self.condition(stack, applied, condition) else no
                return self.resolve(stack, applied, chosen)
            if fn == "Fn::FindInMap":
                table, first, second = (self.resolve(stack, applied, a) for a in arg)
                return stack.template["Mappings"][table][first][second]
        return {
            k: v
            for k, v in ((k, self.resolve(stack, applied, v)) for k, v in value.items())
            if v is not NO_VALUE
        }

    def condition(self, stack: Stack, applied: dict[str, Applied], name_or_expr: Any) -> bool:
        expression = (
            stack.template.get("Conditions", {})[name_or_expr]
            if isinstance(name_or_expr, str)
            else name_or_expr
        )
        ((fn, arg),) = expression.items()
        if fn == "Condition":
            return self.condition(stack, applied, arg)
        if fn == "Fn::Equals":
            left, right = (self.resolve(stack, applied, a) for a in arg)
            return bool(left == right)
        if fn == "Fn::Not":
            return not self.condition(stack, applied, arg[0])
        if fn == "Fn::And":
            return all(self.condition(stack, applied, a) for a in arg)
        if fn == "Fn::Or":
            return any(self.condition(stack, applied, a) for a in arg)
        raise DeployError(f"{stack.name}: condition function {fn} is not supported locally")

    def _ref(self, stack: Stack, applied: dict[str, Applied], name: str) -> Any:
        pseudo = {
            "AWS::Partition": "aws",
            "AWS::Region": self.region,
            "AWS::AccountId": self.account,
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::StackName": stack.name,
            "AWS::StackId": f"arn:aws:cloudformation:{self.region}:{self.account}:stack/{stack.name}/local",
            "AWS::NoValue": NO_VALUE,
            "AWS::NotificationARNs": [],
        }
        if name in pseudo:
            return pseudo[name]
        parameters = stack.template.get("Parameters", {})
        if name in parameters:
            return parameters[name].get("Default", "")
        if name in applied:
            return applied[name].physical_id
        raise Unresolved(name, self._why_not(stack, name))

    def _get_att(self, stack: Stack, applied: dict[str, Applied], lid: str, attribute: str) -> Any:
        if lid not in applied:
            raise Unresolved(lid, self._why_not(stack, lid))
        attributes = applied[lid].attributes
        if attribute not in attributes:
            raise DeployError(
                f"{stack.name}: {lid} ({applied[lid].type}) has no attribute {attribute!r} "
                f"locally (it has {sorted(attributes)})"
            )
        return attributes[attribute]

    def _why_not(self, stack: Stack, lid: str) -> str:
        for unapplied in self.report.unapplied:
            if unapplied.stack == stack.name and unapplied.logical_id == lid:
                return f"not applied ({unapplied.reason})"
        if lid in self.report.deferred.get(stack.name, {}):
            return "deferred"
        return "not applied"

    # ------------------------------------------------------------------ applying
    def providers(self, stack: Stack) -> dict[str, str]:
        """Functions that serve custom resources (their ServiceToken), by logical id, and
        what references only them (a provider's layer): the local deployer applies the
        custom resources itself."""
        resources = stack.template.get("Resources", {})
        providers: dict[str, str] = {}
        for resource in resources.values():
            if resource["Type"].startswith("Custom::") or resource["Type"] == (
                "AWS::CloudFormation::CustomResource"
            ):
                for lid in references(resource.get("Properties", {}).get("ServiceToken", {})):
                    if lid in resources:
                        providers[lid] = resource["Type"]
        for lid, resource in resources.items():
            if resource["Type"] != "AWS::Lambda::LayerVersion":
                continue
            users = [
                other
                for other, r in resources.items()
                if lid in set(references(r.get("Properties", {})))
            ]
            if users and all(u in providers for u in users):
                providers[lid] = providers[users[0]]
        return providers

    def apply(self, only: Iterable[str] | None = None) -> Report:
        self.ensure_bootstrap()
        for stack in self.assembly.ordered_stacks(only):
            self.apply_stack(stack)
        return self.report

    def apply_stack(self, stack: Stack) -> None:
        template = stack.template
        resources = template.get("Resources", {})
        providers = self.providers(stack)
        previous = self._records(stack)
        applied: dict[str, Applied] = {}
        self.progress(f"{stack.name}: {len(resources)} resources")
        try:
            for lid in resource_order(template):
                resource = resources[lid]
                type_ = resource["Type"]
                if type_ == "AWS::CDK::Metadata":
                    continue
                unapplied = self._unapplied_reason(stack, applied, lid, resource, providers)
                if unapplied is not None:
                    self.report.unapplied.append(Unapplied(stack.name, lid, type_, unapplied))
                    continue
                properties = dict(resource.get("Properties", {}))
                if type_.startswith("Custom::"):
                    properties.pop("ServiceToken", None)
                try:
                    props = self.resolve(stack, applied, properties)
                except Unresolved as exc:
                    self.report.unapplied.append(
                        Unapplied(stack.name, lid, type_, f"uses {exc.logical_id}, {exc.why}")
                    )
                    continue
                if type_ in self.deferred_types:
                    self.report.deferred.setdefault(stack.name, {})[lid] = {
                        "Type": type_,
                        "Properties": props,
                    }
                    self.report.unapplied.append(
                        Unapplied(stack.name, lid, type_, self.deferred_types[type_])
                    )
                    continue
                digest = hashlib.sha256(
                    json.dumps([type_, props], sort_keys=True, default=str).encode()
                ).hexdigest()
                before = previous.get(lid)
                if before is not None and before.digest == digest and before.type == type_:
                    applied[lid] = before
                    self.report.applied.append(before)
                    self.report.notes.extend(before.notes)  # said again, every time
                    continue
                pending = Pending(stack.name, lid, type_, props, before, stack.tags)
                noted = len(self.report.notes)
                try:
                    out = self.appliers[type_](self, pending)
                except Unresolved as exc:
                    self.report.unapplied.append(
                        Unapplied(stack.name, lid, type_, f"uses {exc.logical_id}, {exc.why}")
                    )
                    continue
                except DeployError:
                    raise
                except Exception as exc:
                    raise DeployError(
                        f"{stack.name}: {lid} ({type_}) failed to apply: {exc}"
                    ) from exc
                applied[lid] = Applied(
                    stack.name,
                    lid,
                    type_,
                    out.physical_id,
                    out.attributes,
                    digest,
                    before is None,
                    self.report.notes[noted:],
                )
                self.report.applied.append(applied[lid])
        finally:  # what was applied before a failure is found again by the next deployment
            self._save_records(stack, applied)
        for _name, output in template.get("Outputs", {}).items():
            export = output.get("Export", {}).get("Name")
            if export is None:
                continue
            try:
                self.exports[self.resolve(stack, applied, export)] = self.resolve(
                    stack, applied, output["Value"]
                )
            except Unresolved:
                pass  # an importer of it is listed as using what is not applied

    def _unapplied_reason(
        self,
        stack: Stack,
        applied: dict[str, Applied],
        lid: str,
        resource: dict,
        providers: dict[str, str],
    ) -> str | None:
        type_ = resource["Type"]
        if "Condition" in resource and not self.condition(stack, applied, resource["Condition"]):
            return f"its condition {resource['Condition']} is false, so CloudFormation makes none"
        if lid in providers:
            return (
                f"the provider of {providers[lid]}: the local deployer applies that custom "
                "resource itself"
            )
        if type_ not in self.appliers and type_ not in self.deferred_types:
            return f"the local platform has no applier for {type_}"
        return None


class ConformingClient:
    """A boto3 client whose operations first bring each parameter's scalar type to the
    operation's input shape (the coercion CloudFormation applies to template values)."""

    def __init__(self, client: Any):
        self._client = client
        self.exceptions = client.exceptions
        self.meta = client.meta

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._client, name)
        model = self._client.meta.service_model
        operation = self._client.meta.method_to_api_mapping.get(name)
        if operation is None or not callable(attribute):
            return attribute
        shape = model.operation_model(operation).input_shape

        def call(**kwargs: Any) -> Any:
            return attribute(**conform(shape, kwargs))

        return call


def conform(shape: Any, value: Any) -> Any:
    if shape is None:
        return value
    kind = shape.type_name
    if kind == "structure" and isinstance(value, dict):
        return {
            k: conform(shape.members.get(k), v) if k in shape.members else v
            for k, v in value.items()
        }
    if kind == "list" and isinstance(value, list):
        return [conform(shape.member, v) for v in value]
    if kind == "map" and isinstance(value, dict):
        return {k: conform(shape.value, v) for k, v in value.items()}
    if kind == "string" and isinstance(value, bool):
        return "true" if value else "false"
    if kind == "string" and isinstance(value, int | float):
        return str(value)
    if kind in ("integer", "long") and isinstance(value, str) and value.lstrip("-").isdigit():
        return int(value)
    if kind in ("double", "float") and isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    if kind == "boolean" and isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    return value


class _NoValue:
    def __repr__(self) -> str:
        return "AWS::NoValue"


NO_VALUE: Any = _NoValue()

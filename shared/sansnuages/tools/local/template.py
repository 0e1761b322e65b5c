"""The deployment as the local runtime sees it, derived from `template.yaml`.

The SAM template is expanded to CloudFormation by aws-sam-translator (the same code that runs in
CloudFormation's transform), then the intrinsics the runtime needs are resolved for one stack
name, account and region. Buckets, queues, tables, triggers and environment variables therefore
come from the one file that is deployed: local and cloud cannot drift apart.

No AWS call is made: managed policies come from a local map and pseudo parameters from
`LOCAL_ACCOUNT_ID` / `LOCAL_REGION` (those of the moto server).
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import yaml

LOCAL_ACCOUNT_ID = "123456789012"
LOCAL_REGION = "us-east-1"
_CODE_BUCKET = "sansnuages-local-code"
_LOCAL_MANAGED_POLICIES = {
    name: f"arn:aws:iam::aws:policy/service-role/{name}"
    for name in (
        "AWSLambdaBasicExecutionRole",
        "AWSLambdaSQSQueueExecutionRole",
        "AWSLambdaDynamoDBExecutionRole",
    )
} | {"AWSXrayWriteOnlyAccess": "arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess"}


class TemplateError(ValueError):
    """The template cannot be turned into a local deployment (invalid, or beyond what we model)."""


# ------------------------------------------------------------------------------------ the model


@dataclass(frozen=True)
class QueueNotification:
    queue_logical_id: str
    events: tuple[str, ...]
    prefix: str = ""
    suffix: str = ""


@dataclass(frozen=True)
class BucketSpec:
    logical_id: str
    name: str
    notifications: tuple[QueueNotification, ...] = ()


@dataclass(frozen=True)
class QueueSpec:
    logical_id: str
    name: str
    url: str
    arn: str
    visibility_timeout: int = 30
    message_retention_s: int = 345600
    dead_letter: str | None = None
    """Logical id of the dead-letter queue, from the RedrivePolicy."""
    max_receive_count: int | None = None
    fifo: bool = False


@dataclass(frozen=True)
class TableSpec:
    logical_id: str
    name: str
    key_schema: tuple[dict[str, str], ...]
    attribute_definitions: tuple[dict[str, str], ...]
    global_secondary_indexes: tuple[dict[str, Any], ...] = ()
    billing_mode: str = "PAY_PER_REQUEST"
    ttl_attribute: str | None = None


@dataclass(frozen=True)
class LayerSpec:
    logical_id: str
    content_dir: Path


@dataclass(frozen=True)
class FunctionSpec:
    logical_id: str
    name: str
    code_dir: Path
    handler: str
    runtime: str
    memory_mb: int
    timeout_s: int
    environment: Mapping[str, str] = field(default_factory=dict)
    layers: tuple[str, ...] = ()
    """Logical ids of the layers, as written in the SAM template."""
    ephemeral_storage_mb: int = 512


@dataclass(frozen=True)
class EventSourceSpec:
    logical_id: str
    function_logical_id: str
    queue_logical_id: str
    batch_size: int
    batching_window_s: int
    report_batch_item_failures: bool
    enabled: bool = True


@dataclass(frozen=True)
class ScheduleSpec:
    logical_id: str
    function_logical_id: str
    expression: str
    input: str | None
    timezone: str = "UTC"


@dataclass(frozen=True)
class HttpApiSpec:
    logical_id: str
    function_logical_id: str
    routes: tuple[str, ...]
    """Route keys as API Gateway writes them: `ANY /{proxy+}`, `GET /items`."""
    payload_format_version: str = "2.0"
    cors: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Stack:
    name: str
    region: str
    account_id: str
    endpoint_url: str | None
    buckets: tuple[BucketSpec, ...]
    queues: tuple[QueueSpec, ...]
    tables: tuple[TableSpec, ...]
    layers: tuple[LayerSpec, ...]
    functions: tuple[FunctionSpec, ...]
    event_sources: tuple[EventSourceSpec, ...]
    schedules: tuple[ScheduleSpec, ...]
    http_apis: tuple[HttpApiSpec, ...]

    def queue(self, logical_id: str) -> QueueSpec:
        return _find(self.queues, logical_id)

    def bucket(self, logical_id: str) -> BucketSpec:
        return _find(self.buckets, logical_id)

    def table(self, logical_id: str) -> TableSpec:
        return _find(self.tables, logical_id)

    def function(self, logical_id: str) -> FunctionSpec:
        return _find(self.functions, logical_id)

    def consumer_of(self, queue_logical_id: str) -> EventSourceSpec | None:
        """The event source that drains a queue, if a function consumes it."""
        return next((e for e in self.event_sources if e.queue_logical_id == queue_logical_id), None)


def _find(specs: tuple[Any, ...], logical_id: str) -> Any:
    for spec in specs:
        if spec.logical_id == logical_id:
            return spec
    raise KeyError(f"no resource {logical_id!r} in the stack")


# ------------------------------------------------------------------------------------ loading


def load_stack(
    template_path: Path,
    stack_name: str = "sansnuages",
    parameters: Mapping[str, str] | None = None,
    *,
    endpoint_url: str | None = None,
    region: str = LOCAL_REGION,
    account_id: str = LOCAL_ACCOUNT_ID,
) -> Stack:
    """Read, expand and resolve `template_path` into the resources of stack `stack_name`.

    Queue URLs take the form the SQS endpoint answers with: `{endpoint_url}/{account}/{name}`
    (moto) or the AWS form when no endpoint is given.
    """
    template_path = Path(template_path)
    cfn = expanded_template(
        template_path.read_text(), region, template_path.parent / EXPANSIONS_DIR
    )
    resolver = Resolver(cfn, stack_name, parameters or {}, region, account_id, endpoint_url)
    return _build_stack(cfn, resolver, template_path.parent.resolve())


_EXPANDED: dict[tuple[str, str], dict[str, Any]] = {}
EXPANSIONS_DIR = Path(".sansnuages") / "expanded"
"""Beside the template: expansions already made, one JSON file per template text, region,
translator version and version of this module (which prepares the template for it)."""


def expanded_template(
    text: str, region: str = LOCAL_REGION, folder: Path | None = None
) -> dict[str, Any]:
    """`expand(parse_template(text))`, reused when it was made before for the same text and
    region: the translator takes one to two seconds of CPU (half of it its imports), several
    on a busy machine, and every start-up of the local runtime, and a test session many times
    over, expand the same template. Made once per process (a copy is returned), and, with
    `folder`, once per machine: kept there as JSON under a key of everything the expansion
    depends on, so an edited template, another translator or an edit of this module expand
    again."""
    key = (text, region)
    if key not in _EXPANDED:
        _EXPANDED[key] = _expanded_once(text, region, folder)
    return copy.deepcopy(_EXPANDED[key])


def _expanded_once(text: str, region: str, folder: Path | None) -> dict[str, Any]:
    if folder is None:
        return expand(parse_template(text), region=region)
    from importlib.metadata import version

    digest = hashlib.sha256()
    for part in (text, region, version("aws-sam-translator"), Path(__file__).read_text()):
        digest.update(part.encode() + b"\0")
    path = folder / f"{digest.hexdigest()[:32]}.json"
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        pass
    cfn = expand(parse_template(text), region=region)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".{os.getpid()}.part")
        partial.write_text(json.dumps(cfn))
        partial.replace(path)  # whole or absent, even with two start-ups at once
    except OSError:
        pass  # a read-only folder: expanded each time, as before
    return cfn


_SafeLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
"""libyaml's parser when PyYAML was built with it (ten times faster than the pure Python one;
the constructors, and so the values, are the same)."""


class _CfnLoader(_SafeLoader):
    """YAML loader that reads the short forms of intrinsics (`!Ref`, `!Sub` ...)."""


def _intrinsic(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    tag = node.tag[1:]
    name = tag if tag in ("Ref", "Condition") else f"Fn::{tag}"
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
        if tag == "GetAtt":
            value = str(value).split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    return {name: value}


_CfnLoader.add_multi_constructor("!", _intrinsic)


def parse_template(text: str) -> dict[str, Any]:
    data = yaml.load(text, Loader=_CfnLoader)  # noqa: S506 (a SafeLoader subclass)
    if not isinstance(data, dict) or not isinstance(data.get("Resources"), dict):
        raise TemplateError("not a CloudFormation template: no Resources mapping")
    return data


def expand(sam: dict[str, Any], region: str = LOCAL_REGION) -> dict[str, Any]:
    """SAM -> CloudFormation, offline. Local code paths travel as `s3://<code bucket>/<id>/<path>`."""
    from samtranslator.model.exceptions import InvalidDocumentException
    from samtranslator.parser.parser import Parser
    from samtranslator.translator.translator import Translator

    sam = _with_code_as_s3(sam)
    translator = Translator(None, Parser(), boto_session=boto3.Session(region_name=region))
    try:
        return translator.translate(
            sam, parameter_values={}, get_managed_policy_map=lambda: _LOCAL_MANAGED_POLICIES
        )
    except InvalidDocumentException as error:
        causes = "; ".join(str(cause) for cause in error.causes)
        raise TemplateError(f"invalid SAM template: {causes}") from error
    finally:
        translator.metrics.publish()  # a no-op publisher; unpublished metrics log a warning


def _with_code_as_s3(sam: dict[str, Any]) -> dict[str, Any]:
    """The translator accepts only S3 code locations; encode the local folder in the key."""
    resources = {}
    for logical_id, resource in sam["Resources"].items():
        props = resource.get("Properties") if isinstance(resource, dict) else None
        if isinstance(props, dict):
            for key in ("CodeUri", "ContentUri"):
                if isinstance(props.get(key), str) and not props[key].startswith("s3://"):
                    folder = props[key].strip("/") or "."
                    props = {**props, key: f"s3://{_CODE_BUCKET}/{logical_id}/{folder}"}
            resource = {**resource, "Properties": props}
        resources[logical_id] = resource
    return {**sam, "Resources": resources}


def _local_code(code: Any, root: Path) -> tuple[str, Path]:
    """(SAM logical id, folder) back from the S3 location made by `_with_code_as_s3`."""
    if not isinstance(code, dict) or code.get("S3Bucket") != _CODE_BUCKET:
        raise TemplateError(f"code is not a local folder: {code!r}")
    logical_id, _, folder = str(code["S3Key"]).partition("/")
    return logical_id, (root / folder).resolve()


# ------------------------------------------------------------------------------------ intrinsics

_PHYSICAL_NAME_PROPERTY = {
    "AWS::S3::Bucket": "BucketName",
    "AWS::SQS::Queue": "QueueName",
    "AWS::DynamoDB::Table": "TableName",
    "AWS::Lambda::Function": "FunctionName",
    "AWS::Scheduler::Schedule": "Name",
    "AWS::Logs::LogGroup": "LogGroupName",
    "AWS::SNS::Topic": "TopicName",
}
_SUB_VARIABLE = re.compile(r"\$\{([^}]*)\}")


class Resolver:
    """Resolves CloudFormation intrinsics for one stack, as CloudFormation would at deploy time.

    Physical names not set by the template are derived from stack name and logical id
    (`sansnuages-ingestqueue`), deterministic so that every process computes the same ones.
    """

    def __init__(
        self,
        cfn: dict[str, Any],
        stack_name: str,
        parameters: Mapping[str, str],
        region: str,
        account_id: str,
        endpoint_url: str | None,
    ) -> None:
        self.resources: dict[str, Any] = cfn["Resources"]
        self.stack_name = stack_name
        self.region = region
        self.account_id = account_id
        self.endpoint_url = endpoint_url.rstrip("/") if endpoint_url else None
        self.parameters = self._parameter_values(cfn.get("Parameters", {}), parameters)
        self.conditions: dict[str, Any] = cfn.get("Conditions", {})
        self._names: dict[str, str] = {}

    def _parameter_values(
        self, declared: Mapping[str, Any], given: Mapping[str, str]
    ) -> dict[str, Any]:
        unknown = set(given) - set(declared)
        if unknown:
            raise TemplateError(f"unknown parameters: {sorted(unknown)}")
        values: dict[str, Any] = {}
        for name, spec in declared.items():
            value = given.get(name, spec.get("Default"))
            if value is None:
                raise TemplateError(f"parameter {name} has no default and no value")
            allowed = spec.get("AllowedValues")
            if allowed and str(value) not in [str(a) for a in allowed]:
                raise TemplateError(f"parameter {name}={value!r} is not one of {allowed}")
            values[name] = value
        return values

    def pseudo(self) -> dict[str, Any]:
        return {
            "AWS::AccountId": self.account_id,
            "AWS::Region": self.region,
            "AWS::StackName": self.stack_name,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::StackId": (
                f"arn:aws:cloudformation:{self.region}:{self.account_id}:stack/{self.stack_name}/local"
            ),
            "AWS::NotificationARNs": [],
        }

    # -- names, refs and attributes

    def physical_name(self, logical_id: str) -> str:
        if logical_id not in self._names:
            resource = self._resource(logical_id)
            prop = _PHYSICAL_NAME_PROPERTY.get(resource["Type"])
            given = resource.get("Properties", {}).get(prop) if prop else None
            name = str(self.resolve(given)) if given else f"{self.stack_name}-{logical_id}".lower()
            if resource["Type"] == "AWS::SQS::Queue" and self._is_fifo(resource):
                name = name if name.endswith(".fifo") else f"{name}.fifo"
            self._names[logical_id] = name
        return self._names[logical_id]

    def _is_fifo(self, resource: Mapping[str, Any]) -> bool:
        return _as_bool(self.resolve(resource.get("Properties", {}).get("FifoQueue", False)))

    def _resource(self, logical_id: str) -> dict[str, Any]:
        try:
            resource: dict[str, Any] = self.resources[logical_id]
        except KeyError:
            raise TemplateError(f"reference to an unknown resource {logical_id!r}") from None
        return resource

    def ref(self, name: str) -> Any:
        if name in self.parameters:
            return self.parameters[name]
        pseudo = self.pseudo()
        if name in pseudo:
            return pseudo[name]
        rtype = self._resource(name)["Type"]
        if rtype == "AWS::SQS::Queue":
            return self.queue_url(name)
        if rtype in ("AWS::SQS::QueuePolicy", "AWS::Lambda::LayerVersion"):
            return self.arn(name)
        return self.physical_name(name)

    def queue_url(self, logical_id: str) -> str:
        base = self.endpoint_url or f"https://sqs.{self.region}.amazonaws.com"
        return f"{base}/{self.account_id}/{self.physical_name(logical_id)}"

    def arn(self, logical_id: str) -> str:
        rtype = self._resource(logical_id)["Type"]
        name = self.physical_name(logical_id)
        region, account = self.region, self.account_id
        forms = {
            "AWS::S3::Bucket": f"arn:aws:s3:::{name}",
            "AWS::SQS::Queue": f"arn:aws:sqs:{region}:{account}:{name}",
            "AWS::DynamoDB::Table": f"arn:aws:dynamodb:{region}:{account}:table/{name}",
            "AWS::Lambda::Function": f"arn:aws:lambda:{region}:{account}:function:{name}",
            "AWS::Lambda::LayerVersion": f"arn:aws:lambda:{region}:{account}:layer:{name}:1",
            "AWS::IAM::Role": f"arn:aws:iam::{account}:role/{name}",
        }
        if rtype in forms:
            return forms[rtype]
        service = rtype.split("::")[1].lower()
        return f"arn:aws:{service}:{region}:{account}:{name}"

    def get_att(self, logical_id: str, attribute: str) -> str:
        rtype = self._resource(logical_id)["Type"]
        if attribute == "Arn":
            return self.arn(logical_id)
        if (rtype, attribute) in (("AWS::SQS::Queue", "QueueName"), ("AWS::IAM::Role", "RoleId")):
            return self.physical_name(logical_id)
        if (rtype, attribute) == ("AWS::SQS::Queue", "QueueUrl"):
            return self.queue_url(logical_id)
        if rtype == "AWS::ApiGatewayV2::Api" and attribute == "ApiEndpoint":
            return (
                f"https://{self.physical_name(logical_id)}.execute-api.{self.region}.amazonaws.com"
            )
        raise TemplateError(f"Fn::GetAtt {logical_id}.{attribute} is not modelled locally")

    # -- the intrinsic functions

    def resolve(self, value: Any) -> Any:
        """`value` with every intrinsic replaced by its value; AWS::NoValue entries dropped."""
        if isinstance(value, list):
            return [v for v in (self.resolve(v) for v in value) if v is not _NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, arg),) = value.items()
            handler = self._functions().get(key)
            if handler is not None:
                return handler(arg)
        resolved = {k: self.resolve(v) for k, v in value.items()}
        return {k: v for k, v in resolved.items() if v is not _NO_VALUE}

    def _functions(self) -> dict[str, Callable[[Any], Any]]:
        return {
            "Ref": lambda arg: _NO_VALUE if arg == "AWS::NoValue" else self.ref(arg),
            "Fn::GetAtt": self._fn_get_att,
            "Fn::Sub": self._fn_sub,
            "Fn::Join": self._fn_join,
            "Fn::Select": self._fn_select,
            "Fn::Split": self._fn_split,
            "Fn::If": self._fn_if,
            "Fn::Equals": lambda arg: self.resolve(arg[0]) == self.resolve(arg[1]),
            "Fn::Not": lambda arg: not self.resolve(arg[0]),
            "Fn::And": lambda arg: all(self.resolve(a) for a in arg),
            "Fn::Or": lambda arg: any(self.resolve(a) for a in arg),
            "Condition": self.condition,
        }

    def condition(self, name: str) -> bool:
        if name not in self.conditions:
            raise TemplateError(f"unknown condition {name!r}")
        return bool(self.resolve(self.conditions[name]))

    def _fn_get_att(self, arg: Any) -> str:
        logical_id, attribute = arg.split(".", 1) if isinstance(arg, str) else arg
        return self.get_att(logical_id, self.resolve(attribute))

    def _fn_sub(self, arg: Any) -> str:
        text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])
        values = {name: self.resolve(v) for name, v in variables.items()}

        def substitute(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in values:
                return str(values[name])
            if "." in name and not name.startswith("AWS::"):
                return self.get_att(*name.split(".", 1))
            return str(self.ref(name))

        return _SUB_VARIABLE.sub(substitute, text)

    def _fn_join(self, arg: Any) -> str:
        delimiter, items = arg
        return str(delimiter).join(str(v) for v in self.resolve(items))

    def _fn_select(self, arg: Any) -> Any:
        index, items = arg
        return self.resolve(items)[int(self.resolve(index))]

    def _fn_split(self, arg: Any) -> list[str]:
        delimiter, text = arg
        return str(self.resolve(text)).split(delimiter)

    def _fn_if(self, arg: Any) -> Any:
        name, if_true, if_false = arg
        return self.resolve(if_true if self.condition(name) else if_false)


class _NoValue:
    """`Ref: AWS::NoValue`: the property is removed."""


_NO_VALUE = _NoValue()


def _as_bool(value: Any) -> bool:
    return value is True or str(value).lower() == "true"


# ------------------------------------------------------------------------------------ building


def _build_stack(cfn: dict[str, Any], resolver: Resolver, root: Path) -> Stack:
    by_type: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for logical_id, resource in cfn["Resources"].items():
        if "Condition" in resource and not resolver.condition(resource["Condition"]):
            continue
        by_type.setdefault(resource["Type"], []).append((logical_id, resource))

    def each(rtype: str) -> list[tuple[str, dict[str, Any]]]:
        return by_type.get(rtype, [])

    queues = tuple(_queue(lid, r, resolver) for lid, r in each("AWS::SQS::Queue"))
    queue_by_arn = {q.arn: q.logical_id for q in queues}
    layer_ids = {
        lid: _local_code(r["Properties"]["Content"], root)
        for lid, r in each("AWS::Lambda::LayerVersion")
    }
    functions = tuple(
        _function(lid, r, resolver, root, layer_ids) for lid, r in each("AWS::Lambda::Function")
    )
    function_by_arn = {resolver.arn(f.logical_id): f.logical_id for f in functions}
    function_by_name = {f.name: f.logical_id for f in functions} | function_by_arn
    return Stack(
        name=resolver.stack_name,
        region=resolver.region,
        account_id=resolver.account_id,
        endpoint_url=resolver.endpoint_url,
        buckets=tuple(
            _bucket(lid, r, resolver, queue_by_arn) for lid, r in each("AWS::S3::Bucket")
        ),
        queues=queues,
        tables=tuple(_table(lid, r, resolver) for lid, r in each("AWS::DynamoDB::Table")),
        layers=tuple(LayerSpec(sam_id, folder) for sam_id, folder in layer_ids.values()),
        functions=functions,
        event_sources=tuple(
            _event_source(lid, r, resolver, queue_by_arn, function_by_name)
            for lid, r in each("AWS::Lambda::EventSourceMapping")
        ),
        schedules=tuple(
            _schedule(lid, r, resolver, function_by_arn)
            for lid, r in each("AWS::Scheduler::Schedule")
        ),
        http_apis=tuple(
            api
            for lid, r in each("AWS::ApiGatewayV2::Api")
            for api in _http_apis(lid, r, resolver, function_by_arn)
        ),
    )


def _props(resource: Mapping[str, Any], resolver: Resolver) -> dict[str, Any]:
    props: dict[str, Any] = resolver.resolve(resource.get("Properties", {}))
    return props


def _lookup(mapping: Mapping[str, str], key: str, what: str) -> str:
    try:
        return mapping[key]
    except KeyError:
        raise TemplateError(f"{what} {key!r} is not a resource of this template") from None


def _queue(logical_id: str, resource: dict[str, Any], resolver: Resolver) -> QueueSpec:
    props = _props(resource, resolver)
    redrive = props.get("RedrivePolicy") or {}
    dead_letter = None
    if redrive:
        dead_letter_arn = redrive["deadLetterTargetArn"]
        dead_letter = next(
            (
                lid
                for lid, r in resolver.resources.items()
                if r["Type"] == "AWS::SQS::Queue" and resolver.arn(lid) == dead_letter_arn
            ),
            None,
        )
        if dead_letter is None:
            raise TemplateError(
                f"{logical_id}: dead-letter queue {dead_letter_arn} not in template"
            )
    return QueueSpec(
        logical_id=logical_id,
        name=resolver.physical_name(logical_id),
        url=resolver.queue_url(logical_id),
        arn=resolver.arn(logical_id),
        visibility_timeout=int(props.get("VisibilityTimeout", 30)),
        message_retention_s=int(props.get("MessageRetentionPeriod", 345600)),
        dead_letter=dead_letter,
        max_receive_count=int(redrive["maxReceiveCount"]) if redrive else None,
        fifo=_as_bool(props.get("FifoQueue", False)),
    )


def _bucket(
    logical_id: str, resource: dict[str, Any], resolver: Resolver, queue_by_arn: Mapping[str, str]
) -> BucketSpec:
    props = _props(resource, resolver)
    notifications = []
    for config in props.get("NotificationConfiguration", {}).get("QueueConfigurations", []):
        rules = config.get("Filter", {}).get("S3Key", {}).get("Rules", [])
        by_name = {rule["Name"].lower(): rule["Value"] for rule in rules}
        notifications.append(
            QueueNotification(
                queue_logical_id=_lookup(queue_by_arn, config["Queue"], "notification queue"),
                events=(config["Event"],),
                prefix=by_name.get("prefix", ""),
                suffix=by_name.get("suffix", ""),
            )
        )
    return BucketSpec(logical_id, resolver.physical_name(logical_id), tuple(notifications))


def _table(logical_id: str, resource: dict[str, Any], resolver: Resolver) -> TableSpec:
    props = _props(resource, resolver)
    ttl = props.get("TimeToLiveSpecification") or {}
    return TableSpec(
        logical_id=logical_id,
        name=resolver.physical_name(logical_id),
        key_schema=tuple(props["KeySchema"]),
        attribute_definitions=tuple(props["AttributeDefinitions"]),
        global_secondary_indexes=tuple(props.get("GlobalSecondaryIndexes", [])),
        billing_mode=props.get("BillingMode", "PROVISIONED"),
        ttl_attribute=ttl.get("AttributeName") if _as_bool(ttl.get("Enabled", False)) else None,
    )


def _function(
    logical_id: str,
    resource: dict[str, Any],
    resolver: Resolver,
    root: Path,
    layers: Mapping[str, tuple[str, Path]],
) -> FunctionSpec:
    layer_arns = {resolver.arn(lid): sam_id for lid, (sam_id, _) in layers.items()}
    props = _props(resource, resolver)
    variables = props.get("Environment", {}).get("Variables", {})
    _, code_dir = _local_code(props["Code"], root)
    return FunctionSpec(
        logical_id=logical_id,
        name=resolver.physical_name(logical_id),
        code_dir=code_dir,
        handler=props["Handler"],
        runtime=props["Runtime"],
        memory_mb=int(props.get("MemorySize", 128)),
        timeout_s=int(props.get("Timeout", 3)),
        environment={str(k): str(v) for k, v in variables.items()},
        layers=tuple(_lookup(layer_arns, arn, "layer") for arn in props.get("Layers", [])),
        ephemeral_storage_mb=int(props.get("EphemeralStorage", {}).get("Size", 512)),
    )


def _event_source(
    logical_id: str,
    resource: dict[str, Any],
    resolver: Resolver,
    queue_by_arn: Mapping[str, str],
    function_by_name: Mapping[str, str],
) -> EventSourceSpec:
    props = _props(resource, resolver)
    return EventSourceSpec(
        logical_id=logical_id,
        function_logical_id=_lookup(function_by_name, props["FunctionName"], "function"),
        queue_logical_id=_lookup(queue_by_arn, props["EventSourceArn"], "event source queue"),
        batch_size=int(props.get("BatchSize", 10)),
        batching_window_s=int(props.get("MaximumBatchingWindowInSeconds", 0)),
        report_batch_item_failures="ReportBatchItemFailures"
        in props.get("FunctionResponseTypes", []),
        enabled=_as_bool(props.get("Enabled", True)),
    )


def _schedule(
    logical_id: str,
    resource: dict[str, Any],
    resolver: Resolver,
    function_by_arn: Mapping[str, str],
) -> ScheduleSpec:
    props = _props(resource, resolver)
    target = props["Target"]
    return ScheduleSpec(
        logical_id=logical_id,
        function_logical_id=_lookup(function_by_arn, target["Arn"], "schedule target"),
        expression=props["ScheduleExpression"],
        input=target.get("Input"),
        timezone=props.get("ScheduleExpressionTimezone", "UTC"),
    )


_METHODS = {"x-amazon-apigateway-any-method": "ANY"}
_INVOCATION_ARN = re.compile(r"/functions/(?P<arn>arn:[^/]+)/invocations$")


def _http_apis(
    logical_id: str,
    resource: dict[str, Any],
    resolver: Resolver,
    function_by_arn: Mapping[str, str],
) -> list[HttpApiSpec]:
    """One spec per function behind the API, with the routes it serves (from the OpenAPI body)."""
    body = _props(resource, resolver).get("Body", {})
    routes: dict[str, list[str]] = {}
    versions: dict[str, str] = {}
    for path, operations in body.get("paths", {}).items():
        for method, operation in operations.items():
            integration = operation.get("x-amazon-apigateway-integration", {})
            match = _INVOCATION_ARN.search(str(integration.get("uri", "")))
            if match is None:
                continue
            function_id = _lookup(function_by_arn, match.group("arn"), "API integration")
            routes.setdefault(function_id, []).append(
                f"{_METHODS.get(method, method.upper())} {path}"
            )
            versions[function_id] = str(integration.get("payloadFormatVersion", "2.0"))
    return [
        HttpApiSpec(
            logical_id=logical_id,
            function_logical_id=function_id,
            routes=tuple(keys),
            payload_format_version=versions[function_id],
            cors=body.get("x-amazon-apigateway-cors"),
        )
        for function_id, keys in routes.items()
    ]

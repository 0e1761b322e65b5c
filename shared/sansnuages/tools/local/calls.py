"""The AWS calls of the local functions, as the moto server received them, and the IAM
permissions that each call needs on AWS.

Every local function signs its requests with an access key id of its own (`function_access_key`),
so the server can tell who called, whatever the client: botocore, s3fs, or GDAL's `/vsis3/`
(which makes its own PutObject, multipart and ranged GET requests, out of botocore's sight).
With a call log asked for, the server writes one JSON line per request (`request_line`); here
each line becomes the IAM actions, resources and condition keys AWS would authorise it against
(`permissions`), and a role's statements can be asked whether they allow them (`allows`).

S3's IAM actions are not its operation names: a HEAD is `s3:GetObject`, every step of a multipart
upload is `s3:PutObject` (its abort, `s3:AbortMultipartUpload`), a copy needs `s3:GetObject` on
its source, a DeleteObjects batch `s3:DeleteObject` on each key. A GET or HEAD of a missing key
answers 404 only to a caller allowed `s3:ListBucket` with the key as `s3:prefix` (403 otherwise),
so such a call needs that too. DynamoDB's transactions and SQS's batches are authorised as their
parts (`dynamodb:PutItem`, `sqs:SendMessage` ...).
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

FUNCTION_KEY_PREFIX = "LOCAL"
"""Access key ids of the local functions: `LOCAL<logical id>`, e.g. `LOCALIngestFunction`."""
MAX_RECORDED_BODY = 32 * 1024**2
"""Request bodies read for their targets (JSON of DynamoDB and SQS, S3's DeleteObjects XML)."""

_CREDENTIAL = re.compile(r"Credential=([^/,\s]+)/[^/]+/([^/]+)/([^/]+)/")


def function_access_key(logical_id: str) -> str:
    return f"{FUNCTION_KEY_PREFIX}{logical_id}"


def function_of(access_key: str) -> str | None:
    """The logical id of the local function that signed with `access_key`, if one did."""
    if access_key.startswith(FUNCTION_KEY_PREFIX) and len(access_key) > len(FUNCTION_KEY_PREFIX):
        return access_key[len(FUNCTION_KEY_PREFIX) :]
    return None


# ------------------------------------------------------------------------ the server's side


def request_line(environ: Mapping[str, Any], body: bytes | None) -> dict[str, Any]:
    """What the call log keeps of one WSGI request (the status is added once answered):
    who signed it and for which service, the method, path and query, the headers that change
    the IAM action, and the targets named in its body (not the body itself)."""
    query = str(environ.get("QUERY_STRING", ""))
    access_key, service = signer(str(environ.get("HTTP_AUTHORIZATION", "")), query)
    return {
        "key": access_key,
        "service": service,
        "method": str(environ.get("REQUEST_METHOD", "")),
        "path": str(environ.get("PATH_INFO", "")),
        "query": query,
        "target": str(environ.get("HTTP_X_AMZ_TARGET", "")),
        "copy_source": str(environ.get("HTTP_X_AMZ_COPY_SOURCE", "")),
        "targets": body_targets(service, str(environ.get("CONTENT_TYPE", "")), body),
        "agent": str(environ.get("HTTP_USER_AGENT", "")).split(" ", 1)[0],
    }


def signer(authorization: str, query: str) -> tuple[str, str]:
    """(access key id, service) of a signed request: from the Authorization header, or from the
    query of a presigned URL; Signature Version 2 (`AWS key:signature`, `AWSAccessKeyId=`) is
    S3's alone. ("", "") for an unsigned request."""
    match = _CREDENTIAL.search(authorization)
    if match:
        return match.group(1), match.group(3)
    if authorization.startswith("AWS "):
        return authorization[4:].partition(":")[0], "s3"
    parameters = parse_qs(query)
    if "X-Amz-Credential" in parameters:
        key, _, scope = parameters["X-Amz-Credential"][0].partition("/")
        parts = scope.split("/")
        return key, parts[2] if len(parts) > 2 else ""
    if "AWSAccessKeyId" in parameters:
        return parameters["AWSAccessKeyId"][0], "s3"
    return "", ""


def wants_body(environ: Mapping[str, Any]) -> bool:
    """Whether the request's body names what it acts on: every DynamoDB and SQS request, and
    S3's DeleteObjects (never an object's bytes)."""
    _, service = signer(
        str(environ.get("HTTP_AUTHORIZATION", "")), str(environ.get("QUERY_STRING", ""))
    )
    if service == "s3":
        return environ.get("REQUEST_METHOD") == "POST" and "delete" in parse_qs(
            str(environ.get("QUERY_STRING", "")), keep_blank_values=True
        )
    return service in ("dynamodb", "sqs")


def body_targets(service: str, content_type: str, body: bytes | None) -> dict[str, Any]:
    """The tables, queues or keys a request body names."""
    if not body:
        return {}
    if service == "s3":
        root = ElementTree.fromstring(body)  # noqa: S314 (our own clients' requests)
        keys = [e.text or "" for e in root.iter() if e.tag.rsplit("}", 1)[-1] == "Key"]
        return {"keys": keys}
    if content_type.startswith("application/x-www-form-urlencoded"):
        form = parse_qs(body.decode())
        return {k: v[0] for k, v in form.items() if k in ("Action", "QueueUrl", "QueueName")}
    document = json.loads(body)
    targets: dict[str, Any] = {
        k: document[k] for k in ("TableName", "IndexName", "QueueUrl", "QueueName") if k in document
    }
    if isinstance(document.get("RequestItems"), dict):
        targets["tables"] = sorted(document["RequestItems"])
    if isinstance(document.get("TransactItems"), list):
        targets["transact"] = [
            [operation, part.get("TableName", "")]
            for item in document["TransactItems"]
            for operation, part in item.items()
        ]
    return targets


# ------------------------------------------------------------------------ what a call needs


@dataclass(frozen=True)
class Call:
    """One recorded request."""

    key: str
    service: str
    method: str
    path: str
    query: str = ""
    target: str = ""
    copy_source: str = ""
    targets: Mapping[str, Any] = field(default_factory=dict)
    status: int = 200
    agent: str = ""
    """The first word of the User-Agent: `GDAL/3.9.3`, `Boto3/1.40.0`, `aiobotocore/2.24.0` ..."""

    @classmethod
    def from_line(cls, line: Mapping[str, Any]) -> Call:
        if "unreadable" in line:
            raise UnknownCall(f"the server could not record a request: {line['unreadable']}")
        return cls(
            key=str(line.get("key", "")),
            service=str(line.get("service", "")),
            method=str(line.get("method", "")),
            path=str(line.get("path", "")),
            query=str(line.get("query", "")),
            target=str(line.get("target", "")),
            copy_source=str(line.get("copy_source", "")),
            targets=dict(line.get("targets") or {}),
            status=int(line.get("status", 0)),
            agent=str(line.get("agent", "")),
        )

    @property
    def function(self) -> str | None:
        return function_of(self.key)


@dataclass(frozen=True, order=True)
class Permission:
    """An IAM action on a resource, with the condition keys of the request."""

    action: str
    resource: str
    context: tuple[tuple[str, str], ...] = ()

    def __str__(self) -> str:
        condition = "".join(f" [{k}={v}]" for k, v in self.context)
        return f"{self.action} {self.resource}{condition}"


class UnknownCall(ValueError):
    """A request this module cannot map to IAM actions: teach it, rather than guess."""


def permissions(call: Call, region: str, account: str) -> list[Permission]:
    if call.service == "s3":
        return _s3(call)
    if call.service == "dynamodb":
        return _dynamodb(call, region, account)
    if call.service == "sqs":
        return _sqs(call, region, account)
    raise UnknownCall(f"service {call.service!r}: {call.method} {call.path}")


_S3_BUCKET_GETS = {
    "uploads": "s3:ListBucketMultipartUploads",
    "location": "s3:GetBucketLocation",
    "versions": "s3:ListBucketVersions",
    "versioning": "s3:GetBucketVersioning",
    "notification": "s3:GetBucketNotification",
}
_S3_OBJECT_GETS = {
    "uploadId": "s3:ListMultipartUploadParts",
    "tagging": "s3:GetObjectTagging",
    "acl": "s3:GetObjectAcl",
    "versionId": "s3:GetObjectVersion",
    "attributes": "s3:GetObjectAttributes",
}


def _s3(call: Call) -> list[Permission]:
    bucket, _, key = call.path.lstrip("/").partition("/")
    if not bucket:
        raise UnknownCall(f"S3 request without a bucket: {call.method} {call.path}")
    query = parse_qs(call.query, keep_blank_values=True)
    if key:
        return _s3_object(call, f"arn:aws:s3:::{bucket}", key, query)
    return _s3_bucket(call, f"arn:aws:s3:::{bucket}", query)


def _s3_bucket(call: Call, bucket_arn: str, query: dict[str, list[str]]) -> list[Permission]:
    if call.method == "GET":
        special = [_S3_BUCKET_GETS[q] for q in query if q in _S3_BUCKET_GETS]
        if special:
            return [Permission(special[0], bucket_arn)]
        prefix = query.get("prefix", [None])[0]
        context = (("s3:prefix", prefix),) if prefix is not None else ()
        return [Permission("s3:ListBucket", bucket_arn, context)]
    if call.method == "HEAD":
        return [Permission("s3:ListBucket", bucket_arn)]
    if call.method == "POST" and "delete" in query:
        keys = call.targets.get("keys", [])
        return [Permission("s3:DeleteObject", f"{bucket_arn}/{k}") for k in keys]
    raise UnknownCall(f"S3 bucket request {call.method} {call.path}?{call.query}")


def _s3_object(
    call: Call, bucket_arn: str, key: str, query: dict[str, list[str]]
) -> list[Permission]:
    object_arn = f"{bucket_arn}/{key}"
    if call.method in ("GET", "HEAD"):
        special = [_S3_OBJECT_GETS[q] for q in query if q in _S3_OBJECT_GETS]
        if special:
            return [Permission(special[0], object_arn)]
        needed = [Permission("s3:GetObject", object_arn)]
        if call.status == 404:
            needed.append(Permission("s3:ListBucket", bucket_arn, (("s3:prefix", key),)))
        return needed
    if call.method == "PUT" and not ("tagging" in query or "acl" in query):
        needed = [Permission("s3:PutObject", object_arn)]
        if call.copy_source:
            source = unquote(urlsplit(call.copy_source).path).lstrip("/")
            needed.append(Permission("s3:GetObject", f"arn:aws:s3:::{source}"))
        return needed
    if call.method == "POST" and ("uploads" in query or "uploadId" in query):
        return [Permission("s3:PutObject", object_arn)]
    if call.method == "DELETE":
        if "uploadId" in query:
            return [Permission("s3:AbortMultipartUpload", object_arn)]
        if "versionId" in query:
            return [Permission("s3:DeleteObjectVersion", object_arn)]
        return [Permission("s3:DeleteObject", object_arn)]
    raise UnknownCall(f"S3 object request {call.method} {call.path}?{call.query}")


_TRANSACT_ACTIONS = {
    "Put": "dynamodb:PutItem",
    "Update": "dynamodb:UpdateItem",
    "Delete": "dynamodb:DeleteItem",
    "ConditionCheck": "dynamodb:ConditionCheckItem",
    "Get": "dynamodb:GetItem",
}


def _dynamodb(call: Call, region: str, account: str) -> list[Permission]:
    operation = call.target.rpartition(".")[2]
    if not operation:
        raise UnknownCall(f"DynamoDB request without a target: {call.path}")

    def table(name: str) -> str:
        return f"arn:aws:dynamodb:{region}:{account}:table/{name}"

    if operation in ("TransactWriteItems", "TransactGetItems"):
        return [
            Permission(_TRANSACT_ACTIONS[part], table(name))
            for part, name in call.targets.get("transact", [])
        ]
    if operation in ("BatchWriteItem", "BatchGetItem"):
        return [Permission(f"dynamodb:{operation}", table(n)) for n in call.targets["tables"]]
    name = call.targets.get("TableName")
    if not name:
        raise UnknownCall(f"DynamoDB {operation} without a table")
    resource = table(name)
    if call.targets.get("IndexName"):
        resource = f"{resource}/index/{call.targets['IndexName']}"
    return [Permission(f"dynamodb:{operation}", resource)]


_SQS_BATCHES = {
    "SendMessageBatch": "SendMessage",
    "DeleteMessageBatch": "DeleteMessage",
    "ChangeMessageVisibilityBatch": "ChangeMessageVisibility",
}


def _sqs(call: Call, region: str, account: str) -> list[Permission]:
    operation = call.target.rpartition(".")[2] or str(call.targets.get("Action", ""))
    if not operation:
        raise UnknownCall(f"SQS request without an action: {call.path}")
    operation = _SQS_BATCHES.get(operation, operation)
    url = call.targets.get("QueueUrl")
    name = str(url).rstrip("/").rpartition("/")[2] if url else call.targets.get("QueueName")
    resource = f"arn:aws:sqs:{region}:{account}:{name}" if name else "*"
    return [Permission(f"sqs:{operation}", resource)]


# ------------------------------------------------------------------------ what a role allows


def _pattern(text: str) -> str:
    """An IAM wildcard (`*`, `?`) as a regular expression."""
    return "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in text)


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _matches(patterns: Any, value: str, *, case: bool = True) -> bool:
    flags = 0 if case else re.IGNORECASE
    return any(re.fullmatch(_pattern(str(p)), value, flags) for p in _as_list(patterns))


_OPERATORS = {
    "StringLike": lambda patterns, value: _matches(patterns, value),
    "StringEquals": lambda values, value: value in [str(v) for v in _as_list(values)],
}


def _condition_holds(condition: Mapping[str, Any], context: Mapping[str, str]) -> bool:
    for operator, tests in condition.items():
        if_exists = operator.endswith("IfExists")
        check = _OPERATORS.get(operator.removesuffix("IfExists"))
        if check is None:
            raise UnknownCall(f"condition operator {operator} is not modelled")
        for key, expected in tests.items():
            if key not in context:
                if not if_exists:
                    return False
                continue
            if not check(expected, context[key]):
                return False
    return True


@dataclass(frozen=True, order=True)
class Grant:
    """One action pattern of an Allow statement on one resource pattern; a statement whose
    condition tests one key against several values gives one grant per value."""

    action: str
    resource: str
    condition: tuple[tuple[str, str, str], ...] = ()
    """(operator, key, value) tests, all of which must hold."""

    def allows(self, permission: Permission) -> bool:
        if not _matches(self.action, permission.action, case=False):
            return False
        if not _matches(self.resource, permission.resource):
            return False
        context = dict(permission.context)
        for operator, key, value in self.condition:
            if not _condition_holds({operator: {key: value}}, context):
                return False
        return True

    def __str__(self) -> str:
        condition = "".join(f" [{key} {op} {value}]" for op, key, value in self.condition)
        return f"{self.action} {self.resource}{condition}"


def grants(statements: Sequence[Mapping[str, Any]]) -> list[Grant]:
    """The grants of a role's statements (Allow only: the roles here have no Deny)."""
    found: list[Grant] = []
    for statement in statements:
        if statement.get("Effect") != "Allow":
            continue
        if "NotAction" in statement or "NotResource" in statement:
            raise UnknownCall(f"NotAction / NotResource are not modelled: {statement}")
        condition = statement.get("Condition", {})
        tests = [
            (operator, key, values)
            for operator, by_key in condition.items()
            for key, values in by_key.items()
        ]
        for operator, _key, _values in tests:
            if _OPERATORS.get(operator.removesuffix("IfExists")) is None:
                raise UnknownCall(f"condition operator {operator} is not modelled")
        alternatives: list[tuple[tuple[str, str, str], ...]]
        if len(tests) == 1:  # one key, several values: any of them
            operator, key, values = tests[0]
            alternatives = [((operator, key, str(v)),) for v in _as_list(values)]
        elif any(len(_as_list(values)) > 1 for _, _, values in tests):
            raise UnknownCall(f"a condition of several keys with several values: {condition}")
        else:  # no condition, or several keys of one value each: all of them
            alternatives = [tuple((op, key, str(_as_list(v)[0])) for op, key, v in tests)]
        for action in _as_list(statement.get("Action", [])):
            for resource in _as_list(statement.get("Resource", [])):
                for tested in alternatives:
                    found.append(Grant(str(action), str(resource), tested))
    return found


def allows(role: Sequence[Grant], permission: Permission) -> bool:
    return any(grant.allows(permission) for grant in role)


def used_grants(role: Sequence[Grant], needed: Iterable[Permission]) -> set[Grant]:
    """The grants of `role` that allow at least one of `needed`."""
    return {grant for permission in needed for grant in role if grant.allows(permission)}

#!/usr/bin/env python3
"""IAM for the local stack, evaluated the way AWS evaluates it.

moto allows every call. On AWS each function runs under its own execution
role, every call is authorised action by action against that role's
policies and the resource's own policy, and every use of a customer managed
KMS key (directly, or through an encrypted queue, topic, bucket or table) is
authorised by the key policy. This module is that check for the local stack:

* `build(cfn, resolver)` turns the translated template (SAM policy templates
  already expanded by aws-sam-translator) into `.local/iam.json`: one identity
  per function (its own access key id), the role's inline and managed
  policies with every ARN resolved, the queue/topic/bucket policies, the key
  policies and which resource is encrypted under which key;
* `Enforcer` (used by devtools/moto_server.py) reads that file, works out
  from each request to the emulator which IAM actions on which resources it
  needs (every action inside TransactWriteItems / BatchWriteItem /
  BatchGetItem, the index ARN of a Query on a GSI, the KMS uses an encrypted
  queue, topic, bucket or table implies) and answers a denied call the way
  the service does (AccessDeniedException, AuthorizationError, AccessDenied);
* `.venv/bin/python devtools/iam.py report` prints, per function, what was denied and
  which granted permissions no call used.

moto has IAM access-control code (moto.iam.access_control); it is not used
because it treats an Allow statement whose condition does not hold as an
explicit deny, matches actions case-sensitively, has no NotResource, no `?`
wildcard and no service principals, and checks one action per request (so
`dynamodb:TransactWriteItems`, which is not an IAM action at all, would be
what it asks for).

Calls signed with any other access key (tests, the admin CLI, the local
stack's own gateway) are the operator's and are not restricted.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import re
import sys
import threading
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

# AWS managed policies the template's roles attach (documents as AWS
# publishes them). An attached managed policy missing from this table is an
# error at render time, never a silent "allow nothing".
AWS_MANAGED_POLICIES: dict[str, dict[str, Any]] = {
    "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole": {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
                "Resource": "*",
            }
        ],
    },
    "arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess": {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": [
                    "xray:PutTraceSegments",
                    "xray:PutTelemetryRecords",
                    "xray:GetSamplingRules",
                    "xray:GetSamplingTargets",
                    "xray:GetSamplingStatisticSummaries",
                ],
                "Resource": "*",
            }
        ],
    },
    # What SAM attaches for a `Type: DynamoDB` event.
    "arn:aws:iam::aws:policy/service-role/AWSLambdaDynamoDBExecutionRole": {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": [
                    "dynamodb:DescribeStream",
                    "dynamodb:GetRecords",
                    "dynamodb:GetShardIterator",
                    "dynamodb:ListStreams",
                    "logs:CreateLogGroup",
                    "logs:CreateLogStream",
                    "logs:PutLogEvents",
                ],
                "Resource": "*",
            }
        ],
    },
    "arn:aws:iam::aws:policy/service-role/AWSLambdaSQSQueueExecutionRole": {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"],
                "Resource": "*",
            },
            {
                "Effect": "Allow",
                "Action": ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
                "Resource": "*",
            },
        ],
    },
}


# Services whose calls never reach the emulator (Lambda's runtime ships the
# logs and traces): a grant of theirs is neither used nor unused here.
NOT_EMULATED = {"logs", "xray"}

# ============================================================== policy language


def as_list(v: Any) -> list[Any]:
    if v is None:
        return []
    return v if isinstance(v, list) else [v]


def wildcard(pattern: str, value: str, ignore_case: bool = False) -> bool:
    """IAM wildcards: `*` any run of characters, `?` exactly one."""
    rx = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(rx, value, re.DOTALL | (re.IGNORECASE if ignore_case else 0)) is not None


@dataclass(frozen=True)
class Principal:
    """Who makes a call: a role session (`arn`, `role_arn`) or a service."""

    account: str
    arn: str = ""
    role_arn: str = ""
    service: str = ""

    def matches(self, element: Any) -> bool:
        """Does a statement's `Principal` name this caller directly (an
        account principal, which delegates to IAM policies, does not)."""
        if element == "*":
            return True
        if not isinstance(element, dict):
            return False
        for kind, values in element.items():
            for v in as_list(values):
                if kind == "Service" and self.service and v == self.service:
                    return True
                if kind == "AWS" and not self.service:
                    if v == "*" or v in (self.arn, self.role_arn):
                        return True
        return False

    def delegated_by(self, element: Any) -> bool:
        """Does the statement name this caller's account (`<account>` or
        `arn:aws:iam::<account>:root`): access then also needs an IAM policy."""
        if self.service or not isinstance(element, dict):
            return False
        return any(
            v in (self.account, f"arn:aws:iam::{self.account}:root") for v in as_list(element.get("AWS"))
        )


_CONDITION_OPERATORS = {
    "StringEquals": lambda want, have: want == have,
    "StringNotEquals": lambda want, have: want == have,
    "StringEqualsIgnoreCase": lambda want, have: want.lower() == have.lower(),
    "StringNotEqualsIgnoreCase": lambda want, have: want.lower() == have.lower(),
    "StringLike": lambda want, have: wildcard(want, have),
    "StringNotLike": lambda want, have: wildcard(want, have),
    "ArnEquals": lambda want, have: wildcard(want, have),
    "ArnLike": lambda want, have: wildcard(want, have),
    "ArnNotEquals": lambda want, have: wildcard(want, have),
    "ArnNotLike": lambda want, have: wildcard(want, have),
    "Bool": lambda want, have: want.lower() == have.lower(),
    "NumericEquals": lambda want, have: float(want) == float(have),
    "NumericLessThan": lambda want, have: float(have) < float(want),
    "NumericLessThanEquals": lambda want, have: float(have) <= float(want),
    "NumericGreaterThan": lambda want, have: float(have) > float(want),
    "NumericGreaterThanEquals": lambda want, have: float(have) >= float(want),
}


class PolicyError(Exception):
    pass


def condition_holds(condition: dict[str, Any] | None, context: dict[str, Any]) -> bool:
    """Every operator block holds (AND); within a key, any value matches (OR)."""
    for raw_op, block in (condition or {}).items():
        op, if_exists, set_op = raw_op, False, ""
        if ":" in op:
            set_op, op = op.split(":", 1)
        if op.endswith("IfExists"):
            op, if_exists = op[: -len("IfExists")], True
        for key, wanted in block.items():
            have = context.get(key)
            if isinstance(have, bool):
                have = "true" if have else "false"
            if op == "Null":
                absent = have is None
                if not any(str(w).lower() == ("true" if absent else "false") for w in as_list(wanted)):
                    return False
                continue
            if op not in _CONDITION_OPERATORS:
                raise PolicyError(f"condition operator {raw_op} is not supported locally")
            negated = "Not" in op
            if have is None:
                if if_exists or negated:
                    continue
                return False
            values = [str(h) for h in as_list(have)]
            test = _CONDITION_OPERATORS[op]

            def one(h: str) -> bool:
                hit = any(test(str(w), h) for w in as_list(wanted))
                return not hit if negated else hit

            ok = all(one(h) for h in values) if set_op == "ForAllValues" else any(one(h) for h in values)
            if not ok:
                return False
    return True


def _statement_covers(stmt: dict[str, Any], action: str, resource: str) -> bool:
    if "NotAction" in stmt:
        if any(wildcard(a, action, ignore_case=True) for a in as_list(stmt["NotAction"])):
            return False
    elif not any(wildcard(a, action, ignore_case=True) for a in as_list(stmt.get("Action"))):
        return False
    if "NotResource" in stmt:
        return not any(wildcard(r, resource) for r in as_list(stmt["NotResource"]))
    if "Resource" in stmt:
        return any(wildcard(r, resource) for r in as_list(stmt["Resource"]))
    return True  # resource policies may leave Resource out


@dataclass
class Decision:
    denied_by: str = ""  # where the explicit deny is, if any
    allowed_by: list[str] = field(default_factory=list)  # statement references
    delegated: bool = False  # a key/resource policy names the caller's account


def evaluate(
    documents: list[tuple[str, dict[str, Any]]],
    action: str,
    resource: str,
    context: dict[str, Any],
    principal: Principal | None = None,
) -> Decision:
    """One set of policies. Identity policies: `principal` None (the
    statements have no Principal). Resource and key policies: only
    statements whose Principal names the caller apply."""
    d = Decision()
    for name, doc in documents:
        for i, stmt in enumerate(as_list(doc.get("Statement"))):
            if not _statement_covers(stmt, action, resource):
                continue
            names_caller = True
            delegates = False
            if principal is not None:
                elem = stmt.get("Principal")
                if "NotPrincipal" in stmt:
                    names_caller = not principal.matches(stmt["NotPrincipal"])
                else:
                    names_caller = principal.matches(elem)
                    delegates = principal.delegated_by(elem)
            if not (names_caller or delegates):
                continue
            if not condition_holds(stmt.get("Condition"), context):
                continue
            ref = f"{name}#{stmt.get('Sid') or i}"
            if stmt.get("Effect") == "Deny":
                d.denied_by = d.denied_by or ref
            elif names_caller:
                d.allowed_by.append(ref)
            else:
                d.delegated = True
    return d


# ================================================================ building


def access_key_id(function_logical_id: str) -> str:
    """A stable access key id per function (ASIA: temporary credentials, as
    Lambda hands a function), recognisable in the emulator's logs."""
    digest = base64.b32encode(hashlib.sha256(function_logical_id.encode()).digest()).decode()
    return "ASIA" + digest[:16]


def build(cfn: dict[str, Any], resolver: Any) -> dict[str, Any]:
    """`.local/iam.json` from the translated template."""
    resources: dict[str, Any] = cfn.get("Resources", {})
    account, region = resolver.pseudo["AWS::AccountId"], resolver.pseudo["AWS::Region"]

    def managed(entry: Any) -> tuple[str, dict[str, Any]]:
        if isinstance(entry, dict) and isinstance(entry.get("Ref"), str) and entry["Ref"] in resources:
            lid = entry["Ref"]
            res = resources[lid]
            if res["Type"] != "AWS::IAM::ManagedPolicy":
                raise PolicyError(f"ManagedPolicyArns: {lid} is not an AWS::IAM::ManagedPolicy")
            return lid, resolver.resolve(res["Properties"]["PolicyDocument"])
        arn = str(resolver.resolve(entry))
        if arn not in AWS_MANAGED_POLICIES:
            raise PolicyError(f"managed policy {arn} is unknown to devtools/iam.py: add its document")
        return arn.rsplit("/", 1)[-1], AWS_MANAGED_POLICIES[arn]

    principals: dict[str, Any] = {}
    for lid, res in resources.items():
        if res["Type"] != "AWS::Lambda::Function":
            continue
        role = (res.get("Properties") or {}).get("Role")
        role_lid = role.get("Fn::GetAtt", [None])[0] if isinstance(role, dict) else None
        if isinstance(role_lid, str) and "." in role_lid:
            role_lid = role_lid.split(".", 1)[0]
        if role_lid not in resources:
            raise PolicyError(f"{lid}: its Role is not a role of this template")
        props = resources[role_lid].get("Properties") or {}
        policies = [
            (p["PolicyName"], resolver.resolve(p["PolicyDocument"])) for p in props.get("Policies") or []
        ]
        policies += [managed(m) for m in props.get("ManagedPolicyArns") or []]
        # The policies AWS attaches in the same role by AWS::IAM::Policy.
        for plid, pres in resources.items():
            if pres["Type"] == "AWS::IAM::Policy":
                pprops = pres.get("Properties") or {}
                if any(r == {"Ref": role_lid} for r in pprops.get("Roles") or []):
                    policies.append((plid, resolver.resolve(pprops["PolicyDocument"])))
        role_name = resolver.physical_name(role_lid)
        fn_name = resolver.physical_name(lid)
        principals[access_key_id(lid)] = {
            "function": lid,
            "function_name": fn_name,
            "role_arn": f"arn:aws:iam::{account}:role/{role_name}",
            "session_arn": f"arn:aws:sts::{account}:assumed-role/{role_name}/{fn_name}",
            "policies": [{"name": n, "document": d} for n, d in policies],
        }

    resource_policies: dict[str, list[dict[str, Any]]] = {}

    def attach(target_arn: str, name: str, doc: dict[str, Any]) -> None:
        resource_policies.setdefault(target_arn, []).append({"name": name, "document": doc})

    keys: dict[str, Any] = {}
    encrypted: dict[str, str] = {}
    key_arn_by_ref: dict[str, str] = {}
    for lid, res in resources.items():
        t, props = res["Type"], res.get("Properties") or {}
        if t == "AWS::KMS::Key":
            arn = resolver.arn(lid)
            keys[arn] = {"logical_id": lid, "policy": resolver.resolve(props.get("KeyPolicy") or {}), "aliases": []}
            key_arn_by_ref[str(resolver.ref(lid))] = arn
            key_arn_by_ref[arn] = arn
    for lid, res in resources.items():
        t, props = res["Type"], res.get("Properties") or {}
        if t == "AWS::KMS::Alias":
            target = str(resolver.resolve(props["TargetKeyId"]))
            if target in key_arn_by_ref:
                keys[key_arn_by_ref[target]]["aliases"].append(str(resolver.resolve(props["AliasName"])))

    def key_of(ref: Any) -> str | None:
        if ref is None:
            return None
        value = str(resolver.resolve(ref))
        if value in key_arn_by_ref:
            return key_arn_by_ref[value]
        for arn, k in keys.items():
            if any(value == a or value.endswith(":" + a) for a in k["aliases"]):
                return arn
        return None  # an AWS managed key (alias/aws/sqs, ...): no key policy of ours

    for lid, res in resources.items():
        t, props = res["Type"], res.get("Properties") or {}
        if t == "AWS::SQS::QueuePolicy":
            for q in props.get("Queues") or []:
                url = str(resolver.resolve(q))
                attach(f"arn:aws:sqs:{region}:{account}:{url.rstrip('/').rsplit('/', 1)[-1]}", lid,
                       resolver.resolve(props["PolicyDocument"]))
        elif t == "AWS::SNS::TopicPolicy":
            for topic in props.get("Topics") or []:
                attach(str(resolver.resolve(topic)), lid, resolver.resolve(props["PolicyDocument"]))
        elif t == "AWS::S3::BucketPolicy":
            attach(f"arn:aws:s3:::{resolver.resolve(props['Bucket'])}", lid,
                   resolver.resolve(props["PolicyDocument"]))
        elif t == "AWS::SQS::Queue":
            k = key_of(props.get("KmsMasterKeyId"))
            if k:
                encrypted[resolver.arn(lid)] = k
        elif t == "AWS::SNS::Topic":
            k = key_of(props.get("KmsMasterKeyId"))
            if k:
                encrypted[resolver.arn(lid)] = k
        elif t == "AWS::DynamoDB::Table":
            sse = props.get("SSESpecification") or {}
            k = key_of(sse.get("KMSMasterKeyId")) if sse.get("SSEEnabled") else None
            if k:
                encrypted[resolver.arn(lid)] = k
        elif t == "AWS::S3::Bucket":
            for rule in ((props.get("BucketEncryption") or {}).get("ServerSideEncryptionConfiguration") or []):
                default = rule.get("ServerSideEncryptionByDefault") or {}
                k = key_of(default.get("KMSMasterKeyID")) if default.get("SSEAlgorithm") == "aws:kms" else None
                if k:
                    encrypted[resolver.arn(lid)] = k

    return {
        "account": account,
        "region": region,
        "principals": principals,
        "resource_policies": resource_policies,
        "keys": keys,
        "encrypted": encrypted,
        "deliveries": _deliveries(resources, resolver, account, region),
    }


def _deliveries(resources: dict[str, Any], resolver: Any, account: str, region: str) -> list[dict[str, str]]:
    """Every path on which an AWS service delivers into this stack's queues
    and topics (CloudWatch alarm actions -> SNS, SNS subscriptions -> SQS,
    S3 notifications -> SQS), whether or not the local stack runs it: AWS
    authorises each against the target's policy and key policy, and drops
    what it may not deliver without telling anyone.

    Nested stacks count as this stack: the alarms of ops/observability.yaml
    notify this stack's topic. Each is read with its parameters set to what
    this stack passes (`resolver.nested_stack`, devtools/stack.py), so an
    action `!Ref OperatorAlertsTopicArn` is the parent's topic ARN; its paths
    are named `<nested stack>/<resource>`. stack.py admits only alarms,
    dashboards and metric filters there, so paths are all a nested stack adds
    to this file (no role, resource policy, key or encrypted resource)."""
    out = _delivery_paths(resources, resolver, account, region)
    for lid, res in resources.items():
        if res["Type"] != "AWS::CloudFormation::Stack":
            continue
        if not hasattr(resolver, "nested_stack"):
            raise PolicyError(f"{lid}: nested stack, and no template of it to check its delivery paths")
        child = resolver.nested_stack(lid)
        for d in _delivery_paths(child.resources, child, account, region):
            out.append({**d, "from": f"{lid}/{d['from']}"})
    # One check per distinct path.
    unique = {(d["principal"], d["source_arn"], d["target"]): d for d in out}
    return sorted(unique.values(), key=lambda d: (d["target"], d["from"]))


def _delivery_paths(resources: dict[str, Any], resolver: Any, account: str, region: str) -> list[dict[str, str]]:
    """The delivery paths of one stack's resources (see _deliveries)."""
    out: list[dict[str, str]] = []
    for lid, res in resources.items():
        t, props = res["Type"], res.get("Properties") or {}
        if t == "AWS::CloudWatch::Alarm":
            for prop in ("AlarmActions", "OKActions", "InsufficientDataActions"):
                for target in as_list(props.get(prop)):
                    arn = str(resolver.resolve(target))
                    if arn.startswith("arn:aws:sns:"):
                        out.append({"from": lid, "principal": "cloudwatch.amazonaws.com",
                                    "source_arn": f"arn:aws:cloudwatch:{region}:{account}:alarm:{lid}",
                                    "action": "sns:Publish", "target": arn})
        elif t == "AWS::SNS::Subscription" and props.get("Protocol") == "sqs":
            out.append({"from": lid, "principal": "sns.amazonaws.com",
                        "source_arn": str(resolver.resolve(props["TopicArn"])),
                        "action": "sqs:SendMessage", "target": str(resolver.resolve(props["Endpoint"]))})
        elif t == "AWS::Logs::LogGroup" and props.get("KmsKeyId"):
            # CloudWatch Logs encrypts the group's events with the key: the
            # key policy must let the logs service principal use it for
            # this group (its ARN is the encryption context).
            name = str(resolver.resolve(props.get("LogGroupName") or f"{resolver.pseudo['AWS::StackName']}-{lid}"))
            out.append({"from": lid, "principal": f"logs.{region}.amazonaws.com",
                        "source_arn": f"arn:aws:logs:{region}:{account}:log-group:{name}",
                        "action": "kms:use", "target": str(resolver.resolve(props["KmsKeyId"]))})
        elif t == "AWS::S3::Bucket":
            conf = props.get("NotificationConfiguration") or {}
            for q in conf.get("QueueConfigurations") or []:
                out.append({"from": lid, "principal": "s3.amazonaws.com", "source_arn": resolver.arn(lid),
                            "action": "sqs:SendMessage", "target": str(resolver.resolve(q["Queue"]))})
    return out


# ============================================================== enforcement


@dataclass
class Need:
    """One authorisation a request needs."""

    action: str
    resource: str
    # The resource whose policy applies (a queue, topic, bucket; a KMS key).
    policy_resource: str = ""
    kms: bool = False
    context: dict[str, Any] = field(default_factory=dict)


class Denied(Exception):
    def __init__(self, need: Need, message: str):
        super().__init__(message)
        self.need = need


class Enforcer:
    def __init__(self, path: Path):
        self.path = path
        self.lock = threading.Lock()
        # function -> {(action, resource, statement ref)}
        self.used: dict[str, set[tuple[str, str, str]]] = {}
        # (function, action, resource, why) -> count
        self.denials: dict[tuple[str, str, str, str], int] = {}
        self._mtime = 0.0
        # The policy a resource that is not the template's carries in the
        # emulator (a tenant's own queue subscribed to the events topic);
        # moto_server.py sets it.
        self.live_policy: Callable[[str], dict[str, Any] | None] | None = None
        self._load()

    def _load(self) -> None:
        self._mtime = self.path.stat().st_mtime
        self.doc = json.loads(self.path.read_text())
        self.account = self.doc["account"]
        self.region = self.doc["region"]
        self._alias_to_key = {a: arn for arn, k in self.doc["keys"].items() for a in k["aliases"]}
        for k in self.doc["keys"].values():
            for a in k["aliases"]:
                self._alias_to_key[f"arn:aws:kms:{self.region}:{self.account}:{a}"] = self._alias_to_key[a]

    # ---- who
    def principal_for(self, access_key: str) -> dict[str, Any] | None:
        """The function an access key belongs to (None: not a function).
        A re-rendered policy file (template edited, `make run` again with
        the emulator kept) takes effect at once."""
        try:
            if self.path.stat().st_mtime != self._mtime:
                with self.lock:
                    self._load()
        except (OSError, ValueError):
            pass  # mid-write or gone: keep the policies in force
        return self.doc["principals"].get(access_key)

    def _principal(self, who: dict[str, Any]) -> Principal:
        return Principal(account=self.account, arn=who["session_arn"], role_arn=who["role_arn"])

    # ---- KMS keys: the template's key behind an alias, an ARN or moto's key id
    def template_key(self, key_id: str | None) -> str | None:
        if not key_id:
            return None
        if key_id in self.doc["keys"]:
            return key_id
        if key_id in self._alias_to_key:
            return self._alias_to_key[key_id]
        try:  # moto's own key id or ARN: follow its aliases
            from moto.kms.models import kms_backends

            backend = kms_backends[self.account][self.region]
            key = backend.describe_key(key_id)
            for alias in getattr(key, "aliases", {}) or {}:
                if alias in self._alias_to_key:
                    return self._alias_to_key[alias]
        except Exception:
            return None
        return None

    # ---- the check
    def check(self, who: dict[str, Any] | None, needs: list[Need], service_principal: str = "",
              record: bool = True) -> None:
        """Raises Denied for the first need that is not allowed."""
        for need in needs:
            reason = self._decide(who, need, service_principal)
            if reason:
                fn = who["function"] if who else service_principal
                if record:
                    with self.lock:
                        k = (fn, need.action, need.resource, reason)
                        self.denials[k] = self.denials.get(k, 0) + 1
                caller = who["session_arn"] if who else service_principal
                raise Denied(
                    need,
                    f"User: {caller} is not authorized to perform: {need.action} on resource: "
                    f"{need.resource} {reason}",
                )

    def _decide(self, who: dict[str, Any] | None, need: Need, service_principal: str) -> str:
        ctx = {
            "aws:SecureTransport": True,  # the SDK speaks TLS to AWS; locally loopback HTTP stands in
            "aws:PrincipalAccount": self.account,
            **need.context,
        }
        if who:
            principal = self._principal(who)
            ctx.setdefault("aws:PrincipalArn", who["role_arn"])
            identity = evaluate([(p["name"], p["document"]) for p in who["policies"]], need.action, need.resource, ctx)
        else:
            principal = Principal(account=self.account, service=service_principal)
            identity = Decision()
        if need.kms:
            key = self.doc["keys"].get(need.policy_resource)
            if key is None:
                return ""  # an AWS managed key: IAM of the service, nothing of ours
            ctx.setdefault("kms:CallerAccount", self.account)
            kp = evaluate([("key policy", key["policy"])], need.action, need.resource, ctx, principal)
            if kp.denied_by or identity.denied_by:
                return f"with an explicit deny in {kp.denied_by or identity.denied_by}"
            if kp.allowed_by:
                self._record(who, need, kp.allowed_by)
                return ""
            if kp.delegated and identity.allowed_by:
                self._record(who, need, identity.allowed_by)
                return ""
            if kp.delegated:
                return f"because no identity-based policy allows the {need.action} action"
            return "because no resource-based policy allows the " + need.action + " action"
        resource_docs = [
            (p["name"], p["document"]) for p in self.doc["resource_policies"].get(need.policy_resource, [])
        ]
        if not resource_docs and need.policy_resource and self.live_policy is not None:
            live = self.live_policy(need.policy_resource)
            if live:
                resource_docs = [(f"policy of {need.policy_resource}", live)]
        rp = evaluate(resource_docs, need.action, need.resource, ctx, principal)
        if identity.denied_by:
            return f"with an explicit deny in an identity-based policy ({identity.denied_by})"
        if rp.denied_by:
            return f"with an explicit deny in a resource-based policy ({rp.denied_by})"
        if rp.allowed_by or identity.allowed_by:
            self._record(who, need, identity.allowed_by + rp.allowed_by)
            return ""
        if who is None:
            return "because no resource-based policy allows the " + need.action + " action"
        return f"because no identity-based policy allows the {need.action} action"

    def _record(self, who: dict[str, Any] | None, need: Need, refs: list[str]) -> None:
        if not who:
            return
        with self.lock:
            s = self.used.setdefault(who["function"], set())
            for r in refs:
                s.add((need.action, need.resource, r))

    def delivery_needs(self, principal: str, source_arn: str, action: str, target: str) -> list[Need]:
        if action == "kms:use":  # a log group encrypted under `target`
            key = self.template_key(target) or target
            ctx = {"kms:EncryptionContext:aws:logs:arn": source_arn, "aws:SourceAccount": self.account}
            return [Need(a, key, policy_resource=key, kms=True, context=ctx)
                    for a in ("kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey")]
        ctx = {"aws:SourceArn": source_arn, "aws:SourceAccount": self.account}
        service = action.split(":", 1)[0]
        needs = [Need(action, target, policy_resource=target, context=ctx)]
        return needs + self._kms_needs(target, ["kms:GenerateDataKey", "kms:Decrypt"], service, ctx)

    def check_deliveries(self) -> list[str]:
        """The template's service delivery paths that AWS would refuse."""
        problems = []
        for d in self.doc.get("deliveries", []):
            try:
                self.check(None, self.delivery_needs(d["principal"], d["source_arn"], d["action"], d["target"]),
                           d["principal"], record=False)
            except Denied as denied:
                problems.append(f"{d['from']}: {d['principal']} cannot deliver to {d['target']}: {denied}")
        return problems

    # ---- reporting
    def report(self) -> dict[str, Any]:
        with self.lock:
            used = {fn: sorted(list(x) for x in s) for fn, s in self.used.items()}
            denials = [
                {"function": fn, "action": a, "resource": r, "reason": why, "count": n}
                for (fn, a, r, why), n in sorted(self.denials.items())
            ]
        return {"used": used, "denials": denials, "undeliverable": self.check_deliveries()}

    # ---- what a request needs
    def needs(self, service: str, operation: str, params: dict[str, Any], headers: dict[str, str],
              path: str, method: str, query: dict[str, list[str]]) -> list[Need]:
        fn = getattr(self, f"_needs_{service}", None)
        if fn is None:
            # A service the functions have no business calling: ask for it as
            # `<service>:<operation>` on `*`, which no policy here grants.
            return [Need(f"{service}:{operation}", "*")]
        return fn(operation, params, headers, path, method, query)

    def _kms_needs(self, resource_arn: str, actions: list[str], via: str,
                   extra: dict[str, Any] | None = None) -> list[Need]:
        key = self.doc["encrypted"].get(resource_arn)
        if not key:
            return []
        ctx = {"kms:ViaService": f"{via}.{self.region}.amazonaws.com", **(extra or {})}
        return [Need(a, key, policy_resource=key, kms=True, context=ctx) for a in actions]

    def _table_arn(self, name: str) -> str:
        if name.startswith("arn:"):
            return name
        return f"arn:aws:dynamodb:{self.region}:{self.account}:table/{name}"

    def _needs_dynamodb(self, op: str, p: dict[str, Any], *_: Any) -> list[Need]:
        out: list[Need] = []
        tables: set[str] = set()

        def add(action: str, table: str, index: str | None = None) -> None:
            arn = self._table_arn(table)
            tables.add(arn)
            out.append(Need(f"dynamodb:{action}", f"{arn}/index/{index}" if index else arn))

        if op == "TransactWriteItems":
            kinds = {"Put": "PutItem", "Update": "UpdateItem", "Delete": "DeleteItem",
                     "ConditionCheck": "ConditionCheckItem"}
            for entry in p.get("TransactItems") or []:
                for kind, body in entry.items():
                    add(kinds.get(kind, kind), body.get("TableName", ""))
        elif op == "TransactGetItems":
            for entry in p.get("TransactItems") or []:
                add("GetItem", (entry.get("Get") or {}).get("TableName", ""))
        elif op == "BatchWriteItem":
            for table, requests in (p.get("RequestItems") or {}).items():
                add("BatchWriteItem", table)
                for r in requests:
                    add("PutItem" if "PutRequest" in r else "DeleteItem", table)
        elif op == "BatchGetItem":
            for table in p.get("RequestItems") or {}:
                add("BatchGetItem", table)
                add("GetItem", table)
        elif "TableName" in p:
            add(op, p["TableName"], p.get("IndexName"))
        elif op in ("DescribeStream", "GetShardIterator"):
            out.append(Need(f"dynamodb:{op}", p.get("StreamArn") or "*"))
        elif op == "GetRecords":
            # Authorised on the stream the iterator reads (moto's iterators
            # are `<stream arn>|1|<random>`; AWS's are opaque to the caller).
            out.append(Need("dynamodb:GetRecords", str(p.get("ShardIterator") or "").split("|", 1)[0] or "*"))
        else:
            out.append(Need(f"dynamodb:{op}", "*"))
        # Dedupe, keep order.
        seen: set[tuple[str, str]] = set()
        unique = [n for n in out if not ((n.action, n.resource) in seen or seen.add((n.action, n.resource)))]
        for t in sorted(tables):
            unique += self._kms_needs(t, ["kms:Decrypt"], "dynamodb")
        return unique

    def _queue_arn(self, url_or_name: str) -> str:
        name = url_or_name.rstrip("/").rsplit("/", 1)[-1]
        return f"arn:aws:sqs:{self.region}:{self.account}:{name}"

    def _needs_sqs(self, op: str, p: dict[str, Any], *_: Any) -> list[Need]:
        action = {
            "SendMessageBatch": "SendMessage",
            "DeleteMessageBatch": "DeleteMessage",
            "ChangeMessageVisibilityBatch": "ChangeMessageVisibility",
        }.get(op, op)
        if op == "ListQueues":
            return [Need("sqs:ListQueues", "*")]
        queue = p.get("QueueUrl") or p.get("QueueName") or ""
        arn = self._queue_arn(queue)
        needs = [Need(f"sqs:{action}", arn, policy_resource=arn)]
        if action == "SendMessage":
            needs += self._kms_needs(arn, ["kms:GenerateDataKey", "kms:Decrypt"], "sqs")
        elif action == "ReceiveMessage":
            needs += self._kms_needs(arn, ["kms:Decrypt"], "sqs")
        return needs

    def _needs_sns(self, op: str, p: dict[str, Any], *_: Any) -> list[Need]:
        topic = p.get("TopicArn") or p.get("TargetArn") or "*"
        action = "Publish" if op == "PublishBatch" else op
        needs = [Need(f"sns:{action}", topic, policy_resource=topic)]
        if action == "Publish":
            needs += self._kms_needs(topic, ["kms:GenerateDataKey", "kms:Decrypt"], "sns")
        return needs

    def _needs_kms(self, op: str, p: dict[str, Any], *_: Any) -> list[Need]:
        key_id = p.get("KeyId")
        if not key_id and p.get("CiphertextBlob"):
            try:
                from moto.kms.utils import _deserialize_ciphertext_blob

                key_id = _deserialize_ciphertext_blob(base64.b64decode(p["CiphertextBlob"])).key_id
            except Exception:
                key_id = None
        key = self.template_key(key_id) or (key_id or "*")
        ctx = {f"kms:EncryptionContext:{k}": v for k, v in (p.get("EncryptionContext") or {}).items()}
        return [Need(f"kms:{op}", key, policy_resource=key, kms=True, context=ctx)]

    def _needs_s3(self, op: str, p: dict[str, Any], headers: dict[str, str], path: str, method: str,
                  query: dict[str, list[str]]) -> list[Need]:
        parts = urllib.parse.unquote(path).lstrip("/").split("/", 1)
        bucket = parts[0]
        key = parts[1] if len(parts) > 1 else ""
        bucket_arn = f"arn:aws:s3:::{bucket}"
        if not bucket:
            return [Need("s3:ListAllMyBuckets", "*")]
        ctx: dict[str, Any] = {}
        for h in ("x-amz-server-side-encryption", "x-amz-server-side-encryption-aws-kms-key-id"):
            if h in headers:
                ctx[f"s3:{h}"] = headers[h]
        if not key:
            if method in ("GET", "HEAD") and not (set(query) - {"list-type", "prefix", "delimiter",
                                                              "continuation-token", "max-keys",
                                                              "start-after", "encoding-type"}):
                return [Need("s3:ListBucket", bucket_arn, policy_resource=bucket_arn)]
            return [Need(f"s3:{method}Bucket?{'&'.join(sorted(query))}", bucket_arn, policy_resource=bucket_arn)]
        obj = f"{bucket_arn}/{key}"
        if method in ("GET", "HEAD"):
            action, kms = ("s3:ListMultipartUploadParts" if "uploadId" in query else "s3:GetObject"), ["kms:Decrypt"]
        elif method in ("PUT", "POST"):
            action, kms = "s3:PutObject", ["kms:GenerateDataKey"]
            if "uploadId" in query or "uploads" in query:
                kms = ["kms:GenerateDataKey", "kms:Decrypt"]
        elif method == "DELETE":
            action, kms = ("s3:AbortMultipartUpload" if "uploadId" in query else "s3:DeleteObject"), []
        else:
            action, kms = f"s3:{method}Object", []
        needs = [Need(action, obj, policy_resource=bucket_arn, context=ctx)]
        if "x-amz-copy-source" in headers:
            src = urllib.parse.unquote(headers["x-amz-copy-source"]).lstrip("/").split("?", 1)[0]
            needs.append(Need("s3:GetObject", f"arn:aws:s3:::{src}",
                              policy_resource=f"arn:aws:s3:::{src.split('/', 1)[0]}"))
        return needs + self._kms_needs(bucket_arn, kms, "s3")


# ================================================================== report


def report_text(doc: dict[str, Any], live: dict[str, Any]) -> str:
    """Per function: calls denied, and granted (action, resource) pairs that
    no allowed call used."""
    lines: list[str] = []
    used = live.get("used", {})
    for akid, who in sorted(doc["principals"].items(), key=lambda kv: kv[1]["function"]):
        fn = who["function"]
        calls = used.get(fn, [])
        lines.append(f"{fn} ({len(calls)} distinct allowed calls)")
        for d in live.get("denials", []):
            if d["function"] == fn:
                lines.append(f"  DENIED x{d['count']}: {d['action']} on {d['resource']} {d['reason']}")
        for p in who["policies"]:
            for i, stmt in enumerate(as_list(p["document"].get("Statement"))):
                if stmt.get("Effect") != "Allow":
                    continue
                ref = f"{p['name']}#{stmt.get('Sid') or i}"
                for action in as_list(stmt.get("Action")):
                    if action.split(":", 1)[0].lower() in NOT_EMULATED:
                        continue
                    for res in as_list(stmt.get("Resource")):
                        hit = any(
                            r == ref and wildcard(action, a, ignore_case=True) and wildcard(res, rs)
                            for a, rs, r in calls
                        )
                        if not hit:
                            lines.append(f"  unused: {action} on {res} ({ref})")
    for d in live.get("denials", []):
        if d["function"] not in {w["function"] for w in doc["principals"].values()}:
            lines.append(f"{d['function']}: DENIED x{d['count']}: {d['action']} on {d['resource']} {d['reason']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="IAM report of the running local stack")
    ap.add_argument("command", choices=["report"])
    ap.add_argument("--policies", default=".local/iam.json")
    ap.add_argument("--endpoint", default="http://127.0.0.1:5000")
    ap.add_argument("--fail-on-denials", action="store_true",
                    help="exit 1 when any call was refused (the tests cause none on purpose)")
    args = ap.parse_args(argv)
    doc = json.loads(Path(args.policies).read_text())
    try:
        with urllib.request.urlopen(f"{args.endpoint.rstrip('/')}/_stockroom/iam", timeout=10) as resp:
            live = json.loads(resp.read())
    except OSError as exc:
        print(f"iam.py: the emulator at {args.endpoint} does not report IAM ({exc}); is enforcement on?",
              file=sys.stderr)
        return 1
    print(report_text(doc, live))
    denials, undeliverable = live.get("denials", []), live.get("undeliverable", [])
    for problem in undeliverable:
        print(f"UNDELIVERABLE: {problem}")
    if denials or undeliverable:
        print(f"iam.py: {sum(d['count'] for d in denials)} call(s) refused by IAM; "
              f"{len(undeliverable)} delivery path(s) AWS would refuse", file=sys.stderr)
        return 1 if args.fail_on_denials else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())

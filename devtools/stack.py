#!/usr/bin/env python3
"""Stockroom local stack: template.yaml -> plain CloudFormation -> local resources.

The SAM template is translated with aws-sam-translator exactly as the
CloudFormation transform does on AWS (the same code `sam validate` runs), then
the few intrinsic functions the local stack needs are resolved against local
physical names. Nothing here keeps a second list of routes, tables or
functions: everything comes from the translated template.

Subcommands:
  render     write .local/stack.json (read by the Rust gateway) and .local/env
  provision  render, then create the template's tables/queues/topics/buckets
             in the AWS emulator (moto server); idempotent
  show       print the translated CloudFormation template (--nested: the
             templates of its nested stacks instead, by logical id)

Nested stacks are NOT emulated. An `AWS::Serverless::Application` whose
Location is a file (`ops/observability.yaml`) becomes an
`AWS::CloudFormation::Stack` with that path as TemplateURL (samtranslator
leaves it as it is; `sam package`/`sam deploy` upload the file and put its S3
URL there). The local stack reads such a template, checks that it holds only
what the emulator would not run anyway (NOT_EMULATED_NESTED_TYPES: alarms,
dashboards, metric filters) and creates nothing of it; `provision` says so.
devtools/iam.py still checks its delivery paths (alarm actions -> the SNS
topic), with its parameters set to what the parent passes (Resolver.nested_stack).
A nested stack from a URL, or holding anything else, is an error here, never a
silent gap in the local stack.

Python 3.11, boto3, aws-sam-translator 1.110 (pinned in requirements-dev.txt).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import secrets
import string
import sys
import time
from pathlib import Path
from typing import Any, Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))
import iam  # noqa: E402  (devtools/iam.py)

REGION = "us-east-1"
ACCOUNT_ID = "123456789012"
STACK_NAME = "stockroom-local"
# The label moto_server.py gives every table stream (STREAM_LABEL there).
STREAM_LABEL = "2026-01-01T00:00:00.000"
PARTITION = "aws"
URL_SUFFIX = "amazonaws.com"
DEFAULT_ENDPOINT = "http://127.0.0.1:5000"

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_TEMPLATE = ROOT / "template.yaml"
DEFAULT_STATE_DIR = ROOT / ".local"

# samtranslator builds ARNs from the boto session region; fix it before import.
os.environ.setdefault("AWS_DEFAULT_REGION", REGION)


class StackError(Exception):
    pass


# --------------------------------------------------------------------------- translate


class _NoNetworkPolicyLoader:
    """Managed policy loader that never calls IAM (like `sam validate` offline).

    Only AWS-managed policy *names* in Policies need the map; ARNs and inline
    statements translate without it.
    """

    def load(self) -> dict[str, str]:
        return {}


def parameter_overrides() -> dict[str, str]:
    """Like `sam deploy --parameter-overrides`: STOCKROOM_PARAMETER_OVERRIDES="A=1 B=2"."""
    pairs = os.environ.get("STOCKROOM_PARAMETER_OVERRIDES", "").split()
    return dict(pair.partition("=")[::2] for pair in pairs)


def translate(template_path: Path) -> dict[str, Any]:
    from samtranslator.translator.transform import transform
    from samtranslator.yaml_helper import yaml_parse

    sam = yaml_parse(template_path.read_text())
    for res in sam.get("Resources", {}).values():
        props = res.get("Properties") or {}
        if res.get("Type") in ("AWS::Serverless::Function", "AWS::Serverless::LayerVersion"):
            for key in ("CodeUri", "ContentUri"):
                if isinstance(props.get(key), str) and not props[key].startswith("s3://"):
                    props[key] = "s3://bucket/key"
        if res.get("Type") == "AWS::Serverless::Api" and isinstance(props.get("DefinitionUri"), str):
            raise StackError("DefinitionUri (external OpenAPI file) is not supported locally")
    overrides = parameter_overrides()
    unknown = set(overrides) - set(sam.get("Parameters") or {})
    if unknown:
        raise StackError(f"STOCKROOM_PARAMETER_OVERRIDES: unknown parameter(s) {sorted(unknown)}")
    return transform(sam, overrides, _NoNetworkPolicyLoader(), passthrough_metadata=True)


# Resource types a nested stack may hold: what the local stack would not run
# even in template.yaml (CloudWatch and its log metric filters). A table, queue,
# function or policy there would be missing locally without a word: refused.
NOT_EMULATED_NESTED_TYPES = frozenset({
    "AWS::CloudWatch::Alarm",
    "AWS::CloudWatch::CompositeAlarm",
    "AWS::CloudWatch::AnomalyDetector",
    "AWS::CloudWatch::Dashboard",
    "AWS::Logs::MetricFilter",
})


def nested_templates(cfn: dict[str, Any], template_path: Path) -> dict[str, dict[str, Any]]:
    """The template of each nested stack (`AWS::CloudFormation::Stack`) of the
    translated template, by logical id. TemplateURL is a path relative to the
    template's directory, as `sam package` reads it."""
    from samtranslator.yaml_helper import yaml_parse

    out: dict[str, dict[str, Any]] = {}
    for lid, res in (cfn.get("Resources") or {}).items():
        if res.get("Type") != "AWS::CloudFormation::Stack":
            continue
        url = (res.get("Properties") or {}).get("TemplateURL")
        if not isinstance(url, str) or re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", url):
            raise StackError(
                f"{lid}: nested stack at {url!r}: only a template file beside {template_path.name} "
                "(AWS::Serverless::Application Location: <path>) is read locally"
            )
        path = template_path.parent / url
        if not path.is_file():
            raise StackError(f"{lid}: nested template {path} does not exist")
        nested = yaml_parse(path.read_text())
        if not isinstance(nested, dict) or not isinstance(nested.get("Resources"), dict):
            raise StackError(f"{lid}: {path} has no Resources")
        if "Transform" in nested:
            raise StackError(f"{lid}: {path} has a Transform; nested templates are read as plain CloudFormation")
        emulated = sorted(
            f"{n} ({r.get('Type')})" for n, r in nested["Resources"].items()
            if r.get("Type") not in NOT_EMULATED_NESTED_TYPES
        )
        if emulated:
            raise StackError(
                f"{lid} ({url}): the local stack does not create nested stacks, so it would run without "
                f"{', '.join(emulated)}. Keep them in {template_path.name}, or teach devtools/stack.py "
                "to provision nested stacks"
            )
        out[lid] = nested
    return out


# --------------------------------------------------------------------------- resolve


def _rand_id(seed: str, n: int = 10) -> str:
    alphabet = string.ascii_lowercase + string.digits
    h = hashlib.sha256(seed.encode()).digest()
    return "".join(alphabet[b % len(alphabet)] for b in h[:n])


class Resolver:
    """Resolves the intrinsic functions a local run needs, with local names."""

    def __init__(self, cfn: dict[str, Any], endpoint: str, state_dir: Path,
                 nested: dict[str, dict[str, Any]] | None = None,
                 parameters: dict[str, Any] | None = None, stack_name: str = STACK_NAME):
        """`nested`: the templates of the nested stacks (nested_templates);
        `parameters`: the values passed to this stack (default: the
        STOCKROOM_PARAMETER_OVERRIDES of the top-level stack)."""
        self.cfn = cfn
        self.resources: dict[str, Any] = cfn.get("Resources", {})
        self.endpoint = endpoint.rstrip("/")
        self.state_dir = state_dir
        self.nested = nested or {}
        self.stack_name = stack_name
        self.params = {
            name: p.get("Default") for name, p in (cfn.get("Parameters") or {}).items()
        }
        self.params.update(parameter_overrides() if parameters is None else parameters)
        self.pseudo = {
            "AWS::Region": REGION,
            "AWS::AccountId": ACCOUNT_ID,
            "AWS::StackName": stack_name,
            "AWS::StackId": f"arn:aws:cloudformation:{REGION}:{ACCOUNT_ID}:stack/{stack_name}/local",
            "AWS::Partition": PARTITION,
            "AWS::URLSuffix": URL_SUFFIX,
            "AWS::NoValue": None,
            "AWS::NotificationARNs": [],
        }
        self._secrets = self._load_secrets()

    # ---- secrets
    def _secrets_file(self) -> Path:
        return self.state_dir / "secrets.json"

    def _load_secrets(self) -> dict[str, str]:
        f = self._secrets_file()
        if f.exists():
            return json.loads(f.read_text())
        return {}

    def secret_value(self, logical_id: str) -> str:
        if logical_id not in self._secrets:
            props = self.resources[logical_id].get("Properties") or {}
            if "SecretString" in props:
                value = self.resolve(props["SecretString"])
            else:
                gen = props.get("GenerateSecretString") or {}
                length = int(gen.get("PasswordLength", 32))
                alphabet = string.ascii_letters + string.digits
                if not gen.get("ExcludePunctuation") and "ExcludePunctuation" in gen:
                    alphabet += "!#$%&()*+,-.:;<=>?[]^_{|}~"
                for ch in gen.get("ExcludeCharacters", ""):
                    alphabet = alphabet.replace(ch, "")
                value = "".join(secrets.choice(alphabet) for _ in range(length))
            self._secrets[logical_id] = value
            self.state_dir.mkdir(parents=True, exist_ok=True)
            f = self._secrets_file()
            f.write_text(json.dumps(self._secrets, indent=2) + "\n")
            f.chmod(0o600)
        return self._secrets[logical_id]

    # ---- names
    def physical_name(self, logical_id: str) -> str:
        res = self.resources[logical_id]
        props = res.get("Properties") or {}
        name_prop = {
            "AWS::DynamoDB::Table": "TableName",
            "AWS::SQS::Queue": "QueueName",
            "AWS::SNS::Topic": "TopicName",
            "AWS::S3::Bucket": "BucketName",
            "AWS::Lambda::Function": "FunctionName",
            "AWS::SecretsManager::Secret": "Name",
        }.get(res["Type"])
        if name_prop and props.get(name_prop) is not None:
            return str(self.resolve(props[name_prop]))
        name = f"{self.stack_name}-{logical_id}"
        if res["Type"] == "AWS::S3::Bucket":
            name = name.lower()
        if res["Type"] == "AWS::SQS::Queue" and props.get("FifoQueue"):
            name += ".fifo"
        if res["Type"] == "AWS::SNS::Topic" and props.get("FifoTopic"):
            name += ".fifo"
        return name

    def arn(self, logical_id: str) -> str:
        t = self.resources[logical_id]["Type"]
        name = self.physical_name(logical_id)
        if t == "AWS::DynamoDB::Table":
            return f"arn:aws:dynamodb:{REGION}:{ACCOUNT_ID}:table/{name}"
        if t == "AWS::SQS::Queue":
            return f"arn:aws:sqs:{REGION}:{ACCOUNT_ID}:{name}"
        if t == "AWS::SNS::Topic":
            return f"arn:aws:sns:{REGION}:{ACCOUNT_ID}:{name}"
        if t == "AWS::S3::Bucket":
            return f"arn:aws:s3:::{name}"
        if t == "AWS::Lambda::Function":
            return f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{name}"
        if t == "AWS::SecretsManager::Secret":
            return f"arn:aws:secretsmanager:{REGION}:{ACCOUNT_ID}:secret:{logical_id}"
        if t == "AWS::IAM::Role":
            return f"arn:aws:iam::{ACCOUNT_ID}:role/{name}"
        if t == "AWS::KMS::Key":
            return f"arn:aws:kms:{REGION}:{ACCOUNT_ID}:key/{self.ref(logical_id)}"
        return f"arn:aws:local:{REGION}:{ACCOUNT_ID}:{logical_id}"

    def ref(self, name: str) -> Any:
        if name in self.pseudo:
            return self.pseudo[name]
        if name in self.params:
            return self.params[name]
        if name not in self.resources:
            raise StackError(f"Ref to unknown name {name!r}")
        t = self.resources[name]["Type"]
        if t == "AWS::SQS::Queue":
            return f"{self.endpoint}/{ACCOUNT_ID}/{self.physical_name(name)}"
        if t in ("AWS::SNS::Topic",):
            return self.arn(name)
        if t == "AWS::SecretsManager::Secret":
            # An ARN on AWS; locally the logical id, which dynamic references resolve.
            return name
        if t == "AWS::ApiGateway::RestApi":
            return _rand_id(f"{STACK_NAME}/{name}")
        if t == "AWS::ApiGateway::Stage":
            return self.resolve(self.resources[name]["Properties"]["StageName"])
        if t == "AWS::KMS::Alias":
            # Ref of an alias is its name (what the functions encrypt with).
            return self.resolve(self.resources[name]["Properties"]["AliasName"])
        if t == "AWS::KMS::Key":
            # A stable key id. Locally nothing encrypts with it: moto's tables
            # and queues only record the setting.
            h = hashlib.sha256(f"{STACK_NAME}/{name}".encode()).hexdigest()
            return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"
        return self.physical_name(name)

    def get_att(self, logical_id: str, attr: str) -> Any:
        if logical_id not in self.resources:
            raise StackError(f"Fn::GetAtt on unknown resource {logical_id!r}")
        t = self.resources[logical_id]["Type"]
        if attr == "Arn":
            return self.arn(logical_id)
        if t == "AWS::SQS::Queue" and attr == "QueueName":
            return self.physical_name(logical_id)
        if t == "AWS::SQS::Queue" and attr == "QueueUrl":
            return self.ref(logical_id)
        if t == "AWS::SNS::Topic" and attr == "TopicName":
            return self.physical_name(logical_id)
        if t == "AWS::DynamoDB::Table" and attr == "StreamArn":
            if not (self.resources[logical_id].get("Properties") or {}).get("StreamSpecification"):
                # CloudFormation: a table without a stream has no StreamArn.
                raise StackError(f"Fn::GetAtt {logical_id}.StreamArn: the table has no StreamSpecification")
            # moto_server.py labels every stream so (AWS: its creation time).
            return f"{self.arn(logical_id)}/stream/{STREAM_LABEL}"
        if t == "AWS::ApiGateway::RestApi" and attr == "RootResourceId":
            return "root"
        if t == "AWS::S3::Bucket" and attr in ("DomainName", "RegionalDomainName"):
            return f"{self.physical_name(logical_id)}.s3.{REGION}.amazonaws.com"
        raise StackError(f"Fn::GetAtt {logical_id}.{attr} is not supported locally")

    # ---- nested stacks
    def nested_stack(self, logical_id: str) -> "Resolver":
        """The nested stack `logical_id` as CloudFormation creates it: its own
        resources and stack name (`<parent>-<logical id>-<suffix>`), its
        parameters set to the values this stack passes, resolved here. Like
        CloudFormation, refuses a parameter its template does not declare and
        a declared one without a default that is not passed."""
        if logical_id not in self.nested:
            raise StackError(f"{logical_id}: no nested template loaded for it")
        template = self.nested[logical_id]
        passed = (self.resources[logical_id].get("Properties") or {}).get("Parameters") or {}
        declared = template.get("Parameters") or {}
        unknown = sorted(set(passed) - set(declared))
        if unknown:
            raise StackError(f"{logical_id}: parameters {unknown} are not declared by its template")
        missing = sorted(n for n, p in declared.items() if n not in passed and "Default" not in (p or {}))
        if missing:
            raise StackError(f"{logical_id}: parameters {missing} of its template are not passed")
        values = {name: self.resolve(v) for name, v in passed.items()}
        name = f"{self.stack_name}-{logical_id}-{_rand_id(logical_id, 12).upper()}"
        return Resolver(template, self.endpoint, self.state_dir, parameters=values, stack_name=name)

    # ---- intrinsic functions
    _SUB_RE = re.compile(r"\$\{([^}!][^}]*)\}")
    _DYNREF_RE = re.compile(r"\{\{resolve:secretsmanager:([^:}]+)(?::SecretString)?(?::([^:}]*))?[^}]*\}\}")

    def _sub(self, text: str, extra: dict[str, Any]) -> str:
        def repl(m: re.Match[str]) -> str:
            key = m.group(1).strip()
            if key in extra:
                return str(self.resolve(extra[key]))
            if "." in key and key.split(".", 1)[0] in self.resources:
                lid, attr = key.split(".", 1)
                return str(self.get_att(lid, attr))
            return str(self.ref(key))

        out = self._SUB_RE.sub(repl, text)
        return out.replace("${!", "${")

    def _dynamic_refs(self, text: str) -> str:
        def repl(m: re.Match[str]) -> str:
            sid = m.group(1)
            if sid.startswith("arn:"):
                sid = sid.rsplit(":", 1)[-1]
            match = next(
                (lid for lid in self.resources if lid == sid or self.physical_name(lid) == sid),
                None,
            )
            if match is None or self.resources[match]["Type"] != "AWS::SecretsManager::Secret":
                raise StackError(f"dynamic reference to unknown secret {sid!r}")
            value = self.secret_value(match)
            key = m.group(2)
            if key:
                return str(json.loads(value)[key])
            return value

        return self._DYNREF_RE.sub(repl, text)

    def resolve(self, v: Any) -> Any:
        if isinstance(v, str):
            return self._dynamic_refs(v) if "{{resolve:" in v else v
        if isinstance(v, list):
            return [self.resolve(x) for x in v]
        if not isinstance(v, dict):
            return v
        if len(v) == 1:
            (k, arg), = v.items()
            if k == "Ref":
                return self.resolve(self.ref(arg))
            if k == "Fn::GetAtt":
                lid, attr = arg if isinstance(arg, list) else arg.split(".", 1)
                return self.get_att(lid, attr)
            if k == "Fn::Sub":
                if isinstance(arg, list):
                    text, extra = arg
                else:
                    text, extra = arg, {}
                return self.resolve(self._sub(text, extra))
            if k == "Fn::Join":
                sep, items = arg
                return sep.join(str(x) for x in self.resolve(items))
            if k == "Fn::Select":
                idx, items = arg
                return self.resolve(items)[int(self.resolve(idx))]
            if k == "Fn::Split":
                sep, text = arg
                return str(self.resolve(text)).split(sep)
            if k == "Fn::ToJsonString":
                return json.dumps(self.resolve(arg), separators=(",", ":"))
            if k == "Fn::If":
                name, if_true, if_false = arg
                return self.resolve(if_true if self.condition(name) else if_false)
        return {k: self.resolve(x) for k, x in v.items()}

    def condition(self, name: str) -> bool:
        """Evaluates a template condition (Fn::Equals/Not/And/Or, Condition)."""
        conditions = self.cfn.get("Conditions") or {}
        if name not in conditions:
            raise StackError(f"unknown condition {name!r}")
        return self._cond(conditions[name])

    def _cond(self, v: Any) -> bool:
        if isinstance(v, dict) and len(v) == 1:
            (k, arg), = v.items()
            if k == "Fn::Equals":
                a, b = (self.resolve(x) for x in arg)
                return str(a) == str(b)
            if k == "Fn::Not":
                return not self._cond(arg[0])
            if k == "Fn::And":
                return all(self._cond(x) for x in arg)
            if k == "Fn::Or":
                return any(self._cond(x) for x in arg)
            if k == "Condition":
                return self.condition(arg)
        raise StackError(f"unsupported condition {v!r}")


# --------------------------------------------------------------------------- describe

_FN_FROM_URI_RE = re.compile(r"functions/\$\{([A-Za-z0-9]+)\.Arn\}/invocations")
_HTTP_METHODS = {"get", "put", "post", "delete", "patch", "head", "options"}


def _through_alias(lid: str, resources: dict[str, Any]) -> str:
    """The function behind an alias (AutoPublishAlias: API Gateway and event
    sources invoke `<Function>Alias<name>`; locally the function runs as is)."""
    res = resources.get(lid) or {}
    if res.get("Type") == "AWS::Lambda::Alias":
        fn = (res.get("Properties") or {}).get("FunctionName")
        if isinstance(fn, dict) and isinstance(fn.get("Ref"), str):
            return fn["Ref"]
    return lid


def _function_from_uri(uri: Any, resolver: Resolver) -> str:
    """Logical id of the Lambda function an integration/authorizer uri points to."""
    if isinstance(uri, dict) and "Fn::Sub" in uri:
        arg = uri["Fn::Sub"]
        text, extra = (arg if isinstance(arg, list) else (arg, {}))
        m = _FN_FROM_URI_RE.search(text)
        if m:
            return m.group(1)
        m = re.search(r"functions/\$\{([^}]+)\}/invocations", text)
        if m and m.group(1) in resolver.resources:
            return _through_alias(m.group(1), resolver.resources)
        if m and m.group(1) in extra:
            target = extra[m.group(1)]
            if isinstance(target, dict) and "Fn::GetAtt" in target:
                ga = target["Fn::GetAtt"]
                return ga[0] if isinstance(ga, list) else ga.split(".")[0]
            if isinstance(target, dict) and isinstance(target.get("Ref"), str):
                return _through_alias(target["Ref"], resolver.resources)
    resolved = str(resolver.resolve(uri))
    m = re.search(r"function:([^/:]+)", resolved)
    if m:
        for lid, res in resolver.resources.items():
            if res["Type"] == "AWS::Lambda::Function" and resolver.physical_name(lid) == m.group(1):
                return lid
    raise StackError(f"cannot tell which function this integration calls: {uri!r}")


def _identity_sources(text: str) -> list[dict[str, str]]:
    out = []
    for part in (text or "").split(","):
        part = part.strip()
        if not part:
            continue
        m = re.match(r"method\.request\.(header|querystring|multivalueheader|multivaluequerystring)\.(.+)", part)
        if m:
            out.append({"kind": m.group(1), "name": m.group(2)})
        elif m := re.match(r"(stageVariables|context)\.(.+)", part):
            out.append({"kind": m.group(1), "name": m.group(2)})
        else:
            raise StackError(f"unsupported authorizer identity source {part!r}")
    return out


def _gateway_response(raw: dict[str, Any], resolver: Resolver) -> dict[str, Any]:
    headers = {}
    for key, expr in resolver.resolve(raw.get("responseParameters") or {}).items():
        if expr is None:  # AWS::NoValue
            continue
        if key.startswith("gatewayresponse.header."):
            headers[key[len("gatewayresponse.header."):]] = expr
    status = raw.get("statusCode")
    return {
        "status_code": int(status) if status is not None else None,
        "headers": headers,
        "templates": dict(raw.get("responseTemplates") or {}),
    }


def _number(v: Any) -> float | None:
    """A template number (parameters resolve to strings)."""
    return None if v is None else float(v)


def _integer(v: Any) -> int | None:
    """A template integer (parameters resolve to strings)."""
    return None if v is None else int(v)


def _mock_response(integ: dict[str, Any], resolver: Resolver) -> dict[str, Any]:
    """A mock integration's default response: status and static headers."""
    default = ((integ.get("responses") or {}).get("default")) or {}
    headers = {}
    for k, v in resolver.resolve(default.get("responseParameters") or {}).items():
        if k.startswith("method.response.header.") and isinstance(v, str) and v.startswith("'"):
            headers[k.removeprefix("method.response.header.")] = v.strip("'")
    return {"status_code": int(default.get("statusCode", 200)), "headers": headers}


def _usage_plans(api_lid: str, stage: str, resources: dict[str, Any], resolver: Resolver) -> list[dict[str, Any]]:
    """The API's usage plans: name, throttle and quota as the template sets them."""
    plans = []
    for lid, res in resources.items():
        if res["Type"] != "AWS::ApiGateway::UsagePlan":
            continue
        props = resolver.resolve(res.get("Properties") or {})
        stages = props.get("ApiStages") or []
        if not any(s.get("ApiId") == resolver.ref(api_lid) and s.get("Stage") == stage for s in stages):
            continue
        throttle = props.get("Throttle") or {}
        quota = props.get("Quota") or {}
        plans.append({
            "logical_id": lid,
            "name": props.get("UsagePlanName", lid),
            "rate_limit": _number(throttle.get("RateLimit")),
            "burst_limit": _number(throttle.get("BurstLimit")),
            "quota_limit": _integer(quota.get("Limit")),
            "quota_period": quota.get("Period"),
        })
    return plans


def _event_source(lid: str, p: dict[str, Any], resources: dict[str, Any], resolver: Resolver) -> dict[str, Any]:
    """An AWS::Lambda::EventSourceMapping, as stockroom-local runs it (SQS queues, DynamoDB streams)."""
    fn = p.get("FunctionName")
    if isinstance(fn, dict) and "Ref" in fn:
        function = _through_alias(fn["Ref"], resources)
    elif isinstance(fn, dict) and "Fn::GetAtt" in fn:
        arg = fn["Fn::GetAtt"]
        function = (arg if isinstance(arg, list) else arg.split(".", 1))[0]
    else:
        function = resolver.resolve(fn)  # name or ARN; stockroom-local resolves both
    source_arn = resolver.resolve(p.get("EventSourceArn"))

    def url_of(queue_arn: Any) -> str | None:
        if not (isinstance(queue_arn, str) and queue_arn.startswith("arn:aws:sqs:")):
            return None
        queue_lid = next(
            (q for q, r in resources.items()
             if r["Type"] == "AWS::SQS::Queue" and resolver.arn(q) == queue_arn),
            None,
        )
        if queue_lid is not None:
            return str(resolver.ref(queue_lid))
        # A queue outside the template: the emulator's URL scheme.
        return f"{resolver.endpoint}/{queue_arn.split(':')[4]}/{queue_arn.split(':')[5]}"

    queue_url = url_of(source_arn)
    on_failure = ((resolver.resolve(p.get("DestinationConfig")) or {}).get("OnFailure") or {}).get("Destination")
    filters = []
    for f in (resolver.resolve(p.get("FilterCriteria")) or {}).get("Filters") or []:
        pattern = f.get("Pattern")
        if isinstance(pattern, str):
            try:
                pattern = json.loads(pattern)
            except json.JSONDecodeError as exc:
                raise StackError(f"{lid}: FilterCriteria pattern is not JSON: {exc}") from exc
        filters.append(pattern)
    enabled = resolver.resolve(p.get("Enabled", True))
    scaling = resolver.resolve(p.get("ScalingConfig")) or {}
    window = resolver.resolve(p.get("MaximumBatchingWindowInSeconds"))
    return {
        "logical_id": lid,
        "function": function,
        "source_arn": source_arn,
        "queue_url": queue_url,
        "batch_size": resolver.resolve(p.get("BatchSize")),
        "maximum_batching_window_seconds": int(window) if window is not None else None,
        "maximum_concurrency": int(scaling["MaximumConcurrency"]) if "MaximumConcurrency" in scaling else None,
        "function_response_types": resolver.resolve(p.get("FunctionResponseTypes", [])),
        "enabled": enabled not in (False, "false", "False"),
        "filter_criteria": filters,
        # A FIFO queue (its name ends in .fifo, as CloudFormation names it).
        "fifo": bool(queue_url and queue_url.endswith(".fifo")),
        # Stream sources (DynamoDB).
        "starting_position": resolver.resolve(p.get("StartingPosition")),
        "starting_position_timestamp": resolver.resolve(p.get("StartingPositionTimestamp")),
        "bisect_batch_on_function_error": resolver.resolve(p.get("BisectBatchOnFunctionError")) in (True, "true", "True"),
        "maximum_retry_attempts": _opt_int(resolver.resolve(p.get("MaximumRetryAttempts"))),
        "maximum_record_age_seconds": _opt_int(resolver.resolve(p.get("MaximumRecordAgeInSeconds"))),
        "parallelization_factor": _opt_int(resolver.resolve(p.get("ParallelizationFactor"))),
        "tumbling_window_seconds": _opt_int(resolver.resolve(p.get("TumblingWindowInSeconds"))),
        "on_failure_destination": on_failure,
        "on_failure_queue_url": url_of(on_failure),
    }


def _opt_int(v: Any) -> int | None:
    return int(v) if v is not None else None


def describe(cfn: dict[str, Any], resolver: Resolver) -> dict[str, Any]:
    resources = cfn.get("Resources", {})
    functions: dict[str, Any] = {}
    for lid, res in resources.items():
        if res["Type"] != "AWS::Lambda::Function":
            continue
        props = res.get("Properties") or {}
        binary = ((res.get("Metadata") or {}).get("BuildProperties") or {}).get("Binary")
        if not binary:
            raise StackError(f"{lid}: Metadata.BuildProperties.Binary is required locally")
        env = resolver.resolve(((props.get("Environment") or {}).get("Variables")) or {})
        functions[lid] = {
            "name": resolver.physical_name(lid),
            "arn": resolver.arn(lid),
            "binary": binary,
            "handler": props.get("Handler", "bootstrap"),
            "runtime": props.get("Runtime"),
            "env": {k: "" if v is None else str(v) for k, v in env.items()},
            "timeout": int(resolver.resolve(props.get("Timeout", 3))),
            "memory": int(resolver.resolve(props.get("MemorySize", 128))),
            # The function's own identity: the emulator authorises its calls
            # against its role's policies (devtools/iam.py).
            "access_key_id": iam.access_key_id(lid),
        }

    apis = []
    for lid, res in resources.items():
        if res["Type"] != "AWS::ApiGateway::RestApi":
            continue
        props = res.get("Properties") or {}
        body = props.get("Body")
        if body is None:
            raise StackError(f"{lid}: only REST APIs with an inline Body are supported locally")
        api_id = resolver.ref(lid)

        authorizers = {}
        for name, sd in (body.get("securityDefinitions") or {}).items():
            ext = sd.get("x-amazon-apigateway-authorizer")
            if not ext:
                continue
            atype = ext.get("type", "token").lower()
            if atype not in ("request", "token"):
                raise StackError(f"authorizer {name}: type {atype} not supported locally")
            ttl = ext.get("authorizerResultTtlInSeconds", 300)
            authorizers[name] = {
                "type": atype,
                "function": _function_from_uri(ext.get("authorizerUri"), resolver),
                "identity_source": _identity_sources(
                    resolver.resolve(ext.get("identitySource", "method.request.header.Authorization"))
                ),
                "identity_validation_expression": ext.get("identityValidationExpression"),
                "ttl_seconds": int(resolver.resolve(ttl)),
            }

        # API Gateway keys (x-api-key), required per method.
        api_key_definitions = {
            name for name, sd in (body.get("securityDefinitions") or {}).items()
            if sd.get("type") == "apiKey" and str(sd.get("name", "")).lower() == "x-api-key"
            and "x-amazon-apigateway-authorizer" not in sd
        }
        api_key_source = str(
            props.get("ApiKeySourceType") or body.get("x-amazon-apigateway-api-key-source") or "HEADER"
        ).upper()
        default_security = body.get("security")
        routes = []
        for path, ops in (body.get("paths") or {}).items():
            for method, op in ops.items():
                m = method.lower()
                if m == "x-amazon-apigateway-any-method":
                    m = "ANY"
                elif m in _HTTP_METHODS:
                    m = m.upper()
                else:
                    continue
                integ = op.get("x-amazon-apigateway-integration") or {}
                if integ.get("type") == "mock":
                    # SAM's CORS preflight methods: a static answer.
                    routes.append({"method": m, "path": path, "mock": _mock_response(integ, resolver)})
                    continue
                if integ.get("type") != "aws_proxy":
                    raise StackError(f"{m} {path}: only Lambda proxy and mock integrations are supported locally")
                authorizer = None
                api_key_required = False
                for req in op.get("security", default_security) or []:
                    for sec_name in req:
                        if sec_name in authorizers:
                            authorizer = sec_name
                        elif sec_name in api_key_definitions:
                            api_key_required = True
                routes.append({
                    "method": m,
                    "path": path,
                    "function": _function_from_uri(integ.get("uri"), resolver),
                    "authorizer": authorizer,
                    "api_key_required": api_key_required,
                })
        routes.sort(key=lambda r: (r["path"], r["method"]))

        gateway_responses = {
            rtype: _gateway_response(raw, resolver)
            for rtype, raw in (body.get("x-amazon-apigateway-gateway-responses") or {}).items()
        }
        for gr in resources.values():
            if gr["Type"] != "AWS::ApiGateway::GatewayResponse":
                continue
            gp = gr.get("Properties") or {}
            if gp.get("RestApiId") != {"Ref": lid}:
                continue
            gateway_responses[gp["ResponseType"]] = _gateway_response({
                "statusCode": gp.get("StatusCode"),
                "responseParameters": gp.get("ResponseParameters"),
                "responseTemplates": gp.get("ResponseTemplates"),
            }, resolver)

        stage_name, throttling, variables = "Stage", None, {}
        for st in resources.values():
            if st["Type"] != "AWS::ApiGateway::Stage":
                continue
            sp = st.get("Properties") or {}
            if sp.get("RestApiId") != {"Ref": lid}:
                continue
            stage_name = str(resolver.resolve(sp.get("StageName")))
            variables = resolver.resolve(sp.get("Variables") or {})
            for ms in sp.get("MethodSettings") or []:
                if "ThrottlingRateLimit" in ms or "ThrottlingBurstLimit" in ms:
                    throttling = throttling or {}
                    throttling[f'{ms.get("HttpMethod", "*")} {ms.get("ResourcePath", "/*")}'] = {
                        "rate_limit": _number(resolver.resolve(ms.get("ThrottlingRateLimit"))),
                        "burst_limit": _number(resolver.resolve(ms.get("ThrottlingBurstLimit"))),
                    }
        apis.append({
            "logical_id": lid,
            "api_id": api_id,
            "name": resolver.resolve(props.get("Name", lid)),
            "stage": stage_name,
            "stage_variables": variables,
            "throttling": throttling,
            "api_key_source": api_key_source,
            "usage_plans": _usage_plans(lid, stage_name, resources, resolver),
            "routes": routes,
            "authorizers": authorizers,
            "gateway_responses": gateway_responses,
            "binary_media_types": [
                str(t).replace("~1", "/") for t in body.get("x-amazon-apigateway-binary-media-types") or []
            ],
        })

    event_sources = []
    for lid, res in resources.items():
        if res["Type"] == "AWS::Lambda::EventSourceMapping":
            event_sources.append(_event_source(lid, res.get("Properties") or {}, resources, resolver))

    tables = {
        lid: resolver.physical_name(lid)
        for lid, res in resources.items()
        if res["Type"] == "AWS::DynamoDB::Table"
    }
    if len(apis) > 1:
        print(f"warning: {len(apis)} REST APIs; the local gateway serves the first ({apis[0]['logical_id']})",
              file=sys.stderr)
    return {
        "stack_name": STACK_NAME,
        "region": REGION,
        "account_id": ACCOUNT_ID,
        "endpoint": resolver.endpoint,
        "functions": functions,
        "api": apis[0] if apis else None,
        "tables": tables,
        "event_sources": event_sources,
    }


def env_exports(desc: dict[str, Any], api_url: str | None = None) -> str:
    """Shell lines that point scripts/tests at the emulator and the stack's resources."""
    env = {
        "AWS_ENDPOINT_URL": desc["endpoint"],
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
    }
    # Every function variable that names a stack resource (or a secret), as the
    # functions see it; same value in every function, or it is left out.
    seen: dict[str, set[str]] = {}
    for fn in desc["functions"].values():
        for k, v in fn["env"].items():
            seen.setdefault(k, set()).add(v)
    for k, vals in sorted(seen.items()):
        if len(vals) == 1 and not k.startswith(("AWS_", "RUST_", "STOCKROOM_ENV")):
            env[k] = next(iter(vals))
    env["STOCKROOM_STACK_NAME"] = desc["stack_name"]
    api = desc.get("api")
    if api:
        env["STOCKROOM_API_STAGE"] = api["stage"]
    if api_url:
        env["STOCKROOM_API_URL"] = api_url
    # Tests that invoke functions directly find a non-default Invoke API port here.
    if os.environ.get("STOCKROOM_INVOKE_PORT"):
        env["STOCKROOM_INVOKE_PORT"] = os.environ["STOCKROOM_INVOKE_PORT"]
    # Tests that inject faults find the proxy's control endpoint here.
    if os.environ.get("STOCKROOM_FAULT_PROXY_PORT"):
        env["STOCKROOM_FAULT_PROXY_URL"] = f'http://127.0.0.1:{os.environ["STOCKROOM_FAULT_PROXY_PORT"]}'

    lines = ["# generated by devtools/stack.py from template.yaml; do not edit"]
    lines += [f"export {k}={_shquote(v)}" for k, v in env.items()]
    return "\n".join(lines) + "\n"


def _shquote(v: str) -> str:
    return "'" + str(v).replace("'", "'\"'\"'") + "'"


# --------------------------------------------------------------------------- provision


class Provisioner:
    """Creates the template's resources in the emulator. Idempotent."""

    def __init__(self, cfn: dict[str, Any], resolver: Resolver, endpoint: str):
        import boto3

        self.cfn = cfn
        self.resolver = resolver
        self.session = boto3.session.Session(
            aws_access_key_id="test", aws_secret_access_key="test", region_name=REGION
        )
        self.endpoint = endpoint
        self.done: set[str] = set()
        # resource type -> provisioner; each returns "created" or "exists".
        self.handlers: dict[str, Callable[[str, dict[str, Any]], str]] = {
            "AWS::DynamoDB::Table": self.table,
            "AWS::SQS::Queue": self.queue,
            "AWS::SNS::Topic": self.topic,
            "AWS::SNS::Subscription": self.subscription,
            "AWS::S3::Bucket": self.bucket,
            "AWS::KMS::Alias": self.kms_alias,
            "AWS::ApiGateway::UsagePlan": self.usage_plan,
        }

    def client(self, service: str):
        return self.session.client(service, endpoint_url=self.endpoint)

    def run(self) -> list[str]:
        created = []
        for lid in self._ordered():
            res = self.cfn["Resources"][lid]
            handler = self.handlers.get(res["Type"])
            if handler and lid not in self.done:
                status = handler(lid, res.get("Properties") or {})
                self.done.add(lid)
                name = self.resolver.physical_name(lid) if res["Type"] != "AWS::SNS::Subscription" else ""
                created.append(f"{res['Type']} {lid} {('-> ' + name) if name else ''} ({status})")
        return created

    def _ordered(self) -> list[str]:
        """Resources in dependency order (a DLQ before the queue naming it, ...)."""
        resources = self.cfn["Resources"]
        order: list[str] = []
        state: dict[str, int] = {}

        def deps(v: Any) -> set[str]:
            out: set[str] = set()
            if isinstance(v, dict):
                for k, x in v.items():
                    if k == "Ref" and isinstance(x, str) and x in resources:
                        out.add(x)
                    elif k == "Fn::GetAtt":
                        out.add(x[0] if isinstance(x, list) else x.split(".")[0])
                    elif k == "Fn::Sub":
                        text = x[0] if isinstance(x, list) else x
                        for name in re.findall(r"\$\{([^}!.]+)", text):
                            if name in resources:
                                out.add(name)
                        out |= deps(x[1] if isinstance(x, list) else None)
                    else:
                        out |= deps(x)
            elif isinstance(v, list):
                for x in v:
                    out |= deps(x)
            return out

        def visit(lid: str) -> None:
            if state.get(lid) == 2:
                return
            if state.get(lid) == 1:
                raise StackError(f"dependency cycle at {lid}")
            state[lid] = 1
            res = resources[lid]
            for d in sorted(deps(res.get("Properties")) | set(_as_list(res.get("DependsOn")))):
                if d in resources:
                    visit(d)
            state[lid] = 2
            order.append(lid)

        for lid in sorted(resources):
            if resources[lid]["Type"] in self.handlers:
                visit(lid)
        return order

    # ---- DynamoDB
    def table(self, lid: str, props: dict[str, Any]) -> str:
        ddb = self.client("dynamodb")
        name = self.resolver.physical_name(lid)
        p = self.resolver.resolve(props)
        existing = set(_paginate(ddb, "list_tables", "TableNames"))
        status = "exists"
        while True:
            if name in existing:
                status = _add_missing_indexes(ddb, name, p) or status
                break
            status = "created"
            kwargs: dict[str, Any] = {
                "TableName": name,
                "AttributeDefinitions": p["AttributeDefinitions"],
                "KeySchema": p["KeySchema"],
                "BillingMode": p.get("BillingMode", "PROVISIONED"),
            }
            if kwargs["BillingMode"] == "PROVISIONED":
                kwargs["ProvisionedThroughput"] = _throughput(p.get("ProvisionedThroughput"))
            for key in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes"):
                if p.get(key):
                    idx = []
                    for i in p[key]:
                        i = dict(i)
                        if key == "GlobalSecondaryIndexes" and kwargs["BillingMode"] == "PROVISIONED":
                            i["ProvisionedThroughput"] = _throughput(i.get("ProvisionedThroughput"))
                        else:
                            i.pop("ProvisionedThroughput", None)
                        i.pop("ContributorInsightsSpecification", None)
                        idx.append(i)
                    kwargs[key] = idx
            stream = p.get("StreamSpecification")
            if stream:
                kwargs["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": stream["StreamViewType"]}
            if p.get("Tags"):
                kwargs["Tags"] = p["Tags"]
            ddb.create_table(**kwargs)
            ddb.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 0.2, "MaxAttempts": 50})
            break
        ttl = p.get("TimeToLiveSpecification")
        if ttl and ttl.get("Enabled"):
            cur = ddb.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
            if cur.get("TimeToLiveStatus") not in ("ENABLED", "ENABLING"):
                ddb.update_time_to_live(
                    TableName=name,
                    TimeToLiveSpecification={"AttributeName": ttl["AttributeName"], "Enabled": True},
                )
        return status

    # ---- SQS
    _QUEUE_ATTRS = {
        "DelaySeconds", "MaximumMessageSize", "MessageRetentionPeriod",
        "ReceiveMessageWaitTimeSeconds", "VisibilityTimeout", "FifoQueue",
        "ContentBasedDeduplication", "DeduplicationScope", "FifoThroughputLimit",
        "KmsMasterKeyId", "KmsDataKeyReusePeriodSeconds", "SqsManagedSseEnabled",
    }

    def queue(self, lid: str, props: dict[str, Any]) -> str:
        sqs = self.client("sqs")
        name = self.resolver.physical_name(lid)
        try:
            sqs.get_queue_url(QueueName=name)
            return "exists"
        except sqs.exceptions.QueueDoesNotExist:
            pass
        p = self.resolver.resolve(props)
        attrs = {k: _attr(v) for k, v in p.items() if k in self._QUEUE_ATTRS}
        for k in ("RedrivePolicy", "RedriveAllowPolicy"):
            if k in p:
                attrs[k] = p[k] if isinstance(p[k], str) else json.dumps(p[k])
        sqs.create_queue(QueueName=name, Attributes=attrs)
        return "created"

    # ---- SNS
    def topic(self, lid: str, props: dict[str, Any]) -> str:
        sns = self.client("sns")
        p = self.resolver.resolve(props)
        arn_wanted = self.resolver.arn(lid)
        exists = arn_wanted in {t["TopicArn"] for t in _paginate(sns, "list_topics", "Topics")}
        attrs = {}
        for k in ("FifoTopic", "ContentBasedDeduplication", "DisplayName", "KmsMasterKeyId"):
            if k in p:
                attrs[k] = _attr(p[k])
        arn = sns.create_topic(Name=self.resolver.physical_name(lid), Attributes=attrs)["TopicArn"]
        for sub in p.get("Subscription") or []:
            self._subscribe(arn, sub["Protocol"], sub["Endpoint"], {})
        return "exists" if exists else "created"

    def subscription(self, lid: str, props: dict[str, Any]) -> str:
        p = self.resolver.resolve(props)
        attrs = {}
        for k in ("FilterPolicy", "FilterPolicyScope", "RawMessageDelivery", "RedrivePolicy", "DeliveryPolicy"):
            if k in p:
                attrs[k] = p[k] if isinstance(p[k], str) else (
                    json.dumps(p[k]) if isinstance(p[k], (dict, list)) else _attr(p[k])
                )
        return self._subscribe(p["TopicArn"], p["Protocol"], p["Endpoint"], attrs)

    def _subscribe(self, topic_arn: str, protocol: str, endpoint: str, attrs: dict[str, str]) -> str:
        sns = self.client("sns")
        for s in _paginate(sns, "list_subscriptions_by_topic", "Subscriptions", TopicArn=topic_arn):
            if s["Protocol"] == protocol and s["Endpoint"] == endpoint:
                return "exists"
        sns.subscribe(TopicArn=topic_arn, Protocol=protocol, Endpoint=endpoint,
                      Attributes=attrs, ReturnSubscriptionArn=True)
        return "created"

    # ---- KMS
    def kms_alias(self, lid: str, props: dict[str, Any]) -> str:
        """A moto key behind the alias: functions encrypt with the alias name
        (moto cannot take the template's key id, so the key is found by alias)."""
        kms = self.client("kms")
        name = self.resolver.resolve(props["AliasName"])
        aliases = {a["AliasName"] for a in _paginate(kms, "list_aliases", "Aliases")}
        if name in aliases:
            return "exists"
        key_id = kms.create_key(Description=f"{STACK_NAME} {lid}")["KeyMetadata"]["KeyId"]
        kms.create_alias(AliasName=name, TargetKeyId=key_id)
        return "created"

    def usage_plan(self, lid: str, props: dict[str, Any]) -> str:
        """The plan in the emulator's API Gateway, under the template's name:
        stockroom-admin attaches tenants' keys to it and the local gateway
        reads each key's plan from there (limits are the template's)."""
        apigw = self.client("apigateway")
        p = self.resolver.resolve(props)
        name = p["UsagePlanName"]
        throttle = {"rateLimit": float(p["Throttle"]["RateLimit"]), "burstLimit": int(p["Throttle"]["BurstLimit"])}
        quota = {"limit": int(p["Quota"]["Limit"]), "period": p["Quota"]["Period"], "offset": 0}
        existing = next((u for u in _paginate(apigw, "get_usage_plans", "items") if u.get("name") == name), None)
        if existing:
            # Keep the plan (and the tenants' keys on it); refresh the numbers.
            apigw.update_usage_plan(usagePlanId=existing["id"], patchOperations=[
                {"op": "replace", "path": "/throttle/rateLimit", "value": str(throttle["rateLimit"])},
                {"op": "replace", "path": "/throttle/burstLimit", "value": str(throttle["burstLimit"])},
                {"op": "replace", "path": "/quota/limit", "value": str(quota["limit"])},
            ])
            return "exists"
        apigw.create_usage_plan(
            name=name,
            description=p.get("Description", ""),
            apiStages=[{"apiId": s["ApiId"], "stage": s["Stage"]} for s in p.get("ApiStages") or []],
            throttle=throttle,
            quota=quota,
        )
        return "created"

    # ---- S3
    def bucket(self, lid: str, props: dict[str, Any]) -> str:
        """The bucket, then its configuration from the template, re-applied on
        every run (so a changed template reaches an existing bucket).

        Applied: PublicAccessBlockConfiguration, OwnershipControls,
        BucketEncryption (moto records it and reports it on objects; it never
        calls KMS, so the template's key need not exist), LifecycleConfiguration
        (recorded; moto expires nothing) and NotificationConfiguration (moto
        really delivers S3 events to the emulator's queues/topics). The
        bucket's AWS::S3::BucketPolicy is not applied, like queue policies:
        moto does not enforce it and its TLS-only deny means nothing over the
        emulator's plain HTTP.
        """
        from botocore.config import Config

        s3 = self.session.client("s3", endpoint_url=self.endpoint,
                                 config=Config(s3={"addressing_style": "path"}))
        name = self.resolver.physical_name(lid)
        p = self.resolver.resolve(props)
        existing = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
        status = "exists"
        if name not in existing:
            kwargs: dict[str, Any] = {"Bucket": name}
            if REGION != "us-east-1":
                kwargs["CreateBucketConfiguration"] = {"LocationConstraint": REGION}
            s3.create_bucket(**kwargs)
            status = "created"

        pab = p.get("PublicAccessBlockConfiguration")
        if pab:
            s3.put_public_access_block(Bucket=name, PublicAccessBlockConfiguration={
                k: _bool(pab.get(k, False))
                for k in ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets")
            })
        ownership = p.get("OwnershipControls")
        if ownership:
            s3.put_bucket_ownership_controls(Bucket=name, OwnershipControls={
                "Rules": [{"ObjectOwnership": r["ObjectOwnership"]} for r in ownership.get("Rules", [])]
            })
        encryption = p.get("BucketEncryption")
        if encryption:
            s3.put_bucket_encryption(Bucket=name, ServerSideEncryptionConfiguration={
                "Rules": [_s3_encryption_rule(r) for r in encryption.get("ServerSideEncryptionConfiguration", [])]
            })
        lifecycle = p.get("LifecycleConfiguration")
        if lifecycle and lifecycle.get("Rules"):
            s3.put_bucket_lifecycle_configuration(Bucket=name, LifecycleConfiguration={
                "Rules": [_s3_lifecycle_rule(r) for r in lifecycle["Rules"]]
            })
        notifications = p.get("NotificationConfiguration")
        if notifications:
            wanted = _s3_notifications(notifications)
            current = s3.get_bucket_notification_configuration(Bucket=name)
            # Putting a configuration makes S3 (and moto) send an s3:TestEvent
            # to each queue: only put it when it changed.
            if _s3_notifications_key(current) != _s3_notifications_key(wanted):
                s3.put_bucket_notification_configuration(Bucket=name, NotificationConfiguration=wanted)
                if status == "exists":
                    status = "exists, notifications updated"
        return status


def _bool(v: Any) -> bool:
    return v is True or str(v).lower() == "true"


def _s3_encryption_rule(rule: dict[str, Any]) -> dict[str, Any]:
    """CloudFormation ServerSideEncryptionRule -> S3 API rule."""
    default = rule.get("ServerSideEncryptionByDefault") or {}
    out: dict[str, Any] = {
        "ApplyServerSideEncryptionByDefault": {
            k: v for k, v in default.items() if k in ("SSEAlgorithm", "KMSMasterKeyID")
        }
    }
    if "BucketKeyEnabled" in rule:
        out["BucketKeyEnabled"] = _bool(rule["BucketKeyEnabled"])
    return out


def _s3_lifecycle_rule(rule: dict[str, Any]) -> dict[str, Any]:
    """CloudFormation lifecycle Rule -> S3 API rule (storage-class transitions
    are left out: moto has no storage classes to move objects between)."""
    out: dict[str, Any] = {"Status": rule.get("Status", "Enabled")}
    if "Id" in rule:
        out["ID"] = rule["Id"]
    conditions: dict[str, Any] = {}
    if "Prefix" in rule:
        conditions["Prefix"] = rule["Prefix"]
    for k in ("ObjectSizeGreaterThan", "ObjectSizeLessThan"):
        if k in rule:
            conditions[k] = int(rule[k])
    tags = [{"Key": t["Key"], "Value": t["Value"]} for t in rule.get("TagFilters") or []]
    if len(tags) == 1 and not conditions:
        out["Filter"] = {"Tag": tags[0]}
    elif tags or len(conditions) > 1:
        out["Filter"] = {"And": {**conditions, **({"Tags": tags} if tags else {})}}
    else:
        out["Filter"] = conditions or {"Prefix": ""}
    expiration: dict[str, Any] = {}
    if "ExpirationInDays" in rule:
        expiration["Days"] = int(rule["ExpirationInDays"])
    if "ExpirationDate" in rule:
        expiration["Date"] = rule["ExpirationDate"]
    if "ExpiredObjectDeleteMarker" in rule:
        expiration["ExpiredObjectDeleteMarker"] = _bool(rule["ExpiredObjectDeleteMarker"])
    if expiration:
        out["Expiration"] = expiration
    abort = rule.get("AbortIncompleteMultipartUpload")
    if abort:
        out["AbortIncompleteMultipartUpload"] = {"DaysAfterInitiation": int(abort["DaysAfterInitiation"])}
    nve = rule.get("NoncurrentVersionExpiration") or (
        {"NoncurrentDays": rule["NoncurrentVersionExpirationInDays"]}
        if "NoncurrentVersionExpirationInDays" in rule else None
    )
    if nve:
        out["NoncurrentVersionExpiration"] = {k: int(v) for k, v in nve.items()}
    return out


# CloudFormation NotificationConfiguration key -> (S3 API key, target ARN key).
_S3_NOTIFICATION_KINDS = {
    "QueueConfigurations": ("QueueConfigurations", "Queue", "QueueArn"),
    "TopicConfigurations": ("TopicConfigurations", "Topic", "TopicArn"),
    "LambdaConfigurations": ("LambdaFunctionConfigurations", "Function", "LambdaFunctionArn"),
}


def _s3_notifications(cfn: dict[str, Any]) -> dict[str, Any]:
    """CloudFormation NotificationConfiguration -> put_bucket_notification_configuration's.

    CloudFormation: {QueueConfigurations: [{Event, Queue, Filter: {S3Key: {Rules: [{Name, Value}]}}}]}
    S3 API:         {QueueConfigurations: [{Events: [..], QueueArn, Filter: {Key: {FilterRules: [..]}}}]}
    """
    out: dict[str, Any] = {}
    for cfn_key, (api_key, target, api_target) in _S3_NOTIFICATION_KINDS.items():
        for c in cfn.get(cfn_key) or []:
            conf: dict[str, Any] = {api_target: c[target], "Events": [c["Event"]]}
            rules = ((c.get("Filter") or {}).get("S3Key") or {}).get("Rules") or []
            if rules:
                conf["Filter"] = {"Key": {"FilterRules": [
                    {"Name": r["Name"], "Value": r["Value"]} for r in rules
                ]}}
            out.setdefault(api_key, []).append(conf)
    if _bool((cfn.get("EventBridgeConfiguration") or {}).get("EventBridgeEnabled", False)):
        out["EventBridgeConfiguration"] = {}
    return out


def _s3_notifications_key(conf: dict[str, Any]) -> str:
    """A comparable form of a notification configuration (ids and rule-name
    case are S3's business, order is not significant)."""
    norm: dict[str, Any] = {}
    for api_key, _, api_target in _S3_NOTIFICATION_KINDS.values():
        items = []
        for c in conf.get(api_key) or []:
            rules = sorted(
                (r["Name"].lower(), r["Value"])
                for r in ((c.get("Filter") or {}).get("Key") or {}).get("FilterRules") or []
            )
            items.append([c[api_target], sorted(c.get("Events") or []), rules])
        if items:
            norm[api_key] = sorted(items)
    if "EventBridgeConfiguration" in conf:
        norm["EventBridgeConfiguration"] = True
    return json.dumps(norm, sort_keys=True)


def _paginate(client: Any, op: str, key: str, **kwargs: Any) -> list[Any]:
    out: list[Any] = []
    for page in client.get_paginator(op).paginate(**kwargs):
        out.extend(page.get(key, []))
    return out


def _as_list(v: Any) -> list[Any]:
    if v is None:
        return []
    return v if isinstance(v, list) else [v]


def _attr(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def _add_missing_indexes(ddb: Any, name: str, props: dict[str, Any]) -> str | None:
    """A template that gained a GSI since the table was made: create it, one
    per update and each once the one before is ACTIVE, as CloudFormation and
    DynamoDB require (on-demand tables only here)."""
    def indexes() -> dict[str, str]:
        table = ddb.describe_table(TableName=name)["Table"]
        return {i["IndexName"]: i.get("IndexStatus", "ACTIVE") for i in table.get("GlobalSecondaryIndexes", [])}

    added = []
    for index in props.get("GlobalSecondaryIndexes") or []:
        if index["IndexName"] in indexes():
            continue
        create = {k: index[k] for k in ("IndexName", "KeySchema", "Projection")}
        ddb.update_table(
            TableName=name,
            AttributeDefinitions=props["AttributeDefinitions"],
            GlobalSecondaryIndexUpdates=[{"Create": create}],
        )
        for _ in range(300):
            if indexes().get(index["IndexName"]) == "ACTIVE":
                break
            time.sleep(0.2)
        else:
            raise StackError(f"{name}: index {index['IndexName']} did not become ACTIVE")
        added.append(index["IndexName"])
    return f"updated (added {', '.join(added)})" if added else None


def _throughput(tp: dict[str, Any] | None) -> dict[str, int]:
    tp = tp or {}
    return {
        "ReadCapacityUnits": int(tp.get("ReadCapacityUnits", 5)),
        "WriteCapacityUnits": int(tp.get("WriteCapacityUnits", 5)),
    }


def wait_for_endpoint(endpoint: str, timeout: float = 20.0) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(endpoint.rstrip("/") + "/moto-api/", timeout=2).read(1)
            return
        except Exception as exc:  # noqa: BLE001 - any failure means "not up yet"
            if time.monotonic() > deadline:
                raise StackError(f"AWS emulator at {endpoint} does not answer: {exc}") from exc
            time.sleep(0.2)


# --------------------------------------------------------------------------- main


def render(args: argparse.Namespace) -> tuple[dict[str, Any], Resolver]:
    cfn = translate(Path(args.template))
    nested = nested_templates(cfn, Path(args.template))
    resolver = Resolver(cfn, args.endpoint, Path(args.state_dir), nested=nested)
    desc = describe(cfn, resolver)
    state = Path(args.state_dir)
    state.mkdir(parents=True, exist_ok=True)
    _write_atomic(state / "stack.json", json.dumps(desc, indent=2) + "\n")
    _write_atomic(state / "env", env_exports(desc, args.api_url))
    _write_atomic(state / "cloudformation.json", json.dumps(cfn, indent=1, default=str) + "\n")
    _write_atomic(state / "iam.json", json.dumps(iam.build(cfn, resolver), indent=1) + "\n")
    return cfn, resolver


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("command", choices=["render", "provision", "show"])
    ap.add_argument("--template", default=str(DEFAULT_TEMPLATE))
    ap.add_argument("--state-dir", default=os.environ.get("STOCKROOM_LOCAL_DIR", str(DEFAULT_STATE_DIR)))
    ap.add_argument("--endpoint", default=os.environ.get("STOCKROOM_AWS_ENDPOINT", DEFAULT_ENDPOINT),
                    help="AWS emulator endpoint (moto server)")
    ap.add_argument("--api-url", default=os.environ.get("STOCKROOM_API_URL", "http://127.0.0.1:3000"),
                    help="where the local gateway serves the API (written to .local/env)")
    ap.add_argument("--nested", action="store_true",
                    help="show: print the nested stacks' templates, {logical id: template}")
    args = ap.parse_args(argv)
    try:
        if args.command == "show":
            cfn = translate(Path(args.template))
            shown = nested_templates(cfn, Path(args.template)) if args.nested else cfn
            print(json.dumps(shown, indent=1, default=str))
            return 0
        cfn, resolver = render(args)
        print(f"rendered {Path(args.state_dir) / 'stack.json'} and {Path(args.state_dir) / 'env'}")
        if args.command == "provision":
            wait_for_endpoint(args.endpoint)
            for line in Provisioner(cfn, resolver, args.endpoint).run():
                print(f"  {line}")
            for lid, template in resolver.nested.items():
                kinds: dict[str, int] = {}
                for r in template["Resources"].values():
                    kinds[r["Type"]] = kinds.get(r["Type"], 0) + 1
                url = cfn["Resources"][lid]["Properties"]["TemplateURL"]
                print(f"  AWS::CloudFormation::Stack {lid} ({url}: "
                      f"{', '.join(f'{n} {t}' for t, n in sorted(kinds.items()))}) not emulated")
        return 0
    except (StackError, iam.PolicyError) as exc:
        print(f"stack.py: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # samtranslator reports template errors as exceptions
        from samtranslator.model.exceptions import InvalidDocumentException

        if isinstance(exc, InvalidDocumentException):
            for cause in exc.causes:
                print(f"stack.py: template error: {cause.message}", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())

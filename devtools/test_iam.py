"""Unit tests of devtools/iam.py: the policy language as AWS evaluates it,
and what each request needs. `make test` runs them
(.venv/bin/python -m unittest discover -s devtools -p 'test_*.py')."""

from __future__ import annotations

import json
import sys
import tempfile
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import iam  # noqa: E402
import stack  # noqa: E402  (translates templates as the local stack does)

ACCOUNT = "123456789012"
KEY = f"arn:aws:kms:us-east-1:{ACCOUNT}:key/k1"
QUEUE = f"arn:aws:sqs:us-east-1:{ACCOUNT}:q"
TOPIC = f"arn:aws:sns:us-east-1:{ACCOUNT}:t"
TABLE = f"arn:aws:dynamodb:us-east-1:{ACCOUNT}:table/stock"


def doc(*statements: dict) -> dict:
    return {"Version": "2012-10-17", "Statement": list(statements)}


class PolicyLanguage(unittest.TestCase):
    def test_wildcards_and_case(self) -> None:
        self.assertTrue(iam.wildcard("dynamodb:Get*", "dynamodb:GetItem"))
        self.assertTrue(iam.wildcard("arn:aws:s3:::b/?", "arn:aws:s3:::b/x"))
        self.assertFalse(iam.wildcard("arn:aws:s3:::b/?", "arn:aws:s3:::b/xy"))
        # A dot is a dot, not "any character".
        self.assertFalse(iam.wildcard("a.b", "axb"))
        d = iam.evaluate([("p", doc({"Effect": "Allow", "Action": "DynamoDB:getitem", "Resource": TABLE}))],
                         "dynamodb:GetItem", TABLE, {})
        self.assertEqual(d.allowed_by, ["p#0"])

    def test_an_allow_whose_condition_fails_is_no_deny(self) -> None:
        # moto's evaluator turns this into an explicit deny; AWS does not.
        policies = [("p", doc(
            {"Effect": "Allow", "Action": "sqs:*", "Resource": QUEUE,
             "Condition": {"StringEquals": {"aws:SourceAccount": "999"}}},
            {"Effect": "Allow", "Action": "sqs:SendMessage", "Resource": QUEUE},
        ))]
        d = iam.evaluate(policies, "sqs:SendMessage", QUEUE, {"aws:SourceAccount": ACCOUNT})
        self.assertEqual((d.denied_by, d.allowed_by), ("", ["p#1"]))

    def test_explicit_deny_not_action_not_resource(self) -> None:
        p = [("p", doc(
            {"Effect": "Allow", "NotAction": "sqs:Delete*", "Resource": "*"},
            {"Effect": "Deny", "Action": "sqs:*", "NotResource": QUEUE},
        ))]
        self.assertTrue(iam.evaluate(p, "sqs:SendMessage", QUEUE, {}).allowed_by)
        self.assertFalse(iam.evaluate(p, "sqs:DeleteQueue", QUEUE, {}).allowed_by)
        self.assertTrue(iam.evaluate(p, "sqs:SendMessage", QUEUE + "2", {}).denied_by)

    def test_conditions(self) -> None:
        h = iam.condition_holds
        self.assertTrue(h({"Bool": {"aws:SecureTransport": "false"}}, {"aws:SecureTransport": False}))
        self.assertFalse(h({"Bool": {"aws:SecureTransport": "false"}}, {"aws:SecureTransport": True}))
        # Negated operators hold when the key is absent; positive ones do not.
        self.assertTrue(h({"StringNotEquals": {"s3:x": "aws:kms"}}, {}))
        self.assertFalse(h({"StringEquals": {"s3:x": "aws:kms"}}, {}))
        self.assertTrue(h({"StringEqualsIfExists": {"s3:x": "aws:kms"}}, {}))
        self.assertTrue(h({"Null": {"s3:x": "true"}}, {}))
        self.assertFalse(h({"Null": {"s3:x": "false"}}, {}))
        self.assertTrue(h({"ArnLike": {"aws:SourceArn": "arn:aws:s3:::b-*"}}, {"aws:SourceArn": "arn:aws:s3:::b-1"}))
        with self.assertRaises(iam.PolicyError):
            h({"DateGreaterThan": {"aws:CurrentTime": "2020"}}, {"aws:CurrentTime": "2021"})


def enforcer(principals: dict, resource_policies: dict | None = None, key_policy: dict | None = None,
             encrypted: dict | None = None) -> iam.Enforcer:
    f = Path(tempfile.mkdtemp()) / "iam.json"
    f.write_text(json.dumps({
        "account": ACCOUNT, "region": "us-east-1", "principals": principals,
        "resource_policies": resource_policies or {},
        "keys": {KEY: {"logical_id": "K", "policy": key_policy or doc(), "aliases": ["alias/data"]}},
        "encrypted": encrypted or {},
    }))
    return iam.Enforcer(f)


def function(*statements: dict) -> dict:
    return {"function": "Fn", "function_name": "fn", "role_arn": f"arn:aws:iam::{ACCOUNT}:role/r",
            "session_arn": f"arn:aws:sts::{ACCOUNT}:assumed-role/r/fn",
            "policies": [{"name": "inline", "document": doc(*statements)}]}


ROOT_DELEGATES = {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"},
                  "Action": "kms:*", "Resource": "*"}


class Requests(unittest.TestCase):
    def test_every_action_inside_a_transaction_is_authorised(self) -> None:
        e = enforcer({"AK": function({"Effect": "Allow", "Action": ["dynamodb:PutItem", "dynamodb:UpdateItem"],
                                      "Resource": TABLE})})
        who = e.principal_for("AK")
        body = {"TransactItems": [{"Put": {"TableName": "stock"}}, {"Delete": {"TableName": "stock"}}]}
        needs = e.needs("dynamodb", "TransactWriteItems", body, {}, "/", "POST", {})
        self.assertEqual([n.action for n in needs], ["dynamodb:PutItem", "dynamodb:DeleteItem"])
        with self.assertRaises(iam.Denied) as denied:
            e.check(who, needs)
        self.assertEqual(denied.exception.need.action, "dynamodb:DeleteItem")
        self.assertIn("assumed-role/r/fn is not authorized to perform: dynamodb:DeleteItem", str(denied.exception))

    def test_batch_write_needs_the_batch_action_and_each_item_action(self) -> None:
        e = enforcer({})
        body = {"RequestItems": {"stock": [{"PutRequest": {}}, {"DeleteRequest": {}}]}}
        needs = e.needs("dynamodb", "BatchWriteItem", body, {}, "/", "POST", {})
        self.assertEqual({n.action for n in needs},
                         {"dynamodb:BatchWriteItem", "dynamodb:PutItem", "dynamodb:DeleteItem"})

    def test_a_query_on_an_index_needs_the_index_arn(self) -> None:
        e = enforcer({"AK": function({"Effect": "Allow", "Action": "dynamodb:Query", "Resource": TABLE})})
        needs = e.needs("dynamodb", "Query", {"TableName": "stock", "IndexName": "gsi1"}, {}, "/", "POST", {})
        self.assertEqual(needs[0].resource, TABLE + "/index/gsi1")
        with self.assertRaises(iam.Denied):
            e.check(e.principal_for("AK"), needs)

    def test_an_encrypted_queue_needs_the_key_through_the_key_policy(self) -> None:
        allow_send = {"Effect": "Allow", "Action": "sqs:SendMessage", "Resource": QUEUE}
        allow_key = {"Effect": "Allow", "Action": ["kms:GenerateDataKey", "kms:Decrypt"], "Resource": KEY}
        needs_of = lambda e: e.needs("sqs", "SendMessageBatch", {"QueueUrl": "http://x/1/q"}, {}, "/", "POST", {})
        # IAM grants the key, but the key policy does not delegate to IAM.
        e = enforcer({"AK": function(allow_send, allow_key)}, encrypted={QUEUE: KEY}, key_policy=doc())
        with self.assertRaises(iam.Denied) as denied:
            e.check(e.principal_for("AK"), needs_of(e))
        self.assertTrue(denied.exception.need.kms)
        # The key policy delegates, but IAM lacks the key.
        e = enforcer({"AK": function(allow_send)}, encrypted={QUEUE: KEY}, key_policy=doc(ROOT_DELEGATES))
        with self.assertRaises(iam.Denied):
            e.check(e.principal_for("AK"), needs_of(e))
        e = enforcer({"AK": function(allow_send, allow_key)}, encrypted={QUEUE: KEY}, key_policy=doc(ROOT_DELEGATES))
        e.check(e.principal_for("AK"), needs_of(e))

    def test_a_service_delivers_only_where_queue_and_key_policies_let_it(self) -> None:
        sns_may_send = {"Effect": "Allow", "Principal": {"Service": "sns.amazonaws.com"},
                        "Action": "sqs:SendMessage", "Resource": QUEUE,
                        "Condition": {"ArnEquals": {"aws:SourceArn": TOPIC}}}
        sns_may_use_key = {"Effect": "Allow", "Principal": {"Service": "sns.amazonaws.com"},
                           "Action": ["kms:GenerateDataKey*", "kms:Decrypt"], "Resource": "*"}
        ctx = {"aws:SourceArn": TOPIC, "aws:SourceAccount": ACCOUNT}

        def deliver(e: iam.Enforcer, source: str = TOPIC) -> None:
            c = {**ctx, "aws:SourceArn": source}
            needs = [iam.Need("sqs:SendMessage", QUEUE, policy_resource=QUEUE, context=c)]
            needs += e._kms_needs(QUEUE, ["kms:GenerateDataKey", "kms:Decrypt"], "sqs", c)
            e.check(None, needs, "sns.amazonaws.com")

        ok = enforcer({}, {QUEUE: [{"name": "qp", "document": doc(sns_may_send)}]},
                      doc(ROOT_DELEGATES, sns_may_use_key), {QUEUE: KEY})
        deliver(ok)
        with self.assertRaises(iam.Denied):
            deliver(ok, TOPIC + "-other")
        no_key = enforcer({}, {QUEUE: [{"name": "qp", "document": doc(sns_may_send)}]},
                          doc(ROOT_DELEGATES), {QUEUE: KEY})
        with self.assertRaises(iam.Denied):
            deliver(no_key)

    def test_a_log_group_is_encrypted_only_where_the_key_policy_names_it(self) -> None:
        group = f"arn:aws:logs:us-east-1:{ACCOUNT}:log-group:/aws/lambda/app-fn"
        logs_may_use = {"Effect": "Allow", "Principal": {"Service": "logs.us-east-1.amazonaws.com"},
                        "Action": ["kms:Encrypt*", "kms:Decrypt*", "kms:GenerateDataKey*"], "Resource": "*",
                        "Condition": {"ArnLike": {"kms:EncryptionContext:aws:logs:arn":
                                                  f"arn:aws:logs:us-east-1:{ACCOUNT}:log-group:/aws/lambda/app-*"}}}
        e = enforcer({}, key_policy=doc(ROOT_DELEGATES, logs_may_use))
        e.doc["deliveries"] = [{"from": "Logs", "principal": "logs.us-east-1.amazonaws.com",
                                "source_arn": group, "action": "kms:use", "target": KEY}]
        self.assertEqual(e.check_deliveries(), [])
        e.doc["deliveries"][0]["source_arn"] = group.replace("app-", "other-")
        self.assertEqual(len(e.check_deliveries()), 1)

    def test_a_presigned_put_is_the_signers_put_object_under_the_bucket_policy(self) -> None:
        bucket = "arn:aws:s3:::up"
        deny_other_keys = {"Effect": "Deny", "Principal": "*", "Action": "s3:PutObject", "Resource": bucket + "/*",
                           "Condition": {"Null": {"s3:x-amz-server-side-encryption-aws-kms-key-id": "false"},
                                         "StringNotEquals": {"s3:x-amz-server-side-encryption-aws-kms-key-id": KEY}}}
        e = enforcer({"AK": function({"Effect": "Allow", "Action": "s3:PutObject", "Resource": bucket + "/*"},
                                     {"Effect": "Allow", "Action": "kms:GenerateDataKey", "Resource": KEY})},
                     {bucket: [{"name": "bp", "document": doc(deny_other_keys)}]},
                     doc(ROOT_DELEGATES), {bucket: KEY})
        who = e.principal_for("AK")
        needs = e.needs("s3", "PUT", {}, {}, "/up/uploads/t/b", "PUT", {"X-Amz-Credential": ["AK/x"]})
        self.assertEqual([n.action for n in needs], ["s3:PutObject", "kms:GenerateDataKey"])
        e.check(who, needs)
        other = {"x-amz-server-side-encryption-aws-kms-key-id": "arn:aws:kms:us-east-1:1:key/other"}
        with self.assertRaises(iam.Denied) as denied:
            e.check(who, e.needs("s3", "PUT", {}, other, "/up/uploads/t/b", "PUT", {}))
        self.assertIn("explicit deny", str(denied.exception))



# A parent with an encrypted topic and a nested application whose alarm
# notifies it, as template.yaml and ops/observability.yaml are built.
PARENT = """
Transform: AWS::Serverless-2016-10-31
Resources:
  Key:
    Type: AWS::KMS::Key
    Properties:
      KeyPolicy:
        Version: "2012-10-17"
        Statement:
          - Effect: Allow
            Principal: {AWS: !Sub "arn:${AWS::Partition}:iam::${AWS::AccountId}:root"}
            Action: "kms:*"
            Resource: "*"
%(cloudwatch_may_use_key)s
  Alerts:
    Type: AWS::SNS::Topic
    Properties:
      KmsMasterKeyId: !Ref Key
  AlertsPolicy:
    Type: AWS::SNS::TopicPolicy
    Properties:
      Topics: [!Ref Alerts]
      PolicyDocument:
        Version: "2012-10-17"
        Statement:
          - Effect: Allow
            Principal: {Service: cloudwatch.amazonaws.com}
            Action: sns:Publish
            Resource: !Ref Alerts
  Ops:
    Type: AWS::Serverless::Application
    Properties:
      Location: ops/alarms.yaml
      Parameters:
        AlertsTopicArn: !Ref Alerts
"""
CLOUDWATCH_MAY_USE_KEY = """
          - Effect: Allow
            Principal: {Service: cloudwatch.amazonaws.com}
            Action: ["kms:GenerateDataKey*", "kms:Decrypt"]
            Resource: "*"
"""
NESTED = """
Parameters:
  AlertsTopicArn:
    Type: String
Resources:
  Errors:
    Type: AWS::CloudWatch::Alarm
    Properties:
      Namespace: AWS/Lambda
      MetricName: Errors
      Statistic: Sum
      Period: 60
      EvaluationPeriods: 1
      Threshold: 0
      ComparisonOperator: GreaterThanThreshold
      AlarmActions: [!Ref AlertsTopicArn]
"""


def rendered(template: Path) -> tuple[dict, "stack.Resolver"]:
    """iam.json's content for a template, as `stack.py render` makes it."""
    cfn = stack.translate(template)
    resolver = stack.Resolver(cfn, "http://127.0.0.1:1", Path(tempfile.mkdtemp()),
                              nested=stack.nested_templates(cfn, template))
    return iam.build(cfn, resolver), resolver


def enforcer_of(built: dict) -> iam.Enforcer:
    f = Path(tempfile.mkdtemp()) / "iam.json"
    f.write_text(json.dumps(built))
    return iam.Enforcer(f)


class NestedStacks(unittest.TestCase):
    def write(self, key_policy_extra: str) -> Path:
        d = Path(tempfile.mkdtemp())
        (d / "ops").mkdir()
        (d / "ops" / "alarms.yaml").write_text(NESTED)
        (d / "template.yaml").write_text(PARENT % {"cloudwatch_may_use_key": key_policy_extra})
        return d / "template.yaml"

    def test_a_nested_alarm_notifies_the_parents_topic_under_its_policies(self) -> None:
        built, resolver = rendered(self.write(CLOUDWATCH_MAY_USE_KEY))
        topic = resolver.arn("Alerts")
        alarms = [d for d in built["deliveries"] if d["principal"] == "cloudwatch.amazonaws.com"]
        # The parameter resolves to what the parent passes: its topic's ARN.
        self.assertEqual([(d["from"], d["target"]) for d in alarms], [("Ops/Errors", topic)])
        self.assertEqual(enforcer_of(built).check_deliveries(), [])

    def test_a_nested_alarm_whose_notifications_the_key_policy_drops_is_reported(self) -> None:
        built, _ = rendered(self.write(""))
        problems = enforcer_of(built).check_deliveries()
        self.assertEqual(len(problems), 1)
        self.assertIn("Ops/Errors: cloudwatch.amazonaws.com cannot deliver", problems[0])
        self.assertIn("kms:", problems[0])

    def test_a_nested_stack_whose_template_is_not_loaded_is_an_error_not_a_pass(self) -> None:
        template = self.write(CLOUDWATCH_MAY_USE_KEY)
        cfn = stack.translate(template)
        with self.assertRaises(stack.StackError):
            iam.build(cfn, stack.Resolver(cfn, "http://127.0.0.1:1", Path(tempfile.mkdtemp())))


class TheTemplate(unittest.TestCase):
    """template.yaml and its nested ops/observability.yaml as they are."""

    def test_every_alarm_may_notify_the_operator_topic(self) -> None:
        template = Path(__file__).resolve().parent.parent / "template.yaml"
        built, resolver = rendered(template)
        nested = resolver.nested_stack("Observability")
        alarms = {
            f"Observability/{lid}" for lid, r in nested.resources.items()
            if r["Type"] == "AWS::CloudWatch::Alarm" and r["Properties"].get("AlarmActions")
        }
        self.assertGreaterEqual(len(alarms), 15)
        topic = resolver.arn("OperatorAlertsTopic")
        checked = {d["from"] for d in built["deliveries"]
                   if d["principal"] == "cloudwatch.amazonaws.com" and d["target"] == topic}
        self.assertEqual(checked, alarms)
        self.assertEqual(enforcer_of(built).check_deliveries(), [])


if __name__ == "__main__":
    unittest.main()

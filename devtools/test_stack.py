"""Unit tests of devtools/stack.py's nested stacks: what the local stack
accepts to leave out, and the parameters it passes. `make test` runs them
(.venv/bin/python -m unittest discover -s devtools -p 'test_*.py')."""

from __future__ import annotations

import sys
import tempfile
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import stack  # noqa: E402

PARENT = """
Transform: AWS::Serverless-2016-10-31
Parameters:
  Stage:
    Type: String
    Default: live
Resources:
  Queue:
    Type: AWS::SQS::Queue
  Ops:
    Type: AWS::Serverless::Application
    Properties:
      Location: %(location)s
      Parameters:
%(parameters)s
"""
PASSED = """        QueueName: !GetAtt Queue.QueueName
        ApiName: !Sub "${AWS::StackName}-api"
        Stage: !Ref Stage"""
NESTED = """
Parameters:
  QueueName:
    Type: String
  ApiName:
    Type: String
  Stage:
    Type: String
  Threshold:
    Type: Number
    Default: 0
Resources:
  Depth:
    Type: AWS::CloudWatch::Alarm
    Properties:
      Namespace: AWS/SQS
      MetricName: ApproximateNumberOfMessagesVisible
      Dimensions:
        - Name: QueueName
          Value: !Ref QueueName
      Statistic: Maximum
      Period: 60
      EvaluationPeriods: 1
      Threshold: !Ref Threshold
      ComparisonOperator: GreaterThanThreshold
%(more)s"""


def write(location: str = "ops/nested.yaml", parameters: str = PASSED, more: str = "") -> Path:
    d = Path(tempfile.mkdtemp())
    (d / "ops").mkdir()
    (d / "ops" / "nested.yaml").write_text(NESTED % {"more": more})
    (d / "template.yaml").write_text(PARENT % {"location": location, "parameters": parameters})
    return d / "template.yaml"


def nested_resolver(template: Path) -> stack.Resolver:
    cfn = stack.translate(template)
    parent = stack.Resolver(cfn, "http://127.0.0.1:1", Path(tempfile.mkdtemp()),
                            nested=stack.nested_templates(cfn, template))
    return parent.nested_stack("Ops")


class NestedStacks(unittest.TestCase):
    def test_the_nested_stack_gets_the_values_the_parent_passes(self) -> None:
        child = nested_resolver(write())
        props = child.resolve(child.resources["Depth"]["Properties"])
        self.assertEqual(props["Dimensions"][0]["Value"], f"{stack.STACK_NAME}-Queue")
        self.assertEqual(props["Threshold"], 0)  # its own default
        # The parent's stack name, not the nested stack's own.
        self.assertEqual(child.ref("ApiName"), f"{stack.STACK_NAME}-api")
        self.assertEqual(child.ref("Stage"), "live")
        self.assertTrue(child.ref("AWS::StackName").startswith(f"{stack.STACK_NAME}-Ops-"))

    def test_a_resource_the_local_stack_would_need_is_refused_there(self) -> None:
        template = write(more="  Extra:\n    Type: AWS::SQS::Queue\n")
        with self.assertRaisesRegex(stack.StackError, r"Extra \(AWS::SQS::Queue\)"):
            stack.nested_templates(stack.translate(template), template)

    def test_only_a_template_file_beside_the_parent_is_read(self) -> None:
        for location, message in [("https://example.com/nested.yaml", "only a template file"),
                                  ("ops/missing.yaml", "does not exist")]:
            template = write(location=location)
            with self.assertRaisesRegex(stack.StackError, message):
                stack.nested_templates(stack.translate(template), template)

    def test_parameters_are_checked_as_cloudformation_checks_them(self) -> None:
        with self.assertRaisesRegex(stack.StackError, r"\['Bogus'\] are not declared"):
            nested_resolver(write(parameters=PASSED + "\n        Bogus: x"))
        without_stage = "\n".join(line for line in PASSED.splitlines() if "Stage" not in line)
        with self.assertRaisesRegex(stack.StackError, r"\['Stage'\] of its template are not passed"):
            nested_resolver(write(parameters=without_stage))


class TableIndexes(unittest.TestCase):
    def test_an_index_the_template_gained_is_added_to_the_existing_table(self) -> None:
        import boto3
        from moto import mock_aws

        keys = [{"AttributeName": "pk", "KeyType": "HASH"}]
        gsi = {"IndexName": "gsi3", "KeySchema": [{"AttributeName": "g", "KeyType": "HASH"}],
               "Projection": {"ProjectionType": "KEYS_ONLY"}}
        attributes = [{"AttributeName": n, "AttributeType": "S"} for n in ("pk", "g")]
        with mock_aws():
            ddb = boto3.client("dynamodb", region_name="us-east-1", aws_access_key_id="test",
                               aws_secret_access_key="test")
            ddb.create_table(TableName="t", AttributeDefinitions=attributes[:1], KeySchema=keys,
                             BillingMode="PAY_PER_REQUEST")
            props = {"AttributeDefinitions": attributes, "GlobalSecondaryIndexes": [gsi]}
            self.assertEqual(stack._add_missing_indexes(ddb, "t", props), "updated (added gsi3)")
            described = ddb.describe_table(TableName="t")["Table"]["GlobalSecondaryIndexes"]
            self.assertEqual([i["IndexName"] for i in described], ["gsi3"])
            self.assertIsNone(stack._add_missing_indexes(ddb, "t", props))


if __name__ == "__main__":
    unittest.main()

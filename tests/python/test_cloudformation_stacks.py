"""The bootstrap stack (aws/ecr.yaml) and the service stack (aws/s3-auth-api.yaml) are
created in moto's CloudFormation (moto_server on loopback) for staging and prod, with the
defaults and with the opt-ins (private subnets with NAT, node-based cache, WAF, adopted
bucket), and must reach CREATE_COMPLETE with the outputs deploy.sh reads.

What this catches: a Ref, GetAtt or Sub variable naming nothing, a condition naming a
missing condition or resource, an output that cannot resolve, a property the resources
moto implements refuse (VPC, subnets, routes, NAT, security groups, load balancer,
listeners, ECS, IAM, KMS, S3, SNS, logs, dashboard). What it cannot: moto has no
ElastiCache (serverless or nodes), WAF, Budgets, Application Auto Scaling, and some IAM
and SNS policy types; those resources are replaced by stand-ins (an SQS queue each, with
literal values for their attributes), so their properties are checked by cfn-lint only
(scripts/cfn_variants.py). Nothing here talks to AWS.

MOTO_SERVER_BIN (set by scripts/test.sh) is the moto_server to start; without it the
test is skipped, except under CI=true, where it fails.
"""

import copy
import ipaddress
import json
import os
import re
import socket
import subprocess
import time

import pytest

from conftest import free_port

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
REGION = "us-east-2"

# Types moto's CloudFormation does not create (or not faithfully), replaced by a stand-in.
STAND_INS = {
    "AWS::ElastiCache::ServerlessCache",
    "AWS::ElastiCache::User",
    "AWS::ElastiCache::UserGroup",
    "AWS::ElastiCache::ReplicationGroup",
    "AWS::ElastiCache::SubnetGroup",
    "AWS::Budgets::Budget",
    "AWS::WAFv2::WebACL",
    "AWS::WAFv2::WebACLAssociation",
    "AWS::ApplicationAutoScaling::ScalableTarget",
    "AWS::ApplicationAutoScaling::ScalingPolicy",
    "AWS::CloudFormation::WaitConditionHandle",
    "AWS::IAM::OIDCProvider",
    "AWS::IAM::Group",
    "AWS::S3::BucketPolicy",
    "AWS::SNS::TopicPolicy",
    "AWS::SNS::Subscription",
    "AWS::EC2::SecurityGroupEgress",
    "AWS::SecretsManager::Secret",
    "AWS::CloudWatch::Alarm",
}

# What deploy.sh reads from the service stack.
DEPLOY_OUTPUTS = {"ClusterName", "ServiceName", "HealthCheckUrl", "LogGroupName", "LoadBalancerDnsName", "ServiceUrl"}


def deps():
    """boto3 and yaml, or a failure under CI and a skip elsewhere."""
    try:
        import boto3  # noqa: F401
        import yaml  # noqa: F401
    except ImportError as e:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{e}: install tests/python/requirements.txt (CI requires this test)")
        pytest.skip(f"{e}")


def cfn_loader():
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    def tag(name):
        def construct(loader, node):
            if isinstance(node, yaml.ScalarNode):
                value = loader.construct_scalar(node)
            elif isinstance(node, yaml.SequenceNode):
                value = loader.construct_sequence(node, deep=True)
            else:
                value = loader.construct_mapping(node, deep=True)
            if name == "Ref":
                return {"Ref": value}
            if name == "Condition":
                return {"Condition": value}
            if name == "GetAtt" and isinstance(value, str):
                value = value.split(".", 1)
            return {f"Fn::{name}": value}

        return construct

    for name in ["Ref", "Sub", "GetAtt", "If", "Equals", "Not", "And", "Or", "Condition", "Join", "Select",
                 "Split", "FindInMap", "GetAZs", "Cidr", "Base64", "ImportValue"]:
        Loader.add_constructor(f"!{name}", tag(name))
    return Loader


def load(path):
    import yaml

    with open(os.path.join(ROOT, path), encoding="utf-8") as f:
        return yaml.load(f, Loader=cfn_loader())


def with_stand_ins(template):
    """A copy in which each STAND_INS resource is an SQS queue (no properties), every
    GetAtt of one is a literal and every ${X.Attr} of one in a Sub is a literal."""
    template = copy.deepcopy(template)
    replaced = set()
    literal_attrs = set()
    for name, resource in template["Resources"].items():
        if resource["Type"] in STAND_INS:
            replaced.add(name)
            resource["Type"] = "AWS::SQS::Queue"
            resource["Properties"] = {}
            resource.pop("DeletionPolicy", None)
            resource.pop("UpdateReplacePolicy", None)
            resource.pop("Metadata", None)
        elif resource["Type"] == "AWS::KMS::Key":
            # moto 5 tags a key from CloudFormation with TagKey/TagValue and fails on the
            # Key/Value form CloudFormation uses: the tags are left out.
            resource["Properties"].pop("Tags", None)

    # Attributes moto does not give for types it does create.
    for name, resource in template["Resources"].items():
        if resource["Type"] == "AWS::ElasticLoadBalancingV2::TargetGroup":
            literal_attrs.add((name, "TargetGroupFullName"))

    def literal(name, attr):
        if attr.endswith("Port"):
            return "6379"
        return f"{name.lower()}-{attr.lower().replace('.', '-')}.standin.example"

    def walk(v):
        if isinstance(v, dict):
            # moto resolves neither Fn::Cidr nor Fn::GetAZs: the values they have here.
            if set(v) == {"Fn::Cidr"}:
                block, count, bits = v["Fn::Cidr"]
                assert block == {"Ref": "VpcCidr"}, block
                net = ipaddress.ip_network(template["Parameters"]["VpcCidr"]["Default"])
                return [str(n) for n in list(net.subnets(new_prefix=32 - int(bits)))[: int(count)]]
            if set(v) == {"Fn::GetAZs"}:
                return [REGION + "a", REGION + "b", REGION + "c"]
            if set(v) == {"Fn::GetAtt"} and (v["Fn::GetAtt"][0] in replaced or tuple(v["Fn::GetAtt"][:2]) in literal_attrs):
                return literal(*v["Fn::GetAtt"][:2])
            if set(v) == {"Fn::Sub"}:
                body = v["Fn::Sub"]
                text = body if isinstance(body, str) else body[0]

                def sub(m):
                    parts = m.group(1).split(".", 1)
                    if len(parts) == 2 and (parts[0] in replaced or tuple(parts) in literal_attrs):
                        return literal(parts[0], parts[1])
                    return m.group(0)

                text = re.sub(r"\$\{([A-Za-z0-9:.]+)\}", sub, text)
                if isinstance(body, str):
                    return {"Fn::Sub": text}
                return {"Fn::Sub": [text, walk(body[1])]}
            return {k: walk(x) for k, x in v.items()}
        if isinstance(v, list):
            return [walk(x) for x in v]
        return v

    template["Resources"] = walk(template["Resources"])
    # moto's IAM users and policies cannot name a group that is a stand-in.
    for resource in template["Resources"].values():
        if resource["Type"] in ("AWS::IAM::User", "AWS::IAM::ManagedPolicy"):
            resource.get("Properties", {}).pop("Groups", None)
    template["Outputs"] = walk(template.get("Outputs", {}))
    return template, replaced


@pytest.fixture(scope="module")
def moto():
    deps()
    binary = os.environ.get("MOTO_SERVER_BIN")
    if not binary or not os.path.exists(binary):
        if os.environ.get("CI") == "true":
            pytest.fail("MOTO_SERVER_BIN must point at moto_server (scripts/test.sh sets it); CI requires this test")
        pytest.skip("MOTO_SERVER_BIN not set (scripts/test.sh sets it)")
    port = free_port()
    proc = subprocess.Popen([binary, "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=open(os.environ.get("MOTO_LOG", os.devnull), "w"))
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.time() + 30
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                break
        except OSError:
            if proc.poll() is not None or time.time() > deadline:
                proc.kill()
                pytest.fail("moto_server did not start")
            time.sleep(0.2)
    yield endpoint
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


def client(endpoint, service):
    import boto3

    return boto3.client(service, region_name=REGION, endpoint_url=endpoint,
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def create(endpoint, name, template, parameters):
    cfn = client(endpoint, "cloudformation")
    cfn.create_stack(
        StackName=name,
        TemplateBody=json.dumps(template),
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
        Capabilities=["CAPABILITY_NAMED_IAM"],
        Tags=[{"Key": "Application", "Value": "s3-auth-api"},
              {"Key": "Environment", "Value": parameters.get("Environment", "bootstrap")}],
    )
    deadline = time.time() + 120
    while True:
        stack = cfn.describe_stacks(StackName=name)["Stacks"][0]
        if not stack["StackStatus"].endswith("_IN_PROGRESS") or time.time() > deadline:
            break
        time.sleep(0.5)
    if stack["StackStatus"] != "CREATE_COMPLETE":
        events = cfn.describe_stack_events(StackName=name)["StackEvents"]
        reasons = [f"{e.get('LogicalResourceId')}: {e.get('ResourceStatusReason')}" for e in events
                   if e.get("ResourceStatusReason")]
        pytest.fail(f"{name}: {stack['StackStatus']}: {stack.get('StackStatusReason')}; {reasons[:10]}")
    return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}


@pytest.fixture(scope="module")
def bootstrap(moto):
    template, _ = with_stand_ins(load("aws/ecr.yaml"))
    return create(moto, "s3-auth-api-ecr", template, {})


def certificate(endpoint):
    acm = client(endpoint, "acm")
    return acm.request_certificate(DomainName="s3-auth.example.com")["CertificateArn"]


# Variant name -> (NamePrefix, parameters).
VARIANTS = {
    "staging": ("s3-auth-api-staging", {"Environment": "staging"}),
    "prod": ("s3-auth-api-prod", {"Environment": "prod"}),
    "prod-private-nat-nodes-waf": ("s3a-prod-opt-ins", {"Environment": "prod", "TaskNetwork": "private-nat", "CacheMode": "nodes",
                                   "WafMode": "block", "ContainerInsights": "auto"}),
    "staging-private-nat-adopted-bucket": ("s3a-staging-adopt", {"Environment": "staging", "TaskNetwork": "private-nat",
                                           "ExistingDataBucketName": "subnet46-data-example"}),
}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_the_service_stack_creates_with_the_outputs_deploy_reads(moto, bootstrap, variant):
    assert "RepositoryUri" in bootstrap
    prefix, params = VARIANTS[variant]
    params = dict(params)
    env = params["Environment"]
    params.update({"NamePrefix": prefix, "ImageTag": f"{env}-0123abc", "CertificateArn": certificate(moto)})
    if "ExistingDataBucketName" in params:
        client(moto, "s3").create_bucket(Bucket=params["ExistingDataBucketName"],
                                         CreateBucketConfiguration={"LocationConstraint": REGION})
    template, replaced = with_stand_ins(load("aws/s3-auth-api.yaml"))
    outputs = create(moto, prefix, template, params)

    missing = DEPLOY_OUTPUTS - set(outputs)
    assert not missing, f"outputs deploy.sh reads are missing: {missing}"
    public = params.get("TaskNetwork", "public") == "public"
    assert outputs["TaskAssignPublicIp"] == ("ENABLED" if public else "DISABLED")
    assert len(outputs["ServiceSubnetIds"].split(",")) == 2
    assert outputs["DashboardUrl"].endswith(f"#dashboards:name={prefix}-dashboard")
    assert outputs["CacheMode"] == params.get("CacheMode", "serverless")
    assert ("WebAclArn" in outputs) == (params.get("WafMode", "off") != "off")

    # The service's subnets are the public ones by default, the private ones with
    # private-nat (moto's ECS keeps no network configuration of a service, so the
    # output is compared with the stack's subnets; cfn-lint checks the Service's own).
    resources = {}
    pages = client(moto, "cloudformation").get_paginator("list_stack_resources").paginate(StackName=prefix)
    for page in pages:
        for r in page["StackResourceSummaries"]:
            if "LogicalResourceId" in r:
                resources[r["LogicalResourceId"]] = r
    kind = "Public" if public else "Private"
    subnets = sorted(resources[f"{kind}Subnet{i}"]["PhysicalResourceId"] for i in (1, 2))
    assert sorted(outputs["ServiceSubnetIds"].split(",")) == subnets
    assert ("PrivateSubnet1" in resources) == (not public)

    # NAT gateways exist only with private-nat: none by default, one per zone in prod.
    ec2 = client(moto, "ec2")
    vpc = resources["Vpc"]["PhysicalResourceId"]
    nats = [n for n in ec2.describe_nat_gateways(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["NatGateways"]
            if n["State"] != "deleted"]
    expected = 0 if public else (2 if env == "prod" else 1)
    assert len(nats) == expected, f"{len(nats)} NAT gateways, expected {expected}"

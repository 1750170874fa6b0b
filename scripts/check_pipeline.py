#!/usr/bin/env python3
"""Static checks of the deployment pipeline (aws/deploy.sh, aws/ecr.yaml, the workflows).

Run by scripts/lint-infra.sh with the lint venv's Python (PyYAML, cfn-lint). Each check
prints one line, "ok: ..." or "FAILED: ...", and the script exits 1 if any failed:

  - deploy-role actions: every AWS call of the GitHub path (deploy.sh as deploy.yml runs
    it, read from its --dry-run output, plus what `aws cloudformation deploy` calls
    inside and what the workflow itself calls) is an action GitHubDeployRole allows;
  - cfn-role resource types: every resource type of the service template, and those
    being added to it, has its actions in DeployCloudFormationRole;
  - health check: curl reaches the new load balancer with --connect-to and TLS verified
    (never --insecure), and its failure does not end the run before the selftest and
    prod's deletion protection;
  - bootstrap recovery: a bootstrap stack in ROLLBACK_COMPLETE is deleted, then created
    again adopting the retained repository;
  - one rollout: an update forces a new deployment only when the stack was unchanged;
  - staging after CI, prod by digest, job_workflow_ref in the OIDC trust.
"""

import fnmatch
import re
import shlex
import subprocess
import sys

import yaml
from cfnlint.decode import cfn_yaml

CERT = "arn:aws:acm:us-east-2:123456789012:certificate/lint"
CFN_ROLE = "arn:aws:iam::123456789012:role/lint-cfn"

# What `aws cloudformation deploy` calls besides the command line: awscli's
# customizations/cloudformation/deployer.py (has_stack: DescribeStacks; create_changeset:
# GetTemplateSummary on an existing stack, then CreateChangeSet; the change_set_create_complete
# waiter: DescribeChangeSet; execute_changeset: ExecuteChangeSet; the
# stack_update_complete/stack_create_complete waiters: DescribeStacks), and its
# s3uploader.py with --s3-bucket (HeadObject = s3:GetObject, then PutObject).
CFN_DEPLOY_ACTIONS = [
    "cloudformation:DescribeStacks",
    "cloudformation:GetTemplateSummary",
    "cloudformation:CreateChangeSet",
    "cloudformation:DescribeChangeSet",
    "cloudformation:ExecuteChangeSet",
]
CFN_DEPLOY_S3_ACTIONS = ["s3:GetObject", "s3:PutObject"]
# Waiters: the API they poll.
WAITERS = {
    ("cloudformation", "stack-delete-complete"): "cloudformation:DescribeStacks",
    ("ecs", "services-stable"): "ecs:DescribeServices",
    ("ecs", "tasks-stopped"): "ecs:DescribeTasks",
}
# CLI service names that are not the IAM prefix.
PREFIX = {"s3api": "s3", "elbv2": "elasticloadbalancing"}
# Calls that need no permission.
FREE = {"sts:GetCallerIdentity"}
# CLI verbs whose API name is not the verb in PascalCase.
SPECIAL = {
    ("ecr", "get-login-password"): ["ecr:GetAuthorizationToken"],
    ("s3api", "head-bucket"): ["s3:ListBucket"],
}
# What the workflow's actions call: amazon-ecr-login, and a push by build-push-action.
WORKFLOW_ACTIONS = [
    "ecr:GetAuthorizationToken",
    "ecr:BatchCheckLayerAvailability",
    "ecr:InitiateLayerUpload",
    "ecr:UploadLayerPart",
    "ecr:CompleteLayerUpload",
    "ecr:PutImage",
    "ecr:BatchGetImage",
]

results = []


def report(name, problems, detail=""):
    if problems:
        results.append(False)
        print(f"   FAILED: {name}: " + "; ".join(problems))
    else:
        results.append(True)
        print(f"   ok: {name}" + (f" ({detail})" if detail else ""))


def dry_run(*args):
    # One stream, in order: `run` prints to stdout, `capture` to stderr.
    out = subprocess.run(
        ["bash", "aws/deploy.sh", "--dry-run", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    if out.returncode != 0:
        sys.exit(f"deploy.sh --dry-run {' '.join(args)} failed:\n{out.stdout}")
    return out.stdout


def commands(output):
    """The commands a dry run prints (after "+ "), as word lists; pipes split."""
    cmds = []
    for line in output.splitlines():
        if not line.startswith("+ "):
            continue
        for part in line[2:].split(" | "):
            try:
                cmds.append(shlex.split(part))
            except ValueError:
                cmds.append(part.split())
    return cmds


def pascal(verb):
    return "".join(w.capitalize() for w in verb.split("-"))


def actions_of(words):
    """IAM actions one AWS CLI command (words) needs."""
    if not words or words[0] != "aws" or len(words) < 3:
        return []
    service, verb = words[1], words[2]
    if verb == "wait":
        return [WAITERS[(service, words[3])]]
    if (service, verb) in SPECIAL:
        return SPECIAL[(service, verb)]
    if (service, verb) == ("cloudformation", "deploy"):
        needed = list(CFN_DEPLOY_ACTIONS)
        if "--s3-bucket" in words:
            needed += CFN_DEPLOY_S3_ACTIONS
        if "--role-arn" in words:
            needed.append("iam:PassRole")
        return needed
    needed = [f"{PREFIX.get(service, service)}:{pascal(verb)}"]
    if (service, verb) == ("ecs", "run-task"):
        needed.append("iam:PassRole")  # the task definition's roles
    return [a for a in needed if a not in FREE]


def allowed_actions(role):
    actions = []
    for policy in role["Properties"].get("Policies", []):
        for st in policy["PolicyDocument"]["Statement"]:
            if st.get("Effect") != "Allow":
                continue
            acts = st["Action"]
            actions += [acts] if isinstance(acts, str) else list(acts)
    return actions


def allows(actions, needed):
    return any(fnmatch.fnmatchcase(needed.lower(), a.lower()) for a in actions)


def sub_text(value):
    if isinstance(value, dict) and "Fn::Sub" in value:
        v = value["Fn::Sub"]
        return v if isinstance(v, str) else v[0]
    return value if isinstance(value, str) else None


bootstrap = cfn_yaml.load("aws/ecr.yaml")
resources = bootstrap["Resources"]
deploy_role = resources["GitHubDeployRole"]
cfn_role = resources["DeployCloudFormationRole"]
workflow = yaml.safe_load(open(".github/workflows/deploy.yml", encoding="utf-8"))
ci = yaml.safe_load(open(".github/workflows/ci.yml", encoding="utf-8"))
deploy_sh = open("aws/deploy.sh", encoding="utf-8").read()

# ------------------------------------------------------------------ deploy-role actions
github_runs = {
    "staging update": dry_run(
        "--dry-run-status", "UPDATE_COMPLETE", "--env", "staging", "--skip-bootstrap",
        "--skip-build", "--image-tag", "staging-lint", "--cfn-role-arn", CFN_ROLE),
    "staging, unchanged stack": dry_run(
        "--dry-run-status", "UPDATE_COMPLETE", "--dry-run-no-changes", "--env", "staging",
        "--skip-bootstrap", "--skip-build", "--image-tag", "staging-lint",
        "--cfn-role-arn", CFN_ROLE),
    "prod promotion": dry_run(
        "--dry-run-status", "UPDATE_COMPLETE", "--env", "prod", "--skip-bootstrap",
        "--promote-from", "staging-lint", "--image-tag", "prod-lint", "--cfn-role-arn", CFN_ROLE),
}
# (A stack in ROLLBACK_COMPLETE is not the GitHub path's: it needs --cert-arn to be created
# again, and the workflow refuses a stack it cannot find; its first deployment is by hand.)
needed = {}
for run_name, output in github_runs.items():
    for words in commands(output):
        for action in actions_of(words):
            needed.setdefault(action, set()).add(f"deploy.sh ({run_name}): aws {' '.join(words[1:3])}")
# The workflow's own `aws` calls and actions.
for job_id, job in workflow["jobs"].items():
    for step in job.get("steps", []):
        for m in re.finditer(r"\baws ([a-z0-9-]+) ([a-z0-9-]+)", step.get("run", "")):
            for action in actions_of(["aws", m.group(1), m.group(2), "x"]):
                needed.setdefault(action, set()).add(f"deploy.yml job {job_id}")
for action in WORKFLOW_ACTIONS:
    needed.setdefault(action, set()).add("deploy.yml (ECR login and push)")
allowed = allowed_actions(deploy_role)
missing = [f"{a} (for {sorted(w)[0]})" for a, w in sorted(needed.items()) if not allows(allowed, a)]
# The CloudFormation role is passed, with iam:PassRole on exactly it.
passes = [
    st for st in deploy_role["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
    if st.get("Action") == "iam:PassRole"
    and st.get("Resource") == {"Fn::GetAtt": ["DeployCloudFormationRole", "Arn"]}
]
if not passes:
    missing.append("iam:PassRole of DeployCloudFormationRole")
report("GitHubDeployRole allows every call of the GitHub path", missing,
       f"{len(needed)} actions, incl. cloudformation:GetTemplateSummary")

# ------------------------------------------------------------- cfn-role resource types
# The least each resource type's handlers call to create, update and delete it (the
# resource schemas' handler permissions, abridged; reads are in ec2:Describe* etc.).
TYPE_ACTIONS = {
    "AWS::ApplicationAutoScaling::ScalableTarget": ["application-autoscaling:RegisterScalableTarget"],
    "AWS::ApplicationAutoScaling::ScalingPolicy": ["application-autoscaling:PutScalingPolicy"],
    "AWS::CloudWatch::Alarm": ["cloudwatch:PutMetricAlarm", "cloudwatch:DeleteAlarms"],
    "AWS::CloudWatch::Dashboard": ["cloudwatch:PutDashboard", "cloudwatch:GetDashboard",
                                   "cloudwatch:DeleteDashboards", "cloudwatch:ListDashboards"],
    "AWS::Budgets::Budget": ["budgets:ViewBudget", "budgets:ModifyBudget", "budgets:TagResource",
                             "budgets:UntagResource", "budgets:ListTagsForResource"],
    "AWS::WAFv2::WebACL": ["wafv2:CreateWebACL", "wafv2:UpdateWebACL", "wafv2:DeleteWebACL",
                           "wafv2:GetWebACL", "wafv2:ListWebACLs", "wafv2:TagResource",
                           "wafv2:UntagResource", "wafv2:ListTagsForResource"],
    "AWS::WAFv2::WebACLAssociation": ["wafv2:AssociateWebACL", "wafv2:DisassociateWebACL",
                                      "wafv2:GetWebACLForResource", "elasticloadbalancing:SetWebACL"],
    "AWS::EC2::EIP": ["ec2:AllocateAddress", "ec2:ReleaseAddress"],
    "AWS::EC2::FlowLog": ["ec2:CreateFlowLogs", "ec2:DeleteFlowLogs"],
    "AWS::EC2::InternetGateway": ["ec2:CreateInternetGateway", "ec2:DeleteInternetGateway"],
    "AWS::EC2::NatGateway": ["ec2:CreateNatGateway", "ec2:DeleteNatGateway"],
    "AWS::EC2::Route": ["ec2:CreateRoute", "ec2:DeleteRoute"],
    "AWS::EC2::RouteTable": ["ec2:CreateRouteTable", "ec2:DeleteRouteTable"],
    "AWS::EC2::SecurityGroup": ["ec2:CreateSecurityGroup", "ec2:DeleteSecurityGroup"],
    "AWS::EC2::SecurityGroupEgress": ["ec2:AuthorizeSecurityGroupEgress", "ec2:RevokeSecurityGroupEgress"],
    "AWS::EC2::SecurityGroupIngress": ["ec2:AuthorizeSecurityGroupIngress", "ec2:RevokeSecurityGroupIngress"],
    "AWS::EC2::Subnet": ["ec2:CreateSubnet", "ec2:DeleteSubnet"],
    "AWS::EC2::SubnetRouteTableAssociation": ["ec2:AssociateRouteTable", "ec2:DisassociateRouteTable"],
    "AWS::EC2::VPC": ["ec2:CreateVpc", "ec2:DeleteVpc"],
    "AWS::EC2::VPCEndpoint": ["ec2:CreateVpcEndpoint", "ec2:DeleteVpcEndpoints"],
    "AWS::EC2::VPCGatewayAttachment": ["ec2:AttachInternetGateway", "ec2:DetachInternetGateway"],
    "AWS::ECS::Cluster": ["ecs:CreateCluster", "ecs:DeleteCluster", "ecs:UpdateClusterSettings"],
    "AWS::ECS::Service": ["ecs:CreateService", "ecs:UpdateService", "ecs:DeleteService",
                          "ecs:DescribeServiceDeployments", "ecs:ListServiceDeployments"],
    "AWS::ECS::TaskDefinition": ["ecs:RegisterTaskDefinition", "ecs:DeregisterTaskDefinition"],
    "AWS::ElastiCache::ReplicationGroup": ["elasticache:CreateReplicationGroup",
                                           "elasticache:DeleteReplicationGroup"],
    "AWS::ElastiCache::SubnetGroup": ["elasticache:CreateCacheSubnetGroup",
                                      "elasticache:DeleteCacheSubnetGroup"],
    "AWS::ElastiCache::ServerlessCache": ["elasticache:CreateServerlessCache",
                                          "elasticache:ModifyServerlessCache",
                                          "elasticache:DeleteServerlessCache",
                                          "elasticache:DescribeServerlessCaches",
                                          "elasticache:AddTagsToResource",
                                          "elasticache:ListTagsForResource",
                                          "iam:CreateServiceLinkedRole"],
    "AWS::ElastiCache::User": ["elasticache:CreateUser", "elasticache:ModifyUser",
                               "elasticache:DeleteUser", "elasticache:DescribeUsers"],
    "AWS::ElastiCache::UserGroup": ["elasticache:CreateUserGroup", "elasticache:ModifyUserGroup",
                                    "elasticache:DeleteUserGroup", "elasticache:DescribeUserGroups"],
    "AWS::ElasticLoadBalancingV2::Listener": ["elasticloadbalancing:CreateListener",
                                              "elasticloadbalancing:DeleteListener"],
    "AWS::ElasticLoadBalancingV2::LoadBalancer": ["elasticloadbalancing:CreateLoadBalancer",
                                                  "elasticloadbalancing:DeleteLoadBalancer"],
    "AWS::ElasticLoadBalancingV2::TargetGroup": ["elasticloadbalancing:CreateTargetGroup",
                                                 "elasticloadbalancing:DeleteTargetGroup"],
    "AWS::IAM::AccessKey": ["iam:CreateAccessKey", "iam:DeleteAccessKey"],
    "AWS::IAM::Group": ["iam:CreateGroup", "iam:DeleteGroup"],
    "AWS::IAM::ManagedPolicy": ["iam:CreatePolicy", "iam:DeletePolicy"],
    "AWS::IAM::Role": ["iam:CreateRole", "iam:DeleteRole", "iam:PutRolePolicy", "iam:GetRolePolicy",
                       "iam:ListRolePolicies", "iam:ListAttachedRolePolicies"],
    "AWS::IAM::User": ["iam:CreateUser", "iam:DeleteUser", "iam:GetUserPolicy"],
    "AWS::KMS::Alias": ["kms:CreateAlias", "kms:DeleteAlias"],
    "AWS::KMS::Key": ["kms:CreateKey", "kms:ScheduleKeyDeletion"],
    "AWS::Logs::LogGroup": ["logs:CreateLogGroup", "logs:DeleteLogGroup",
                            "logs:DescribeResourcePolicies"],
    "AWS::Route53::RecordSet": ["route53:ChangeResourceRecordSets"],
    "AWS::S3::Bucket": ["s3:CreateBucket", "s3:DeleteBucket"],
    "AWS::S3::BucketPolicy": ["s3:PutBucketPolicy", "s3:DeleteBucketPolicy"],
    "AWS::SNS::Subscription": ["sns:Subscribe", "sns:Unsubscribe"],
    "AWS::SNS::Topic": ["sns:CreateTopic", "sns:DeleteTopic"],
    "AWS::SNS::TopicPolicy": ["sns:SetTopicAttributes", "sns:GetTopicAttributes"],
    # A placeholder that only orders other resources: CloudFormation itself, no AWS call.
    "AWS::CloudFormation::WaitConditionHandle": [],
    "AWS::SecretsManager::Secret": ["secretsmanager:CreateSecret", "secretsmanager:DeleteSecret"],
}
service = cfn_yaml.load("aws/s3-auth-api.yaml")
types = {r["Type"] for r in service["Resources"].values()}
cfn_allowed = allowed_actions(cfn_role)
problems = []
for t in sorted(types):
    if t not in TYPE_ACTIONS:
        problems.append(f"{t}: no action list here (add it to TYPE_ACTIONS and the role)")
        continue
    lacking = [a for a in TYPE_ACTIONS[t] if not allows(cfn_allowed, a)]
    if lacking:
        problems.append(f"{t}: {', '.join(lacking)}")
report("DeployCloudFormationRole covers every resource type of the service stack", problems,
       f"{len(types)} types")

# ------------------------------------------------------------------------ health check
problems = []
runs = {
    "create with --domain": dry_run("--env", "prod", "--cert-arn", CERT, "--domain", "api.example.com"),
    "create without a domain": dry_run("--env", "staging", "--cert-arn", CERT),
    **github_runs,
}
curls = 0
for run_name, output in runs.items():
    for words in commands(output):
        if not words or words[0] != "curl":
            continue
        curls += 1
        if "--insecure" in words or "-k" in words:
            problems.append(f"{run_name}: curl --insecure")
        if "--connect-to" not in words:
            problems.append(f"{run_name}: curl without --connect-to")
            continue
        host, port, target, tport = words[words.index("--connect-to") + 1].split(":")
        url = words[-1]
        if (port, tport) != ("443", "443") or target != "OUTPUT_LoadBalancerDnsName":
            problems.append(f"{run_name}: --connect-to {host}:{port}:{target}:{tport} is not <name>:443:<LoadBalancerDnsName>:443")
        if url != f"https://{host}/healthcheck":
            problems.append(f"{run_name}: {url} is not https://{host}/healthcheck")
        if run_name == "create with --domain" and host != "api.example.com":
            problems.append(f"{run_name}: checks {host}, not the domain")
if curls < len(runs):
    problems.append(f"only {curls} health checks in {len(runs)} dry runs")
code = "\n".join(l for l in deploy_sh.splitlines() if not l.lstrip().startswith("#"))
if re.search(r"--insecure|curl[^\n]* -k\b", code):
    problems.append("deploy.sh has --insecure")
# A failed check is recorded, not fatal: curl is a condition, the selftest a function
# whose failure is recorded, and the run fails after the deletion protection.
if not re.search(r"if run curl [^\n]*\\\n[^\n]*--connect-to", deploy_sh):
    problems.append("the health check's curl is not an if-condition (set -e would end the run)")
protect = deploy_sh.find("if $protect_after_create")
final = deploy_sh.find('if [ "${#failures[@]}" -gt 0 ]')
selftest = deploy_sh.find("elif ! selftest")
if not (0 <= selftest < protect < final):
    problems.append("failures must end the run only after the selftest and the deletion protection")
if not re.search(r"run aws logs get-log-events [^\n]*\\\n[^\n]*\\\n\s*\|\| echo", deploy_sh):
    problems.append("get-log-events after a passing selftest can fail the run")
report("health check: --connect-to the new load balancer, TLS verified, failures reported at the end",
       problems, f"{curls} curls")

# ------------------------------------------------------------------ bootstrap recovery
problems = []
out = dry_run("--env", "dev", "--cert-arn", CERT, "--dry-run-bootstrap-status", "ROLLBACK_COMPLETE",
              "--dry-run-repository-exists")
order = []
for words in commands(out):
    if words[:3] == ["aws", "cloudformation", "delete-stack"] and "s3-auth-api-bootstrap" in words:
        order.append("delete")
    elif words[:3] == ["aws", "cloudformation", "deploy"] and "aws/ecr.yaml" in words:
        order.append("adopt" if "AdoptExistingRepository=true" in words else "create")
if order != ["delete", "adopt"]:
    problems.append(f"ROLLBACK_COMPLETE with the repository retained: {order}, not delete then adopt")
out = dry_run("--env", "dev", "--cert-arn", CERT, "--dry-run-bootstrap-status", "DOES_NOT_EXIST")
if "AdoptExistingRepository=false" not in out:
    problems.append("a first bootstrap without the repository does not create it")
repo = resources["Repository"]
if repo.get("Condition") != "CreateRepository":
    problems.append("Repository is created even when adopted")
cond = bootstrap["Conditions"].get("CreateRepository")
if "AdoptExistingRepository" not in str(cond):
    problems.append("CreateRepository does not depend on AdoptExistingRepository")
for name, output in bootstrap["Outputs"].items():
    text = str(output["Value"])
    if ("'Repository'" in text or "Repository.Arn" in text) and "Fn::If" not in text:
        problems.append(f"output {name} needs the created repository")
report("bootstrap recovery: ROLLBACK_COMPLETE is deleted, the retained repository adopted", problems)

# ------------------------------------------------------------------------- one rollout
problems = []
for run_name, output, want in [
    ("update with changes", github_runs["staging update"], False),
    ("promotion", github_runs["prod promotion"], False),
    ("unchanged stack", github_runs["staging, unchanged stack"], True),
    ("create", runs["create without a domain"], False),
]:
    forced = any(w[:3] == ["aws", "ecs", "update-service"] and "--force-new-deployment" in w
                 for w in commands(output))
    if forced != want:
        problems.append(f"{run_name}: --force-new-deployment {'missing' if want else 'as well as the change set'}")
report("one rollout per deploy (a forced deployment only for an unchanged stack)", problems)

# ------------------------------------------------------------------ staging after CI
problems = []
jobs = workflow["jobs"]
ci_jobs = [j for j, v in jobs.items() if v.get("uses") == "./.github/workflows/ci.yml"]
if not ci_jobs:
    problems.append("deploy.yml has no job that calls ./.github/workflows/ci.yml")
staging = jobs.get("staging", {})
needs = staging.get("needs", [])
needs = [needs] if isinstance(needs, str) else needs
if not set(ci_jobs) & set(needs):
    problems.append(f"staging needs {needs}, not the CI job {ci_jobs}")
elif not all(f"needs.{j}.result == 'success'" in staging.get("if", "") for j in set(ci_jobs) & set(needs)):
    problems.append("staging's if: does not require the CI job's success")
on = ci.get("on", ci.get(True, {}))
if "workflow_call" not in on:
    problems.append("ci.yml is not callable (on: workflow_call)")
push = on.get("push") or {}
if "main" not in (push.get("branches-ignore") or []):
    problems.append("ci.yml also runs on a push to main: CI would run twice")
report("staging deploys only after CI passed (deploy.yml calls ci.yml, needs: it)", problems)

# --------------------------------------------------------------------- prod by digest
problems = []
prod = jobs.get("prod", {})
for step in prod.get("steps", []):
    uses = step.get("uses", "")
    if uses.startswith(("docker/", "aws-actions/amazon-ecr-login")):
        problems.append(f"prod uses {uses.split('@')[0]}")
    if re.search(r"\bdocker (buildx )?build\b", step.get("run", "")):
        problems.append("prod runs docker build")
prod_runs = "\n".join(s.get("run", "") for s in prod.get("steps", []))
if "--promote-from" not in prod_runs or 'source="staging-$(git rev-parse --short=12 HEAD)"' not in prod_runs:
    problems.append("prod does not call deploy.sh --promote-from staging-<commit>")
promo = commands(github_runs["prod promotion"])
verbs = [tuple(w[1:3]) for w in promo if w[:1] == ["aws"] and w[1] == "ecr"]
if verbs[:1] != [("ecr", "describe-images")] or ("ecr", "put-image") not in verbs:
    problems.append(f"deploy.sh --promote-from: ECR calls {verbs}")
for w in promo:
    if w[:3] == ["aws", "ecr", "put-image"] and "--image-digest" not in w:
        problems.append("put-image without --image-digest")
    if w[:1] == ["docker"]:
        problems.append("deploy.sh --promote-from builds")
report("prod promotes staging's image by digest and never builds", problems)

# ---------------------------------------------------------------- job_workflow_ref
problems = []
trust = deploy_role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
subjects = []
for st in trust:
    for op in ("StringLike", "StringEquals"):
        values = st.get("Condition", {}).get(op, {}).get("token.actions.githubusercontent.com:sub", [])
        values = values if isinstance(values, list) else [values]
        subjects += [sub_text(v) for v in values]
if not subjects:
    problems.append("no sub condition")
for s in subjects:
    if not s or ":job_workflow_ref:${GitHubRepository}/.github/workflows/deploy.yml@refs/" not in s:
        problems.append(f"subject without deploy.yml's job_workflow_ref: {s}")
report("the OIDC trust requires job_workflow_ref (deploy.yml)", problems, f"{len(subjects)} subjects")

sys.exit(0 if all(results) else 1)

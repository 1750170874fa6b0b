#!/usr/bin/env bash
# Builds the image, pushes it to ECR, creates or updates the CloudFormation stacks, rolls
# the ECS service, runs the selftest canary as a one-off task and checks the health
# endpoint. Safe to run again: an image tag already in ECR is not pushed twice, an
# unchanged stack is left alone, a stack left in ROLLBACK_COMPLETE by a failed first
# create is deleted and created again.
#
#   aws/deploy.sh --env staging --cert-arn arn:aws:acm:us-east-2:123456789012:certificate/...
#   aws/deploy.sh --env prod --domain s3-auth.example.com --hosted-zone-id Z123... --dry-run
#   aws/deploy.sh --env staging --skip-bootstrap --skip-build --image-tag staging-<commit> \
#     --cfn-role-arn <DeployCloudFormationRoleArn>        (.github/workflows/deploy.yml)
#
# See aws/README.md for prerequisites, the first deployment, rollback and migration.
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
  cat <<'EOF'
Usage: aws/deploy.sh [options] [--param Key=Value ...]

  --env NAME            dev | test | staging | prod        (DEPLOY_ENV, default dev)
  --region REGION       AWS region              (AWS_REGION, default us-east-2)
  --cert-arn ARN        ACM certificate for the HTTPS listener (CERTIFICATE_ARN);
                        needed when the stack is created, kept afterwards
  --domain NAME         public name of the service (DOMAIN_NAME)
  --hosted-zone-id ID   Route 53 zone of --domain; creates the alias record (HOSTED_ZONE_ID)
  --alarm-email ADDR    subscribe this address to the alarms (ALARM_EMAIL)
  --name-prefix P       resource name prefix (default s3-auth-api-<env>)
  --repository NAME     ECR repository (ECR_REPOSITORY, default s3-auth-api)
  --bootstrap-stack S   stack of aws/ecr.yaml: repository and artifacts bucket
                        (BOOTSTRAP_STACK, default s3-auth-api-bootstrap)
  --skip-bootstrap      use the bootstrap stack as it is (read its outputs only); the
                        GitHub deploy role may not change it, as it holds that role
  --cfn-role-arn ARN    CloudFormation service role for the service stack
                        (CFN_ROLE_ARN; aws cloudformation deploy --role-arn): the stack's
                        resources are then managed with that role's permissions
  --image-tag TAG       image tag (default <env>-<commit>, plus -dirty-<time> when the
                        work tree has changes)
  --skip-build          deploy --image-tag as it is in ECR, without building
  --skip-selftest       do not run the selftest task after the deployment
  --param Key=Value     any other template parameter (repeatable), e.g.
                        --param DailyLimitPerMiner=100 --param CpuArchitecture=ARM64
  --dry-run             print every command instead of running it
  --dry-run-status S    with --dry-run: the stack status to assume (default
                        DOES_NOT_EXIST; e.g. UPDATE_COMPLETE, ROLLBACK_COMPLETE)
  --platform-for ARCH   print the docker platform for a CpuArchitecture and exit
  -h, --help            this text
EOF
}

# The template's CpuArchitecture (the task definition's RuntimePlatform) and the
# platform the image is built for; scripts/lint-infra.sh checks both sides agree.
platform_for() {
  case "$1" in
    X86_64) echo linux/amd64 ;;
    ARM64) echo linux/arm64 ;;
    *) echo "unknown CpuArchitecture: $1 (X86_64 or ARM64)" >&2; return 2 ;;
  esac
}

env_name="${DEPLOY_ENV:-dev}"
region="${AWS_REGION:-${AWS_DEFAULT_REGION:-us-east-2}}"
cert_arn="${CERTIFICATE_ARN:-}"
domain="${DOMAIN_NAME:-}"
hosted_zone_id="${HOSTED_ZONE_ID:-}"
alarm_email="${ALARM_EMAIL:-}"
name_prefix=""
repository="${ECR_REPOSITORY:-s3-auth-api}"
bootstrap_stack="${BOOTSTRAP_STACK:-s3-auth-api-bootstrap}"
skip_bootstrap=false
cfn_role_arn="${CFN_ROLE_ARN:-}"
image_tag=""
skip_build=false
skip_selftest=false
dry_run=false
dry_run_status=DOES_NOT_EXIST
extra_params=()

while [ $# -gt 0 ]; do
  case "$1" in
    --env) env_name="$2"; shift 2 ;;
    --region) region="$2"; shift 2 ;;
    --cert-arn) cert_arn="$2"; shift 2 ;;
    --domain) domain="$2"; shift 2 ;;
    --hosted-zone-id) hosted_zone_id="$2"; shift 2 ;;
    --alarm-email) alarm_email="$2"; shift 2 ;;
    --name-prefix) name_prefix="$2"; shift 2 ;;
    --repository) repository="$2"; shift 2 ;;
    --bootstrap-stack) bootstrap_stack="$2"; shift 2 ;;
    --skip-bootstrap) skip_bootstrap=true; shift ;;
    --cfn-role-arn) cfn_role_arn="$2"; shift 2 ;;
    --image-tag) image_tag="$2"; shift 2 ;;
    --skip-build) skip_build=true; shift ;;
    --skip-selftest) skip_selftest=true; shift ;;
    --param) extra_params+=("$2"); shift 2 ;;
    --dry-run) dry_run=true; shift ;;
    --dry-run-status) dry_run_status="$2"; shift 2 ;;
    --platform-for) platform_for "$2"; exit $? ;;
    -h|--help) usage; exit 0 ;;
    *) echo "unknown option: $1" >&2; usage >&2; exit 2 ;;
  esac
done

case "$env_name" in
  dev|test|staging|prod) ;;
  *) echo "--env must be dev, test, staging or prod (got: $env_name)" >&2; exit 2 ;;
esac
# Never the names of the Python service's hand-built resources (subnet46-cluster,
# /ecs/subnet46-s3-api, subnet46/aws-credentials): the template refuses "subnet46" too.
[ -n "$name_prefix" ] || name_prefix="s3-auth-api-$env_name"
if [ -z "$image_tag" ]; then
  if $skip_build; then echo "--skip-build needs --image-tag" >&2; exit 2; fi
  image_tag="$env_name-$(git rev-parse --short=12 HEAD)"
  if [ -n "$(git status --porcelain)" ]; then
    image_tag="$image_tag-dirty-$(date -u +%Y%m%d%H%M%S)"
  fi
fi
app_stack="$name_prefix-s3-api"
# With a CloudFormation service role, every operation on the service stack goes through it.
cfn_role=()
[ -z "$cfn_role_arn" ] || cfn_role=(--role-arn "$cfn_role_arn")

# The value of a --param Key=..., if given.
param_value() {
  local p
  for p in ${extra_params[@]+"${extra_params[@]}"}; do
    if [[ "$p" == "$1="* ]]; then echo "${p#*=}"; return 0; fi
  done
  return 1
}

# Prints the command (shell-quoted) with --dry-run, runs it otherwise.
run() {
  if $dry_run; then
    printf '+'
    printf ' %q' "$@"
    printf '\n'
  else
    "$@"
  fi
}
# Same, for a command whose output is needed: in a dry run, prints the placeholder
# (first argument) as that output.
capture() {
  local placeholder="$1"
  shift
  if $dry_run; then
    printf '+' >&2
    printf ' %q' "$@" >&2
    printf '\n' >&2
    echo "$placeholder"
  else
    "$@"
  fi
}
say() { echo "==> $*"; }

for tool in aws docker curl git; do
  if ! $dry_run && ! command -v "$tool" >/dev/null 2>&1; then
    echo "$tool is required" >&2
    exit 1
  fi
done

say "environment $env_name, region $region, stacks $bootstrap_stack and $app_stack, image tag $image_tag"

# 1. The bootstrap stack: image repository and artifacts bucket. It must exist before the
#    first push and before the service template can be staged, so it is deployed inline
#    (aws/ecr.yaml stays under 51,200 bytes; scripts/lint-infra.sh checks).
#    It also holds the GitHub deploy role (when GitHubRepository is set), hence
#    CAPABILITY_IAM; parameters not given keep their current values.
if $skip_bootstrap; then
  say "bootstrap stack $bootstrap_stack: used as it is (--skip-bootstrap)"
else
  say "bootstrap stack $bootstrap_stack (ECR repository, artifacts bucket, deploy role)"
  run aws cloudformation deploy --region "$region" \
    --stack-name "$bootstrap_stack" \
    --template-file aws/ecr.yaml \
    --capabilities CAPABILITY_IAM \
    --parameter-overrides "RepositoryName=$repository" \
    --no-fail-on-empty-changeset
fi

bootstrap_output() {
  capture "$2" aws cloudformation describe-stacks --region "$region" --stack-name "$bootstrap_stack" \
    --query "Stacks[0].Outputs[?OutputKey=='$1'].OutputValue" --output text
}
artifacts_bucket="$(bootstrap_output ArtifactsBucketName ARTIFACTS_BUCKET)"
account="$(capture ACCOUNT_ID aws sts get-caller-identity --query Account --output text)"
registry="$account.dkr.ecr.$region.amazonaws.com"
image="$registry/$repository:$image_tag"

# 2. Where the service stack stands.
stack_status() {
  if $dry_run; then
    printf '+ aws cloudformation describe-stacks --region %q --stack-name %q --query Stacks[0].StackStatus --output text\n' \
      "$region" "$app_stack" >&2
    echo "$dry_run_status"
  else
    local out
    if out="$(aws cloudformation describe-stacks --region "$region" --stack-name "$app_stack" \
        --query 'Stacks[0].StackStatus' --output text 2>&1)"; then
      echo "$out"
    elif [[ "$out" == *"does not exist"* ]]; then
      echo DOES_NOT_EXIST
    else
      echo "$out" >&2
      return 1
    fi
  fi
}
status="$(stack_status)"
say "stack $app_stack: $status"
case "$status" in
  ROLLBACK_COMPLETE)
    # A first create failed and was rolled back: such a stack can only be deleted. The
    # retained resources (data bucket, logs bucket, KMS key) stay; the create below
    # adopts the data bucket, whose name is fixed.
    say "the first create of $app_stack failed and was rolled back; deleting it to create it again"
    run aws cloudformation describe-stack-events --region "$region" --stack-name "$app_stack" \
      --max-items 15 --query "StackEvents[?contains(ResourceStatus, 'FAILED')].[LogicalResourceId, ResourceStatusReason]" \
      --output text
    run aws cloudformation delete-stack --region "$region" --stack-name "$app_stack" \
      ${cfn_role[@]+"${cfn_role[@]}"}
    run aws cloudformation wait stack-delete-complete --region "$region" --stack-name "$app_stack"
    status=DOES_NOT_EXIST
    ;;
  ROLLBACK_FAILED|DELETE_FAILED)
    echo "stack $app_stack is in $status: see aws/README.md, \"Rollback\" (delete it, keeping the" >&2
    echo "resources named in its events with --retain-resources, then run this again)" >&2
    exit 1
    ;;
  UPDATE_ROLLBACK_FAILED)
    echo "stack $app_stack is in UPDATE_ROLLBACK_FAILED: aws cloudformation continue-update-rollback" >&2
    echo "  --region $region --stack-name $app_stack   (aws/README.md, \"Rollback\"), then run this again" >&2
    exit 1
    ;;
  REVIEW_IN_PROGRESS)
    # Only a change set was ever made (nothing created): `deploy` creates it as new.
    status=DOES_NOT_EXIST
    ;;
  *_IN_PROGRESS)
    echo "stack $app_stack is busy ($status); run this again when it is done" >&2
    exit 1
    ;;
esac
creating=false
[ "$status" != DOES_NOT_EXIST ] || creating=true
if $creating && [ -z "$cert_arn" ]; then
  echo "the stack $app_stack does not exist yet: give --cert-arn (aws/README.md, step 2)" >&2
  exit 2
fi

# 3. Build and push, unless this tag is in ECR already (tags are immutable there). The
#    image is built for the task definition's CpuArchitecture: the one given, else the
#    stack's current one, else the template's default.
if ! arch="$(param_value CpuArchitecture)"; then
  arch=X86_64
  if ! $creating && ! $dry_run; then
    arch="$(aws cloudformation describe-stacks --region "$region" --stack-name "$app_stack" \
      --query "Stacks[0].Parameters[?ParameterKey=='CpuArchitecture'].ParameterValue" --output text)"
    case "$arch" in X86_64|ARM64) ;; *) arch=X86_64 ;; esac
  fi
fi
platform="$(platform_for "$arch")"
if $skip_build; then
  say "skipping the build; deploying $image as it is"
elif ! $dry_run && aws ecr describe-images --region "$region" --repository-name "$repository" \
    --image-ids "imageTag=$image_tag" >/dev/null 2>&1; then
  say "$image is in ECR already; not building it again"
else
  say "building $image for $platform ($arch) and pushing it"
  if $dry_run; then
    echo "+ aws ecr get-login-password --region $region | docker login --username AWS --password-stdin $registry"
  else
    aws ecr get-login-password --region "$region" \
      | docker login --username AWS --password-stdin "$registry"
  fi
  # One single-platform image manifest (no attestation index): what ECR scans and the
  # lifecycle policy counts.
  run docker buildx build --platform "$platform" --provenance=false --pull \
    --tag "$image" --push .
fi

# 4. The service stack, staged in the artifacts bucket (the template is over the 51,200
#    bytes `aws cloudformation deploy` accepts inline). Parameters not given keep their
#    current value on an update.
params=(
  "Environment=$env_name"
  "NamePrefix=$name_prefix"
  "ImageRepositoryName=$repository"
  "ImageTag=$image_tag"
  "CpuArchitecture=$arch"
)
[ -z "$cert_arn" ] || params+=("CertificateArn=$cert_arn")
[ -z "$domain" ] || params+=("DomainName=$domain")
[ -z "$hosted_zone_id" ] || params+=("HostedZoneId=$hosted_zone_id")
[ -z "$alarm_email" ] || params+=("AlarmEmail=$alarm_email")
# Deletion protection: never while creating (a protected load balancer turns a failed
# create into ROLLBACK_FAILED); for prod it is switched on once the stack exists.
protect_after_create=false
if ! param_value AlbDeletionProtection >/dev/null; then
  if $creating; then
    params+=("AlbDeletionProtection=false")
    [ "$env_name" != prod ] || protect_after_create=true
  elif [ "$env_name" = prod ]; then
    params+=("AlbDeletionProtection=true")
  else
    params+=("AlbDeletionProtection=false")
  fi
fi
# The data bucket has a fixed name: after a deleted stack (or a rolled-back create) it is
# retained, so a new create adopts it instead of colliding with it.
if $creating && ! param_value ExistingDataBucketName >/dev/null; then
  data_bucket="$name_prefix-data-$account-$region"
  if $dry_run; then
    printf '+ aws s3api head-bucket --region %q --bucket %q\n' "$region" "$data_bucket"
    echo "    (dry run: assuming it does not exist; if it does, ExistingDataBucketName=$data_bucket is added)"
  elif aws s3api head-bucket --region "$region" --bucket "$data_bucket" >/dev/null 2>&1; then
    say "bucket $data_bucket exists (retained from an earlier stack): adopting it"
    params+=("ExistingDataBucketName=$data_bucket")
  fi
fi
# The rest of --param (CpuArchitecture is in params already).
for p in ${extra_params[@]+"${extra_params[@]}"}; do
  [[ "$p" == CpuArchitecture=* ]] || params+=("$p")
done

deploy_stack() {
  run aws cloudformation deploy --region "$region" \
    --stack-name "$app_stack" \
    --template-file aws/s3-auth-api.yaml \
    --s3-bucket "$artifacts_bucket" \
    --s3-prefix "templates/$app_stack" \
    --capabilities CAPABILITY_IAM \
    ${cfn_role[@]+"${cfn_role[@]}"} \
    --parameter-overrides "$@" \
    --tags "Application=s3-auth-api" "Environment=$env_name" \
    --no-fail-on-empty-changeset
}
if $creating; then say "creating $app_stack"; else say "updating $app_stack"; fi
deploy_stack "${params[@]}"

output() {
  capture "OUTPUT_$1" aws cloudformation describe-stacks --region "$region" --stack-name "$app_stack" \
    --query "Stacks[0].Outputs[?OutputKey=='$1'].OutputValue" --output text
}
cluster="$(output ClusterName)"
service="$(output ServiceName)"
health_url="$(output HealthCheckUrl)"
log_group="$(output LogGroupName)"

# 5. On an update, new tasks (they re-read the injected secrets); then wait until the
#    service is stable. The deployment circuit breaker rolls back by itself when new
#    tasks keep failing.
if ! $creating; then
  say "rolling $service"
  run aws ecs update-service --region "$region" --cluster "$cluster" --service "$service" \
    --force-new-deployment --query "service.deployments[0].id" --output text
fi
run aws ecs wait services-stable --region "$region" --cluster "$cluster" --services "$service"

# 6. From outside, through the load balancer. Without --domain the URL is the load
#    balancer's own name, which the certificate does not cover: skip verification then.
say "checking $health_url"
curl_tls=()
if [ -z "$domain" ] && [[ "$health_url" == *.elb.amazonaws.com/* ]]; then curl_tls=(--insecure); fi
run curl -fsS --retry 5 --retry-delay 5 --retry-all-errors --max-time 10 \
  ${curl_tls[@]+"${curl_tls[@]}"} "$health_url"
echo

# 7. The selftest canary: one task of the service's own task definition, in its subnets
#    and security group, with the command `selftest`: presigns a miner-like upload under
#    _selftest/, uploads, downloads, lists and deletes through real S3, and exits 0 only
#    if every step passed.
if $skip_selftest; then
  say "skipping the selftest"
else
  say "selftest: one-off task in $cluster"
  read -r task_definition subnets security_groups <<<"$(capture "TASK_DEFINITION_ARN SUBNET_1,SUBNET_2 TASK_SECURITY_GROUP" \
    aws ecs describe-services --region "$region" --cluster "$cluster" --services "$service" \
    --query "services[0].[taskDefinition, join(',', networkConfiguration.awsvpcConfiguration.subnets), join(',', networkConfiguration.awsvpcConfiguration.securityGroups)]" \
    --output text)"
  task_arn="$(capture "arn:aws:ecs:$region:$account:task/$cluster/TASK_ID" \
    aws ecs run-task --region "$region" --cluster "$cluster" \
    --task-definition "$task_definition" --launch-type FARGATE --count 1 \
    --started-by deploy-selftest \
    --network-configuration "awsvpcConfiguration={subnets=[$subnets],securityGroups=[$security_groups],assignPublicIp=DISABLED}" \
    --overrides '{"containerOverrides":[{"name":"s3-api","command":["selftest"]}]}' \
    --query 'tasks[0].taskArn' --output text)"
  if [ -z "$task_arn" ] || [ "$task_arn" = None ]; then
    echo "the selftest task did not start (aws ecs run-task returned no task)" >&2
    exit 1
  fi
  run aws ecs wait tasks-stopped --region "$region" --cluster "$cluster" --tasks "$task_arn"
  exit_code="$(capture 0 aws ecs describe-tasks --region "$region" --cluster "$cluster" --tasks "$task_arn" \
    --query "tasks[0].containers[?name=='s3-api'].exitCode | [0]" --output text)"
  # The awslogs stream of a task: <awslogs-stream-prefix>/<container>/<task id>.
  task_id="${task_arn##*/}"
  log_stream="s3-api/s3-api/$task_id"
  if [ "$exit_code" = 0 ]; then
    run aws logs get-log-events --region "$region" --log-group-name "$log_group" \
      --log-stream-name "$log_stream" --start-from-head --query 'events[].message' --output text
    say "selftest passed"
  else
    echo "selftest FAILED (exit code $exit_code); its log ($log_group, $log_stream):" >&2
    aws ecs describe-tasks --region "$region" --cluster "$cluster" --tasks "$task_arn" \
      --query 'tasks[0].[stoppedReason, containers[0].reason]' --output text >&2 || true
    aws logs get-log-events --region "$region" --log-group-name "$log_group" \
      --log-stream-name "$log_stream" --start-from-head --query 'events[].message' --output text >&2 || true
    echo "the deployment stays in place; fix it, or roll back (aws/README.md, \"Rollback\")" >&2
    exit 1
  fi
fi

# 8. A new production stack gets its load balancer's deletion protection only now.
if $protect_after_create; then
  say "turning on the load balancer's deletion protection"
  deploy_stack "AlbDeletionProtection=true"
fi
say "deployed $image to $app_stack"

#!/usr/bin/env bash
# Builds the image, pushes it to ECR, creates or updates the CloudFormation stacks, rolls
# the ECS service, runs the selftest canary as a one-off task and checks the health
# endpoint. Safe to run again: an image tag already in ECR is not pushed twice, an
# unchanged stack is left alone, a stack left in ROLLBACK_COMPLETE by a failed first
# create is deleted and created again (the bootstrap stack too, adopting the retained
# ECR repository). A failed health check or selftest fails the run only at its end,
# after the other checks and prod's deletion protection.
#
#   aws/deploy.sh --env staging --cert-arn arn:aws:acm:us-east-2:123456789012:certificate/...
#   aws/deploy.sh --env prod --domain s3-auth.example.com --hosted-zone-id Z123... --dry-run
#   aws/deploy.sh --env staging --skip-bootstrap --skip-build --image-tag staging-<commit> \
#     --cfn-role-arn <DeployCloudFormationRoleArn>        (.github/workflows/deploy.yml)
#   aws/deploy.sh --env prod --skip-bootstrap --promote-from staging-<commit> \
#     --image-tag prod-<commit> --cfn-role-arn <DeployCloudFormationRoleArn>   (prod, by digest)
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
  --promote-from TAG    do not build: tag the image TAG points to (e.g. staging-<commit>,
                        the image staging tested) as --image-tag, by its digest (ECR
                        BatchGetImage + PutImage), and deploy that
  --skip-selftest       do not run the selftest task after the deployment
  --health-cacert FILE  CA certificate(s), PEM, that the health check trusts instead of the
                        system's: for an imported certificate of a private CA or a
                        self-signed one (no domain; aws/README.md) (HEALTH_CACERT)
  --param Key=Value     any other template parameter (repeatable), e.g.
                        --param DailyLimitPerMiner=100 --param CpuArchitecture=ARM64
  --dry-run             print every command instead of running it
  --dry-run-status S    with --dry-run: the stack status to assume (default
                        DOES_NOT_EXIST; e.g. UPDATE_COMPLETE, ROLLBACK_COMPLETE)
  --dry-run-bootstrap-status S
                        with --dry-run: the bootstrap stack's status to assume
                        (default UPDATE_COMPLETE; DOES_NOT_EXIST, ROLLBACK_COMPLETE)
  --dry-run-repository-exists
                        with --dry-run: assume the ECR repository exists already
  --dry-run-no-changes  with --dry-run: assume the service stack's change set is empty
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
promote_from=""
skip_build=false
skip_selftest=false
health_cacert="${HEALTH_CACERT:-}"
dry_run=false
dry_run_status=DOES_NOT_EXIST
dry_run_bootstrap_status=UPDATE_COMPLETE
dry_run_repository_exists=false
dry_run_no_changes=false
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
    --promote-from) promote_from="$2"; shift 2 ;;
    --skip-selftest) skip_selftest=true; shift ;;
    --health-cacert) health_cacert="$2"; shift 2 ;;
    --param) extra_params+=("$2"); shift 2 ;;
    --dry-run) dry_run=true; shift ;;
    --dry-run-status) dry_run_status="$2"; shift 2 ;;
    --dry-run-bootstrap-status) dry_run_bootstrap_status="$2"; shift 2 ;;
    --dry-run-repository-exists) dry_run_repository_exists=true; shift ;;
    --dry-run-no-changes) dry_run_no_changes=true; shift ;;
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
if [ -n "$promote_from" ] && $skip_build; then
  echo "--promote-from and --skip-build exclude each other" >&2
  exit 2
fi
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

# The status of a stack, DOES_NOT_EXIST when there is none; with --dry-run, the second
# argument.
stack_status() {
  if $dry_run; then
    printf '+ aws cloudformation describe-stacks --region %q --stack-name %q --query Stacks[0].StackStatus --output text\n' \
      "$region" "$1" >&2
    echo "$2"
  else
    local out err
    err="$(mktemp)"
    if out="$(aws cloudformation describe-stacks --region "$region" --stack-name "$1" \
        --query 'Stacks[0].StackStatus' --output text 2>"$err")"; then
      rm -f "$err"
      echo "$out"
    elif grep -q "does not exist" "$err"; then
      rm -f "$err"
      echo DOES_NOT_EXIST
    else
      cat "$err" >&2
      rm -f "$err"
      return 1
    fi
  fi
}

# A stack left in ROLLBACK_COMPLETE by a failed first create can only be deleted: shows
# why it failed, deletes it (as the role given, if any) and waits.
delete_rolled_back() {
  local stack="$1"
  shift
  say "the first create of $stack failed and was rolled back; deleting it to create it again"
  run aws cloudformation describe-stack-events --region "$region" --stack-name "$stack" \
    --max-items 15 --query "StackEvents[?contains(ResourceStatus, 'FAILED')].[LogicalResourceId, ResourceStatusReason]" \
    --output text
  run aws cloudformation delete-stack --region "$region" --stack-name "$stack" "$@"
  run aws cloudformation wait stack-delete-complete --region "$region" --stack-name "$stack"
}

# 1. The bootstrap stack: image repository and artifacts bucket. It must exist before the
#    first push and before the service template can be staged, so it is deployed inline
#    (aws/ecr.yaml stays under 51,200 bytes; scripts/lint-infra.sh checks).
#    It also holds the GitHub deploy role (when GitHubRepository is set), hence
#    CAPABILITY_IAM; parameters not given keep their current values.
#    The repository is retained under its fixed name when the stack is deleted or its first
#    create rolls back: a new bootstrap stack then adopts it (AdoptExistingRepository)
#    instead of failing with RepositoryAlreadyExistsException. The artifacts bucket's name
#    is generated, so a new stack makes a new one (the old one stays, retained).
if $skip_bootstrap; then
  say "bootstrap stack $bootstrap_stack: used as it is (--skip-bootstrap)"
else
  say "bootstrap stack $bootstrap_stack (ECR repository, artifacts bucket, deploy role)"
  bootstrap_status="$(stack_status "$bootstrap_stack" "$dry_run_bootstrap_status")"
  say "stack $bootstrap_stack: $bootstrap_status"
  case "$bootstrap_status" in
    ROLLBACK_COMPLETE)
      delete_rolled_back "$bootstrap_stack"
      bootstrap_status=DOES_NOT_EXIST
      ;;
    REVIEW_IN_PROGRESS) bootstrap_status=DOES_NOT_EXIST ;;
    ROLLBACK_FAILED|DELETE_FAILED|UPDATE_ROLLBACK_FAILED|*_IN_PROGRESS)
      echo "stack $bootstrap_stack is in $bootstrap_status: see aws/README.md, \"Rollback\"; run this again when it is settled" >&2
      exit 1
      ;;
  esac
  bootstrap_params=("RepositoryName=$repository")
  if [ "$bootstrap_status" = DOES_NOT_EXIST ]; then
    if $dry_run; then
      printf '+ aws ecr describe-repositories --region %q --repository-names %q\n' "$region" "$repository"
      repository_exists=$dry_run_repository_exists
    elif lookup="$(aws ecr describe-repositories --region "$region" \
        --repository-names "$repository" --query 'repositories[0].repositoryName' --output text 2>&1)"; then
      repository_exists=true
    elif [[ "$lookup" == *RepositoryNotFoundException* ]]; then
      repository_exists=false
    else
      # Not "absent" (access denied, throttling): creating would collide with it.
      echo "could not tell whether the repository $repository exists: $lookup" >&2
      exit 1
    fi
    if $repository_exists; then
      say "repository $repository exists (retained from an earlier bootstrap stack): adopting it"
      bootstrap_params+=("AdoptExistingRepository=true")
    else
      bootstrap_params+=("AdoptExistingRepository=false")
    fi
  fi
  run aws cloudformation deploy --region "$region" \
    --stack-name "$bootstrap_stack" \
    --template-file aws/ecr.yaml \
    --capabilities CAPABILITY_IAM \
    --parameter-overrides "${bootstrap_params[@]}" \
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
status="$(stack_status "$app_stack" "$dry_run_status")"
say "stack $app_stack: $status"
case "$status" in
  ROLLBACK_COMPLETE)
    # The retained resources (data bucket, logs bucket, KMS key) stay; the create below
    # adopts the data bucket, whose name is fixed. The create needs the certificate:
    # without it, the stack is left as it is.
    if [ -z "$cert_arn" ]; then
      echo "the stack $app_stack is in ROLLBACK_COMPLETE and must be created again: give --cert-arn (aws/README.md, step 2)" >&2
      exit 2
    fi
    delete_rolled_back "$app_stack" ${cfn_role[@]+"${cfn_role[@]}"}
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
#    stack's current one, else ARM64 (Graviton: about 20 % cheaper on Fargate; the image
#    is cross-compiled for it, see the Dockerfile).
if ! arch="$(param_value CpuArchitecture)"; then
  arch=ARM64
  if ! $creating && ! $dry_run; then
    arch="$(aws cloudformation describe-stacks --region "$region" --stack-name "$app_stack" \
      --query "Stacks[0].Parameters[?ParameterKey=='CpuArchitecture'].ParameterValue" --output text)"
    case "$arch" in X86_64|ARM64) ;; *) arch=ARM64 ;; esac
  fi
fi
platform="$(platform_for "$arch")"
if [ -n "$promote_from" ]; then
  # Promotion: the very image $promote_from names (the one staging tested), under a new
  # tag, by its digest; nothing is built. ECR tags are immutable: an existing tag must
  # already be that digest.
  say "promoting $repository:$promote_from to $image_tag by digest (no build)"
  digest="$(capture sha256:PROMOTED_DIGEST aws ecr describe-images --region "$region" \
    --repository-name "$repository" --image-ids "imageTag=$promote_from" \
    --query 'imageDetails[0].imageDigest' --output text)"
  case "$digest" in sha256:*) ;; *) echo "$repository:$promote_from not found in ECR" >&2; exit 1 ;; esac
  existing=""
  if ! $dry_run; then
    existing="$(aws ecr describe-images --region "$region" --repository-name "$repository" \
      --image-ids "imageTag=$image_tag" --query 'imageDetails[0].imageDigest' --output text 2>/dev/null || true)"
  fi
  if [ "$existing" = "$digest" ]; then
    say "$repository:$image_tag is $digest already"
  elif [ -n "$existing" ] && [ "$existing" != None ]; then
    echo "$repository:$image_tag exists with another digest ($existing, not $digest); tags are immutable" >&2
    exit 1
  else
    manifest="$(capture '{"schemaVersion":2}' aws ecr batch-get-image --region "$region" \
      --repository-name "$repository" --image-ids "imageDigest=$digest" \
      --query 'images[0].imageManifest' --output text)"
    media_type="$(capture application/vnd.oci.image.manifest.v1+json aws ecr batch-get-image --region "$region" \
      --repository-name "$repository" --image-ids "imageDigest=$digest" \
      --query 'images[0].imageManifestMediaType' --output text)"
    # --image-digest: ECR refuses a manifest that is not byte for byte the one of $digest.
    run aws ecr put-image --region "$region" --repository-name "$repository" \
      --image-tag "$image_tag" --image-digest "$digest" \
      --image-manifest "$manifest" --image-manifest-media-type "$media_type" \
      --query 'image.imageId.imageDigest' --output text
  fi
elif $skip_build; then
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
  elif probe="$(aws s3api head-bucket --region "$region" --bucket "$data_bucket" 2>&1)"; then
    say "bucket $data_bucket exists (retained from an earlier stack): adopting it"
    params+=("ExistingDataBucketName=$data_bucket")
  elif [[ "$probe" != *"Not Found"* && "$probe" != *404* ]]; then
    # 403 (no s3:ListBucket on it, or another account's bucket) or throttling: creating
    # would collide with it or fail.
    echo "could not tell whether the bucket $data_bucket exists: $probe" >&2
    exit 1
  fi
fi
# The rest of --param (CpuArchitecture is in params already).
for p in ${extra_params[@]+"${extra_params[@]}"}; do
  [[ "$p" == CpuArchitecture=* ]] || params+=("$p")
done

# The task definition the service runs, before and after the stack update (step 5).
service_task_definition() {
  capture "$1" aws ecs describe-services --region "$region" --cluster "$2" --services "$3" \
    --query "services[0].taskDefinition" --output text
}
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
task_definition_before=""
if ! $creating; then
  task_definition_before="$(service_task_definition TASK_DEFINITION_BEFORE \
    "$name_prefix-cluster" "$name_prefix-s3-api-service")" || task_definition_before=""
fi
if $creating; then say "creating $app_stack"; else say "updating $app_stack"; fi
deploy_stack "${params[@]}"

output() {
  capture "OUTPUT_$1" aws cloudformation describe-stacks --region "$region" --stack-name "$app_stack" \
    --query "Stacks[0].Outputs[?OutputKey=='$1'].OutputValue" --output text
}
cluster="$(output ClusterName)"
service="$(output ServiceName)"
lb_dns="$(output LoadBalancerDnsName)"
log_group="$(output LogGroupName)"
# What failed among the checks below; the run fails at its end, after all of them and
# after prod's deletion protection.
failures=()

# 5. One rollout per deploy. The change set rolls the service itself whenever the task
#    definition changes, and it does on every new image tag. Only when the service still
#    runs the task definition it ran before (the same tag deployed again, or an update
#    that changed only a secret, such as a new SigningKeySerial) is a new deployment
#    forced, so that the tasks re-read their secrets. Then wait until the service is
#    stable; the deployment circuit breaker rolls back by itself when new tasks keep
#    failing.
# The dry run's stand-in for "after": the same as before with --dry-run-no-changes.
after_placeholder=TASK_DEFINITION_AFTER
! $dry_run_no_changes || after_placeholder=TASK_DEFINITION_BEFORE
if ! $creating && [ "$(service_task_definition "$after_placeholder" "$cluster" "$service")" = "$task_definition_before" ]; then
  say "the task definition of $service is unchanged: forcing a new deployment"
  run aws ecs update-service --region "$region" --cluster "$cluster" --service "$service" \
    --force-new-deployment --query "service.deployments[0].id" --output text
fi
run aws ecs wait services-stable --region "$region" --cluster "$cluster" --services "$service"

# 6. From outside, through the NEW load balancer, with TLS verified: https://<name>/healthcheck
#    with curl --connect-to <name>:443:<LoadBalancerDnsName>:443, so that it reaches this
#    stack's load balancer whether or not DNS points there yet (and never the service the
#    name still points to, such as the Python service before the migration), while the
#    certificate is still checked against <name>. The name is --domain, else the stack's
#    DomainName, else the certificate's own name (healthcheck.<zone> for *.<zone>). Never
#    --insecure.
check_host="$domain"
if [ -z "$check_host" ] && ! $creating; then
  check_host="$(capture "" aws cloudformation describe-stacks --region "$region" --stack-name "$app_stack" \
    --query "Stacks[0].Parameters[?ParameterKey=='DomainName'].ParameterValue" --output text)" || check_host=""
  [ "$check_host" != None ] || check_host=""
fi
if [ -z "$check_host" ]; then
  cert_for_name="$cert_arn"
  if [ -z "$cert_for_name" ]; then
    cert_for_name="$(capture CERTIFICATE_ARN aws cloudformation describe-stacks --region "$region" --stack-name "$app_stack" \
      --query "Stacks[0].Parameters[?ParameterKey=='CertificateArn'].ParameterValue" --output text)" || cert_for_name=""
  fi
  check_host="$(capture "*.example.com" aws acm describe-certificate --region "$region" \
    --certificate-arn "$cert_for_name" --query Certificate.DomainName --output text)" || check_host=""
  case "$check_host" in
    "*."*) check_host="healthcheck.${check_host#\*.}" ;;
  esac
fi
if [ -z "$check_host" ] || [ "$check_host" = None ] || [ -z "$lb_dns" ] || [ "$lb_dns" = None ]; then
  echo "health check: no name to check (no --domain, no DomainName, no certificate name) or no load balancer" >&2
  failures+=("health check (no name or load balancer)")
else
  say "checking https://$check_host/healthcheck on $lb_dns"
  curl_ca=()
  [ -z "$health_cacert" ] || curl_ca=(--cacert "$health_cacert")
  if run curl -fsS --retry 5 --retry-delay 5 --retry-all-errors --max-time 10 ${curl_ca[@]+"${curl_ca[@]}"} \
      --connect-to "$check_host:443:$lb_dns:443" "https://$check_host/healthcheck"; then
    echo
  else
    echo
    echo "health check FAILED: https://$check_host/healthcheck on $lb_dns" >&2
    failures+=("health check")
  fi
fi

# 7. The selftest canary: one task of the service's own task definition, in its subnets
#    and security group (and with a public IP when the service's tasks have one), with the
#    command `selftest`: presigns a miner-like upload under _selftest/, uploads, downloads,
#    lists and deletes through real S3, and exits 0 only if every step passed.
selftest() {
  local task_definition subnets security_groups public_ip task_arn exit_code task_id log_stream
  say "selftest: one-off task in $cluster"
  if ! read -r task_definition subnets security_groups public_ip <<<"$(capture "TASK_DEFINITION_ARN SUBNET_1,SUBNET_2 TASK_SECURITY_GROUP DISABLED" \
      aws ecs describe-services --region "$region" --cluster "$cluster" --services "$service" \
      --query "services[0].[taskDefinition, join(',', networkConfiguration.awsvpcConfiguration.subnets), join(',', networkConfiguration.awsvpcConfiguration.securityGroups), networkConfiguration.awsvpcConfiguration.assignPublicIp]" \
      --output text)"; then
    echo "the selftest could not read the service's network configuration" >&2
    return 1
  fi
  case "$public_ip" in ENABLED) ;; *) public_ip=DISABLED ;; esac
  if ! task_arn="$(capture "arn:aws:ecs:$region:$account:task/$cluster/TASK_ID" \
      aws ecs run-task --region "$region" --cluster "$cluster" \
      --task-definition "$task_definition" --launch-type FARGATE --count 1 \
      --started-by deploy-selftest \
      --network-configuration "awsvpcConfiguration={subnets=[$subnets],securityGroups=[$security_groups],assignPublicIp=$public_ip}" \
      --overrides '{"containerOverrides":[{"name":"s3-api","command":["selftest"]}]}' \
      --query 'tasks[0].taskArn' --output text)" || [ -z "$task_arn" ] || [ "$task_arn" = None ]; then
    echo "the selftest task did not start (aws ecs run-task returned no task)" >&2
    return 1
  fi
  if ! run aws ecs wait tasks-stopped --region "$region" --cluster "$cluster" --tasks "$task_arn"; then
    echo "the selftest task $task_arn did not stop in time" >&2
    return 1
  fi
  exit_code="$(capture 0 aws ecs describe-tasks --region "$region" --cluster "$cluster" --tasks "$task_arn" \
    --query "tasks[0].containers[?name=='s3-api'].exitCode | [0]" --output text)" || exit_code=unknown
  # The awslogs stream of a task: <awslogs-stream-prefix>/<container>/<task id>.
  task_id="${task_arn##*/}"
  log_stream="s3-api/s3-api/$task_id"
  if [ "$exit_code" = 0 ]; then
    # Only shown: a log that cannot be read does not fail a selftest that passed.
    run aws logs get-log-events --region "$region" --log-group-name "$log_group" \
      --log-stream-name "$log_stream" --start-from-head --query 'events[].message' --output text \
      || echo "warning: could not read the selftest's log ($log_group, $log_stream)" >&2
    say "selftest passed"
    return 0
  fi
  echo "selftest FAILED (exit code $exit_code); its log ($log_group, $log_stream):" >&2
  aws ecs describe-tasks --region "$region" --cluster "$cluster" --tasks "$task_arn" \
    --query 'tasks[0].[stoppedReason, containers[0].reason]' --output text >&2 || true
  aws logs get-log-events --region "$region" --log-group-name "$log_group" \
    --log-stream-name "$log_stream" --start-from-head --query 'events[].message' --output text >&2 || true
  return 1
}
if $skip_selftest; then
  say "skipping the selftest"
elif ! selftest; then
  failures+=("selftest")
fi

# 8. A new production stack gets its load balancer's deletion protection only now, even
#    when a check above failed: the stack exists either way.
if $protect_after_create; then
  say "turning on the load balancer's deletion protection"
  deploy_stack "AlbDeletionProtection=true"
fi
if [ "${#failures[@]}" -gt 0 ]; then
  echo "deployed $image to $app_stack, but these checks FAILED: ${failures[*]}" >&2
  echo "the deployment stays in place; fix it, or roll back (aws/README.md, \"Rollback\")" >&2
  exit 1
fi
say "deployed $image to $app_stack"

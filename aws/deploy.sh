#!/usr/bin/env bash
# Builds the image, pushes it to ECR, creates or updates the CloudFormation stacks, rolls
# the ECS service and checks the health endpoint. Safe to run again: an image tag already
# in ECR is not pushed twice, an unchanged stack is left alone.
#
#   aws/deploy.sh --env staging --cert-arn arn:aws:acm:us-east-2:123456789012:certificate/...
#   aws/deploy.sh --env prod --domain s3-auth.example.com --hosted-zone-id Z123... --dry-run
#
# See aws/README.md for prerequisites, the first deployment and rollback.
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
  --name-prefix P       resource name prefix (default subnet46 for prod,
                        subnet46-<env> otherwise)
  --repository NAME     ECR repository (ECR_REPOSITORY, default subnet46-s3-api)
  --image-tag TAG       image tag (default: the commit, plus -dirty-<time> when the
                        work tree has changes)
  --skip-build          deploy --image-tag as it is in ECR, without building
  --param Key=Value     any other template parameter (repeatable), e.g.
                        --param DailyLimitPerMiner=100 --param NatGateways=2
  --dry-run             print every command instead of running it
  -h, --help            this text
EOF
}

env_name="${DEPLOY_ENV:-dev}"
region="${AWS_REGION:-${AWS_DEFAULT_REGION:-us-east-2}}"
cert_arn="${CERTIFICATE_ARN:-}"
domain="${DOMAIN_NAME:-}"
hosted_zone_id="${HOSTED_ZONE_ID:-}"
alarm_email="${ALARM_EMAIL:-}"
name_prefix=""
repository="${ECR_REPOSITORY:-subnet46-s3-api}"
image_tag=""
skip_build=false
dry_run=false
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
    --image-tag) image_tag="$2"; shift 2 ;;
    --skip-build) skip_build=true; shift ;;
    --param) extra_params+=("$2"); shift 2 ;;
    --dry-run) dry_run=true; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "unknown option: $1" >&2; usage >&2; exit 2 ;;
  esac
done

case "$env_name" in
  dev|test|staging|prod) ;;
  *) echo "--env must be dev, test, staging or prod (got: $env_name)" >&2; exit 2 ;;
esac
if [ -z "$name_prefix" ]; then
  if [ "$env_name" = prod ]; then name_prefix="subnet46"; else name_prefix="subnet46-$env_name"; fi
fi
if [ -z "$image_tag" ]; then
  image_tag="$(git rev-parse --short=12 HEAD)"
  if [ -n "$(git status --porcelain)" ]; then
    image_tag="$image_tag-dirty-$(date -u +%Y%m%d%H%M%S)"
  fi
fi
# One repository (and its stack) serves every environment.
ecr_stack="$repository-ecr"
app_stack="$name_prefix-s3-api"

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

say "environment $env_name, region $region, stacks $ecr_stack and $app_stack, image tag $image_tag"

# 1. The image repository (its own stack: it must exist before the first push).
say "ECR repository stack $ecr_stack"
run aws cloudformation deploy --region "$region" \
  --stack-name "$ecr_stack" \
  --template-file aws/ecr.yaml \
  --parameter-overrides "RepositoryName=$repository" \
  --no-fail-on-empty-changeset

account="$(capture ACCOUNT_ID aws sts get-caller-identity --query Account --output text)"
registry="$account.dkr.ecr.$region.amazonaws.com"
image="$registry/$repository:$image_tag"

# 2. Build and push, unless this tag is in ECR already (tags are immutable there).
if $skip_build; then
  say "skipping the build; deploying $image as it is"
elif ! $dry_run && aws ecr describe-images --region "$region" --repository-name "$repository" \
    --image-ids "imageTag=$image_tag" >/dev/null 2>&1; then
  say "$image is in ECR already; not building it again"
else
  say "building and pushing $image"
  run docker build --pull -t "s3-auth-api:$image_tag" .
  if $dry_run; then
    echo "+ aws ecr get-login-password --region $region | docker login --username AWS --password-stdin $registry"
  else
    aws ecr get-login-password --region "$region" \
      | docker login --username AWS --password-stdin "$registry"
  fi
  run docker tag "s3-auth-api:$image_tag" "$image"
  run docker push "$image"
fi

# 3. The service stack. Parameters not given keep their current value on an update.
params=(
  "Environment=$env_name"
  "NamePrefix=$name_prefix"
  "ImageRepositoryName=$repository"
  "ImageTag=$image_tag"
)
[ -z "$cert_arn" ] || params+=("CertificateArn=$cert_arn")
[ -z "$domain" ] || params+=("DomainName=$domain")
[ -z "$hosted_zone_id" ] || params+=("HostedZoneId=$hosted_zone_id")
[ -z "$alarm_email" ] || params+=("AlarmEmail=$alarm_email")
# Deletion protection on the production load balancer only, unless set explicitly.
if [[ " ${extra_params[*]-} " != *" AlbDeletionProtection="* ]]; then
  if [ "$env_name" = prod ]; then params+=("AlbDeletionProtection=true"); else params+=("AlbDeletionProtection=false"); fi
fi
params+=(${extra_params[@]+"${extra_params[@]}"})

if [ -z "$cert_arn" ] && ! $dry_run \
    && ! aws cloudformation describe-stacks --region "$region" --stack-name "$app_stack" >/dev/null 2>&1; then
  echo "the stack $app_stack does not exist yet: give --cert-arn (aws/README.md, step 2)" >&2
  exit 2
fi

say "service stack $app_stack"
run aws cloudformation deploy --region "$region" \
  --stack-name "$app_stack" \
  --template-file aws/s3-auth-api.yaml \
  --capabilities CAPABILITY_IAM \
  --parameter-overrides "${params[@]}" \
  --tags "Application=s3-auth-api" "Environment=$env_name" \
  --no-fail-on-empty-changeset

output() {
  capture "OUTPUT_$1" aws cloudformation describe-stacks --region "$region" --stack-name "$app_stack" \
    --query "Stacks[0].Outputs[?OutputKey=='$1'].OutputValue" --output text
}
cluster="$(output ClusterName)"
service="$(output ServiceName)"
health_url="$(output HealthCheckUrl)"

# 4. New tasks (they re-read the injected secrets), then wait until the service is stable.
#    The deployment circuit breaker rolls back by itself when new tasks keep failing.
say "rolling $service"
run aws ecs update-service --region "$region" --cluster "$cluster" --service "$service" \
  --force-new-deployment --query "service.deployments[0].id" --output text
run aws ecs wait services-stable --region "$region" --cluster "$cluster" --services "$service"

# 5. From outside, through the load balancer. Without --domain the URL is the load
#    balancer's own name, which the certificate does not cover: skip verification then.
say "checking $health_url"
curl_tls=()
if [ -z "$domain" ] && [[ "$health_url" == *.elb.amazonaws.com/* ]]; then curl_tls=(--insecure); fi
run curl -fsS --retry 5 --retry-delay 5 --retry-all-errors --max-time 10 \
  ${curl_tls[@]+"${curl_tls[@]}"} "$health_url"
echo
say "deployed $image to $app_stack"

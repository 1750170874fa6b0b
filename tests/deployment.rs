//! The deployment files agree with the binary: every variable that docker compose, the
//! ECS task definition or an example env file gives the service is one it reads, with a
//! value it accepts; and the release binary, built by the same command as the image,
//! starts and answers `/healthz`.

mod support;

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::time::{Duration, Instant};

use s3_auth_api::Config;
use s3_auth_api::config::ENV_VARS;
use serde_yaml::Value;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn yaml(path: &str) -> Value {
    let text = std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{path} does not parse: {e}"))
}

fn unknown(names: impl IntoIterator<Item = String>) -> Vec<String> {
    names
        .into_iter()
        .filter(|n| !ENV_VARS.contains(&n.as_str()))
        .collect()
}

/// `${VAR:-default}` as compose would substitute it with nothing set.
fn compose_default(value: &str) -> String {
    let mut out = String::new();
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let Some(end) = rest[start..].find('}') else {
            break;
        };
        let inner = &rest[start + 2..start + end];
        out.push_str(inner.split_once(":-").map_or("", |(_, d)| d));
        rest = &rest[start + end + 1..];
    }
    out.push_str(rest);
    out
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => panic!("not a scalar: {other:?}"),
    }
}

#[test]
fn compose_wires_the_api_to_redis_and_s3_with_known_variables() {
    let compose = yaml("docker-compose.yml");
    let services = compose["services"].as_mapping().expect("services");
    let names: BTreeSet<String> = services
        .keys()
        .filter_map(|k| k.as_str().map(str::to_owned))
        .collect();
    for wanted in ["api", "redis", "minio"] {
        assert!(
            names.contains(wanted),
            "service {wanted} missing: {names:?}"
        );
    }
    let api = &compose["services"]["api"];
    let ports: Vec<String> = api["ports"]
        .as_sequence()
        .expect("api ports")
        .iter()
        .map(scalar)
        .collect();
    assert!(
        ports.iter().any(|p| p.ends_with(":8000")),
        "api publishes 8000: {ports:?}"
    );
    let env: HashMap<String, String> = api["environment"]
        .as_mapping()
        .expect("environment as a map")
        .iter()
        .map(|(k, v)| (scalar(k), compose_default(&scalar(v))))
        .collect();
    assert_eq!(unknown(env.keys().cloned()), Vec::<String>::new());
    // The values are ones the service accepts, and point at the compose services.
    let config = Config::from_map(&env).unwrap_or_else(|e| panic!("compose config: {e}"));
    assert_eq!(config.port, 8000);
    assert!(
        config
            .redis_url
            .as_ref()
            .map(|u| u.as_str())
            .is_some_and(|u| u.contains("//redis:"))
    );
    assert!(
        config
            .s3_endpoint_url
            .as_deref()
            .is_some_and(|u| u.contains("//minio:"))
    );
    let minio_ports: Vec<String> = compose["services"]["minio"]["ports"]
        .as_sequence()
        .expect("minio ports")
        .iter()
        .map(scalar)
        .collect();
    assert!(minio_ports.iter().any(|p| p.ends_with(":9000")));
}

/// Every `Name` of a mapping under `key` anywhere in `v` (through `!If` and friends).
fn names_under(v: &Value, key: &str, inside: bool, out: &mut Vec<String>) {
    match v {
        Value::Mapping(m) => {
            if inside && let Some(Value::String(name)) = m.get("Name") {
                out.push(name.clone());
            }
            for (k, child) in m {
                let here = inside || k.as_str() == Some(key);
                names_under(child, key, here, out);
            }
        }
        Value::Sequence(s) => s.iter().for_each(|c| names_under(c, key, inside, out)),
        Value::Tagged(t) => names_under(&t.value, key, inside, out),
        _ => {}
    }
}

/// Every `{Key, Value}` pair under a mapping key `key` anywhere in `v`.
fn key_values(v: &Value, key: &str, inside: bool, out: &mut Vec<(String, String)>) {
    match v {
        Value::Mapping(m) => {
            if inside && let Some(Value::String(k)) = m.get("Key") {
                // Values that are intrinsic functions (`!Ref ...`) are left empty.
                let value = match m.get("Value") {
                    Some(v @ (Value::String(_) | Value::Number(_) | Value::Bool(_))) => scalar(v),
                    _ => String::new(),
                };
                out.push((k.clone(), value));
            }
            for (k, child) in m {
                key_values(child, key, inside || k.as_str() == Some(key), out);
            }
        }
        Value::Sequence(s) => s.iter().for_each(|c| key_values(c, key, inside, out)),
        Value::Tagged(t) => key_values(&t.value, key, inside, out),
        _ => {}
    }
}

#[test]
fn the_load_balancer_closes_idle_connections_before_the_service_does() {
    // When the backend closes an idle keep-alive connection first, the ALB answers 502 to
    // a request it has just sent on it: its idle timeout must stay below IDLE_TIMEOUT.
    let template = yaml("aws/s3-auth-api.yaml");
    let mut attributes = Vec::new();
    key_values(&template, "LoadBalancerAttributes", false, &mut attributes);
    let alb: u64 = attributes
        .iter()
        .find(|(k, _)| k == "idle_timeout.timeout_seconds")
        .map(|(_, v)| v.parse().expect("ALB idle timeout is a number"))
        .expect("the template sets the ALB's idle_timeout.timeout_seconds");
    let mut env = Vec::new();
    names_under(&template, "Environment", false, &mut env);
    assert!(
        !env.iter().any(|n| n == "IDLE_TIMEOUT"),
        "the task definition overrides IDLE_TIMEOUT; compare against its value instead"
    );
    let service = s3_auth_api::config::DEFAULT_IDLE_TIMEOUT_SECS;
    assert!(
        alb < service,
        "ALB idle timeout {alb} s must be below the service's IDLE_TIMEOUT default {service} s"
    );
}

#[test]
fn task_definition_sets_only_known_variables() {
    let template = yaml("aws/s3-auth-api.yaml");
    let (mut env, mut secrets) = (Vec::new(), Vec::new());
    names_under(&template, "Environment", false, &mut env);
    names_under(&template, "Secrets", false, &mut secrets);
    assert!(env.len() > 10, "task definition environment found: {env:?}");
    assert!(secrets.contains(&"REDIS_PASSWORD".to_owned()));
    assert_eq!(unknown(env.clone()), Vec::<String>::new());
    assert_eq!(unknown(secrets), Vec::<String>::new());
    for needed in [
        "S3_BUCKET",
        "REDIS_URL",
        "AWS_CREDENTIALS_SECRET_ID",
        "TRUST_PROXY_HOPS",
    ] {
        assert!(env.iter().any(|n| n == needed), "{needed} not set");
    }
}

#[test]
fn example_env_files_use_known_variables_and_valid_values() {
    for file in [".example.env.development", ".example.env.production"] {
        let text = std::fs::read_to_string(root().join(file)).expect("example env file");
        let mut set = HashMap::new();
        let mut mentioned = Vec::new();
        for line in text.lines() {
            let commented = line.trim_start().starts_with('#');
            let line = line.trim_start().trim_start_matches('#').trim();
            let Some((name, value)) = line.split_once('=') else {
                continue;
            };
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
            {
                continue;
            }
            mentioned.push(name.to_owned());
            if !commented {
                set.insert(name.to_owned(), value.trim().to_owned());
            }
        }
        assert_eq!(unknown(mentioned), Vec::<String>::new(), "{file}");
        if let Some(path) = set.get_mut("METAGRAPH_FILE") {
            *path = root().join(path.as_str()).display().to_string();
        }
        Config::from_map(&set).unwrap_or_else(|e| panic!("{file}: {e}"));
    }
}

#[test]
fn release_binary_starts_and_answers_healthz() {
    let Ok(bin) = std::env::var("S3_AUTH_API_RELEASE_BIN") else {
        panic!(
            "S3_AUTH_API_RELEASE_BIN is not set: run scripts/test.sh, which builds the release \
             binary with scripts/build-release.sh (the Dockerfile's build command) and sets it"
        );
    };
    let port = support::free_port();
    let metagraph = root().join("examples/metagraph.sample.json");
    let mut child = support::serve_command(
        &bin,
        port,
        &metagraph,
        "http://127.0.0.1:9",
        &std::env::temp_dir(),
    )
    .spawn()
    .unwrap_or_else(|e| panic!("cannot start {bin}: {e}"));
    let started = Instant::now();
    let answer = loop {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{bin} exited early with {status}");
        }
        let reply = std::net::TcpStream::connect(("127.0.0.1", port))
            .ok()
            .and_then(|mut s| {
                use std::io::{Read, Write};
                s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
                s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    .ok()?;
                let mut out = String::new();
                s.read_to_string(&mut out).ok()?;
                Some(out)
            });
        if let Some(reply) = reply {
            break reply;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no answer on port {port} within 20 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let _ = child.kill();
    let _ = child.wait();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains(r#"{"status":"ok"}"#), "{answer}");
}

fn number(v: &Value) -> u64 {
    scalar(v)
        .parse()
        .unwrap_or_else(|e| panic!("not a number: {v:?}: {e}"))
}

#[test]
fn the_open_file_limit_is_above_max_connections() {
    // Every connection holds a descriptor: the task's nofile limit must stay above the
    // largest MAX_CONNECTIONS the template allows, with room for S3, Redis and logs.
    let template = yaml("aws/s3-auth-api.yaml");
    let container =
        &template["Resources"]["TaskDefinition"]["Properties"]["ContainerDefinitions"][0];
    let nofile = container["Ulimits"]
        .as_sequence()
        .expect("the container sets Ulimits")
        .iter()
        .find(|u| u["Name"].as_str() == Some("nofile"))
        .expect("a nofile ulimit");
    let (soft, hard) = (number(&nofile["SoftLimit"]), number(&nofile["HardLimit"]));
    assert!(soft <= hard, "nofile soft {soft} above hard {hard}");
    let max_connections = number(&template["Parameters"]["MaxConnections"]["MaxValue"]);
    assert!(
        soft >= max_connections + 1024,
        "nofile {soft} leaves too little above MAX_CONNECTIONS up to {max_connections}"
    );
    // The service's own default, should the variable ever be dropped from the template.
    assert!(soft > 10_000 + 1024);
}

#[test]
fn updates_leave_the_task_count_to_auto_scaling() {
    // With DesiredCount in the template every stack update would reset the count that
    // auto scaling chose; without it CloudFormation leaves the running count alone.
    let template = yaml("aws/s3-auth-api.yaml");
    let service = &template["Resources"]["Service"]["Properties"];
    assert!(
        service.get("DesiredCount").is_none(),
        "the ECS service sets DesiredCount"
    );
    let target = &template["Resources"]["ScalableTarget"]["Properties"];
    assert_eq!(
        target["ScalableDimension"].as_str(),
        Some("ecs:service:DesiredCount")
    );
}

#[test]
fn the_grace_period_covers_readiness_on_the_load_balancers_check() {
    // The target group checks /healthcheck, 200 once the metagraph and the signing keys
    // are loaded (at worst one METAGRAPH_SYNC_TIMEOUT, 60 s, with no snapshot); the grace
    // period must cover that plus the healthy threshold.
    let template = yaml("aws/s3-auth-api.yaml");
    let group = &template["Resources"]["TargetGroup"]["Properties"];
    assert_eq!(group["HealthCheckPath"].as_str(), Some("/healthcheck"));
    let to_healthy =
        number(&group["HealthCheckIntervalSeconds"]) * number(&group["HealthyThresholdCount"]);
    let grace =
        number(&template["Resources"]["Service"]["Properties"]["HealthCheckGracePeriodSeconds"]);
    assert!(
        grace >= 60 + to_healthy,
        "grace {grace} s is shorter than a first sync (60 s) plus {to_healthy} s to become healthy"
    );
}

#[test]
fn the_task_memory_holds_every_connection_and_the_request_buffer_budget() {
    // Memory a task can come to hold: each open connection's head buffer and state,
    // the bodies within the budget, and the rest of the process; the template's defaults
    // must fit TaskMemory with 20 % to spare.
    use s3_auth_api::api::budget::{PER_CONNECTION_BYTES, PROCESS_BASELINE_MIB};
    let template = yaml("aws/s3-auth-api.yaml");
    let params = &template["Parameters"];
    let task_mib = number(&params["TaskMemory"]["Default"]);
    let connections = number(&params["MaxConnections"]["Default"]);
    let budget_mib = number(&params["RequestBufferBudgetMb"]["Default"]);
    let container =
        &template["Resources"]["TaskDefinition"]["Properties"]["ContainerDefinitions"][0];
    let env_ref = |name: &str| {
        container["Environment"]
            .as_sequence()
            .expect("Environment")
            .iter()
            .find(|e| e["Name"].as_str() == Some(name))
            .map(|e| format!("{:?}", e["Value"]))
            .unwrap_or_else(|| panic!("{name} is not in the task definition"))
    };
    assert!(env_ref("MAX_CONNECTIONS").contains("MaxConnections"));
    assert!(env_ref("REQUEST_BUFFER_BUDGET_MB").contains("RequestBufferBudgetMb"));
    let needed_mib = connections * PER_CONNECTION_BYTES as u64 / (1 << 20)
        + budget_mib
        + PROCESS_BASELINE_MIB as u64;
    eprintln!(
        "{connections} connections x {} KiB + {budget_mib} MiB + {PROCESS_BASELINE_MIB} MiB = \
         {needed_mib} MiB of {task_mib} MiB",
        PER_CONNECTION_BYTES / 1024
    );
    assert!(
        needed_mib * 100 <= task_mib * 80,
        "{needed_mib} MiB needed leaves less than 20 % of the {task_mib} MiB task"
    );
}

#[test]
fn the_default_stack_runs_without_nat_and_admits_only_the_load_balancer() {
    // The cost defaults (aws/README.md, "Cost"): tasks in the public subnets, no NAT
    // gateway or its address unless TaskNetwork=private-nat, a serverless cache, Graviton.
    // With a public IP, the task security group is all that keeps the tasks private: one
    // inbound rule, port 8000 from the load balancer's group, and no address range.
    let template = yaml("aws/s3-auth-api.yaml");
    let params = &template["Parameters"];
    assert_eq!(params["TaskNetwork"]["Default"].as_str(), Some("public"));
    assert_eq!(params["CacheMode"]["Default"].as_str(), Some("serverless"));
    assert_eq!(params["CpuArchitecture"]["Default"].as_str(), Some("ARM64"));
    assert_eq!(params["WafMode"]["Default"].as_str(), Some("off"));
    let resources = template["Resources"].as_mapping().expect("Resources");
    for (name, resource) in resources {
        let kind = resource["Type"].as_str().unwrap_or_default();
        if kind == "AWS::EC2::NatGateway" || kind == "AWS::EC2::EIP" {
            let condition = resource["Condition"].as_str();
            assert!(
                matches!(condition, Some("PrivateNat" | "TwoNats")),
                "{name:?} ({kind}) exists without TaskNetwork=private-nat (condition {condition:?})"
            );
        }
    }
    let ingress = template["Resources"]["TaskSecurityGroup"]["Properties"]["SecurityGroupIngress"]
        .as_sequence()
        .expect("task ingress rules");
    assert_eq!(ingress.len(), 1, "task ingress: {ingress:?}");
    let rule = &ingress[0];
    assert_eq!(
        (number(&rule["FromPort"]), number(&rule["ToPort"])),
        (8000, 8000)
    );
    assert!(rule.get("CidrIp").is_none() && rule.get("CidrIpv6").is_none());
    assert!(format!("{:?}", rule["SourceSecurityGroupId"]).contains("LoadBalancerSecurityGroup"));
    // The TLS-only bucket policy applies to an adopted bucket too (no condition).
    assert!(
        template["Resources"]["DataBucketPolicy"]
            .get("Condition")
            .is_none(),
        "DataBucketPolicy only applies to a bucket the stack creates"
    );
}

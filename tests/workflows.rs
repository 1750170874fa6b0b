//! The GitHub workflows agree with the rest of the repository: CI runs the README's test
//! command with the crate's toolchain, and staging deploys only after it passed; the
//! deploy workflow calls aws/deploy.sh only with options it accepts, builds the same image
//! tags, and prod promotes staging's image instead of building; the deploy role of
//! aws/ecr.yaml trusts exactly the OIDC subjects (with deploy.yml's job_workflow_ref) the
//! workflow's jobs present; every action is pinned to a commit; and the workflows hold no
//! more permissions than they use.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use serde_yaml::Value;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn yaml(path: &str) -> Value {
    serde_yaml::from_str(&read(path)).unwrap_or_else(|e| panic!("{path} does not parse: {e}"))
}

const WORKFLOWS: [&str; 2] = [".github/workflows/ci.yml", ".github/workflows/deploy.yml"];

fn jobs(workflow: &Value) -> Vec<(String, &Value)> {
    workflow["jobs"]
        .as_mapping()
        .expect("jobs")
        .iter()
        .map(|(k, v)| (k.as_str().expect("job id").to_owned(), v))
        .collect()
}

fn steps(job: &Value) -> &[Value] {
    job["steps"].as_sequence().map_or(&[], Vec::as_slice)
}

/// The `run:` scripts of a job, with their line continuations joined.
fn runs(job: &Value) -> Vec<String> {
    steps(job)
        .iter()
        .filter_map(|s| s["run"].as_str())
        .map(|r| r.replace("\\\n", " "))
        .collect()
}

/// Whether `script` has `command` as a command of its own on some line (not, say, a
/// longer path that starts with it, nor in a comment or an echo).
fn invokes(script: &str, command: &str) -> bool {
    script.lines().any(|line| {
        let words: Vec<&str> = line.split_whitespace().collect();
        let mut from = 0;
        while from < words.len() && (words[from].contains('=') || words[from] == "exec") {
            from += 1; // VAR=value prefixes, exec
        }
        let rest = &words[from..];
        let wanted: Vec<&str> = command.split_whitespace().collect();
        rest.starts_with(&wanted)
            || (rest.first() == Some(&"bash") && rest[1..].starts_with(&wanted))
    })
}

/// The command of the README's "Test it" section: the first line of its first code block.
fn readme_test_command() -> String {
    let readme = read("README.md");
    let section = readme
        .split("\n## ")
        .find(|s| s.starts_with("Test it"))
        .expect("README.md has a \"Test it\" section");
    let block = section
        .split("```")
        .nth(1)
        .expect("the \"Test it\" section has a code block");
    block
        .lines()
        .skip(1) // the fence's language
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .expect("a command in the code block")
        .to_owned()
}

#[test]
fn ci_runs_the_readmes_test_command_on_every_push_and_pull_request() {
    let command = readme_test_command();
    assert!(
        command.contains("scripts/") || command.contains(".ci/"),
        "unexpected README test command: {command}"
    );
    let ci = yaml(".github/workflows/ci.yml");
    let on = &ci["on"];
    assert!(
        on.get("pull_request").is_some_and(Value::is_null),
        "ci.yml must run on every pull_request (no filters): {on:?}"
    );
    // Every push but main's here; main's through deploy.yml, which calls this workflow
    // (workflow_call) and deploys staging only after it passed: once per push either way.
    let push = on.get("push").expect("ci.yml runs on push");
    let ignored: Vec<&str> = push["branches-ignore"]
        .as_sequence()
        .map(|v| v.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    assert_eq!(ignored, ["main"], "ci.yml's push filters: {push:?}");
    assert_eq!(
        push.as_mapping().map(|m| m.len()),
        Some(1),
        "no other push filter: {push:?}"
    );
    assert!(on.get("workflow_call").is_some(), "ci.yml is callable");
    let deploy = yaml(".github/workflows/deploy.yml");
    let deploy_jobs = jobs(&deploy);
    let (ci_job, caller) = deploy_jobs
        .iter()
        .find(|(_, j)| j["uses"].as_str() == Some("./.github/workflows/ci.yml"))
        .expect("deploy.yml calls ci.yml");
    assert!(
        caller["if"]
            .as_str()
            .is_some_and(|c| c.contains("github.ref == 'refs/heads/main'")),
        "deploy.yml runs CI for a push to main"
    );
    let on_deploy = &deploy["on"];
    assert_eq!(
        on_deploy["push"]["branches"].as_sequence().map(Vec::len),
        Some(1),
        "deploy.yml runs on pushes to main only (and tags)"
    );
    let (_, staging) = deploy_jobs
        .iter()
        .find(|(id, _)| id == "staging")
        .expect("a staging job");
    assert_eq!(staging["needs"].as_str(), Some(ci_job.as_str()));
    assert!(
        staging["if"]
            .as_str()
            .is_some_and(|c| c.contains(&format!("needs.{ci_job}.result == 'success'"))),
        "staging deploys only after CI passed"
    );
    // The command runs unconditionally, on a GitHub-hosted Ubuntu runner.
    let mut found = false;
    for (id, job) in jobs(&ci) {
        for step in steps(job) {
            let Some(run) = step["run"].as_str() else {
                continue;
            };
            if !invokes(run, &command) {
                continue;
            }
            assert!(
                step.get("if").is_none(),
                "job {id}: the test step has an if:"
            );
            assert!(
                step.get("continue-on-error").is_none() && job.get("continue-on-error").is_none(),
                "job {id}: test failures must fail the workflow"
            );
            assert!(job.get("if").is_none(), "job {id} has an if:");
            assert_eq!(job["runs-on"].as_str(), Some("ubuntu-24.04"), "job {id}");
            found = true;
        }
    }
    assert!(
        found,
        "no ci.yml step runs the README's test command `{command}`"
    );
}

#[test]
fn ci_installs_the_crates_rust_version_and_caches_the_build_directories() {
    let manifest = read("Cargo.toml");
    let rust_version = manifest
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = "))
        .map(|v| v.trim_matches('"').to_owned())
        .expect("Cargo.toml has rust-version");
    let ci = yaml(".github/workflows/ci.yml");
    assert_eq!(
        ci["env"]["RUST_TOOLCHAIN"].as_str(),
        Some(rust_version.as_str()),
        "ci.yml's RUST_TOOLCHAIN and Cargo.toml's rust-version differ"
    );
    let (_, job) = jobs(&ci).into_iter().next().expect("a CI job");
    assert!(
        runs(job)
            .iter()
            .any(|r| invokes(r, "rustup toolchain install \"$RUST_TOOLCHAIN\"")),
        "ci.yml does not install $RUST_TOOLCHAIN"
    );
    // The directories scripts/test.sh and scripts/fuzz.sh build in, keyed on both lock files.
    let test_sh = read("scripts/test.sh");
    let fuzz_sh = read("scripts/fuzz.sh");
    let mut cached = String::new();
    let mut keys = String::new();
    for step in steps(job) {
        if step["uses"]
            .as_str()
            .is_some_and(|u| u.starts_with("actions/cache@"))
        {
            cached.push_str(step["with"]["path"].as_str().unwrap_or_default());
            keys.push_str(step["with"]["key"].as_str().unwrap_or_default());
        }
    }
    for (dir, script) in [
        ("s3-auth-api-target", &test_sh),
        ("s3-auth-api-fuzz-target", &fuzz_sh),
        ("s3-auth-api-venv", &test_sh),
    ] {
        assert!(
            script.contains(&format!("$HOME/.cache/{dir}")),
            "{dir} moved"
        );
        assert!(
            cached.contains(&format!("~/.cache/{dir}\n")),
            "{dir} is not cached"
        );
    }
    for lock in ["'Cargo.lock'", "'fuzz/Cargo.lock'"] {
        assert!(keys.contains(lock), "the cache key ignores {lock}");
    }
}

/// The options aws/deploy.sh documents in its --help.
fn deploy_sh_options() -> BTreeSet<String> {
    let out = Command::new("bash")
        .arg(root().join("aws/deploy.sh"))
        .arg("--help")
        .output()
        .expect("bash aws/deploy.sh --help");
    assert!(out.status.success(), "aws/deploy.sh --help failed");
    let help = String::from_utf8(out.stdout).expect("utf-8");
    help.lines()
        .filter_map(|l| {
            let l = l.trim_start().trim_start_matches("-h, ");
            let flag = l.split_whitespace().next()?;
            flag.starts_with("--").then(|| flag.to_owned())
        })
        .collect()
}

/// Every call of aws/deploy.sh in `script`, as the words that follow it up to the end
/// of its command.
fn deploy_sh_calls(script: &str) -> Vec<Vec<String>> {
    let mut calls = Vec::new();
    for line in script.lines() {
        let mut words = line.split_whitespace();
        while let Some(word) = words.next() {
            if word.trim_start_matches("\"$(").ends_with("aws/deploy.sh") {
                let args = words
                    .by_ref()
                    .take_while(|w| !matches!(*w, "|" | "||" | "&&" | ";" | ")" | ">" | ">>"))
                    .map(|w| w.trim_end_matches([')', '"', ';']).to_owned())
                    .collect();
                calls.push(args);
            }
        }
    }
    calls
}

#[test]
fn the_deploy_workflow_calls_deploy_sh_only_with_options_it_accepts() {
    let accepted = deploy_sh_options();
    for needed in [
        "--env",
        "--image-tag",
        "--skip-build",
        "--skip-bootstrap",
        "--cfn-role-arn",
    ] {
        assert!(
            accepted.contains(needed),
            "deploy.sh --help lacks {needed}: {accepted:?}"
        );
    }
    assert!(
        accepted.contains("--promote-from"),
        "deploy.sh --help lacks --promote-from"
    );
    let deploy = yaml(".github/workflows/deploy.yml");
    let mut deploys = 0;
    for (id, job) in jobs(&deploy) {
        if job.get("uses").is_some() {
            continue; // ci.yml, called
        }
        for run in runs(job) {
            for call in deploy_sh_calls(&run) {
                let flags: BTreeSet<&str> = call
                    .iter()
                    .map(String::as_str)
                    .filter(|w| w.starts_with("--"))
                    .collect();
                let unknown: Vec<_> = flags.iter().filter(|f| !accepted.contains(**f)).collect();
                assert!(
                    unknown.is_empty(),
                    "job {id}: deploy.sh does not accept {unknown:?}"
                );
                if flags.contains("--platform-for") {
                    continue;
                }
                // Staging's image is built by the workflow, prod's promoted from staging's
                // (or an earlier prod image, for a rollback): deploy.sh never builds.
                for wanted in ["--image-tag", "--env", "--skip-bootstrap"] {
                    assert!(
                        flags.contains(wanted),
                        "job {id}: deploy.sh without {wanted}"
                    );
                }
                if id == "prod" {
                    assert!(
                        run.contains("how=(--promote-from \"$SOURCE_TAG\")")
                            && run.contains("how=(--skip-build)")
                            && run.contains("--skip-bootstrap \"${how[@]}\""),
                        "job prod: deploy.sh --promote-from (or --skip-build for a rollback)"
                    );
                } else {
                    assert!(
                        flags.contains("--skip-build"),
                        "job {id}: deploy.sh without --skip-build"
                    );
                }
                deploys += 1;
            }
        }
        // The same tag scheme as deploy.sh's default: <env>-<12-character commit>.
        assert!(
            runs(job)
                .iter()
                .any(|r| r.contains("tag=\"$DEPLOY_ENV-$(git rev-parse --short=12 HEAD)\"")),
            "job {id}: no <env>-<commit> tag"
        );
        assert_eq!(job["env"]["DEPLOY_ENV"].as_str(), Some(id.as_str()));
    }
    assert!(
        read("aws/deploy.sh").contains("image_tag=\"$env_name-$(git rev-parse --short=12 HEAD)\""),
        "deploy.sh's tag scheme changed: change the workflow's too"
    );
    assert_eq!(deploys, 2, "one deploy.sh call per environment");
}

#[test]
fn the_deploy_role_trusts_only_mains_and_the_prod_environments_subjects() {
    let template = yaml("aws/ecr.yaml");
    let role = &template["Resources"]["GitHubDeployRole"];
    assert_eq!(role["Type"].as_str(), Some("AWS::IAM::Role"));
    let statements = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
        .as_sequence()
        .expect("trust policy statements");
    assert_eq!(statements.len(), 1, "one trust statement");
    let trust = &statements[0];
    assert_eq!(trust["Effect"].as_str(), Some("Allow"));
    assert_eq!(
        trust["Action"].as_str(),
        Some("sts:AssumeRoleWithWebIdentity")
    );
    let condition = &trust["Condition"];
    assert_eq!(
        condition["StringEquals"]["token.actions.githubusercontent.com:aud"].as_str(),
        Some("sts.amazonaws.com")
    );
    let subjects: BTreeSet<String> =
        condition["StringLike"]["token.actions.githubusercontent.com:sub"]
            .as_sequence()
            .expect("a list of subjects")
            .iter()
            .map(|s| match s {
                Value::Tagged(t) if t.tag == "!Sub" => {
                    t.value.as_str().expect("!Sub string").to_owned()
                }
                other => panic!("subject not a !Sub of GitHubRepository: {other:?}"),
            })
            .collect();
    // The repository's OIDC subject is customized to repo, context and job_workflow_ref:
    // only deploy.yml, from main (or a v* tag, for prod), gets the role.
    let expected: BTreeSet<String> = [
        "repo:${GitHubRepository}:ref:refs/heads/main:job_workflow_ref:${GitHubRepository}/.github/workflows/deploy.yml@refs/heads/main",
        "repo:${GitHubRepository}:environment:prod:job_workflow_ref:${GitHubRepository}/.github/workflows/deploy.yml@refs/heads/main",
        "repo:${GitHubRepository}:environment:prod:job_workflow_ref:${GitHubRepository}/.github/workflows/deploy.yml@refs/tags/v*",
    ]
    .map(str::to_owned)
    .into();
    assert_eq!(subjects, expected);
    assert_eq!(
        condition.as_mapping().map(|m| m.len()),
        Some(2),
        "{condition:?}"
    );
    let repository = &template["Parameters"]["GitHubRepository"];
    assert_eq!(
        repository["Default"].as_str(),
        Some(""),
        "no role unless asked for"
    );
    let pattern = repository["AllowedPattern"]
        .as_str()
        .expect("AllowedPattern");
    assert!(
        !pattern.contains('*') && !pattern.contains(':'),
        "{pattern}"
    );
    let provider = &template["Resources"]["GitHubOidcProvider"]["Properties"];
    assert_eq!(
        provider["Url"].as_str(),
        Some("https://token.actions.githubusercontent.com")
    );
    assert_eq!(
        provider["ClientIdList"][0].as_str(),
        Some("sts.amazonaws.com")
    );

    // The jobs present exactly those subjects: staging without an environment, from main
    // (ref:refs/heads/main); prod in the environment prod.
    let deploy = yaml(".github/workflows/deploy.yml");
    let jobs: Vec<_> = jobs(&deploy)
        .into_iter()
        .filter(|(_, j)| j.get("uses").is_none())
        .collect();
    let job = |id: &str| {
        jobs.iter()
            .find(|(j, _)| j == id)
            .map(|(_, v)| *v)
            .expect(id)
    };
    assert!(job("staging").get("environment").is_none());
    assert_eq!(job("prod")["environment"].as_str(), Some("prod"));
    assert!(
        job("staging")["if"]
            .as_str()
            .is_some_and(|c| c.contains("github.ref == 'refs/heads/main'")),
        "staging deploys on a push to main"
    );
    for (id, job) in &jobs {
        assert_eq!(
            job["permissions"]["id-token"].as_str(),
            Some("write"),
            "job {id} needs the OIDC token"
        );
        assert_eq!(
            job["concurrency"]["group"].as_str(),
            Some(format!("deploy-{id}").as_str())
        );
        assert_eq!(
            job["concurrency"]["cancel-in-progress"].as_bool(),
            Some(false)
        );
        let uses: Vec<&str> = steps(job)
            .iter()
            .filter_map(|s| s["uses"].as_str())
            .collect();
        let credentials = steps(job)
            .iter()
            .find(|s| {
                s["uses"]
                    .as_str()
                    .is_some_and(|u| u.starts_with("aws-actions/configure-aws-credentials@"))
            })
            .unwrap_or_else(|| panic!("job {id} has no configure-aws-credentials: {uses:?}"));
        assert_eq!(
            credentials["with"]["role-to-assume"].as_str(),
            Some("${{ vars.AWS_DEPLOY_ROLE_ARN }}")
        );
        let with = credentials["with"].as_mapping().expect("with");
        for key in [
            "aws-access-key-id",
            "aws-secret-access-key",
            "aws-session-token",
        ] {
            assert!(with.get(key).is_none(), "job {id}: {key}: OIDC only");
        }
    }
}

/// Every `uses:` of a workflow, with its line; a workflow of this repository
/// (`uses: ./.github/workflows/...`) is versioned with it and needs no pin.
fn uses_lines(text: &str) -> Vec<&str> {
    text.lines()
        .filter(|l| {
            let l = l.trim_start().trim_start_matches("- ");
            l.starts_with("uses:") && !l.starts_with("uses: ./")
        })
        .collect()
}

#[test]
fn every_action_is_pinned_to_a_commit_with_its_version_named() {
    let mut count = 0;
    for path in WORKFLOWS {
        let text = read(path);
        for line in uses_lines(&text) {
            let reference = line
                .split_whitespace()
                .nth(if line.trim_start().starts_with('-') {
                    2
                } else {
                    1
                });
            let reference = reference.unwrap_or_else(|| panic!("{path}: {line}"));
            let (action, sha) = reference
                .split_once('@')
                .unwrap_or_else(|| panic!("{path}: unpinned {reference}"));
            assert!(
                action.split('/').count() >= 2 && !action.starts_with("docker://"),
                "{path}: {reference}"
            );
            assert!(
                sha.len() == 40
                    && sha
                        .chars()
                        .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()),
                "{path}: {reference} is not pinned to a 40-hex commit"
            );
            let comment = line.split_once(" # ").map(|(_, c)| c.trim());
            assert!(
                comment.is_some_and(
                    |c| c.starts_with('v') && c[1..].starts_with(|d: char| d.is_ascii_digit())
                ),
                "{path}: {line}: name the version in a comment (# vX.Y.Z)"
            );
            count += 1;
        }
        // The YAML agrees with the lines read: no `uses:` missed.
        let workflow = yaml(path);
        let parsed = jobs(&workflow)
            .iter()
            .map(|(_, j)| steps(j).iter().filter(|s| s.get("uses").is_some()).count())
            .sum::<usize>();
        assert_eq!(parsed, uses_lines(&text).len(), "{path}");
    }
    assert!(count >= 6, "only {count} uses: found");
}

#[test]
fn workflows_hold_least_privilege_and_interpolate_nothing_into_scripts() {
    for path in WORKFLOWS {
        let text = read(path);
        assert!(!text.contains("pull_request_target"), "{path}");
        assert!(!text.contains("secrets."), "{path}: no secrets are needed");
        let workflow = yaml(path);
        assert_eq!(
            workflow["permissions"].as_mapping().map(|m| m.len()),
            Some(0),
            "{path}: top-level permissions: {{}}"
        );
        for (id, job) in jobs(&workflow) {
            let permissions = job["permissions"]
                .as_mapping()
                .unwrap_or_else(|| panic!("{path}: job {id} states its permissions"));
            for (scope, level) in permissions {
                let scope = scope.as_str().unwrap_or_default();
                let allowed = match scope {
                    "contents" => level.as_str() == Some("read"),
                    "id-token" => path.ends_with("deploy.yml"),
                    _ => false,
                };
                assert!(allowed, "{path}: job {id}: {scope}: {level:?}");
            }
            for step in steps(job) {
                if let Some(run) = step["run"].as_str() {
                    assert!(
                        !run.contains("${{"),
                        "{path}: job {id}: expression in run: {run}"
                    );
                }
                if step["uses"]
                    .as_str()
                    .is_some_and(|u| u.starts_with("actions/checkout@"))
                {
                    assert_eq!(
                        step["with"]["persist-credentials"].as_bool(),
                        Some(false),
                        "{path}: job {id}: checkout keeps its token"
                    );
                }
            }
        }
    }
}

#[test]
fn the_helpers_see_what_they_should() {
    assert!(invokes("  bash scripts/test.sh\n", "scripts/test.sh"));
    assert!(invokes(
        "CI=true exec bash scripts/test.sh",
        "scripts/test.sh"
    ));
    assert!(!invokes("echo scripts/test.sh", "scripts/test.sh"));
    assert!(!invokes("bash scripts/test.sh.old", "scripts/test.sh"));
    let calls = deploy_sh_calls(
        "x=\"$(bash aws/deploy.sh --platform-for \"$arch\")\"\nbash aws/deploy.sh --env a --bogus && echo",
    );
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0][0], "--platform-for");
    assert_eq!(calls[1], ["--env", "a", "--bogus"]);
}

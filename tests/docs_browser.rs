//! `/docs` renders in a real headless Chromium with no network beyond loopback: Swagger UI
//! comes from the binary and lists the endpoints. A screenshot is left at
//! `$CARGO_TARGET_DIR/tmp/docs.png` for people to look at.

mod support;

use std::time::Duration;

use support::TestApp;

fn chromium() -> String {
    let bin = std::env::var("CHROMIUM_BIN").unwrap_or_else(|_| "/usr/bin/chromium".into());
    if !std::path::Path::new(&bin).exists() {
        panic!(
            "{bin} not found: this test needs Chromium (scripts/test.sh installs Debian's `chromium`)"
        );
    }
    bin
}

async fn run_chromium(args: &[String]) -> std::process::Output {
    let profile = tempfile::tempdir().expect("profile dir");
    let mut cmd = tokio::process::Command::new(chromium());
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--virtual-time-budget=10000",
    ])
    .arg(format!("--user-data-dir={}", profile.path().display()))
    .args(args)
    .kill_on_drop(true);
    tokio::time::timeout(Duration::from_secs(120), cmd.output())
        .await
        .expect("chromium finished within 120 s")
        .expect("chromium runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swagger_ui_renders_the_endpoints_offline() {
    let app = TestApp::start().await;
    let url = format!("{}/docs/", app.base);
    let out = run_chromium(&["--dump-dom".into(), url.clone()]).await;
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(
        dom.contains("swagger-ui"),
        "no Swagger UI in the page: {dom}"
    );
    for endpoint in [
        "/get-folder-access",
        "/get-validator-access",
        "/get-miner-specific-access",
        "/get-file-presigned-urls",
        "/get-folder-presigned-urls",
        "/healthcheck",
    ] {
        assert!(
            dom.contains(endpoint),
            "{endpoint} is not listed on the rendered page"
        );
    }

    let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("docs.png");
    let _ = std::fs::remove_file(&shot);
    run_chromium(&[
        format!("--screenshot={}", shot.display()),
        "--window-size=1280,1600".into(),
        url,
    ])
    .await;
    assert!(
        std::fs::metadata(&shot).is_ok_and(|m| m.len() > 1000),
        "no screenshot at {}",
        shot.display()
    );
}

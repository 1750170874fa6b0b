//! `s3-auth-api dev` and `s3-auth-api client`, run as a person would: the dev server as a
//! child process, the client commands as separate processes.

mod support;

use support::free_port;

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_s3-auth-api");
const CHARLIE: &str = "5FLSigC9HGRKVhB9FiEo4Y3koPsNmBmLJbpXg2mp1hXcS59Y";

struct Dev(Child);

impl Drop for Dev {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn client(api: &str, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(["client", "--api", api])
        .args(args)
        .output()
        .expect("client runs")
}

fn ok(out: Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "client failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn write(path: &Path, len: usize, seed: u8) -> Vec<u8> {
    let data: Vec<u8> = (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect();
    std::fs::write(path, &data).expect("write sample");
    data
}

#[test]
fn dev_then_upload_list_and_download() {
    let data = tempfile::tempdir().expect("tempdir");
    let (port, s3_port) = (free_port(), free_port());
    let started = Instant::now();
    let child = Command::new(BIN)
        .args([
            "dev",
            "--port",
            &port.to_string(),
            "--s3-port",
            &s3_port.to_string(),
        ])
        .arg("--data-dir")
        .arg(data.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("dev starts");
    let _dev = Dev(child);
    let api = format!("http://127.0.0.1:{port}");
    support::wait_ready(port, Duration::from_secs(20));
    eprintln!("dev ready after {:?}", started.elapsed());

    // Three files under two job ids.
    let files = tempfile::tempdir().expect("tempdir");
    let j1 = files.path().join("j1");
    let j2 = files.path().join("j2");
    std::fs::create_dir_all(&j1).expect("mkdir");
    std::fs::create_dir_all(&j2).expect("mkdir");
    let a = write(&j1.join("a.parquet"), 3000, 1);
    let _b = write(&j1.join("b.parquet"), 2048, 2);
    let c = write(&j2.join("c.parquet"), 5000, 3);
    let miner = ["--uri", "//Charlie", "--coldkey", "//Charlie//stash"];
    let upload = |dir: &Path, job: &str| {
        let mut args = miner.to_vec();
        let dir = dir.display().to_string();
        args.extend(["miner", "upload", &dir, "--job-id", job]);
        ok(client(&api, &args))
    };
    assert!(upload(&j1, "job1").contains("2 uploaded, 0 already present"));
    assert!(upload(&j2, "job2").contains("1 uploaded, 0 already present"));
    // A second run resumes: nothing to do.
    assert!(upload(&j1, "job1").contains("0 uploaded, 2 already present"));

    // The validator sees all three.
    let listing = ok(client(&api, &["--uri", "//Alice", "validator", "list"]));
    let keys: Vec<&str> = listing
        .lines()
        .filter_map(|l| l.split('\t').nth(1))
        .collect();
    let folder = format!("data/hotkey={CHARLIE}/");
    assert_eq!(
        keys,
        vec![
            format!("{folder}job_id=job1/a.parquet"),
            format!("{folder}job_id=job1/b.parquet"),
            format!("{folder}job_id=job2/c.parquet"),
        ]
    );
    let only = ok(client(
        &api,
        &["--uri", "//Alice", "validator", "list", "--miner", CHARLIE],
    ));
    assert_eq!(only.lines().count(), 3);

    // Downloads are byte-identical.
    let out = tempfile::tempdir().expect("tempdir");
    let out_dir = out.path().display().to_string();
    let ka = format!("{folder}job_id=job1/a.parquet");
    let kc = format!("{folder}job_id=job2/c.parquet");
    ok(client(
        &api,
        &[
            "--uri",
            "//Alice",
            "validator",
            "download",
            &ka,
            &kc,
            "--miner",
            CHARLIE,
            "--out",
            &out_dir,
        ],
    ));
    assert_eq!(
        std::fs::read(out.path().join("job_id=job1/a.parquet")).expect("a"),
        a
    );
    assert_eq!(
        std::fs::read(out.path().join("job_id=job2/c.parquet")).expect("c"),
        c
    );

    // Clear errors: a miner is not a validator.
    let refused = client(&api, &["--uri", "//Charlie", "validator", "list"]);
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("401") && err.contains("validator"), "{err}");
}

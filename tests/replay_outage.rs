//! Used signatures and Tao v2 nonces on one instance through a Redis outage, both ways: one
//! accepted while Redis answered is refused while Redis is down, and one accepted while
//! Redis was down is refused once it is back. A request refused for its quota leaves its
//! signature usable.

mod support;

use s3_auth_api::quota::QuotaCheck;
use serde_json::{Value, json};
use support::tao::{TaoHeaders, request, sign};
use support::{Options, RedisServer, TestApp};

const FOLDER_ACCESS: &str = "/get-folder-access";

/// A signed `/get-folder-access` request of the main miner.
#[derive(Clone)]
enum Signed {
    /// Signed in the body.
    Body(Value),
    /// Signed in `X-Tao-*` headers.
    Tao(Vec<u8>, TaoHeaders),
}

impl Signed {
    /// A freshly signed request, in the body or in headers.
    fn fresh(app: &TestApp, tao: bool) -> Self {
        if tao {
            let body = serde_json::to_vec(
                &json!({"coldkey": app.keys.miner_cold.ss58, "route": "/get-folder-access"}),
            )
            .expect("json");
            let headers = sign(&app.keys.miner, &body);
            Self::Tao(body, headers)
        } else {
            Self::Body(app.miner_request())
        }
    }

    /// The detail of the 401 its replay gets.
    fn replay_detail(&self) -> Value {
        match self {
            Self::Body(_) => json!({"detail": "Signature already used"}),
            Self::Tao(..) => json!({"detail": "Nonce already used"}),
        }
    }

    /// Sends it; the status and the JSON answer.
    async fn send(&self, app: &TestApp) -> (u16, Value) {
        let res = match self {
            Self::Body(body) => app.post(FOLDER_ACCESS, body).await,
            Self::Tao(body, headers) => {
                let url = format!("{}{FOLDER_ACCESS}", app.base);
                request(&app.client, &url, body, headers)
                    .send()
                    .await
                    .expect("answer")
            }
        };
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(Value::Null))
    }
}

/// An app with Redis; Tao timestamps stay acceptable for 60 s, so a nonce outlives a
/// Redis restart and its replay is refused as a replay, not as too old.
async fn start(env: Vec<(&'static str, String)>) -> TestApp {
    let mut env = env;
    env.push(("TAO_CLOCK_SKEW_MS", "60000".into()));
    TestApp::start_with(Options {
        redis: true,
        env,
        ..Options::default()
    })
    .await
}

/// Kills Redis; the port to start it again on.
fn stop_redis(app: &mut TestApp) -> u16 {
    app.redis.take().expect("redis").kill()
}

async fn restart_redis(app: &mut TestApp, port: u16) {
    app.redis = Some(RedisServer::start_on(port));
    support::wait_for_redis(app).await;
}

/// The main miner's counter for today, as Redis holds it.
fn redis_count(app: &TestApp) -> Option<u64> {
    let prefix = app.app_state.access.quotas.prefix();
    let key = QuotaCheck::new(prefix, &app.keys.miner.ss58, 0, 0, chrono::Utc::now()).hotkey_key;
    app.redis.as_ref().expect("redis").get_u64(&key)
}

async fn used_with_redis_up_then_replayed_during_an_outage(tao: bool) {
    let mut app = start(Vec::new()).await;
    let signed = Signed::fresh(&app, tao);
    assert_eq!(signed.send(&app).await.0, 200);
    assert_eq!(redis_count(&app), Some(1), "counted in Redis");

    stop_redis(&mut app);
    let (status, body) = signed.send(&app).await;
    assert_eq!((status, body), (401, signed.replay_detail()));
    // The outage is real and served: a fresh request is counted in process.
    assert_eq!(Signed::fresh(&app, tao).send(&app).await.0, 200);
    assert!(app.app_state.access.quotas.fallback_activations() >= 1);
    assert_eq!(signed.send(&app).await.0, 401, "still refused");
}

async fn used_during_an_outage_then_replayed_after_redis_returns(tao: bool) {
    let mut app = start(Vec::new()).await;
    let port = stop_redis(&mut app);
    let signed = Signed::fresh(&app, tao);
    assert_eq!(signed.send(&app).await.0, 200);
    assert!(app.app_state.access.quotas.fallback_activations() >= 1);

    restart_redis(&mut app, port).await;
    let (status, body) = signed.send(&app).await;
    assert_eq!((status, body), (401, signed.replay_detail()));
    // Redis answers again: a fresh request is counted there, the refused replay was not.
    assert_eq!(Signed::fresh(&app, tao).send(&app).await.0, 200);
    assert_eq!(redis_count(&app), Some(1));
}

#[tokio::test]
async fn a_body_signature_used_with_redis_up_is_refused_during_an_outage() {
    used_with_redis_up_then_replayed_during_an_outage(false).await;
}

#[tokio::test]
async fn a_nonce_used_with_redis_up_is_refused_during_an_outage() {
    used_with_redis_up_then_replayed_during_an_outage(true).await;
}

#[tokio::test]
async fn a_body_signature_used_during_an_outage_is_refused_after_redis_returns() {
    used_during_an_outage_then_replayed_after_redis_returns(false).await;
}

#[tokio::test]
async fn a_nonce_used_during_an_outage_is_refused_after_redis_returns() {
    used_during_an_outage_then_replayed_after_redis_returns(true).await;
}

#[tokio::test]
async fn a_signature_refused_for_its_quota_stays_usable() {
    let app = start(vec![("DAILY_LIMIT_PER_MINER", "1".into())]).await;
    assert_eq!(Signed::fresh(&app, false).send(&app).await.0, 200);
    for tao in [false, true] {
        let signed = Signed::fresh(&app, tao);
        assert_eq!(signed.send(&app).await.0, 429);
        // Give the miner its quota back: the refused signature was not recorded as used.
        let prefix = app.app_state.access.quotas.prefix();
        let key =
            QuotaCheck::new(prefix, &app.keys.miner.ss58, 0, 0, chrono::Utc::now()).hotkey_key;
        app.redis
            .as_ref()
            .expect("redis")
            .command(&format!("SET {key} 0"));
        assert_eq!(signed.send(&app).await.0, 200);
        let (status, body) = signed.send(&app).await;
        assert_eq!((status, body), (401, signed.replay_detail()));
    }
}

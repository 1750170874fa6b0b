//! Tao v2 header-signed requests, as current Subnet 13 clients send them: per-file uploads
//! by POST and PUT (409 on a second), paged miner listings, per-file URLs that serve
//! ranges, header auth on the existing routes, and every refusal with its detail.

mod support;

use serde_json::{Value, json};
use support::tao::{nonce, now_ms, post_signed, request, sign, sign_at};
use support::{Options, TestApp, TestKey};

async fn post(app: &TestApp, path: &str, key: &TestKey, body: &Value) -> (u16, Value) {
    let bytes = serde_json::to_vec(body).expect("json");
    post_signed(app, path, &bytes, &sign(key, &bytes)).await
}

async fn upload_form(app: &TestApp, grant: &Value, content: Vec<u8>) -> u16 {
    let mut form = reqwest::multipart::Form::new();
    for (name, value) in grant["fields"].as_object().expect("fields") {
        form = form.text(name.clone(), value.as_str().expect("field").to_owned());
    }
    form = form.part(
        "file",
        reqwest::multipart::Part::bytes(content).file_name("f"),
    );
    app.client
        .post(grant["url"].as_str().expect("url"))
        .multipart(form)
        .send()
        .await
        .expect("upload")
        .status()
        .as_u16()
}

#[tokio::test]
async fn a_miner_uploads_one_file_by_post_and_a_second_time_gets_409() {
    let app = TestApp::start().await;
    let miner = &app.keys.miner;
    let body = json!({"job_id": "job_7", "filename": "part-0.parquet"});
    let (status, grant) = post(&app, "/get-file-upload-url", miner, &body).await;
    assert_eq!(status, 200, "{grant}");
    let key = format!("data/hotkey={}/job_id=job_7/part-0.parquet", miner.ss58);
    assert_eq!(grant["s3_key"], key);
    assert_eq!(grant["method"], "POST");
    assert_eq!(grant["expires_in_seconds"], 3600);
    assert_eq!(grant["fields"]["key"], key);
    // The policy admits exactly this key: another name in the same folder is refused.
    let mut other = grant.clone();
    other["fields"]["key"] = json!(format!("{key}.other"));
    assert!((400..500).contains(&upload_form(&app, &other, vec![1; 2048]).await));
    assert_eq!(upload_form(&app, &grant, vec![1; 2048]).await, 204);
    assert_eq!(app.s3.size(&key).await, Some(2048));
    let (status, again) = post(&app, "/get-file-upload-url", miner, &body).await;
    assert_eq!(
        (status, again),
        (409, json!({"detail": "File already exists"}))
    );
    for bad in [
        json!({"job_id": "..", "filename": "a"}),
        json!({"job_id": "a/b", "filename": "a"}),
        json!({"job_id": "j", "filename": "a b"}),
        json!({"job_id": "j", "filename": "x".repeat(1000)}),
        json!({"job_id": "j"}),
    ] {
        let (status, detail) = post(&app, "/get-file-upload-url", miner, &bad).await;
        assert_eq!(status, 422, "{bad} -> {detail}");
    }
}

#[tokio::test]
async fn empty_upload_names_get_422_in_pydantics_shape() {
    let app = TestApp::start().await;
    for (job_id, filename, field) in [("", "f.bin", "job_id"), ("j", "", "filename")] {
        let body =
            serde_json::to_vec(&json!({"job_id": job_id, "filename": filename})).expect("json");
        let answer = post_signed(
            &app,
            "/get-file-upload-url",
            &body,
            &sign(&app.keys.miner, &body),
        )
        .await;
        let issue = json!({"type": "string_too_short", "loc": ["body", field],
                           "msg": "String should have at least 1 character"});
        assert_eq!(answer, (422, json!({"detail": [issue]})), "{field}");
    }
    assert!(app.s3.keys("data/").await.is_empty(), "nothing was granted");
}

#[tokio::test]
async fn an_upload_whose_existence_check_fails_gets_503_with_retry_after() {
    // Nothing listens at S3: the HeadObject before the grant cannot answer.
    let app = TestApp::start_with(Options {
        env: vec![(
            "S3_ENDPOINT_URL",
            format!("http://127.0.0.1:{}", support::free_port()),
        )],
        ..Options::default()
    })
    .await;
    let body = serde_json::to_vec(&json!({"job_id": "j", "filename": "f.parquet"})).expect("json");
    let h = sign(&app.keys.miner, &body);
    let url = format!("{}/get-file-upload-url", app.base);
    let res = request(&app.client, &url, &body, &h)
        .send()
        .await
        .expect("answer");
    assert_eq!(res.status(), 503);
    assert!(res.headers().contains_key("retry-after"));
    assert_eq!(
        res.json::<Value>().await.expect("json"),
        json!({"detail": "S3 check failed - try again"})
    );
}

#[tokio::test]
async fn with_put_uploads_the_url_takes_a_put_with_the_clients_content_type() {
    let app = TestApp::start_with(Options {
        env: vec![("S3_UPLOAD_METHOD", "put".into())],
        ..Options::default()
    })
    .await;
    let miner = &app.keys.miner;
    let body = json!({"job_id": "j1", "filename": "a.parquet"});
    let (status, grant) = post(&app, "/get-file-upload-url", miner, &body).await;
    assert_eq!(status, 200, "{grant}");
    assert_eq!(grant["method"], "PUT");
    assert_eq!(grant["fields"], json!({}));
    let res = app
        .client
        .put(grant["url"].as_str().expect("url"))
        .header("content-type", "application/octet-stream")
        .body(vec![9u8; 3000])
        .send()
        .await
        .expect("put");
    assert_eq!(res.status(), 200, "{:?}", res.text().await);
    let key = grant["s3_key"].as_str().expect("key");
    assert_eq!(app.s3.size(key).await, Some(3000));
    let (status, _) = post(&app, "/get-file-upload-url", miner, &body).await;
    assert_eq!(status, 409);
}

#[tokio::test]
async fn a_validator_pages_a_1005_object_folder_and_reads_files_with_ranges() {
    let app = TestApp::start().await;
    let k = &app.keys;
    let folder = format!("data/hotkey={}/job_id=big/", k.miner.ss58);
    app.s3
        .put_many((0..1005).map(|i| format!("{folder}f{i:04}.bin")).collect())
        .await;
    let mut token: Option<String> = None;
    let mut pages = Vec::new();
    loop {
        let body = json!({"miner_hotkey": k.miner.ss58, "continuation_token": token});
        let (status, grant) = post(&app, "/get-miner-list", &k.validator, &body).await;
        assert_eq!(status, 200, "{grant}");
        let xml = app
            .client
            .get(grant["list_url"].as_str().expect("list_url"))
            .send()
            .await
            .expect("list")
            .text()
            .await
            .expect("xml");
        pages.push(xml.matches("<Key>").count());
        token = support::xml_value(&xml, "NextContinuationToken").map(str::to_owned);
        if token.is_none() {
            break;
        }
        assert!(pages.len() < 5);
    }
    assert_eq!(pages, vec![1000, 5]);

    let keys = vec![format!("{folder}f0001.bin"), format!("{folder}f0002.bin")];
    let body = json!({"miner_hotkey": k.miner.ss58, "file_keys": keys, "expiry_hours": 24});
    let (status, grant) = post(&app, "/get-file-presigned-urls", &k.validator, &body).await;
    assert_eq!(status, 200, "{grant}");
    assert_eq!(
        grant["expiry_seconds"],
        3 * 3600,
        "capped by FILE_URL_MAX_EXPIRY_HOURS"
    );
    let url = grant["file_urls"][&keys[0]]["presigned_url"]
        .as_str()
        .expect("url");
    let whole = app.client.get(url).send().await.expect("get");
    assert_eq!(whole.status(), 200);
    assert_eq!(whole.bytes().await.expect("bytes").len(), 8);
    let part = app
        .client
        .get(url)
        .header("range", "bytes=2-4")
        .send()
        .await
        .expect("range get");
    assert_eq!(part.status(), 206);
    assert_eq!(part.bytes().await.expect("bytes").len(), 3);
}

#[tokio::test]
async fn the_existing_routes_accept_header_signed_bodies_that_name_their_route() {
    let app = TestApp::start().await;
    let k = &app.keys;
    let folder_access = |coldkey: &str| json!({"coldkey": coldkey, "route": "/get-folder-access"});
    let (status, grant) = post(
        &app,
        "/get-folder-access",
        &k.miner,
        &folder_access(&k.miner_cold.ss58),
    )
    .await;
    assert_eq!(status, 200, "{grant}");
    assert_eq!(grant["folder"], format!("data/hotkey={}/", k.miner.ss58));
    // The coldkey check still applies.
    let (status, _) = post(
        &app,
        "/get-folder-access",
        &k.miner,
        &folder_access(&k.other_cold.ss58),
    )
    .await;
    assert_eq!(status, 401);
    for path in ["/get-validator-access", "/get-folder-presigned-urls"] {
        let (status, body) = post(&app, path, &k.validator, &json!({"route": path})).await;
        assert_eq!(status, 200, "{path}: {body}");
        // Without `route`, the same body could be redeemed at either route.
        let (status, body) = post(&app, path, &k.validator, &json!({})).await;
        assert_eq!(status, 422, "{path}: {body}");
        assert_eq!(body["detail"][0]["loc"], json!(["body", "route"]));
    }
    let (status, _) = post(
        &app,
        "/get-miner-specific-access",
        &k.validator,
        &json!({"miner_hotkey": k.miner.ss58, "route": "/get-miner-specific-access"}),
    )
    .await;
    assert_eq!(status, 200);
    // Both a body signature and headers: the headers decide (here, a bad signature).
    let body = support::validator_body(
        &k.validator,
        |ts| format!("s3:validator:access:{ts}"),
        json!({"route": "/get-validator-access"}),
    );
    let bytes = serde_json::to_vec(&body).expect("json");
    let mut h = sign(&k.validator, b"another body");
    h.nonce = nonce();
    let (status, detail) = post_signed(&app, "/get-validator-access", &bytes, &h).await;
    assert_eq!(
        (status, detail),
        (401, json!({"detail": "Invalid signature"}))
    );
}

#[tokio::test]
async fn every_refusal_has_its_status_and_detail() {
    let app = TestApp::start().await;
    let k = &app.keys;
    let body = serde_json::to_vec(&json!({"job_id": "j", "filename": "f.bin"})).expect("json");
    let path = "/get-file-upload-url";
    let detail = |s: &str| json!({"detail": s});

    let mut h = sign(&k.miner, b"{}");
    h.nonce = nonce();
    assert_eq!(
        post_signed(&app, path, &body, &h).await,
        (401, detail("Invalid signature"))
    );

    let skew = detail("X-Tao-Timestamp outside the allowed clock skew");
    for offset in [-9_000, 9_000] {
        let h = sign_at(&k.miner, &body, now_ms() + offset, &nonce());
        assert_eq!(
            post_signed(&app, path, &body, &h).await,
            (401, skew.clone()),
            "{offset}"
        );
    }

    let h = sign(&k.miner, &body);
    assert_eq!(post_signed(&app, path, &body, &h).await.0, 200);
    assert_eq!(
        post_signed(&app, path, &body, &h).await,
        (401, detail("Nonce already used"))
    );

    let mut h = sign(&k.miner, &body);
    h.version = "1".into();
    assert_eq!(
        post_signed(&app, path, &body, &h).await,
        (400, detail("Unsupported X-Tao-Version (expected 2)"))
    );
    let mut h = sign(&k.miner, &body);
    h.nonce = "123".into();
    assert_eq!(post_signed(&app, path, &body, &h).await.0, 400);
    let mut h = sign(&k.miner, &body);
    h.signature = "!!".into();
    assert_eq!(post_signed(&app, path, &body, &h).await.0, 400);
    // Hex signatures are accepted too.
    let mut h = sign(
        &k.miner,
        &serde_json::to_vec(&json!({"job_id": "j", "filename": "g.bin"})).expect("json"),
    );
    h.signature = format!(
        "0x{}",
        hex::encode(
            base64::Engine::decode(&base64::engine::general_purpose::STANDARD, &h.signature)
                .expect("b64")
        )
    );
    let g = serde_json::to_vec(&json!({"job_id": "j", "filename": "g.bin"})).expect("json");
    assert_eq!(post_signed(&app, path, &g, &h).await.0, 200);

    let h = sign(&k.stranger, &body);
    assert_eq!(
        post_signed(&app, path, &body, &h).await,
        (401, detail("Invalid signature"))
    );

    let list = serde_json::to_vec(&json!({"miner_hotkey": k.miner.ss58})).expect("json");
    let h = sign(&k.miner, &list);
    assert_eq!(
        post_signed(&app, "/get-miner-list", &list, &h).await,
        (401, detail("You are not validator"))
    );
    let res = app
        .client
        .post(format!("{}{path}", app.base))
        .json(&json!({"job_id": "j", "filename": "f.bin"}))
        .send()
        .await
        .expect("unsigned");
    assert_eq!(res.status(), 401);
}

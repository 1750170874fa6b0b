//! The wire contract as an OpenAPI document: every route documented with its responses,
//! references resolving, and the whole document locked by a snapshot so any change to
//! the contract shows up in review. Swagger UI is served from the binary.

mod support;

use s3_auth_api::api::openapi::ROUTES;
use serde_json::Value;
use support::TestApp;

fn collect_refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                if k == "$ref" {
                    if let Some(s) = x.as_str() {
                        out.push(s.to_owned());
                    }
                } else {
                    collect_refs(x, out);
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| collect_refs(x, out)),
        _ => {}
    }
}

#[tokio::test]
async fn every_route_is_documented_and_the_document_is_locked() {
    let app = TestApp::start_with(support::Options {
        env: vec![("METRICS_TOKEN", "t".into())],
        ..support::Options::default()
    })
    .await;
    let res = app.get("/openapi.json").await;
    assert_eq!(res.status(), 200);
    let doc: Value = res.json().await.expect("json");
    assert!(
        doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")),
        "{}",
        doc["openapi"]
    );

    for (method, path) in ROUTES {
        let op = &doc["paths"][path][method];
        assert!(op.is_object(), "{method} {path} is not documented");
        let responses = op["responses"].as_object().expect("responses");
        assert!(responses.contains_key("200"), "{method} {path} has no 200");
        if *method == "post" {
            for code in ["400", "401", "422", "429", "503"] {
                assert!(responses.contains_key(code), "{method} {path} lacks {code}");
            }
            assert!(
                op["requestBody"].is_object(),
                "{method} {path} has no request body"
            );
        }
        assert!(op["tags"].as_array().is_some_and(|t| !t.is_empty()));
        // The list matches the router: the route exists.
        let status = match *method {
            "get" => app.get(path).await.status().as_u16(),
            _ => app.post_raw(path, "{}").await.status().as_u16(),
        };
        assert!(
            status != 404 && status != 405,
            "{method} {path} is not routed ({status})"
        );
    }
    let documented: usize = doc["paths"]
        .as_object()
        .expect("paths")
        .values()
        .map(|p| p.as_object().map_or(0, |m| m.len()))
        .sum();
    assert_eq!(
        documented,
        ROUTES.len(),
        "a documented path is not in ROUTES"
    );

    let mut refs = Vec::new();
    collect_refs(&doc, &mut refs);
    assert!(!refs.is_empty());
    for r in refs {
        let name = r
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("unexpected $ref {r}"));
        assert!(
            doc["components"]["schemas"][name].is_object(),
            "{r} does not resolve"
        );
    }

    insta::assert_json_snapshot!("openapi", doc);
}

#[tokio::test]
async fn swagger_ui_is_served_from_the_binary() {
    let app = TestApp::start().await;
    let res = app
        .client
        .get(format!("{}/docs/", app.base))
        .send()
        .await
        .expect("docs");
    assert_eq!(res.status(), 200);
    let html = res.text().await.expect("html");
    assert!(html.contains("swagger-ui"), "{html}");
    let css = app
        .client
        .get(format!("{}/docs/swagger-ui.css", app.base))
        .send()
        .await
        .expect("css");
    assert_eq!(css.status(), 200);
    let init = app
        .client
        .get(format!("{}/docs/swagger-initializer.js", app.base))
        .send()
        .await
        .expect("init");
    assert!(init.text().await.expect("js").contains("/openapi.json"));
}

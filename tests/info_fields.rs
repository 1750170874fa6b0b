//! The info routes keep every field of the original service's answers, with its name and
//! JSON type (we add fields, never rename or drop one): each key path recorded in
//! `tests/fixtures/original_info_fields.json` is in the answer and in the OpenAPI schema
//! of that answer, with its type; and the original's fields say what they said there.

mod support;

use std::collections::BTreeMap;

use serde_json::Value;
use support::{Options, TestApp};

/// `path -> JSON type` of every key of `v`: `a.b` for nested keys, `a[]` for the elements
/// of the array `a` (one entry per element type).
fn paths(v: &Value, at: &str, out: &mut BTreeMap<String, Vec<&'static str>>) {
    if !at.is_empty() {
        let kind = match v {
            Value::Null => "null",
            Value::Bool(_) => "boolean",
            Value::Number(n) if n.is_f64() => "number",
            Value::Number(_) => "integer",
            Value::String(_) => "string",
            Value::Array(_) => "array",
            Value::Object(_) => "object",
        };
        let kinds = out.entry(at.to_owned()).or_default();
        if !kinds.contains(&kind) {
            kinds.push(kind);
        }
    }
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                let next = if at.is_empty() {
                    k.clone()
                } else {
                    format!("{at}.{k}")
                };
                paths(x, &next, out);
            }
        }
        Value::Array(a) => a.iter().for_each(|x| paths(x, &format!("{at}[]"), out)),
        _ => {}
    }
}

/// The same map for an OpenAPI schema, following `$ref`s into `components`.
fn schema_paths(doc: &Value, schema: &Value, at: &str, out: &mut BTreeMap<String, Vec<String>>) {
    if let Some(r) = schema["$ref"].as_str() {
        let name = r.trim_start_matches("#/components/schemas/");
        return schema_paths(doc, &doc["components"]["schemas"][name], at, out);
    }
    let kinds: Vec<String> = match &schema["type"] {
        Value::String(t) => vec![t.clone()],
        Value::Array(ts) => ts
            .iter()
            .filter_map(|t| t.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    };
    if !at.is_empty() {
        out.insert(at.to_owned(), kinds);
    }
    if let Some(props) = schema["properties"].as_object() {
        for (k, x) in props {
            let next = if at.is_empty() {
                k.clone()
            } else {
                format!("{at}.{k}")
            };
            schema_paths(doc, x, &next, out);
        }
    }
    if schema["items"].is_object() {
        schema_paths(doc, &schema["items"], &format!("{at}[]"), out);
    }
}

fn fixture() -> Value {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/original_info_fields.json"
    ))
    .expect("fixture");
    serde_json::from_str(&text).expect("fixture is JSON")
}

#[tokio::test]
async fn every_field_of_the_original_info_answers_is_kept_with_its_type() {
    let app = TestApp::start().await;
    let fixture = fixture();
    assert!(
        fixture["provenance"]
            .as_str()
            .is_some_and(|p| p.contains("commit"))
    );
    let doc: Value = app
        .get("/openapi.json")
        .await
        .json()
        .await
        .expect("openapi");
    let routes = fixture["routes"].as_object().expect("routes");
    assert_eq!(routes.len(), 3);
    for (route, wanted) in routes {
        let res = app.get(route).await;
        assert_eq!(res.status(), 200, "{route}");
        let answer: Value = res.json().await.expect("json");
        let mut got = BTreeMap::new();
        paths(&answer, "", &mut got);
        let schema = &doc["paths"][route]["get"]["responses"]["200"]["content"]["application/json"]
            ["schema"];
        let mut documented = BTreeMap::new();
        schema_paths(&doc, schema, "", &mut documented);
        let wanted = wanted.as_object().expect("paths");
        assert!(wanted.len() > 10, "{route}");
        for (path, kind) in wanted {
            let kind = kind.as_str().expect("type");
            assert_eq!(
                got.get(path).map(Vec::as_slice),
                Some(&[kind][..]),
                "{route}: `{path}` must be answered as {kind}: {answer:#}"
            );
            assert!(
                documented
                    .get(path)
                    .is_some_and(|k| k.iter().any(|k| k == kind)),
                "{route}: `{path}` is not documented as {kind} in /openapi.json: {:?}",
                documented.get(path)
            );
        }
    }
}

#[tokio::test]
async fn the_original_fields_say_what_they_said() {
    let app = TestApp::start_with(Options {
        env: vec![
            ("DAILY_LIMIT_PER_MINER", "7".into()),
            ("DAILY_UPLOAD_CHECKS_PER_MINER", "140".into()),
            ("DAILY_LIMIT_PER_VALIDATOR", "30".into()),
            ("TOTAL_DAILY_LIMIT", "100".into()),
            ("S3_OPERATION_TIMEOUT", "9".into()),
        ],
        ..Options::default()
    })
    .await;
    let r: Value = app.get("/rate-limits").await.json().await.expect("json");
    let words = &r["limits_explanation"];
    assert_eq!(
        words["miner_limit"],
        "Each miner can make 7 requests per day"
    );
    assert_eq!(
        words["validator_limit"],
        "Each validator can make 30 requests per day"
    );
    assert_eq!(
        words["total_limit"],
        "All users combined can make 100 requests per day"
    );
    assert_eq!(
        words["reset_frequency"],
        "Limits reset at midnight UTC every day"
    );
    assert!(
        words["upload_checks"]
            .as_str()
            .is_some_and(|s| s.contains("140"))
    );

    let f: Value = app
        .get("/commitment-formats")
        .await
        .json()
        .await
        .expect("json");
    let steps = f["instructions"]
        .as_str()
        .expect("instructions is a string");
    assert!(
        steps.starts_with("1. ") && steps.lines().count() == 4,
        "{steps}"
    );
    assert!(f["instructions_by_topic"]["signature"].is_string());
    assert!(f["instructions_by_topic"]["miners"].is_string());

    let s: Value = app.get("/structure-info").await.json().await.expect("json");
    assert_eq!(
        s["changes"]["old_structure"],
        "hotkey={hotkey_id}/job_id={job_id}/"
    );
    assert_eq!(s["changes"]["new_structure"], s["folder_structure"]);
    for answer in [&f, &s] {
        let t = &answer["timeout_protection"];
        assert!(
            t["s3_operations"]
                .as_str()
                .is_some_and(|v| v.starts_with("9 seconds")),
            "{t}"
        );
        assert!(t["validator_verification"].as_str().is_some_and(|v| {
            v.ends_with(
            "seconds (validator status is read from the in-memory metagraph, no chain round trip)"
        )
        }));
    }
}

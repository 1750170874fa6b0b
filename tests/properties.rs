//! Property tests (proptest) of what must hold for every input, not just the examples in
//! the other tests: the parsers never panic (SS58 addresses, signatures, request bodies,
//! metagraph documents), POST policies are valid JSON for any folder, and a miner's upload
//! policy never lets it write outside `data/hotkey={its hotkey}/`.
//!
//! The same invariants are fuzzed with cargo-fuzz (`fuzz/`, `scripts/fuzz.sh`).

use std::sync::OnceLock;
use std::time::{Duration, UNIX_EPOCH};

use aws_credential_types::Credentials;
use axum::body::Body;
use axum::extract::FromRequest;
use axum::http::{Request, StatusCode, header};
use axum::response::IntoResponse;
use base64::Engine as _;
use proptest::prelude::*;
use s3_auth_api::access::miner::{MAX_UPLOAD_BYTES, MIN_UPLOAD_BYTES, MINER_POLICY_LIFETIME};
use s3_auth_api::access::miner_folder;
use s3_auth_api::access::validator::{MAX_KEY_BYTES, valid_file_key};
use s3_auth_api::api::ApiError;
use s3_auth_api::api::body::{Fields, JsonObject};
use s3_auth_api::auth::signature::{SignatureError, parse_signature_hex, verify_signature};
use s3_auth_api::auth::{decode_ss58, encode_ss58};
use s3_auth_api::keys::SigningKey;
use s3_auth_api::metagraph::{Metagraph, MetagraphDocument, Neuron, snapshot};
use s3_auth_api::storage::post_policy::{PostPolicyForm, presign_post};
use s3_auth_api::storage::{BucketLocation, PostPolicySpec};
use serde_json::{Map, Value};

/// The base58 alphabet (no 0, O, I, l).
const BASE58: &str = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";

/// The fields the POST endpoints read.
const BODY_FIELDS: [&str; 10] = [
    "coldkey",
    "hotkey",
    "timestamp",
    "signature",
    "expiry",
    "miner_hotkey",
    "file_keys",
    "expiry_hours",
    "miner_hotkeys",
    "continuation_token",
];

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    })
}

/// An SS58 hotkey of a random public key.
fn hotkey() -> impl Strategy<Value = String> {
    any::<[u8; 32]>().prop_map(|k| encode_ss58(&k))
}

/// The upload policy the miner flow builds for `hotkey` (as `Access::grant_miner`), and
/// its decoded JSON.
fn miner_policy(hotkey: &str, session_token: Option<String>) -> (PostPolicyForm, Value) {
    policy_for(&miner_folder(hotkey), session_token)
}

fn policy_for(key_prefix: &str, session_token: Option<String>) -> (PostPolicyForm, Value) {
    let credentials = Credentials::new(
        "AKIAPROPERTYTEST",
        "property-test-secret",
        session_token,
        None,
        "properties",
    );
    let location = BucketLocation {
        bucket: "test-bucket".into(),
        region: "us-east-2".into(),
        public_endpoint: None,
    };
    let spec = PostPolicySpec {
        key_prefix: key_prefix.to_owned(),
        min_size: MIN_UPLOAD_BYTES,
        max_size: MAX_UPLOAD_BYTES,
        expires_in: MINER_POLICY_LIFETIME,
    };
    let now = UNIX_EPOCH + Duration::from_secs(1_763_812_800);
    let form = presign_post(&credentials, &location, &spec, now);
    let policy = base64::engine::general_purpose::STANDARD
        .decode(form.fields.get("policy").expect("policy field"))
        .expect("policy is base64");
    assert!(
        policy.iter().all(|&b| (0x20..0x7f).contains(&b)),
        "policy is printable ASCII, as Python's json.dumps writes it"
    );
    let json = serde_json::from_slice(&policy).expect("policy is JSON");
    (form, json)
}

/// The values of the policy's `["starts-with", "$key", value]` conditions; panics on a
/// `starts-with` condition on any other field.
fn key_prefixes(policy: &Value) -> Vec<String> {
    policy["conditions"]
        .as_array()
        .expect("conditions")
        .iter()
        .filter(|c| c[0] == "starts-with")
        .map(|c| {
            assert_eq!(c[1], "$key", "starts-with only on $key: {c}");
            c[2].as_str().expect("prefix is a string").to_owned()
        })
        .collect()
}

/// Whether S3 would accept an upload of `key` under this policy's key conditions: every
/// `starts-with $key` condition is a byte-wise prefix match, and there is no exact `key`.
fn policy_accepts_key(policy: &Value, key: &str) -> bool {
    let conditions = policy["conditions"].as_array().expect("conditions");
    assert!(
        !conditions
            .iter()
            .any(|c| c.get("key").is_some() || c.get("$key").is_some()),
        "no exact key condition"
    );
    key_prefixes(policy).iter().all(|p| key.starts_with(p))
}

/// Candidate upload keys for a miner with folder `folder`: inside it, inside another
/// miner's folder, near misses of it, and arbitrary strings.
fn candidate_key(own: String) -> impl Strategy<Value = String> {
    let folder = miner_folder(&own);
    let near = folder.clone();
    let inside = folder.clone();
    let unslashed = format!("data/hotkey={own}");
    prop_oneof![
        // Inside the folder.
        "[a-z0-9=_./-]{0,40}".prop_map(move |rest| format!("{inside}{rest}")),
        // Inside another miner's folder, with or without traversal back.
        (hotkey(), "[a-z0-9=_./-]{0,20}")
            .prop_map(|(other, rest)| format!("{}{rest}", miner_folder(&other))),
        (hotkey(), Just(own.clone()))
            .prop_map(|(other, own)| format!("{}../hotkey={own}/x", miner_folder(&other))),
        // The folder cut short, or with one character changed.
        (any::<prop::sample::Index>(), ".{0,8}").prop_map(move |(i, rest)| {
            let cut = i.index(near.len());
            format!("{}{rest}", &near[..cut])
        }),
        (
            any::<prop::sample::Index>(),
            prop::sample::select(BASE58.chars().collect::<Vec<_>>())
        )
            .prop_map(move |(i, c)| {
                let mut chars: Vec<char> = folder.chars().collect();
                let at = i.index(chars.len());
                chars[at] = c;
                chars.into_iter().collect::<String>() + "job_id=1/f.parquet"
            }),
        // The hotkey without the closing slash: `data/hotkey=5F...X/` would be another
        // miner whose hotkey starts with this one.
        "[A-Za-z0-9]{0,3}/?[a-z.]{0,8}".prop_map(move |rest| format!("{unslashed}{rest}")),
        any::<String>(),
    ]
}

/// A JSON value of any shape, with numbers and strings that are near the edges of the
/// lax integer reading.
fn json_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        (-1e20f64..1e20).prop_map(|f| Value::from(f.trunc())),
        any::<String>().prop_map(Value::from),
        "[ ]?[+-]?[0-9]{0,22}[ ]?".prop_map(Value::from),
        hotkey().prop_map(Value::from),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    json_leaf().prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{0,8}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A request body: the endpoints' field names with values of any type.
fn body_object() -> impl Strategy<Value = Map<String, Value>> {
    prop::collection::vec(
        (
            prop::sample::select(BODY_FIELDS.to_vec()),
            prop_oneof![
                json_value(),
                prop::collection::vec(json_leaf(), 0..5).prop_map(Value::Array),
            ],
        ),
        0..8,
    )
    .prop_map(|fields| fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
}

/// Reads `bytes` as the POST endpoints read their body.
fn read_body(bytes: Vec<u8>) -> Result<JsonObject, ApiError> {
    let request = Request::post("/")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(bytes))
        .expect("request");
    runtime().block_on(JsonObject::from_request(request, &()))
}

/// The status and JSON body an error answers with.
fn answer(err: ApiError) -> (StatusCode, Value) {
    let response = err.into_response();
    let status = response.status();
    let bytes = runtime()
        .block_on(axum::body::to_bytes(response.into_body(), usize::MAX))
        .expect("body");
    (
        status,
        serde_json::from_slice(&bytes).expect("error body is JSON"),
    )
}

/// Whether the lax integer reading accepts `v` (JSON integers, integral floats, strings of
/// digits with an optional sign; absent and null are no value).
fn lax_int_ok(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Number(n) => {
            n.is_i64() || n.is_u64() || n.as_f64().is_some_and(|f| f.fract() == 0.0)
        }
        Value::String(s) => {
            let t = s.trim();
            let digits = t.strip_prefix(['-', '+']).unwrap_or(t);
            !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
        }
        _ => false,
    }
}

/// Issues a list-of-strings field gives.
fn list_issues(v: Option<&Value>, required: bool) -> usize {
    match v {
        // A required list that is absent is `missing`, one that is null not a list.
        None | Some(Value::Null) => usize::from(required),
        Some(Value::Array(items)) => items.iter().filter(|i| !i.is_string()).count(),
        Some(_) => 1,
    }
}

/// A metagraph document: hotkeys drawn from a small pool (so some repeat), some valid SS58
/// keys and some not, with any stake.
fn metagraph_document() -> impl Strategy<Value = MetagraphDocument> {
    let hotkey_pool = prop::collection::vec(
        prop_oneof![hotkey(), "[1-9A-Za-z]{0,50}", any::<String>()],
        1..6,
    );
    (
        any::<u16>(),
        any::<u64>(),
        hotkey_pool,
        prop::collection::vec(
            (
                any::<u16>(),
                any::<prop::sample::Index>(),
                hotkey(),
                any::<bool>(),
                prop_oneof![
                    -1e12f64..1e12,
                    Just(20_000.0),
                    Just(20_000.9),
                    Just(20_001.0),
                    any::<f64>().prop_filter("JSON has only finite numbers", |f| f.is_finite()),
                ],
            ),
            0..12,
        ),
        prop::option::of(-1_000_000_000i64..4_000_000_000),
    )
        .prop_map(
            |(netuid, block, pool, neurons, synced_at)| MetagraphDocument {
                netuid,
                block,
                neurons: neurons
                    .into_iter()
                    .map(|(uid, pick, coldkey, permit, stake)| Neuron {
                        uid,
                        hotkey: pool[pick.index(pool.len())].clone(),
                        coldkey,
                        validator_permit: permit,
                        alpha_stake: stake,
                    })
                    .collect(),
                synced_at,
            },
        )
}

/// Whether two stakes are the same up to how serde_json reads floats back: without its
/// `float_roundtrip` feature (not enabled in this crate) a float it wrote may come back a
/// few units in the last place off (`1.0746733217403087e-212` reads back as
/// `1.0746733217403089e-212`), so a metagraph file or snapshot is not bit-exact.
fn same_stake(a: f64, b: f64) -> bool {
    a == b || (a - b).abs() <= 1e-12 * a.abs().max(b.abs())
}

/// Whether two neurons are the same, stakes compared with [`same_stake`].
fn same_neuron(a: &Neuron, b: &Neuron) -> bool {
    a.uid == b.uid
        && a.hotkey == b.hotkey
        && a.coldkey == b.coldkey
        && a.validator_permit == b.validator_permit
        && same_stake(a.alpha_stake, b.alpha_stake)
}

/// Whether two documents are the same, stakes compared with [`same_stake`].
fn same_document(a: &MetagraphDocument, b: &MetagraphDocument) -> bool {
    a.netuid == b.netuid
        && a.block == b.block
        && a.synced_at == b.synced_at
        && a.neurons.len() == b.neurons.len()
        && a.neurons
            .iter()
            .zip(&b.neurons)
            .all(|(x, y)| same_neuron(x, y))
}

/// Everything a built metagraph must answer for its document.
fn check_metagraph(doc: &MetagraphDocument, graph: &Metagraph) -> Result<(), TestCaseError> {
    prop_assert_eq!(graph.netuid(), doc.netuid);
    prop_assert_eq!(graph.block(), doc.block);
    prop_assert_eq!(graph.len(), doc.neurons.len());
    for (built, listed) in graph.neurons().iter().zip(&doc.neurons) {
        prop_assert!(same_neuron(built, listed), "{:?} != {:?}", built, listed);
    }
    for neuron in &doc.neurons {
        // A hotkey listed twice: the last entry is the one the service uses.
        let last = doc
            .neurons
            .iter()
            .rev()
            .find(|n| n.hotkey == neuron.hotkey)
            .expect("listed");
        let found = graph.get(&neuron.hotkey);
        prop_assert!(
            found.is_some_and(|f| same_neuron(f, last)),
            "{:?} != {:?}",
            found,
            last
        );
        prop_assert!(graph.is_registered(&neuron.hotkey));
        if decode_ss58(&neuron.hotkey).is_err() {
            prop_assert!(graph.public_key(&neuron.hotkey).is_none());
        }
        let validator = last.validator_permit
            && last.alpha_stake.is_finite()
            && last.alpha_stake.trunc() > 20_000.0;
        prop_assert_eq!(graph.is_validator(&neuron.hotkey, 20_000), validator);
    }
    prop_assert!(graph.validators_count(20_000) <= graph.len());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    // ---- SS58 ----

    #[test]
    fn ss58_decode_never_panics(s in any::<String>()) {
        let _ = decode_ss58(&s);
    }

    #[test]
    fn ss58_accepts_only_the_canonical_spelling(s in "[1-9A-HJ-NP-Za-km-z]{0,70}") {
        if let Ok(key) = decode_ss58(&s) {
            prop_assert_eq!(encode_ss58(&key), s);
        }
    }

    #[test]
    fn ss58_round_trips_every_key(key in any::<[u8; 32]>()) {
        let address = encode_ss58(&key);
        prop_assert_eq!(decode_ss58(&address), Ok(key));
    }

    #[test]
    fn ss58_one_changed_character_never_names_the_same_key(
        key in any::<[u8; 32]>(),
        at in any::<prop::sample::Index>(),
        c in prop::sample::select(BASE58.chars().collect::<Vec<_>>()),
    ) {
        let address = encode_ss58(&key);
        let mut chars: Vec<char> = address.chars().collect();
        let i = at.index(chars.len());
        prop_assume!(chars[i] != c);
        chars[i] = c;
        let changed: String = chars.into_iter().collect();
        prop_assert_ne!(decode_ss58(&changed), Ok(key));
    }

    // ---- Signatures ----

    #[test]
    fn signature_parse_never_panics(s in any::<String>()) {
        let _ = parse_signature_hex(&s);
    }

    #[test]
    fn signature_parse_reads_exactly_64_hex_bytes(s in "(0[xX])?[0-9a-fA-F]{0,140}") {
        let digits = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")).unwrap_or(&s);
        match parse_signature_hex(&s) {
            Ok(bytes) => prop_assert_eq!(hex::encode(bytes), digits.to_ascii_lowercase()),
            Err(SignatureError::BadLength(n)) => {
                prop_assert_ne!(digits.len(), 128);
                prop_assert_eq!(n * 2, digits.len());
            }
            Err(e) => {
                prop_assert_ne!(digits.len(), 128, "{}", e);
                prop_assert!(digits.len() % 2 == 1, "{}", e);
            }
        }
    }

    #[test]
    fn signature_verify_never_panics(
        key in any::<[u8; 32]>(),
        message in any::<String>(),
        signature in prop_oneof!["(0x)?[0-9a-f]{128}", "[0-9a-f]{0,130}", any::<String>()],
    ) {
        let _ = verify_signature(&key, &message, &signature);
    }

    // ---- Request bodies ----

    #[test]
    fn any_body_bytes_are_read_or_refused_with_a_422(
        bytes in prop_oneof![
            prop::collection::vec(any::<u8>(), 0..256),
            body_object().prop_map(|m| serde_json::to_vec(&m).expect("json")),
            json_value().prop_map(|v| serde_json::to_vec(&v).expect("json")),
        ]
    ) {
        let is_object = matches!(serde_json::from_slice::<Value>(&bytes), Ok(Value::Object(_)));
        match read_body(bytes) {
            Ok(_) => prop_assert!(is_object),
            Err(err) => {
                prop_assert!(!is_object);
                let (status, body) = answer(err);
                prop_assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
                prop_assert!(body["detail"].as_array().is_some_and(|d| !d.is_empty()));
            }
        }
    }

    #[test]
    fn body_fields_are_read_or_reported_one_issue_each(body in body_object()) {
        let bytes = serde_json::to_vec(&body).expect("json");
        let object = read_body(bytes).expect("an object is read");
        let map = &object.0;
        let mut f = Fields::new(&object);
        let hotkey = f.string("hotkey");
        let coldkey = f.opt_string("coldkey");
        let timestamp = f.opt_int("timestamp");
        let expiry = f.opt_int("expiry");
        let file_keys = f.string_list("file_keys");
        let miners = f.opt_string_list("miner_hotkeys");

        let mut expected = 0;
        match map.get("hotkey") {
            Some(Value::String(s)) => prop_assert_eq!(&hotkey, s),
            _ => expected += 1,
        }
        match map.get("coldkey") {
            None | Some(Value::Null) => prop_assert_eq!(coldkey, None),
            Some(Value::String(s)) => prop_assert_eq!(coldkey.as_ref(), Some(s)),
            Some(_) => expected += 1,
        }
        for (name, read) in [("timestamp", timestamp), ("expiry", expiry)] {
            match map.get(name) {
                None | Some(Value::Null) => prop_assert_eq!(read, None),
                Some(v) if lax_int_ok(v) => {
                    if let Some(i) = v.as_i64() {
                        prop_assert_eq!(read, Some(i));
                    }
                    if let Some(Ok(i)) = v.as_str().map(|s| s.trim().parse::<i64>()) {
                        prop_assert_eq!(read, Some(i));
                    }
                    prop_assert!(read.is_some());
                }
                Some(_) => {
                    prop_assert_eq!(read, None);
                    expected += 1;
                }
            }
        }
        expected += list_issues(map.get("file_keys"), true);
        expected += list_issues(map.get("miner_hotkeys"), false);
        if let Some(Value::Array(items)) = map.get("file_keys") {
            let strings: Vec<&str> = items.iter().filter_map(Value::as_str).collect();
            prop_assert_eq!(file_keys.iter().map(String::as_str).collect::<Vec<_>>(), strings);
        }
        if matches!(map.get("miner_hotkeys"), None | Some(Value::Null)) {
            prop_assert_eq!(miners, None);
        }

        match f.finish() {
            Ok(()) => prop_assert_eq!(expected, 0),
            Err(ApiError::Validation(issues)) => {
                prop_assert_eq!(issues.len(), expected);
                for issue in &issues {
                    prop_assert_eq!(&issue.loc[0], "body");
                }
            }
            Err(other) => prop_assert!(false, "unexpected error {other:?}"),
        }
    }

    // ---- Metagraph documents ----

    #[test]
    fn metagraph_bytes_never_panic(bytes in prop_oneof![
        prop::collection::vec(any::<u8>(), 0..256),
        json_value().prop_map(|v| serde_json::to_vec(&v).expect("json")),
        metagraph_document().prop_map(|d| {
            let mut v = serde_json::to_value(&d).expect("json");
            // Some documents with a field of the wrong type.
            if d.block % 3 == 0 && !d.neurons.is_empty() {
                v["neurons"][0]["uid"] = Value::from(-1);
            }
            serde_json::to_vec(&v).expect("json")
        }),
    ]) {
        if let Ok(doc) = serde_json::from_slice::<MetagraphDocument>(&bytes) {
            let graph = Metagraph::from_document(doc.clone());
            check_metagraph(&doc, &graph)?;
        }
    }

    #[test]
    fn metagraph_documents_build_a_consistent_metagraph(doc in metagraph_document()) {
        let bytes = serde_json::to_vec(&doc).expect("json");
        let read: MetagraphDocument = serde_json::from_slice(&bytes).expect("reads back");
        prop_assert!(same_document(&read, &doc), "{:?} != {:?}", read, doc);
        let graph = Metagraph::from_document(read);
        check_metagraph(&doc, &graph)?;
    }

    // ---- POST policies ----

    #[test]
    fn post_policy_is_valid_json_with_the_exact_prefix(
        prefix in prop_oneof![any::<String>(), "data/hotkey=[1-9A-Za-z]{0,48}/[\"\\\\$ {}a-z]{0,8}"],
        token in prop::option::of(any::<String>()),
    ) {
        let (form, policy) = policy_for(&prefix, token.clone());
        prop_assert_eq!(key_prefixes(&policy), vec![prefix.clone(), prefix.clone()]);
        let template = format!("{prefix}${{filename}}");
        prop_assert_eq!(form.fields.get("key"), Some(template.as_str()));
        let token_condition = policy["conditions"]
            .as_array()
            .expect("conditions")
            .iter()
            .find_map(|c| c.get("x-amz-security-token").and_then(Value::as_str));
        prop_assert_eq!(token_condition, token.as_deref());
    }

    /// The key property: a presigned POST for hotkey A never permits a key outside
    /// `data/hotkey=A/`.
    #[test]
    fn miner_policy_permits_exactly_the_miners_folder(
        (own, candidates) in hotkey().prop_flat_map(|own| {
            let keys = prop::collection::vec(candidate_key(own.clone()), 1..24);
            (Just(own), keys)
        }),
    ) {
        let folder = format!("data/hotkey={own}/");
        prop_assert_eq!(miner_folder(&own), folder.clone());
        let (form, policy) = miner_policy(&own, None);
        let prefixes = key_prefixes(&policy);
        prop_assert_eq!(prefixes.len(), 2);
        prop_assert!(prefixes.iter().all(|p| *p == folder), "{:?}", prefixes);
        let template = format!("{folder}${{filename}}");
        prop_assert_eq!(form.fields.get("key"), Some(template.as_str()));
        for key in candidates {
            prop_assert_eq!(
                policy_accepts_key(&policy, &key),
                key.starts_with(&folder),
                "key {:?} under the policy of {}", key, own
            );
        }
    }

    #[test]
    fn miner_policy_refuses_every_other_miners_folder(
        a in hotkey(),
        b in hotkey(),
        rest in "[a-z0-9=_./-]{0,24}",
    ) {
        prop_assume!(a != b);
        let (_, policy) = miner_policy(&a, None);
        let key = format!("{}{rest}", miner_folder(&b));
        prop_assert!(!policy_accepts_key(&policy, &key), "{}", key);
    }

    #[test]
    fn no_miner_folder_is_a_prefix_of_another(
        keys in prop::collection::btree_set(any::<[u8; 32]>(), 2..12),
    ) {
        let folders: Vec<String> = keys.iter().map(|k| miner_folder(&encode_ss58(k))).collect();
        for (i, a) in folders.iter().enumerate() {
            for b in &folders[i + 1..] {
                prop_assert_ne!(a, b);
                prop_assert!(!a.starts_with(b.as_str()), "{} starts with {}", a, b);
                prop_assert!(!b.starts_with(a.as_str()), "{} starts with {}", b, a);
            }
        }
    }

    // ---- File keys validators may read ----

    #[test]
    fn valid_file_key_takes_only_clean_keys_inside_the_folder(
        own in hotkey(),
        segments in prop::collection::vec(
            prop_oneof![
                Just(String::new()),
                Just(".".to_owned()),
                Just("..".to_owned()),
                "[a-z0-9_=.-]{1,12}",
                "[^/]{1,6}",
            ],
            0..6,
        ),
    ) {
        let folder = miner_folder(&own);
        let rest = segments.join("/");
        let key = format!("{folder}{rest}");
        let clean = !segments.is_empty()
            && segments.iter().all(|s| !s.is_empty() && s != "." && s != "..")
            && !key.chars().any(char::is_control)
            && key.len() <= MAX_KEY_BYTES;
        prop_assert_eq!(valid_file_key(&key, &folder), clean, "key {:?}", key);
    }

    #[test]
    fn valid_file_key_refuses_keys_outside_the_folder(
        own in hotkey(),
        other in hotkey(),
        rest in "[a-z0-9=_./-]{1,24}",
        any_key in any::<String>(),
    ) {
        prop_assume!(own != other);
        let folder = miner_folder(&own);
        let in_other = format!("{}{rest}", miner_folder(&other));
        prop_assert!(!valid_file_key(&in_other, &folder), "{}", in_other);
        // The hotkey without its slash: only `/...` continues inside the folder.
        let unslashed = format!("data/hotkey={own}{rest}");
        prop_assert!(!valid_file_key(&unslashed, &folder) || rest.starts_with('/'), "{}", unslashed);
        if !any_key.starts_with(&folder) {
            prop_assert!(!valid_file_key(&any_key, &folder));
        }
        let long = format!("{folder}{}", "a".repeat(MAX_KEY_BYTES + 1 - folder.len()));
        prop_assert!(!valid_file_key(&long, &folder));
    }

    #[test]
    fn an_accepted_file_key_stays_inside_the_folder_even_when_resolved(
        own in hotkey(),
        rest in "[a./=]{0,24}",
    ) {
        let folder = miner_folder(&own);
        let key = format!("{folder}{rest}");
        if valid_file_key(&key, &folder) {
            // Resolve `.` and `..` as a file system or a careless client would.
            let mut resolved: Vec<&str> = Vec::new();
            for segment in key.split('/') {
                match segment {
                    "" | "." => {}
                    ".." => {
                        resolved.pop();
                    }
                    s => resolved.push(s),
                }
            }
            let resolved = resolved.join("/");
            prop_assert!(resolved.starts_with(&folder), "{} resolves to {}", key, resolved);
            prop_assert!(resolved.len() > folder.len());
        }
    }
}

proptest! {
    // Each case signs twice and verifies a few times.
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn real_signatures_verify_and_any_flipped_bit_does_not(
        seed in any::<[u8; 32]>(),
        message in any::<String>(),
        bit in 0usize..512,
    ) {
        let key = SigningKey::from_seed(&seed).expect("seed");
        let public = key.public();
        let signature = key.sign_hex(&message);
        prop_assert_eq!(verify_signature(&public, &message, &signature), Ok(()));
        prop_assert_eq!(
            verify_signature(&public, &message, &format!("0x{}", signature.to_ascii_uppercase())),
            Ok(())
        );
        let wrapped = key.sign_hex(&format!("<Bytes>{message}</Bytes>"));
        prop_assert_eq!(verify_signature(&public, &message, &wrapped), Ok(()));

        let mut bytes = parse_signature_hex(&signature).expect("parses");
        bytes[bit / 8] ^= 1 << (bit % 8);
        prop_assert!(verify_signature(&public, &message, &hex::encode(bytes)).is_err());
        let other_message = format!("{message}.");
        prop_assert!(verify_signature(&public, &other_message, &signature).is_err());
    }

    #[test]
    fn snapshots_read_back_what_was_written(
        doc in metagraph_document(),
        synced_secs in 0u64..4_000_000_000,
    ) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("snapshot.json");
        let graph = Metagraph::from_document(doc.clone());
        let synced_at = UNIX_EPOCH + Duration::from_secs(synced_secs);
        let before = std::time::SystemTime::now();
        let (read, read_at) = runtime().block_on(async {
            snapshot::write(&path, &graph, synced_at).await.expect("write");
            snapshot::read(&path, doc.netuid).await.expect("read")
        });
        if synced_at <= before {
            prop_assert_eq!(read_at, synced_at);
        } else {
            // A time in the future reads back as the time of reading: never fresher.
            prop_assert!(read_at >= before && read_at <= std::time::SystemTime::now());
        }
        let mut expected = doc.clone();
        expected.synced_at = Some(synced_secs as i64);
        check_metagraph(&expected, &read)?;
    }
}

//! Request bodies: JSON objects read and validated field by field, with FastAPI's
//! 422 answers, so malformed input is always a clear 4xx and never a 500.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde_json::{Map, Value, json};

use super::error::{ApiError, ValidationIssue};

/// Largest accepted request body. The largest legitimate body (a validator asking for
/// 1000 file keys) fits well within this.
pub const BODY_LIMIT: usize = 256 * 1024;

/// A request body that is a JSON object.
#[derive(Debug)]
pub struct JsonObject(
    pub Map<String, Value>,
    pub Option<crate::auth::tao::TaoProof>,
);

impl<S: Send + Sync> FromRequest<S> for JsonObject {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let caller = req
            .extensions()
            .get::<super::middleware::CallerHotkey>()
            .cloned();
        let tao_headers: Vec<(&'static str, String)> = crate::auth::tao::HEADERS
            .iter()
            .filter_map(|name| {
                let value = req.headers().get(*name)?;
                // A header that is not text is as good as a malformed one.
                Some((*name, value.to_str().unwrap_or("\u{0}").to_owned()))
            })
            .collect();
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge { limit: BODY_LIMIT }
            } else {
                ApiError::BadRequest("Could not read the request body".into())
            }
        })?;
        let tao = crate::auth::tao::parse_headers(
            |name| {
                tao_headers
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, v)| v.as_str())
            },
            &bytes,
        )
        .transpose()
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
        match serde_json::from_slice::<Value>(&bytes) {
            Ok(Value::Object(map)) => {
                let hotkey = match &tao {
                    Some(proof) => Some(proof.hotkey.as_str()),
                    None => map.get("hotkey").and_then(Value::as_str),
                };
                if let (Some(caller), Some(hotkey)) = (caller, hotkey) {
                    caller.set(hotkey);
                }
                Ok(JsonObject(map, tao))
            }
            Ok(_) => Err(ApiError::Validation(vec![ValidationIssue {
                kind: "model_attributes_type",
                loc: vec![json!("body")],
                msg: "Input should be a valid dictionary or object to extract fields from".into(),
            }])),
            Err(err) => Err(ApiError::Validation(vec![ValidationIssue {
                kind: "json_invalid",
                loc: vec![json!("body"), json!(err.column().saturating_sub(1))],
                msg: "JSON decode error".into(),
            }])),
        }
    }
}

/// Reads typed fields from a body, collecting every problem before failing.
///
/// A header-signed (Tao v2) body is read strictly: a field the route does not read is
/// pydantic's `extra_forbidden`, since the signature covers the body but not the route it
/// was sent to. A body-signed one is read as FastAPI does, ignoring unknown fields.
#[derive(Debug)]
pub struct Fields<'a> {
    map: &'a Map<String, Value>,
    issues: Vec<ValidationIssue>,
    strict: bool,
    read: Vec<String>,
}

/// Most unknown fields one 422 names.
pub const MAX_EXTRA_ISSUES: usize = 8;

/// The body field that names the route a header-signed body is meant for, on the routes
/// whose other fields could also form a valid body for another route.
pub const ROUTE_FIELD: &str = "route";

impl<'a> Fields<'a> {
    /// Starts reading `body`, strictly when it is header-signed.
    pub fn new(body: &'a JsonObject) -> Self {
        Self {
            map: &body.0,
            issues: Vec::new(),
            strict: body.1.is_some(),
            read: Vec::new(),
        }
    }

    /// The value of `name`, noting that the route's model has that field.
    fn get(&mut self, name: &str) -> Option<&'a Value> {
        if !self.read.iter().any(|n| n == name) {
            self.read.push(name.to_owned());
        }
        self.map.get(name)
    }

    /// `route`: required in a header-signed body, where it must be exactly `path` (the
    /// route the body was signed for); ignored in a body-signed one.
    pub fn route(&mut self, path: &str) {
        let value = self.get(ROUTE_FIELD);
        if !self.strict {
            return;
        }
        match value {
            Some(Value::String(s)) if s == path => {}
            None => self.issues.push(ValidationIssue::field(
                ROUTE_FIELD,
                "missing",
                "Field required",
            )),
            Some(_) => self.issues.push(ValidationIssue::field(
                ROUTE_FIELD,
                "literal_error",
                format!("Input should be '{path}'"),
            )),
        }
    }

    /// A required string field.
    pub fn string(&mut self, name: &str) -> String {
        match self.get(name) {
            None => {
                self.issues
                    .push(ValidationIssue::field(name, "missing", "Field required"));
                String::new()
            }
            Some(Value::String(s)) => s.clone(),
            Some(_) => {
                self.issues.push(ValidationIssue::field(
                    name,
                    "string_type",
                    "Input should be a valid string",
                ));
                String::new()
            }
        }
    }

    /// An optional string field (absent or null is `None`).
    pub fn opt_string(&mut self, name: &str) -> Option<String> {
        match self.get(name) {
            None | Some(Value::Null) => None,
            Some(_) => Some(self.string(name)),
        }
    }

    /// An optional integer, read as pydantic's lax mode does: JSON integers, floats
    /// without a fractional part, and strings of digits. Values beyond `i64` saturate.
    pub fn opt_int(&mut self, name: &str) -> Option<i64> {
        let value = self.get(name)?;
        let parsed = match value {
            Value::Null => return None,
            Value::Number(n) => number_to_i64(n).ok_or((
                "int_from_float",
                "Input should be a valid integer, got a number with a fractional part",
            )),
            Value::String(s) => parse_int_str(s).ok_or((
                "int_parsing",
                "Input should be a valid integer, unable to parse string as an integer",
            )),
            _ => Err(("int_type", "Input should be a valid integer")),
        };
        match parsed {
            Ok(v) => Some(v),
            Err((kind, msg)) => {
                self.issues.push(ValidationIssue::field(name, kind, msg));
                None
            }
        }
    }

    /// A list of strings; `required` decides whether absence is an issue.
    fn list(&mut self, name: &str, required: bool) -> Option<Vec<String>> {
        match self.get(name) {
            None | Some(Value::Null) if !required => None,
            None => {
                self.issues
                    .push(ValidationIssue::field(name, "missing", "Field required"));
                None
            }
            Some(Value::Array(items)) => {
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    match item {
                        Value::String(s) => out.push(s.clone()),
                        _ => self.issues.push(ValidationIssue {
                            kind: "string_type",
                            loc: vec![json!("body"), json!(name), json!(i)],
                            msg: "Input should be a valid string".into(),
                        }),
                    }
                }
                Some(out)
            }
            Some(_) => {
                self.issues.push(ValidationIssue::field(
                    name,
                    "list_type",
                    "Input should be a valid list",
                ));
                None
            }
        }
    }

    /// A required list of strings.
    pub fn string_list(&mut self, name: &str) -> Vec<String> {
        self.list(name, true).unwrap_or_default()
    }

    /// An optional list of strings (absent or null is `None`).
    pub fn opt_string_list(&mut self, name: &str) -> Option<Vec<String>> {
        self.list(name, false)
    }

    /// `hotkey`, `timestamp` and `signature` of a signed body; with Tao v2 headers the
    /// hotkey is theirs and the body needs none of the three (present ones are still
    /// type-checked).
    pub fn signer(
        &mut self,
        tao: Option<&crate::auth::tao::TaoProof>,
    ) -> (String, Option<i64>, String) {
        match tao {
            Some(proof) => {
                let _ = self.opt_string("hotkey");
                let _ = self.opt_int("timestamp");
                let _ = self.opt_string("signature");
                (proof.hotkey.clone(), None, String::new())
            }
            None => (
                self.string("hotkey"),
                self.opt_int("timestamp"),
                self.string("signature"),
            ),
        }
    }

    /// Records a problem found by the caller's own checks of a field.
    pub fn issue(&mut self, issue: ValidationIssue) {
        self.issues.push(issue);
    }

    /// Finishes: the collected issues as a 422, if any; for a header-signed body, each
    /// field the route did not read is one more (`extra_forbidden`).
    pub fn finish(mut self) -> Result<(), ApiError> {
        if self.strict {
            // A few are enough to say what is wrong, and keep the answer small whatever
            // the body holds.
            let extras = self
                .map
                .keys()
                .filter(|name| !self.read.iter().any(|n| n == *name))
                .take(MAX_EXTRA_ISSUES)
                .cloned()
                .collect::<Vec<_>>();
            for name in &extras {
                // A name is echoed only up to 64 characters.
                let shown: String = name.chars().take(64).collect();
                self.issues.push(ValidationIssue::field(
                    &shown,
                    "extra_forbidden",
                    "Extra inputs are not permitted",
                ));
            }
        }
        if self.issues.is_empty() {
            Ok(())
        } else {
            Err(ApiError::Validation(self.issues))
        }
    }
}

fn number_to_i64(n: &serde_json::Number) -> Option<i64> {
    if let Some(v) = n.as_i64() {
        return Some(v);
    }
    if n.as_u64().is_some() {
        return Some(i64::MAX);
    }
    let f = n.as_f64()?;
    if f.fract() != 0.0 || !f.is_finite() {
        return None;
    }
    // `as` saturates at the i64 bounds.
    Some(f as i64)
}

fn parse_int_str(s: &str) -> Option<i64> {
    let t = s.trim();
    let digits = t.strip_prefix(['-', '+']).unwrap_or(t);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(t.parse::<i64>().unwrap_or(if t.starts_with('-') {
        i64::MIN
    } else {
        i64::MAX
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(v: Value) -> JsonObject {
        match v {
            Value::Object(m) => JsonObject(m, None),
            _ => JsonObject(Map::new(), None),
        }
    }

    #[test]
    fn lax_integers() {
        let body =
            obj(json!({"a": 5, "b": "17", "c": 3.0, "d": 3.5, "e": true, "f": null, "g": 1e30}));
        let mut f = Fields::new(&body);
        assert_eq!(f.opt_int("a"), Some(5));
        assert_eq!(f.opt_int("b"), Some(17));
        assert_eq!(f.opt_int("c"), Some(3));
        assert_eq!(f.opt_int("d"), None);
        assert_eq!(f.opt_int("e"), None);
        assert_eq!(f.opt_int("f"), None);
        assert_eq!(f.opt_int("g"), Some(i64::MAX));
        assert_eq!(f.opt_int("missing"), None);
        let Err(ApiError::Validation(issues)) = f.finish() else {
            panic!("expected validation issues");
        };
        let kinds: Vec<_> = issues.iter().map(|i| i.kind).collect();
        assert_eq!(kinds, vec!["int_from_float", "int_type"]);
    }

    #[test]
    fn strings_required_and_typed() {
        let body = obj(json!({"a": "x", "b": 1}));
        let mut f = Fields::new(&body);
        assert_eq!(f.string("a"), "x");
        f.string("b");
        f.string("c");
        let Err(ApiError::Validation(issues)) = f.finish() else {
            panic!("expected validation issues");
        };
        assert_eq!(issues[0].kind, "string_type");
        assert_eq!(issues[1].kind, "missing");
        assert_eq!(issues[1].loc, vec![json!("body"), json!("c")]);
    }
}

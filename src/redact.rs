//! URLs from configuration as they may be shown: scheme, host, port and path only.
//!
//! Commercial RPC providers put API keys in the userinfo or the query of their endpoint
//! URLs, so neither may reach logs, health answers, metrics or error messages.

/// `url` without its userinfo and query, each replaced by `***` when present; the
/// fragment is dropped. A string without `://` is returned as `***` unless it has no
/// `@`, `?` or `#`.
pub fn url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return if url.contains(['@', '?', '#']) {
            "***".to_owned()
        } else {
            url.to_owned()
        };
    };
    // Everything up to the last `@` is userinfo, even when a mistyped password holds
    // an unencoded `/`, `?` or `#` (masking too much is safe, too little is not).
    let (masked, rest) = match rest.rfind('@') {
        Some(at) => (true, &rest[at + 1..]),
        None => (false, rest),
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let host = if masked {
        format!("***@{authority}")
    } else {
        authority.to_owned()
    };
    let path_end = tail.find(['?', '#']).unwrap_or(tail.len());
    let (path, after) = tail.split_at(path_end);
    let query = if after.starts_with('?') { "?***" } else { "" };
    format!("{scheme}://{host}{path}{query}")
}

/// `text` with every secret part of `url` (the whole URL, its userinfo, its query and
/// each query value of four characters or more) replaced, for error messages from libraries that echo the URL they were given.
pub fn scrub(text: &str, url: &str) -> String {
    let mut out = text.replace(url, &self::url(url));
    if let Some((_, rest)) = url.split_once("://")
        && let Some((userinfo, _)) = rest.rsplit_once('@')
        && !userinfo.is_empty()
    {
        out = out.replace(userinfo, "***");
    }
    if let Some((_, query)) = url.split_once('?') {
        let query = query.split('#').next().unwrap_or_default();
        if !query.is_empty() {
            out = out.replace(query, "***");
        }
        // Each value on its own too (a library may print a parsed parameter).
        for value in query
            .split('&')
            .filter_map(|kv| kv.split_once('=').map(|(_, v)| v))
        {
            if value.len() >= 4 {
                out = out.replace(value, "***");
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn userinfo_and_query_never_survive() {
        assert_eq!(
            url("wss://user:pass@rpc.example.com:443/ws?apikey=K#frag"),
            "wss://***@rpc.example.com:443/ws?***"
        );
        assert_eq!(url("ws://127.0.0.1:9944"), "ws://127.0.0.1:9944");
        assert_eq!(url("redis://:pw@h:6379/0"), "redis://***@h:6379/0");
        assert_eq!(url("https://h/p?x=1"), "https://h/p?***");
        assert_eq!(url("a@b"), "***");
        assert_eq!(url("wss://u:pa/ss?#w@h:1/p"), "wss://***@h:1/p");
        let raw = "wss://u:secretpw@h/ws?apikey=SECRETKEY";
        let msg = format!("connect to {raw} failed; key SECRETKEY; auth u:secretpw");
        let clean = scrub(&msg, raw);
        assert!(
            !clean.contains("SECRETKEY") && !clean.contains("secretpw"),
            "{clean}"
        );
    }
}

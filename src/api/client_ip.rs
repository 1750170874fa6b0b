//! The caller's address: the peer of the connection, or, behind trusted proxies
//! (`TRUST_PROXY_HOPS`), the address the outermost trusted proxy saw.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::HeaderMap;
use axum::http::request::Parts;

use crate::state::AppState;

/// The client address of a request; `None` when it cannot be told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub Option<IpAddr>);

impl FromRequestParts<Arc<AppState>> for ClientIp {
    type Rejection = Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip());
        Ok(ClientIp(client_ip(
            peer,
            &parts.headers,
            state.config.trust_proxy_hops,
        )))
    }
}

/// With `hops` trusted proxies, each appends the address it saw to `X-Forwarded-For`, so
/// the client is the `hops`-th entry from the right. Entries left of it are the client's
/// own claims and are ignored; a malformed or short header falls back to the peer.
pub fn client_ip(peer: Option<IpAddr>, headers: &HeaderMap, hops: usize) -> Option<IpAddr> {
    if hops == 0 {
        return peer;
    }
    // Right to left, without collecting: the entry `hops` from the right.
    headers
        .get_all("x-forwarded-for")
        .iter()
        .rev()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.rsplit(','))
        .nth(hops - 1)
        .and_then(|e| e.trim().parse::<IpAddr>().ok())
        .or(peer)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn xff(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", v.parse().expect("header"));
        h
    }

    #[test]
    fn trusted_hops_pick_from_the_right() {
        let peer: Option<IpAddr> = Some("10.0.0.5".parse().expect("ip"));
        let h = xff("1.1.1.1, 198.51.100.9");
        assert_eq!(client_ip(peer, &h, 0), peer);
        assert_eq!(
            client_ip(peer, &h, 1),
            Some("198.51.100.9".parse().expect("ip"))
        );
        assert_eq!(client_ip(peer, &h, 2), Some("1.1.1.1".parse().expect("ip")));
        // Fewer entries than trusted hops, or garbage: the peer.
        assert_eq!(client_ip(peer, &h, 3), peer);
        assert_eq!(client_ip(peer, &xff("not-an-ip"), 1), peer);
        assert_eq!(client_ip(peer, &HeaderMap::new(), 1), peer);
    }
}

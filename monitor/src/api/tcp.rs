//! The API over HTTP on TCP (`api.tcp`, off by default): the routes of [`super::server`],
//! read-only (GET only), with the same bounds (at most [`server::MAX_CONNECTIONS`] connections,
//! request heads of 16 KiB read within 10 s).
//!
//! A TCP peer has no credentials, so what it sees depends on the token alone:
//! - with `api.token_file`, every request must send `Authorization: Bearer <token>`
//!   (compared in constant time), else 401; with it, the client sees what root sees;
//! - without one (allowed on a loopback address only), only `/healthz` and `/metrics`
//!   (host-wide counts, nothing per user); every `/v1` route answers 403.
//!
//! A non-loopback address without a token file, or a token file that is not a regular
//! file owned by root with no group or other permission bits, or is empty, is refused at the
//! daemon's start ([`token`]).

use std::{io, net::SocketAddr, os::unix::fs::MetadataExt as _, path::Path, sync::Arc};

use hyper::{Request, Response, StatusCode, header};
use tokio::net::TcpListener;

use super::{
    filter::Viewer,
    server::{self, ApiBody, State},
};

/// The bearer token TCP clients must send.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(Vec<u8>);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(..)")
    }
}

impl Token {
    /// Whether `header` (an `Authorization` value) is `Bearer <this token>`; the token
    /// bytes are compared in constant time (only the length can be learnt).
    pub fn accepts(&self, header: Option<&[u8]>) -> bool {
        let Some(given) = header.and_then(|h| h.strip_prefix(b"Bearer ")) else {
            return false;
        };
        let given = given.trim_ascii();
        given.len() == self.0.len()
            && given
                .iter()
                .zip(&self.0)
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }
}

/// Whether `addr` is a loopback address (127.0.0.0/8, ::1, or ::ffff:127.x.y.z).
pub fn is_loopback(addr: &SocketAddr) -> bool {
    match addr {
        SocketAddr::V4(a) => a.ip().is_loopback(),
        SocketAddr::V6(a) => {
            a.ip().is_loopback() || a.ip().to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

/// The token for the TCP listener (`api.tcp`, `api.token_file`): `Ok(None)` when TCP is off or no token file is
/// set on a loopback address. An error (naming the key) when a non-loopback address has no
/// token file, or the token file is not a regular file (a symlink is refused) owned by root
/// with mode 0600 or stricter, or holds nothing but white space.
pub fn token(tcp: Option<SocketAddr>, token_file: Option<&Path>) -> Result<Option<Token>, String> {
    let Some(addr) = tcp else {
        return Ok(None);
    };
    match token_file {
        None if is_loopback(&addr) => Ok(None),
        None => Err(format!(
            "api.token_file: api.tcp = \"{addr}\" is not a loopback address: \
             set api.token_file to a root-owned file (mode 0600) holding a bearer token"
        )),
        Some(path) => read_token(path, 0).map(Some),
    }
}

/// Reads the token file, which must be owned by `owner` (root, except in tests).
fn read_token(path: &Path, owner: u32) -> Result<Token, String> {
    let bad = |why: String| format!("api.token_file: {}: {why}", path.display());
    let meta = std::fs::symlink_metadata(path).map_err(|e| bad(e.to_string()))?;
    if meta.file_type().is_symlink() {
        return Err(bad("is a symbolic link: refusing it".into()));
    }
    if !meta.file_type().is_file() {
        return Err(bad("is not a regular file".into()));
    }
    if meta.uid() != owner {
        return Err(bad(format!(
            "is owned by uid {}, not root: refusing it",
            meta.uid()
        )));
    }
    if meta.mode() & 0o077 != 0 {
        return Err(bad(format!(
            "has mode {:04o}: group and others must have no access (chmod 0600)",
            meta.mode() & 0o7777
        )));
    }
    let text = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
    let token = text.trim_ascii();
    if token.is_empty() {
        return Err(bad("is empty".into()));
    }
    Ok(Token(token.to_vec()))
}

/// The listener: stops (the task is aborted) when dropped.
pub struct Listening {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Listening {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Binds `addr`.
pub async fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Serves `listener` on the current runtime until the returned handle is dropped.
pub fn start(listener: TcpListener, token: Option<Token>, state: State) -> io::Result<Listening> {
    let addr = listener.local_addr()?;
    let state = Arc::new(state);
    let token = Arc::new(token);
    let task = server::accept_loop(listener, move |_| {
        let state = state.clone();
        let token = token.clone();
        Some(move |req| {
            let state = state.clone();
            let token = token.clone();
            async move { handle(&state, token.as_ref().as_ref(), req).await }
        })
    });
    Ok(Listening { addr, task })
}

/// What a TCP request may see: everything with the token; without a token configured,
/// `/healthz` and `/metrics` only.
async fn handle<B>(
    state: &Arc<State>,
    token: Option<&Token>,
    req: Request<B>,
) -> Response<ApiBody> {
    match token {
        Some(token) => {
            let auth = req
                .headers()
                .get(header::AUTHORIZATION)
                .map(|v| v.as_bytes());
            if !token.accepts(auth) {
                let mut resp = server::error(
                    StatusCode::UNAUTHORIZED,
                    "a bearer token is needed: Authorization: Bearer <the token in api.token_file>",
                );
                resp.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    header::HeaderValue::from_static("Bearer"),
                );
                return resp;
            }
        }
        None => {
            let path = req.uri().path();
            if path == "/v1" || path.starts_with("/v1/") {
                return server::error(
                    StatusCode::FORBIDDEN,
                    "over TCP the /v1 routes need a token: set api.token_file \
                     (without one only /healthz and /metrics are served)",
                );
            }
        }
    }
    // The peer is not a local user: with the token (or on the routes without per-user
    // data) it sees what root sees.
    server::handle(state, Viewer::All, req).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::TempDir;
    use std::path::PathBuf;

    /// Writes a token file of a test with `mode`.
    fn test_token(dir: &Path, mode: u32, text: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt as _;
        let p = dir.join("token");
        let _ = std::fs::remove_file(&p);
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    fn addr(tcp: &str) -> Option<SocketAddr> {
        Some(tcp.parse().unwrap())
    }

    #[test]
    fn loopback() {
        for a in [
            "127.0.0.1:1",
            "127.1.2.3:1",
            "[::1]:1",
            "[::ffff:127.0.0.1]:1",
        ] {
            assert!(is_loopback(&a.parse().unwrap()), "{a}");
        }
        for a in ["0.0.0.0:1", "10.0.0.1:1", "[::]:1", "[fe80::1]:1"] {
            assert!(!is_loopback(&a.parse().unwrap()), "{a}");
        }
    }

    #[test]
    fn a_non_loopback_address_needs_a_token_file() {
        assert_eq!(token(None, None), Ok(None));
        assert_eq!(token(addr("127.0.0.1:9464"), None), Ok(None));
        for a in ["0.0.0.0:9464", "[::]:9464", "192.168.1.2:9464"] {
            let e = token(addr(a), None).unwrap_err();
            assert!(e.starts_with("api.token_file: "), "{e}");
            assert!(
                e.contains(a.trim_start_matches('[').split(']').next().unwrap()),
                "{e}"
            );
        }
    }

    #[test]
    fn the_token_file_is_checked() {
        let t = TempDir::new("api-token");
        let me = std::fs::metadata(t.path()).unwrap().uid();
        let good = test_token(t.path(), 0o600, "  s3cret\n");
        assert_eq!(read_token(&good, me), Ok(Token(b"s3cret".to_vec())));
        let ro = test_token(t.path(), 0o400, "s3cret");
        assert!(read_token(&ro, me).is_ok());
        for mode in [0o640, 0o604, 0o660, 0o644, 0o610] {
            let p = test_token(t.path(), mode, "s3cret");
            let e = read_token(&p, me).unwrap_err();
            assert!(
                e.starts_with("api.token_file: ") && e.contains("mode"),
                "{mode:o}: {e}"
            );
        }
        let empty = test_token(t.path(), 0o600, " \n\t");
        assert!(read_token(&empty, me).unwrap_err().contains("empty"));
        let wrong_owner = test_token(t.path(), 0o600, "s3cret");
        let e = read_token(&wrong_owner, me + 1).unwrap_err();
        assert!(e.contains("owned by uid"), "{e}");
        let link = t.path().join("link");
        std::os::unix::fs::symlink(&good, &link).unwrap();
        assert!(read_token(&link, me).unwrap_err().contains("symbolic link"));
        assert!(
            read_token(t.path(), me)
                .unwrap_err()
                .contains("regular file")
        );
        let absent = t.path().join("absent");
        assert!(
            read_token(&absent, me)
                .unwrap_err()
                .starts_with("api.token_file: ")
        );
    }

    #[test]
    fn the_bearer_is_compared_exactly() {
        let t = Token(b"s3cret".to_vec());
        assert!(t.accepts(Some(b"Bearer s3cret")));
        assert!(!t.accepts(None));
        assert!(!t.accepts(Some(b"s3cret")));
        assert!(!t.accepts(Some(b"Bearer s3cre")));
        assert!(!t.accepts(Some(b"Bearer s3cretx")));
        assert!(!t.accepts(Some(b"Bearer S3cret")));
        assert!(!t.accepts(Some(b"Basic s3cret")));
        assert!(!t.accepts(Some(b"Bearer ")));
    }
}

//! Console sessions: a sign-in with the API token gets a random session id
//! (from the OS's random source) in an `HttpOnly; SameSite=Strict` cookie,
//! and a CSRF token tied to the session that every state-changing form
//! carries. Sessions live in this process's memory only: a restart signs
//! everyone out, which is the safe way round.

use axum::http::{header, HeaderMap};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The cookie's name.
pub const COOKIE: &str = "flowc_session";
/// How long a session lasts after sign-in.
pub const LIFETIME: Duration = Duration::from_secs(8 * 3600);
/// Most sessions kept at once; signing in past it ends the oldest (only
/// holders of the token can sign in, so this bounds memory, not access).
const MAX_SESSIONS: usize = 1024;
/// Random bytes in a session id and in a CSRF token (hex: twice as many characters).
const SECRET_BYTES: usize = 32;

/// A session id or a CSRF token: 64 lowercase hex characters.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Secret(String);

impl Secret {
    fn random() -> Result<Secret, getrandom::Error> {
        let mut bytes = [0u8; SECRET_BYTES];
        getrandom::fill(&mut bytes)?;
        Ok(Secret(bytes.iter().map(|b| format!("{b:02x}")).collect()))
    }

    /// A value that could be one of ours; anything else is no session.
    fn parse(s: &str) -> Option<Secret> {
        (s.len() == 2 * SECRET_BYTES && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
            .then(|| Secret(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `given` is this secret, in time independent of where they differ.
    pub fn matches(&self, given: &str) -> bool {
        crate::service::same_token(&self.0, given)
    }
}

/// A signed-in visitor: the session and its CSRF token.
#[derive(Clone)]
pub struct Signed {
    pub id: Secret,
    pub csrf: Secret,
}

struct Session {
    csrf: Secret,
    started: Instant,
}

#[derive(Default)]
pub struct Sessions {
    // Looked up by id in a hash map: the lookup's time depends on the id's
    // keyed hash (SipHash, random keys), not on how much of it is right.
    live: Mutex<HashMap<Secret, Session>>,
}

impl Sessions {
    /// A new session; fails only when the OS has no randomness to give.
    pub fn start(&self) -> Result<Signed, getrandom::Error> {
        let signed = Signed { id: Secret::random()?, csrf: Secret::random()? };
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        live.retain(|_, s| s.started.elapsed() < LIFETIME);
        if live.len() >= MAX_SESSIONS {
            if let Some(oldest) = live.iter().min_by_key(|(_, s)| s.started).map(|(k, _)| k.clone()) {
                live.remove(&oldest);
            }
        }
        live.insert(signed.id.clone(), Session { csrf: signed.csrf.clone(), started: Instant::now() });
        Ok(signed)
    }

    /// The session the request's cookie names, if it is live.
    pub fn of(&self, headers: &HeaderMap) -> Option<Signed> {
        let id = cookie(headers)?;
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        match live.get(&id) {
            Some(s) if s.started.elapsed() < LIFETIME => Some(Signed { id, csrf: s.csrf.clone() }),
            Some(_) => {
                live.remove(&id);
                None
            }
            None => None,
        }
    }

    pub fn end(&self, id: &Secret) {
        self.live.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
    }
}

/// The session id among the request's cookies (every `Cookie` header, `;`
/// separated); malformed cookies are ignored.
fn cookie(headers: &HeaderMap) -> Option<Secret> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find_map(|(k, v)| if k.trim() == COOKIE { Secret::parse(v.trim()) } else { None })
}

/// The `Set-Cookie` value that hands `id` to the browser. Not `Secure`:
/// `flowc serve` speaks plain HTTP (docs/console.md: put it behind TLS).
pub fn set_cookie(id: &Secret) -> String {
    format!("{COOKIE}={}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}", id.as_str(), LIFETIME.as_secs())
}

/// The `Set-Cookie` value that makes the browser forget the session.
pub fn clear_cookie() -> String {
    format!("{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0")
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn with_cookie(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, HeaderValue::from_str(v).expect("header"));
        h
    }

    #[test]
    fn a_session_is_found_by_its_cookie_until_it_ends() {
        let sessions = Sessions::default();
        let s = sessions.start().expect("random");
        assert_ne!(s.id.as_str(), s.csrf.as_str());
        let h = with_cookie(&format!("other=1; {COOKIE}={}", s.id.as_str()));
        assert!(sessions.of(&h).is_some_and(|f| f.csrf.matches(s.csrf.as_str())));
        sessions.end(&s.id);
        assert!(sessions.of(&h).is_none());
    }

    #[test]
    fn mangled_cookies_are_no_session() {
        let sessions = Sessions::default();
        let s = sessions.start().expect("random");
        let upper = s.id.as_str().to_uppercase();
        for bad in
            [String::new(), format!("{COOKIE}="), format!("{COOKIE}={upper}"), format!("{COOKIE}{}", s.id.as_str())]
        {
            assert!(sessions.of(&with_cookie(&bad)).is_none(), "{bad}");
        }
    }

    #[test]
    fn sessions_are_bounded() {
        let sessions = Sessions::default();
        let first = sessions.start().expect("random");
        for _ in 0..MAX_SESSIONS {
            sessions.start().expect("random");
        }
        assert!(sessions.of(&with_cookie(&format!("{COOKIE}={}", first.id.as_str()))).is_none());
        assert_eq!(sessions.live.lock().map(|l| l.len()).unwrap_or(0), MAX_SESSIONS);
    }
}

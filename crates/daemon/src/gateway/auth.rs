//! The client's ClickHouse credentials, in every form ClickHouse takes them: `Authorization:
//! Basic`, `X-ClickHouse-User` / `X-ClickHouse-Key`, or the `user` / `password` URL
//! parameters (which win over Basic, as with ClickHouse). Without any, the user is `default`
//! with no password.

use hyper::HeaderMap;
use hyper::header::AUTHORIZATION;

use crate::gateway::reply::ChError;

/// A client's ClickHouse user and password.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientAuth {
    /// The user.
    pub user: String,
    /// The password.
    pub password: String,
}

impl std::fmt::Debug for ClientAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ClientAuth({}, ***)", self.user)
    }
}

/// Reads the credentials of a request. `gate_token` is the daemon's own bearer token, if it
/// has one: an `Authorization: Bearer` that carries it is the daemon's gate, not ClickHouse's.
pub fn credentials(
    headers: &HeaderMap,
    param: &dyn Fn(&str) -> Option<String>,
    gate_token: Option<&str>,
) -> Result<ClientAuth, ChError> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let mut auth = ClientAuth {
        user: "default".into(),
        password: String::new(),
    };
    let authorization = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| match (v.strip_prefix("Bearer "), gate_token) {
            (Some(token), Some(gate)) => token.trim() != gate,
            _ => true,
        });
    let x_user = header("X-ClickHouse-User");
    let x_key = header("X-ClickHouse-Key");
    if authorization.is_some() && (x_user.is_some() || x_key.is_some()) {
        return Err(ChError::new(
            516,
            "Invalid authentication: it is not allowed to use X-ClickHouse HTTP headers and \
             Authorization HTTP header simultaneously",
        ));
    }
    if let Some(value) = authorization {
        let Some(encoded) = value.strip_prefix("Basic ") else {
            let scheme = value.split_whitespace().next().unwrap_or("");
            return Err(ChError::new(
                516,
                format!("'{scheme}' HTTP Authorization scheme is not supported"),
            ));
        };
        let decoded = base64_decode(encoded.trim())
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| {
                ChError::new(516, "Invalid authentication: malformed Basic credentials")
            })?;
        let (user, password) = decoded.split_once(':').unwrap_or((&decoded, ""));
        auth.user = user.to_string();
        auth.password = password.to_string();
    }
    if let Some(user) = x_user {
        auth.user = user;
        auth.password = x_key.unwrap_or_default();
    }
    if let Some(user) = param("user") {
        auth.user = user;
        auth.password = param("password").unwrap_or_default();
    } else if let Some(password) = param("password") {
        auth.password = password;
    }
    if auth.user.is_empty() {
        auth.user = "default".into();
    }
    Ok(auth)
}

/// Standard base64 (with or without padding); `None` when malformed.
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let text = text.trim_end_matches('=');
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.bytes() {
        acc = (acc << 6) | value(c)?;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn none(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn every_form_clickhouse_takes() {
        // u:p
        let basic = headers(&[("authorization", "Basic dTpw")]);
        let a = credentials(&basic, &none, None).unwrap();
        assert_eq!((a.user.as_str(), a.password.as_str()), ("u", "p"));
        let x = headers(&[("x-clickhouse-user", "v"), ("x-clickhouse-key", "k")]);
        let a = credentials(&x, &none, None).unwrap();
        assert_eq!((a.user.as_str(), a.password.as_str()), ("v", "k"));
        let url = |name: &str| match name {
            "user" => Some("w".to_string()),
            "password" => Some("q".to_string()),
            _ => None,
        };
        let a = credentials(&basic, &url, None).unwrap();
        assert_eq!(
            (a.user.as_str(), a.password.as_str()),
            ("w", "q"),
            "URL wins"
        );
        let a = credentials(&HeaderMap::new(), &none, None).unwrap();
        assert_eq!((a.user.as_str(), a.password.as_str()), ("default", ""));
        // Both forms at once, and other schemes, as ClickHouse refuses them.
        let both = headers(&[("authorization", "Basic dTpw"), ("x-clickhouse-user", "v")]);
        assert_eq!(credentials(&both, &none, None).unwrap_err().code, 516);
        let bearer = headers(&[("authorization", "Bearer abc")]);
        let e = credentials(&bearer, &none, None).unwrap_err();
        assert!(e.message.contains("'Bearer'"), "{e}");
        // The daemon's own token is its gate, not a ClickHouse credential.
        let gated = headers(&[("authorization", "Bearer abc"), ("x-clickhouse-user", "v")]);
        assert_eq!(credentials(&gated, &none, Some("abc")).unwrap().user, "v");
        assert_eq!(
            base64_decode("dXNlcjpwYXNzd29yZA==").unwrap(),
            b"user:password"
        );
        assert!(base64_decode("a*b").is_none());
    }
}

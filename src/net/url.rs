//! An HTTP endpoint's URL (a token endpoint, a webhook): `https://host[:port]/path`, split. Pure (the config checks it too).

/// An `https://host[:port]/path` URL, split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
    pub path: String,
    /// https (TLS) or http.
    pub secure: bool,
}

impl Endpoint {
    /// An `https://` URL (token endpoints: never plaintext).
    pub fn parse(url: &str) -> Result<Endpoint, String> {
        let rest = url
            .strip_prefix("https://")
            .ok_or_else(|| format!("\"{url}\" is not an https:// URL"))?;
        Self::split(url, rest, true)
    }

    /// An `https://` or `http://` URL (a webhook receiver on a private network may be plain).
    pub fn parse_http(url: &str) -> Result<Endpoint, String> {
        if let Some(rest) = url.strip_prefix("https://") {
            return Self::split(url, rest, true);
        }
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("\"{url}\" is not an http:// or https:// URL"))?;
        Self::split(url, rest, false)
    }

    fn split(url: &str, rest: &str, secure: bool) -> Result<Endpoint, String> {
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => (
                h,
                p.parse::<u16>()
                    .map_err(|_| format!("\"{url}\": the port is not a number"))?,
            ),
            _ => (authority, if secure { 443 } else { 80 }),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() || path.contains(char::is_whitespace) {
            return Err(format!("\"{url}\" is not a usable URL"));
        }
        if host.contains('@') {
            return Err(format!("\"{url}\": credentials do not belong in the URL"));
        }
        Ok(Endpoint {
            host: host.to_string(),
            port,
            path: path.to_string(),
            secure,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_https_urls() {
        assert_eq!(
            Endpoint::parse("https://login.microsoftonline.com/t1/oauth2/v2.0/token"),
            Ok(Endpoint {
                host: "login.microsoftonline.com".into(),
                port: 443,
                path: "/t1/oauth2/v2.0/token".into(),
                secure: true,
            })
        );
        let local = Endpoint::parse("https://127.0.0.1:8443/token").expect("url");
        assert_eq!((local.host.as_str(), local.port), ("127.0.0.1", 8443));
        assert_eq!(
            Endpoint::parse("https://[::1]:9/t").expect("v6").host,
            "::1"
        );
        assert!(
            Endpoint::parse("http://example.com/token").is_err(),
            "no plaintext"
        );
        assert!(Endpoint::parse("https://h:x/").is_err());
        assert!(Endpoint::parse("https:///path").is_err());
    }

    #[test]
    fn webhook_urls_may_be_plain() {
        let plain = Endpoint::parse_http("http://127.0.0.1/hook?k=1").expect("url");
        assert_eq!(
            (plain.port, plain.secure, plain.path.as_str()),
            (80, false, "/hook?k=1")
        );
        assert!(Endpoint::parse_http("https://h/x").expect("url").secure);
        assert!(Endpoint::parse_http("ftp://h/x").is_err());
        assert!(Endpoint::parse_http("http://user:pw@h/x").is_err());
    }
}

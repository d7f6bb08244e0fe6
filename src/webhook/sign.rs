//! Delivery signatures, as Standard Webhooks (standardwebhooks.com) defines them, so receivers
//! can use its libraries: HMAC-SHA256 with the webhook's secret over `{id}.{timestamp}.{body}`,
//! sent as `webhook-signature: v1,<base64>`. Pure.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// The HMAC key of a secret: a `whsec_` secret is base64 after the prefix (Standard Webhooks);
/// any other (or one that does not decode) is used as its UTF-8 bytes.
pub fn key_of(secret: &str) -> Vec<u8> {
    let secret = secret.trim();
    secret
        .strip_prefix("whsec_")
        .and_then(|b| STANDARD.decode(b).ok())
        .unwrap_or_else(|| secret.as_bytes().to_vec())
}

/// The `webhook-signature` value of one delivery.
pub fn signature(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
    let mut ctx = ring::hmac::Context::with_key(&key);
    ctx.update(id.as_bytes());
    ctx.update(b".");
    ctx.update(timestamp.to_string().as_bytes());
    ctx.update(b".");
    ctx.update(body);
    format!("v1,{}", STANDARD.encode(ctx.sign().as_ref()))
}

/// Whether `header` (space-separated `v1,<base64>` values) holds a valid signature; what a
/// receiver does (the tests' receiver uses it).
pub fn verify(key: &[u8], id: &str, timestamp: i64, body: &[u8], header: &str) -> bool {
    let expected = signature(key, id, timestamp, body);
    // Compared in time that does not depend on where they differ.
    header.split_whitespace().any(|given| {
        given.len() == expected.len()
            && given
                .bytes()
                .zip(expected.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_standard_webhooks_example_verifies() {
        // The example of the Standard Webhooks specification.
        let key = key_of("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
        let body = br#"{"test": 2432232314}"#;
        let sig = signature(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body);
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        assert!(verify(
            &key,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            body,
            &sig
        ));
        assert!(!verify(
            &key,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265331,
            body,
            &sig
        ));
        assert!(!verify(
            &key,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            b"{}",
            &sig
        ));
        assert_eq!(key_of("plain secret"), b"plain secret".to_vec());
    }
}

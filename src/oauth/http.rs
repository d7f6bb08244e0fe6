//! One HTTPS POST to a token endpoint (form-encoded, `Connection: close`) over
//! [`crate::net::http`].

use std::time::Duration;

pub use crate::net::http::{Endpoint, HttpError, parse_answer};
use crate::net::{TlsContext, http};
use crate::secret::Secret;

/// A token answer is a small JSON object; anything larger is not one.
const MAX_ANSWER: usize = 256 * 1024;

/// POSTs `body` (form-encoded) to `endpoint`; the status and the body of the answer.
pub async fn post_form(
    endpoint: &Endpoint,
    tls: &TlsContext,
    body: &Secret,
    timeout: Duration,
) -> Result<(u16, Vec<u8>), HttpError> {
    let mut stream =
        match tokio::time::timeout(timeout, http::connect(endpoint, tls, timeout)).await {
            Ok(s) => s?,
            Err(_) => {
                return Err(HttpError::Io(format!(
                    "{} did not answer within {} s",
                    endpoint.host,
                    timeout.as_secs()
                )));
            }
        };
    let request = http::Request {
        method: "POST",
        content_type: "application/x-www-form-urlencoded",
        headers: &[],
        body: body.expose().as_bytes(),
    };
    let (status, answer, _) =
        http::exchange(&mut stream, endpoint, &request, false, MAX_ANSWER, timeout).await?;
    Ok((status, answer))
}

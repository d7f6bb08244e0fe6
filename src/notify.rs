//! systemd's notify protocol (`Type=notify`): a datagram to `$NOTIFY_SOCKET` saying READY,
//! STATUS, WATCHDOG or STOPPING. A few lines instead of a crate; nothing happens outside systemd.

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

/// Sends `state` ("READY=1", "STATUS=…") to systemd, if it is listening. Best effort: the
/// appliance runs the same without it.
pub fn notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let Ok(socket) = UnixDatagram::unbound() else {
        return;
    };
    let bytes = path.as_encoded_bytes();
    let sent = match bytes.strip_prefix(b"@") {
        // An abstract socket (Linux).
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            std::os::unix::net::SocketAddr::from_abstract_name(name)
                .and_then(|a| socket.send_to_addr(state.as_bytes(), &a))
        }
        None => socket.send_to(state.as_bytes(), &path),
    };
    if let Err(e) = sent {
        tracing::debug!(error = %e, "telling systemd failed");
    }
}

/// How often to tell systemd's watchdog that all is well: half its `WatchdogSec`, when set.
pub fn watchdog_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    (usec > 0).then(|| Duration::from_micros(usec / 2))
}

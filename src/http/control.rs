//! The control socket's front (`data_dir/control.sock`, mode 0660: root, the service and its
//! group may connect). Each connection is accepted here, its peer's credentials read from the
//! kernel (SO_PEERCRED), and its one request relayed — bounded as the network front bounds
//! them, head and body — to tiny_http's control server on a socket only the service can open,
//! with those credentials in a header of their own. The API then knows who is asking: the user
//! in the audit line, and the scope `control_groups` gives them ([`super::control_peer`]).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

use super::control_peer::PeerCred;
use super::front::{HeadPhase, Limits, Peer, Shared, relay};

/// Connections at once on the control socket (the CLI holds one a command).
const MAX_CONNECTIONS: usize = 64;

/// Accepts on `listener` until the runtime ends, relaying to tiny_http at `socket`.
pub async fn serve(listener: std::os::unix::net::UnixListener, socket: PathBuf, limits: Limits) {
    let listener = match tokio::net::UnixListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "the control socket cannot run");
            return;
        }
    };
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let shared = Arc::new(Shared {
        budget: Arc::new(Semaphore::new(limits.body_budget)),
        tls: None,
        socket,
        limits,
        // Nothing on a local socket can be rebound by a web page's DNS.
        hosts: Vec::new(),
    });
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                tracing::warn!(error = %e, "accepting a control connection failed; trying again shortly");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            continue;
        };
        // Who connected, as the kernel saw it at connect(): nothing the peer can say changes it.
        let cred = match stream.peer_cred() {
            Ok(c) => PeerCred {
                uid: c.uid(),
                gid: c.gid(),
                pid: c.pid(),
            },
            Err(e) => {
                tracing::warn!(error = %e, "a control connection without peer credentials is closed");
                continue;
            }
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let lifetime = shared.limits.lifetime;
            let phase = HeadPhase(Arc::default());
            let _ =
                tokio::time::timeout(lifetime, relay(stream, Peer::Local(cred), &shared, phase))
                    .await;
        });
    }
}

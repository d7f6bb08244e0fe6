//! Who is at the other end of the control socket, and what they may do. The kernel tells the
//! relay the peer's uid, gid and pid (SO_PEERCRED, read when the connection is accepted), which
//! it passes to tiny_http in a header of its own (one a client sends is dropped). From those:
//! the user's name and groups (`/etc/passwd`, `/etc/group`, and the process's supplementary
//! groups from `/proc`), named in the audit line, and the scope, from `control_groups`:
//! - root and the service's own user are admins (they own the data folder anyway);
//! - anyone else (the socket's mode lets only its group in) gets the highest scope of the
//!   groups `control_groups` names for them, and `read` when it names none.

use crate::config::TokenScope;

/// The header the control relay adds with the peer's credentials.
pub const CONTROL_PEER_HEADER: &str = "X-Sidesync-Control-Peer";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerCred {
    pub uid: u32,
    pub gid: u32,
    pub pid: Option<i32>,
}

impl PeerCred {
    pub fn header_value(&self) -> String {
        match self.pid {
            Some(pid) => format!("uid={} gid={} pid={pid}", self.uid, self.gid),
            None => format!("uid={} gid={}", self.uid, self.gid),
        }
    }

    pub fn parse(value: &str) -> Option<PeerCred> {
        let (mut uid, mut gid, mut pid) = (None, None, None);
        for part in value.split_ascii_whitespace() {
            match part.split_once('=')? {
                ("uid", v) => uid = Some(v.parse().ok()?),
                ("gid", v) => gid = Some(v.parse().ok()?),
                ("pid", v) => pid = Some(v.parse().ok()?),
                _ => return None,
            }
        }
        Some(PeerCred {
            uid: uid?,
            gid: gid?,
            pid,
        })
    }
}

/// The peer as the audit line names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub user: String,
    pub groups: Vec<String>,
}

/// The name of `uid` in a passwd file.
pub fn user_name(passwd: &str, uid: u32) -> Option<String> {
    passwd.lines().find_map(|l| {
        let mut f = l.split(':');
        let name = f.next()?;
        let id: u32 = f.nth(1)?.parse().ok()?;
        (id == uid && !name.is_empty()).then(|| name.to_string())
    })
}

/// The groups of a group file with one of `gids`, or listing `user` as a member.
pub fn group_names(group: &str, gids: &[u32], user: &str) -> Vec<String> {
    let mut out: Vec<String> = group
        .lines()
        .filter_map(|l| {
            let mut f = l.split(':');
            let name = f.next()?;
            let id: u32 = f.nth(1)?.parse().ok()?;
            let members = f.next().unwrap_or("");
            let member = members.split(',').any(|m| m.trim() == user);
            (!name.is_empty() && (gids.contains(&id) || member)).then(|| name.to_string())
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The supplementary groups of a process, from its `/proc/PID/status`, if that process is (still)
/// `uid`'s: a pid reused by someone else tells nothing.
pub fn supplementary_gids(proc_status: &str, uid: u32) -> Vec<u32> {
    let field = |name: &str| {
        proc_status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| {
                v.split_ascii_whitespace()
                    .filter_map(|x| x.parse().ok())
                    .collect::<Vec<u32>>()
            })
            .unwrap_or_default()
    };
    // "Uid: real effective saved fs": the effective one is who asked.
    if field("Uid:").get(1) != Some(&uid) {
        return Vec::new();
    }
    field("Groups:")
}

/// The peer's name and groups, from this machine's files; a uid without a name is `uid N`.
pub fn identify(cred: PeerCred) -> Identity {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let user = user_name(&read("/etc/passwd"), cred.uid).unwrap_or(format!("uid {}", cred.uid));
    let mut gids = vec![cred.gid];
    if let Some(pid) = cred.pid {
        gids.extend(supplementary_gids(
            &read(&format!("/proc/{pid}/status")),
            cred.uid,
        ));
    }
    Identity {
        groups: group_names(&read("/etc/group"), &gids, &user),
        user,
    }
}

/// What the peer may do (see the module's rules).
pub fn scope(
    cred: PeerCred,
    identity: &Identity,
    own_uid: u32,
    control_groups: &[(String, TokenScope)],
) -> TokenScope {
    if cred.uid == 0 || cred.uid == own_uid {
        return TokenScope::Admin;
    }
    control_groups
        .iter()
        .filter(|(g, _)| identity.groups.iter().any(|m| m == g))
        .map(|(_, s)| *s)
        .max()
        .unwrap_or(TokenScope::Read)
}

/// The peer's credentials, as the control front put them in the request.
fn of_request(request: &tiny_http::Request) -> Option<PeerCred> {
    request
        .headers()
        .iter()
        .find(|h| h.field.equiv(CONTROL_PEER_HEADER))
        .and_then(|h| PeerCred::parse(h.value.as_str()))
}

/// Who asks on the control socket (as the audit line names them) and their scope; None when
/// the request does not say (only the control front reaches that server, and it always says).
pub fn caller_of(
    request: &tiny_http::Request,
    control_groups: &[(String, TokenScope)],
) -> Option<(String, TokenScope)> {
    let cred = of_request(request)?;
    let identity = identify(cred);
    let scope = scope(
        cred,
        &identity,
        own_uid().unwrap_or(u32::MAX),
        control_groups,
    );
    Some((format!("{} (uid {})", identity.user, cred.uid), scope))
}

/// Where a control socket request came from, for the audit line.
pub fn peer_label(request: &tiny_http::Request) -> String {
    match of_request(request) {
        Some(c) => format!("control socket, uid {} pid {}", c.uid, c.pid.unwrap_or(0)),
        None => "control socket".to_string(),
    }
}

/// The uid this process runs as.
pub fn own_uid() -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").ok().map(|m| m.uid())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/bash\nsidesync:x:998:998::/var/lib/sidesync:/usr/sbin/nologin\nalice:x:1000:1000:Alice:/home/alice:/bin/bash\nbob:x:1001:1001::/home/bob:/bin/sh\n";
    const GROUP: &str =
        "root:x:0:\nsidesync:x:998:alice,bob\nalice:x:1000:\nbob:x:1001:\nmailops:x:2000:alice\n";

    fn cred(uid: u32, gid: u32) -> PeerCred {
        PeerCred {
            uid,
            gid,
            pid: None,
        }
    }

    #[test]
    fn the_header_round_trips_and_anything_else_is_refused() {
        let c = PeerCred {
            uid: 1000,
            gid: 998,
            pid: Some(42),
        };
        assert_eq!(PeerCred::parse(&c.header_value()), Some(c));
        assert_eq!(
            PeerCred::parse(&cred(5, 6).header_value()),
            Some(cred(5, 6))
        );
        for bad in [
            "",
            "uid=1",
            "uid=x gid=1",
            "uid=1 gid=2 who=root",
            "uid=-1 gid=0",
        ] {
            assert_eq!(PeerCred::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn names_and_groups_come_from_the_files() {
        assert_eq!(user_name(PASSWD, 1000).as_deref(), Some("alice"));
        assert_eq!(user_name(PASSWD, 4242), None);
        assert_eq!(
            group_names(GROUP, &[1000], "alice"),
            vec!["alice", "mailops", "sidesync"]
        );
        assert_eq!(group_names(GROUP, &[1001], "bob"), vec!["bob", "sidesync"]);
        let status = "Name:\tsidesync\nUid:\t1000\t1000\t1000\t1000\nGroups:\t24 2000 \n";
        assert_eq!(supplementary_gids(status, 1000), vec![24, 2000]);
        // A pid now someone else's says nothing about the peer.
        assert!(supplementary_gids(status, 1001).is_empty());
    }

    #[test]
    fn root_and_the_service_are_admins_the_rest_what_control_groups_says() {
        let map = vec![
            ("mailops".to_string(), TokenScope::Admin),
            ("sidesync".to_string(), TokenScope::Send),
        ];
        let alice = Identity {
            user: "alice".into(),
            groups: vec!["alice".into(), "mailops".into(), "sidesync".into()],
        };
        let bob = Identity {
            user: "bob".into(),
            groups: vec!["bob".into(), "sidesync".into()],
        };
        let carol = Identity {
            user: "carol".into(),
            groups: vec!["sidesync".into()],
        };
        assert_eq!(scope(cred(0, 0), &bob, 998, &[]), TokenScope::Admin);
        assert_eq!(scope(cred(998, 998), &bob, 998, &[]), TokenScope::Admin);
        assert_eq!(
            scope(cred(1000, 1000), &alice, 998, &map),
            TokenScope::Admin
        );
        assert_eq!(scope(cred(1001, 1001), &bob, 998, &map), TokenScope::Send);
        // Unnamed in control_groups: read only.
        assert_eq!(scope(cred(1002, 998), &carol, 998, &[]), TokenScope::Read);
    }
}

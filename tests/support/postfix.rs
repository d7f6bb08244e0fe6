//! A private postfix instance: its own config, queue and log in a temporary folder, smtpd on a
//! free loopback port, no DNS. Every domain is virtual(8) and delivers into dovecot's maildirs
//! (the users named at start); any other recipient of those domains is accepted at RCPT and
//! then bounced by virtual(8) as unknown, so postfix itself writes the delivery status report
//! and delivers it to the sender's INBOX, where dovecot serves it. Root only (postfix's master
//! runs as root and drops to the `postfix` user), as the other real-server fixtures run.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use super::dovecot::Dovecot;
use super::{free_port, wait_for};

pub struct Postfix {
    pub port: u16,
    conf: PathBuf,
    dir: PathBuf,
    _tmp: tempfile::TempDir,
}

impl Postfix {
    /// `None` where no private postfix can run (not root, or postfix missing).
    pub fn start(d: &Dovecot, domains: &[&str], users: &[&str]) -> Option<Postfix> {
        let root = Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| o.stdout.trim_ascii() == b"0");
        if !root || !std::path::Path::new("/usr/sbin/postfix").exists() {
            return None;
        }
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().to_path_buf();
        // postfix's daemons (user postfix) must reach their queue and data directories.
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).expect("chmod");
        let (conf, queue, data) = (dir.join("conf"), dir.join("queue"), dir.join("data"));
        for p in [&conf, &queue, &data] {
            fs::create_dir_all(p).expect("mkdir");
        }
        let postfix_uid = id("-u", "postfix");
        std::os::unix::fs::chown(&data, Some(postfix_uid), None).expect("chown data");
        let (uid, gid) = d.mail_owner();
        for u in users {
            d.add_user(u);
        }
        let maps = users
            .iter()
            .map(|u| format!("{u}={u}/Maildir/"))
            .collect::<Vec<_>>()
            .join(", ");
        let port = free_port();
        let main = format!(
            "compatibility_level = 3.6\nqueue_directory = {q}\ndata_directory = {data}\n\
             mail_owner = postfix\nsetgid_group = postdrop\ninet_interfaces = 127.0.0.1\n\
             inet_protocols = ipv4\nmyhostname = mx.example.test\nmydestination =\n\
             mynetworks = 127.0.0.0/8\nsmtpd_recipient_restrictions = permit_mynetworks, reject\n\
             smtpd_reject_unlisted_recipient = no\nsmtp_dns_support_level = disabled\n\
             maillog_file = {dir}/maillog\nmaillog_file_prefixes = {dir}\n\
             virtual_mailbox_domains = {domains}\nvirtual_mailbox_base = {home}\n\
             virtual_mailbox_maps = inline:{{ {maps} }}\nvirtual_uid_maps = static:{uid}\n\
             virtual_gid_maps = static:{gid}\nvirtual_minimum_uid = {uid}\n",
            q = queue.display(),
            data = data.display(),
            dir = dir.display(),
            domains = domains.join(", "),
            home = d.dir.join("home").display(),
        );
        fs::write(conf.join("main.cf"), main).expect("main.cf");
        fs::copy("/etc/postfix/master.cf", conf.join("master.cf")).expect("master.cf");
        let pf = Postfix {
            port,
            conf,
            dir,
            _tmp: tmp,
        };
        pf.postconf(&["-F", "*/*/chroot = n"]);
        pf.postconf(&["-MX", "smtp/inet"]);
        pf.postconf(&[
            "-M",
            &format!("127.0.0.1:{port}/inet=127.0.0.1:{port} inet n - n - - smtpd"),
        ]);
        let started = Command::new("postfix")
            .arg("-c")
            .arg(&pf.conf)
            .arg("start")
            .output()
            .expect("run postfix");
        assert!(started.status.success(), "postfix start: {}", pf.log());
        wait_for("postfix's smtpd", Duration::from_secs(20), || {
            std::net::TcpStream::connect(("127.0.0.1", port))
                .ok()
                .map(|_| ())
        });
        Some(pf)
    }

    fn postconf(&self, args: &[&str]) {
        let ok = Command::new("postconf")
            .arg("-c")
            .arg(&self.conf)
            .args(args)
            .status()
            .expect("run postconf");
        assert!(ok.success(), "postconf {args:?}");
    }

    /// postfix's own log (`maillog_file`).
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("maillog")).unwrap_or_default()
    }
}

impl Drop for Postfix {
    fn drop(&mut self) {
        // Stops this instance's master only (found by its own config directory).
        let _ = Command::new("postfix")
            .arg("-c")
            .arg(&self.conf)
            .arg("stop")
            .output();
    }
}

fn id(flag: &str, name: &str) -> u32 {
    let out = Command::new("id").args([flag, name]).output().expect("id");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("a numeric id")
}

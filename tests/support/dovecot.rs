//! A private dovecot (IMAP and POP3, TLS and plaintext) with its own config, state, certificate and
//! maildirs in a temporary folder, on free loopback ports. Any user name logs in with PASSWORD.

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime};

use super::wait_for;

pub const PASSWORD: &str = "dovecot-test-pw";
static INSTANCE: AtomicU32 = AtomicU32::new(0);
static FILE_SEQ: AtomicU32 = AtomicU32::new(0);

pub struct Dovecot {
    pub dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    pub imap_port: u16,
    pub imaps_port: u16,
    pub pop3_port: u16,
    pub pop3s_port: u16,
    /// SMTP submission (STARTTLS) and submissions (implicit TLS), with AUTH against the same
    /// users, relaying to an smtp-sink that writes every message it takes into `sink/`.
    pub submission_port: u16,
    pub submissions_port: u16,
    pub sink_port: u16,
    sink: Option<Child>,
    /// The CA that signed the server certificate (give it to the client as `ca_file`).
    pub ca_file: PathBuf,
    /// A CA that signed nothing here: a client trusting only it rejects the server.
    pub other_ca_file: PathBuf,
    child: Option<Child>,
    uid: u32,
    gid: u32,
    /// An RFC 7662 introspection URL: XOAUTH2 and OAUTHBEARER logins check tokens there.
    oauth_introspection: Option<String>,
}

fn run(cmd: &mut Command) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn id(flag: &str, user: &str) -> u32 {
    let out = Command::new("id").args([flag, user]).output().expect("id");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("numeric id")
}

/// A CA and a server certificate for 127.0.0.1 / localhost signed by it.
fn make_certificates(dir: &Path) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    for ca in ["ca", "other-ca"] {
        run(Command::new("openssl")
            .current_dir(dir)
            .args([
                "req",
                "-x509",
                "-days",
                "3650",
                "-subj",
                &format!("/CN=sidesync {ca}"),
            ])
            .args(ec)
            .args([
                "-keyout",
                &format!("{ca}.key"),
                "-out",
                &format!("{ca}.pem"),
            ])
            .args(["-addext", "basicConstraints=critical,CA:TRUE"])
            .args(["-addext", "keyUsage=critical,keyCertSign,cRLSign"]));
    }
    run(Command::new("openssl")
        .current_dir(dir)
        .args([
            "req",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ])
        .args(ec));
    fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n\
         keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .expect("write ext");
    run(Command::new("openssl").current_dir(dir).args([
        "x509",
        "-req",
        "-days",
        "3650",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-extfile",
        "server.ext",
    ]));
}

impl Dovecot {
    /// Starts a dovecot in a new temporary folder.
    pub fn start() -> Dovecot {
        let tmp = tempfile::Builder::new()
            .prefix("sidesync-dovecot-")
            .tempdir()
            .expect("tempdir");
        let dir = tmp.path().to_path_buf();
        let mut d = Dovecot::start_in(&dir);
        d._tmp = Some(tmp);
        d
    }

    /// Starts a dovecot that also takes XOAUTH2 and OAUTHBEARER logins, checking each token at
    /// `introspection_url` (the tests' token server, trusted through the fixture's CA).
    pub fn start_with_oauth(make_introspection_url: impl FnOnce(&Path) -> String) -> Dovecot {
        let tmp = tempfile::Builder::new()
            .prefix("sidesync-dovecot-")
            .tempdir()
            .expect("tempdir");
        let dir = tmp.path().to_path_buf();
        fs::create_dir_all(&dir).expect("dir");
        make_certificates(&dir);
        let url = make_introspection_url(&dir);
        let mut d = Dovecot::start_in_with(&dir, Some(url));
        d._tmp = Some(tmp);
        d
    }

    /// Starts a dovecot whose files live in `dir` (kept after the process ends).
    pub fn start_in(dir: &Path) -> Dovecot {
        Dovecot::start_in_with(dir, None)
    }

    fn start_in_with(dir: &Path, oauth_introspection: Option<String>) -> Dovecot {
        fs::create_dir_all(dir).expect("dovecot dir");
        // Dovecot's unprivileged processes must reach the maildirs through this folder.
        fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).expect("chmod");
        let root = is_root();
        let (uid, gid, internal, login) = if root {
            (
                id("-u", "dovecot"),
                id("-g", "dovecot"),
                "dovecot".to_string(),
                "dovenull".to_string(),
            )
        } else {
            let me = String::from_utf8_lossy(
                &Command::new("id").arg("-un").output().expect("id").stdout,
            )
            .trim()
            .to_string();
            (id("-u", &me), id("-g", &me), me.clone(), me)
        };
        if !dir.join("server.pem").exists() {
            make_certificates(dir);
        }
        for f in ["server.key", "ca.pem", "other-ca.pem", "server.pem"] {
            fs::set_permissions(dir.join(f), fs::Permissions::from_mode(0o644)).expect("chmod");
        }
        fs::create_dir_all(dir.join("home")).expect("home");
        chown(&dir.join("home"), uid, gid);
        let n = INSTANCE.fetch_add(1, Ordering::SeqCst);
        let ports = free_ports();
        let d = Dovecot {
            dir: dir.to_path_buf(),
            _tmp: None,
            imap_port: ports[0],
            imaps_port: ports[1],
            pop3_port: ports[2],
            pop3s_port: ports[3],
            submission_port: ports[4],
            submissions_port: ports[5],
            sink_port: ports[6],
            sink: None,
            ca_file: dir.join("ca.pem"),
            other_ca_file: dir.join("other-ca.pem"),
            child: None,
            uid,
            gid,
            oauth_introspection,
        };
        fs::write(dir.join("users"), "").expect("users file");
        fs::write(dir.join("masters"), "").expect("masters file");
        fs::create_dir_all(dir.join("sink")).expect("sink dir");
        chown(&dir.join("sink"), uid, gid);
        let mut d = d;
        // A port picked as free may be taken by the time dovecot binds it (tests run in
        // parallel): pick new ones and try again.
        for attempt in 1.. {
            d.write_conf(&internal, &login, n);
            match d.try_launch() {
                Ok(()) => break,
                Err(out) if out.contains("in use") && attempt < 5 => {
                    let [a, b, c, e, f, g, h] = free_ports();
                    (d.imap_port, d.imaps_port, d.pop3_port, d.pop3s_port) = (a, b, c, e);
                    (d.submission_port, d.submissions_port, d.sink_port) = (f, g, h);
                    if let Some(mut sink) = d.sink.take() {
                        let _ = sink.kill();
                        let _ = sink.wait();
                    }
                }
                Err(out) => panic!("dovecot exited: {out}"),
            }
        }
        d
    }

    fn write_conf(&self, internal: &str, login: &str, n: u32) {
        let (uid, gid) = (self.uid, self.gid);
        let dir = &self.dir;
        let (mechanisms, oauth_passdb) = match &self.oauth_introspection {
            None => ("plain login", String::new()),
            Some(url) => {
                fs::write(
                    dir.join("dovecot-oauth2.conf.ext"),
                    format!(
                        "introspection_url = {url}\nintrospection_mode = post\n\
                         username_attribute = email\nusername_format = sidesync-app\n\
                         active_attribute = active\nactive_value = true\n\
                         tls_ca_cert_file = {}/ca.pem\n",
                        dir.display()
                    ),
                )
                .expect("oauth2 conf");
                (
                    "plain login xoauth2 oauthbearer",
                    format!(
                        "passdb {{\n  driver = oauth2\n  mechanisms = xoauth2 oauthbearer\n  \
                         args = {}/dovecot-oauth2.conf.ext\n}}\n",
                        dir.display()
                    ),
                )
            }
        };
        let conf = format!(
            r#"
instance_name = sidesync-test-{pid}-{n}
base_dir = {dir}/run
state_dir = {dir}/state
log_path = {dir}/dovecot.log
listen = 127.0.0.1
protocols = imap pop3 submission
hostname = localhost
submission_relay_host = 127.0.0.1
submission_relay_port = {sink}
submission_relay_trusted = yes
ssl = yes
ssl_cert = <{dir}/server.pem
ssl_key = <{dir}/server.key
ssl_min_protocol = TLSv1.2
disable_plaintext_auth = no
auth_mechanisms = {mechanisms}
default_internal_user = {internal}
default_login_user = {login}
mail_uid = {uid}
mail_gid = {gid}
first_valid_uid = {uid}
last_valid_uid = 0
first_valid_gid = 0
mail_location = maildir:~/Maildir
mail_max_userip_connections = 500
pop3_uidl_format = %08Xu%08Xv
{oauth_passdb}passdb {{
  driver = passwd-file
  master = yes
  args = scheme=PLAIN {dir}/masters
  pass = yes
}}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN {dir}/users
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={dir}/home/%u
}}
service imap-login {{
  inet_listener imap {{
    port = {imap}
  }}
  inet_listener imaps {{
    port = {imaps}
    ssl = yes
  }}
  service_count = 0
  process_min_avail = 1
}}
service submission-login {{
  inet_listener submission {{
    port = {submission}
  }}
  inet_listener submissions {{
    port = {submissions}
    ssl = yes
  }}
}}
service pop3-login {{
  inet_listener pop3 {{
    port = {pop3}
  }}
  inet_listener pop3s {{
    port = {pop3s}
    ssl = yes
  }}
}}
service anvil {{
  chroot =
}}
"#,
            pid = std::process::id(),
            dir = dir.display(),
            imap = self.imap_port,
            imaps = self.imaps_port,
            pop3 = self.pop3_port,
            pop3s = self.pop3s_port,
            sink = self.sink_port,
            submission = self.submission_port,
            submissions = self.submissions_port,
        );
        // Settings a benchmark needs beyond the tests' (process limits for a thousand IDLE
        // sessions, imap-hibernate): `extra.conf` in its folder, appended as written.
        let conf = conf + &fs::read_to_string(self.dir.join("extra.conf")).unwrap_or_default();
        fs::write(self.dir.join("dovecot.conf"), conf).expect("write dovecot.conf");
    }

    /// Starts the smtp-sink that submission relays to (postfix's test server).
    fn launch_sink(&mut self) {
        if self.sink.is_some() {
            return;
        }
        let log = fs::File::create(self.dir.join("sink.log")).expect("sink log");
        let user = if is_root() {
            "dovecot".to_string()
        } else {
            whoami()
        };
        let child = Command::new("smtp-sink")
            .args(["-u", &user, "-d"])
            .arg(format!("{}/sink/%H%M%S.", self.dir.display()))
            .arg(format!("127.0.0.1:{}", self.sink_port))
            .arg("64")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone"))
            .stderr(log)
            .spawn()
            .expect("start smtp-sink (is postfix installed?)");
        self.sink = Some(child);
        let port = self.sink_port;
        wait_for("smtp-sink to listen", Duration::from_secs(20), || {
            std::net::TcpStream::connect(("127.0.0.1", port))
                .ok()
                .map(|_| ())
        });
    }

    /// Messages smtp-sink took, oldest first: its envelope lines and the message.
    pub fn sunk(&self) -> Vec<String> {
        let mut files: Vec<_> = fs::read_dir(self.dir.join("sink"))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .collect();
        files.sort();
        files
            .iter()
            .filter_map(|p| fs::read_to_string(p).ok())
            .collect()
    }

    /// Gives `user` a login with `password` (the fixture's PASSWORD unless changed).
    pub fn set_password(&self, user: &str, password: &str) {
        let path = self.dir.join("users");
        let text = fs::read_to_string(&path).unwrap_or_default();
        let mut lines: Vec<String> = text
            .lines()
            .filter(|l| l.split(':').next() != Some(user))
            .map(str::to_string)
            .collect();
        lines.push(format!("{user}:{{PLAIN}}{password}"));
        write_atomically(&path, &(lines.join("\n") + "\n"));
    }

    pub fn add_user(&self, user: &str) {
        let text = fs::read_to_string(self.dir.join("users")).unwrap_or_default();
        if !text.lines().any(|l| l.split(':').next() == Some(user)) {
            self.set_password(user, PASSWORD);
        }
    }

    /// A master user: logs in for any user with SASL PLAIN and that user as authorization identity.
    pub fn add_master(&self, name: &str, password: &str) {
        let path = self.dir.join("masters");
        let mut text = fs::read_to_string(&path).unwrap_or_default();
        text.push_str(&format!("{name}:{{PLAIN}}{password}\n"));
        write_atomically(&path, &text);
    }

    fn launch(&mut self) {
        if let Err(out) = self.try_launch() {
            panic!("dovecot exited: {out}");
        }
    }

    /// Starts dovecot; `Err` with its output if it exits before it listens.
    fn try_launch(&mut self) -> Result<(), String> {
        self.launch_sink();
        let log = fs::File::create(self.dir.join("dovecot.stdout")).expect("stdout log");
        let child = Command::new("dovecot")
            .args(["-F", "-c"])
            .arg(self.dir.join("dovecot.conf"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone"))
            .stderr(log)
            .spawn()
            .expect("start dovecot (is dovecot-imapd installed?)");
        self.child = Some(child);
        let port = self.imaps_port;
        let dir = self.dir.clone();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                self.child = None;
                let out = fs::read_to_string(dir.join("dovecot.stdout")).unwrap_or_default();
                return Err(format!("({status}) {out}"));
            }
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(());
            }
            if std::time::Instant::now() > deadline {
                return Err("dovecot did not listen within 20 s".into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .arg(c.id().to_string())
                .stderr(Stdio::null())
                .status();
            let _ = c.wait();
        }
        // The listeners are gone once the master is gone; wait until the port is free.
        let port = self.imaps_port;
        wait_for("dovecot to stop", Duration::from_secs(20), || {
            std::net::TcpStream::connect(("127.0.0.1", port))
                .err()
                .map(|_| ())
        });
    }

    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }

    /// The uid and gid mail files belong to (a private postfix delivers as them).
    pub fn mail_owner(&self) -> (u32, u32) {
        (self.uid, self.gid)
    }

    pub fn maildir(&self, user: &str) -> PathBuf {
        self.dir.join("home").join(user).join("Maildir")
    }

    fn ensure_maildir(&self, user: &str) -> PathBuf {
        let home = self.dir.join("home").join(user);
        let md = home.join("Maildir");
        for sub in ["cur", "new", "tmp"] {
            fs::create_dir_all(md.join(sub)).expect("maildir");
        }
        for p in [
            &home,
            &md,
            &md.join("cur"),
            &md.join("new"),
            &md.join("tmp"),
        ] {
            chown(p, self.uid, self.gid);
        }
        md
    }

    /// Delivers `raw` into the user's INBOX as a maildir file, with maildir `flags` (e.g. "S" for
    /// \Seen) and `received` as its INTERNALDATE. Returns the file name.
    /// The server's private key as the appliance may use it (`status_tls_key`): a copy in `dir`
    /// its owner alone can read (dovecot's own copy is 0644 for its login processes).
    pub fn private_key_in(&self, dir: &Path) -> PathBuf {
        let key = dir.join("status.key");
        fs::copy(self.dir.join("server.key"), &key).expect("copy the key");
        fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).expect("chmod");
        key
    }

    pub fn deliver(&self, user: &str, raw: &[u8], flags: &str, received: SystemTime) -> String {
        self.add_user(user);
        let md = self.ensure_maildir(user);
        self.write_message(&md, raw, flags, received)
    }

    /// Delivers `raw` into the user's folder `name` (created when missing).
    pub fn deliver_to_folder(&self, user: &str, name: &str, raw: &[u8]) -> String {
        self.create_folder(user, name);
        let folder = self.maildir(user).join(format!(".{name}"));
        self.write_message(&folder, raw, "", SystemTime::now())
    }

    fn write_message(&self, md: &Path, raw: &[u8], flags: &str, received: SystemTime) -> String {
        let seq = FILE_SEQ.fetch_add(1, Ordering::SeqCst);
        let secs = received
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let name = format!(
            "{secs}.M{seq}P{}.sidesync,S={}:2,{flags}",
            std::process::id(),
            raw.len()
        );
        let tmp = md.join("tmp").join(&name);
        {
            let mut f = fs::File::create(&tmp).expect("create message");
            f.write_all(raw).expect("write message");
            f.set_modified(received).expect("set mtime");
        }
        chown(&tmp, self.uid, self.gid);
        fs::rename(&tmp, md.join("cur").join(&name)).expect("move into cur");
        name
    }

    /// Delivers `raw` into the user's INBOX as a mail server does: through dovecot's LDA, which
    /// updates the indexes and so wakes IDLE through them.
    pub fn deliver_lda(&self, user: &str, raw: &[u8]) {
        self.ensure_maildir(user);
        let mut child = Command::new("/usr/lib/dovecot/dovecot-lda")
            .arg("-c")
            .arg(self.dir.join("dovecot.conf"))
            .args(["-d", user])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("dovecot-lda (package dovecot-core)");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(raw)
            .expect("write to dovecot-lda");
        let out = child.wait_with_output().expect("dovecot-lda");
        assert!(
            out.status.success(),
            "dovecot-lda: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Appends `raw` to the user's folder `name` (or INBOX) through dovecot itself (IMAP APPEND on
    /// the plaintext port), as delivery (LMTP) or a mail client dragging an email there would:
    /// dovecot's indexes, and so its IDLE and NOTIFY, learn of it at once. A file dropped into
    /// the maildir is noticed only by a scan of the folder, which dovecot's IDLE can miss when
    /// the file lands in the same second as its last scan.
    pub fn append_over_imap(&self, user: &str, name: &str, raw: &[u8]) {
        use std::io::{BufRead, BufReader};
        if name == "INBOX" {
            self.ensure_maildir(user);
        } else {
            self.create_folder(user, name);
        }
        let tcp = std::net::TcpStream::connect(("127.0.0.1", self.imap_port)).expect("connect");
        tcp.set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        let mut w = tcp.try_clone().expect("clone");
        let mut r = BufReader::new(tcp);
        let mut line = String::new();
        let mut until = |r: &mut BufReader<std::net::TcpStream>, start: &str| loop {
            line.clear();
            assert!(r.read_line(&mut line).expect("read") > 0, "dovecot hung up");
            if line.starts_with(start) {
                return line.clone();
            }
        };
        until(&mut r, "* OK");
        write!(w, "a LOGIN \"{user}\" \"{PASSWORD}\"\r\n").expect("write");
        let said = until(&mut r, "a ");
        assert!(said.starts_with("a OK"), "login: {said}");
        write!(w, "b APPEND \"{name}\" {{{}}}\r\n", raw.len()).expect("write");
        until(&mut r, "+");
        w.write_all(raw).expect("write");
        w.write_all(b"\r\n").expect("write");
        let said = until(&mut r, "b ");
        assert!(said.starts_with("b OK"), "append: {said}");
        write!(w, "c LOGOUT\r\n").expect("write");
        until(&mut r, "c ");
    }

    /// Creates a folder (maildir++ `.NAME`) in the user's mailbox.
    pub fn create_folder(&self, user: &str, name: &str) {
        self.add_user(user);
        let md = self.ensure_maildir(user);
        let f = md.join(format!(".{name}"));
        for sub in ["cur", "new", "tmp"] {
            fs::create_dir_all(f.join(sub)).expect("folder");
            chown(&f.join(sub), self.uid, self.gid);
        }
        chown(&f, self.uid, self.gid);
    }

    /// The messages in one of the user's folders (maildir++ `.NAME`).
    pub fn folder_messages(&self, user: &str, name: &str) -> Vec<String> {
        let f = self.maildir(user).join(format!(".{name}"));
        let mut out = Vec::new();
        for sub in ["cur", "new"] {
            for e in fs::read_dir(f.join(sub)).into_iter().flatten().flatten() {
                out.push(fs::read_to_string(e.path()).unwrap_or_default());
            }
        }
        out
    }

    /// The maildir file names in the user's INBOX (flags are the part after ":2,").
    pub fn inbox_files(&self, user: &str) -> Vec<String> {
        let mut out = Vec::new();
        for sub in ["cur", "new"] {
            if let Ok(rd) = fs::read_dir(self.maildir(user).join(sub)) {
                out.extend(
                    rd.filter_map(|e| e.ok())
                        .map(|e| e.file_name().to_string_lossy().to_string()),
                );
            }
        }
        out.sort();
        out
    }

    /// Makes dovecot forget the folder's UIDs: it assigns a new UIDVALIDITY to the same messages.
    pub fn reset_uidvalidity(&mut self, user: &str) {
        self.stop();
        // Dovecot derives UIDVALIDITY from the clock: let the second turn so the new one differs.
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        wait_for(
            "the clock to reach the next second",
            Duration::from_secs(3),
            || {
                let t = SystemTime::now()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                (t > now).then_some(())
            },
        );
        let md = self.maildir(user);
        for entry in fs::read_dir(&md).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().to_string();
            if name == "dovecot-uidlist" || name.starts_with("dovecot.index") {
                let _ = fs::remove_file(entry.path());
            }
        }
        self.launch();
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("dovecot.log")).unwrap_or_default()
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        if let Some(mut c) = self.sink.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill")
                .arg(c.id().to_string())
                .stderr(Stdio::null())
                .status();
            let _ = c.wait();
        }
    }
}

/// Dovecot re-reads a passwd-file whose mtime changed; write it whole, then rename.
fn write_atomically(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, text).expect("write");
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o644)).expect("chmod");
    fs::rename(&tmp, path).expect("rename");
}

/// Seven distinct ports that were free a moment ago (all bound at once, then released).
fn free_ports() -> [u16; 7] {
    let listeners: Vec<std::net::TcpListener> = (0..7)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind"))
        .collect();
    let mut out = [0u16; 7];
    for (o, l) in out.iter_mut().zip(&listeners) {
        *o = l.local_addr().expect("addr").port();
    }
    out
}

fn whoami() -> String {
    String::from_utf8_lossy(&Command::new("id").arg("-un").output().expect("id").stdout)
        .trim()
        .to_string()
}

fn chown(p: &Path, uid: u32, gid: u32) {
    let _ = std::os::unix::fs::chown(p, Some(uid), Some(gid));
}

fn is_root() -> bool {
    String::from_utf8_lossy(&Command::new("id").arg("-u").output().expect("id").stdout).trim()
        == "0"
}

use super::*;

fn parse(text: &str) -> Result<Config, ConfigErrors> {
    Config::parse_with(Path::new("/etc/sidesync/sidesync.toml"), text, true)
}

/// Every message, as `LINE:COL: message`.
fn mistakes(text: &str) -> Vec<String> {
    match parse(text) {
        Ok(_) => panic!("config was accepted:\n{text}"),
        Err(e) => e
            .errors
            .iter()
            .map(|e| {
                assert_eq!(e.file, "/etc/sidesync/sidesync.toml");
                format!("{}:{}: {}", e.line, e.col, e.message)
            })
            .collect(),
    }
}

const GOOD: &str = r#"
[appliance]
data_dir = "/var/lib/sidesync"

[[profile]]
name = "corp"
is_default = true
incoming_server_location = "imap.example.com"
min_polling_interval = "2m"

[[mailbox]]
email_address = "Alice@Example.com"
password = "s3cret"
approval = "approved"
"#;

#[test]
fn a_good_config_gets_defaults() {
    let c = parse(GOOD).expect("valid");
    let p = &c.profiles[0];
    assert_eq!(p.incoming.port, 993, "implicit TLS IMAP defaults to 993");
    assert_eq!(p.incoming.tls, TlsMode::Implicit);
    assert_eq!(p.max_concurrent_connections, 10);
    assert_eq!(p.min_polling_interval, Duration::from_secs(120));
    let m = &c.mailboxes[0];
    assert_eq!(m.email_address, "alice@example.com");
    assert_eq!(
        m.profile.as_deref(),
        Some("corp"),
        "no profile named: the default one"
    );
    assert_eq!(m.username, "alice@example.com");
    assert_eq!(m.approval, Approval::Approved);
    assert_eq!(c.appliance.status_listen.to_string(), "127.0.0.1:8025");
}

#[test]
fn ports_follow_protocol_and_tls() {
    assert_eq!(default_port(Protocol::Imap, TlsMode::StartTls), 143);
    assert_eq!(default_port(Protocol::Pop3, TlsMode::Implicit), 995);
    assert_eq!(default_port(Protocol::Pop3, TlsMode::None), 110);
    assert_eq!(default_port(Protocol::Smtp, TlsMode::Implicit), 465);
    assert_eq!(default_port(Protocol::Smtp, TlsMode::StartTls), 587);
}

#[test]
fn unknown_key_points_at_it() {
    let text = GOOD.replace("min_polling_interval", "min_poling_interval");
    let m = mistakes(&text);
    assert_eq!(m.len(), 1);
    assert!(
        m[0].starts_with("9:1: unknown field `min_poling_interval`"),
        "{m:?}"
    );
}

#[test]
fn syntax_error_points_at_it() {
    let m = mistakes("[appliance]\ndata_dir = \"/x\"\nstatus_listen = \n");
    assert!(m[0].starts_with("3:"), "{m:?}");
}

#[test]
fn bad_port() {
    let text = GOOD.replace(
        "min_polling_interval",
        "incoming_port_number = 70000\nmin_polling_interval",
    );
    let m = mistakes(&text);
    assert_eq!(
        m,
        vec!["9:24: incoming_port_number = 70000 is out of range (1–65535)"]
    );
}

#[test]
fn timeout_over_100_seconds() {
    let text = GOOD.replace(
        "min_polling_interval",
        "timeout_mailbox_connection_after = \"101s\"\nmin_polling_interval",
    );
    let m = mistakes(&text);
    assert_eq!(
        m,
        vec!["9:36: timeout_mailbox_connection_after = 101s is over the upper limit of 100 s"]
    );
}

#[test]
fn mailbox_names_missing_profile() {
    let text = GOOD.replace("approval", "profile = \"sales\"\napproval");
    let m = mistakes(&text);
    assert_eq!(
        m,
        vec!["14:11: mailbox alice@example.com names profile \"sales\", which is not defined"]
    );
}

#[test]
fn two_mailboxes_with_one_address() {
    let text =
        format!("{GOOD}\n[[mailbox]]\nemail_address = \"alice@example.COM\"\npassword = \"x\"\n");
    let m = mistakes(&text);
    assert_eq!(
        m,
        vec!["17:17: a mailbox for alice@example.com is already defined (one mailbox per address)"]
    );
}

#[test]
fn without_credentials_is_rejected() {
    let text = GOOD.replace(
        "min_polling_interval",
        "incoming_credential_retrieval = \"without_credentials\"\nmin_polling_interval",
    );
    let m = mistakes(&text);
    assert_eq!(m.len(), 1);
    assert!(
        m[0].starts_with(
            "9:33: incoming_credential_retrieval = \"without_credentials\" is not valid"
        ),
        "{m:?}"
    );
}

#[test]
fn every_mistake_is_reported_at_once() {
    let text = r#"
[[profile]]
name = "a"
incoming_server_location = "h"
incoming_port_number = 0
max_concurrent_connections = 301
incoming_tls = "ssl"

[[mailbox]]
email_address = "nobody"
profile = "b"
"#;
    let m = mistakes(text);
    assert_eq!(m.len(), 5, "{m:?}");
    assert!(m[0].starts_with("5:24: incoming_port_number = 0"));
    assert!(m[1].starts_with("6:30: max_concurrent_connections = 301"));
    assert!(m[2].starts_with("7:16: incoming_tls = \"ssl\" is not one of"));
    assert!(m[3].starts_with("10:17: email_address = \"nobody\" is not an email address"));
    assert!(m[4].starts_with("11:11: mailbox nobody names profile \"b\""));
}

#[test]
fn profile_credentials_need_identity() {
    let text = GOOD.replace(
        "min_polling_interval",
        "incoming_credential_retrieval = \"profile\"\nincoming_username = \"master\"\nmin_polling_interval",
    );
    let m = mistakes(&text);
    assert!(
        m[0].contains("needs incoming_username and incoming_password"),
        "{m:?}"
    );
    let ok = GOOD.replace(
        "min_polling_interval",
        "incoming_credential_retrieval = \"profile\"\nincoming_username = \"master\"\n\
         incoming_password = \"pw\"\nmin_polling_interval",
    );
    let c = parse(&ok).expect("valid");
    assert!(matches!(
        c.profiles[0].incoming.credentials,
        CredentialSource::Profile { .. }
    ));
    assert!(
        !format!("{c:?}").contains("\"pw\""),
        "a Debug of the config must not show a password"
    );
}

#[test]
fn mailbox_credentials_need_a_password() {
    let text = GOOD.replace("password = \"s3cret\"\n", "");
    let m = mistakes(&text);
    assert!(
        m[0].starts_with("12:17: mailbox alice@example.com needs password"),
        "{m:?}"
    );
}

#[test]
fn missing_ca_file_is_named() {
    let text = GOOD.replace(
        "min_polling_interval",
        "ca_file = \"/nonexistent/ca.pem\"\nmin_polling_interval",
    );
    let m = mistakes(&text);
    assert!(
        m[0].starts_with("9:11: ca_file: cannot read /nonexistent/ca.pem"),
        "{m:?}"
    );
}

#[test]
fn received_after_accepts_dates() {
    let text = GOOD.replace(
        "min_polling_interval",
        "process_emails_received_after = 2024-03-01\nmin_polling_interval",
    );
    let c = parse(&text).expect("valid");
    assert_eq!(
        c.profiles[0]
            .process_emails_received_after
            .map(|d| d.to_rfc3339()),
        Some("2024-03-01T00:00:00+00:00".to_string())
    );
}

#[test]
fn two_default_profiles() {
    let text = format!(
        "{GOOD}\n[[profile]]\nname = \"other\"\nis_default = true\nincoming_server_location = \"x\"\n"
    );
    let m = mistakes(&text);
    assert!(
        m[0].contains("\"corp\" is already the default profile"),
        "{m:?}"
    );
}

#[test]
fn line_col_counts_characters() {
    assert_eq!(line_col("ab\ncé d", 7), (2, 4));
    assert_eq!(line_col("x", 0), (1, 1));
}

const POP3: &str = r#"
[[profile]]
name = "pop"
is_default = true
server_type = "pop3_smtp"
incoming_server_location = "pop.example.com"
pop3_delete_after_days = 14

[[mailbox]]
email_address = "bob@example.com"
password = "x"
"#;

#[test]
fn a_pop3_profile_takes_its_port_and_delete_age() {
    let c = parse(POP3).expect("valid");
    let p = &c.profiles[0];
    assert_eq!(p.incoming.port, 995);
    assert_eq!(p.pop3_delete_after_days, Some(14));
    assert!(c.mailboxes[0].tracking_folders.is_empty());
}

#[test]
fn tracking_folders_do_not_apply_to_pop3() {
    let text = POP3.replace(
        "password = \"x\"",
        "password = \"x\"\ntracking_folders = [\"Projects\"]",
    );
    let m = mistakes(&text);
    assert_eq!(m.len(), 1, "{m:?}");
    assert!(
        m[0].starts_with("12:20: mailbox bob@example.com: tracking folders do not apply to POP3"),
        "{m:?}"
    );
}

#[test]
fn pop3_only_settings_are_refused_elsewhere() {
    let text = GOOD.replace(
        "min_polling_interval = \"2m\"",
        "pop3_delete_after_days = 3",
    );
    let m = mistakes(&text);
    assert!(
        m[0].contains("pop3_delete_after_days applies to pop3_smtp profiles only"),
        "{m:?}"
    );
    let m = mistakes(&POP3.replace("= 14", "= -1\nsave_sent_copy = true"));
    assert_eq!(m.len(), 2, "{m:?}");
    assert!(
        m.iter()
            .any(|e| e.contains("a pop3_smtp profile cannot save sent copies"))
    );
    assert!(
        m.iter()
            .any(|e| e.contains("pop3_delete_after_days = -1 is out of range"))
    );
    let m = mistakes(&GOOD.replace(
        "approval = \"approved\"",
        "approval = \"approved\"\ntracking_folders = [\"Projects\", \"Projects\"]",
    ));
    assert!(
        m[0].contains("tracking folder \"Projects\" is named twice"),
        "{m:?}"
    );
    let c = parse(&GOOD.replace(
        "approval = \"approved\"",
        "approval = \"approved\"\ntracking_folders = [\"Projects\"]\n\
         [[mailbox.tracking_folder]]\nfolder = \"Contoso\"\nregarding = \"account:contoso\"",
    ))
    .expect("valid");
    assert_eq!(
        c.mailboxes[0].tracking_folders,
        vec![
            TrackingFolder {
                folder: "Projects".into(),
                regarding: None
            },
            TrackingFolder {
                folder: "Contoso".into(),
                regarding: Some("account:contoso".into())
            }
        ]
    );
    let m = mistakes(&GOOD.replace("approval = \"approved\"", "tracking_folders = [\"inbox\"]"));
    assert!(
        m[0].contains("tracking folder \"inbox\" is not valid"),
        "{m:?}"
    );
}

#[test]
fn values_that_make_no_sense_are_refused() {
    let text = r#"
[appliance]
retry_interval = 0

[[profile]]
name = "p"
is_default = true
incoming_server_location = "h"
timeout_mailbox_connection_after = "0s"
min_polling_interval = 0
sync_deadline = "0s"
max_message_size = 10
server_type = "pop3_smtp"
move_undelivered_emails = true

[[mailbox]]
email_address = "a@x"
password = "pw"
incoming_delivery = "forward_mailbox"
"#;
    assert_eq!(
        mistakes(text),
        vec![
            "3:18: retry_interval = 0s makes no sense; it must be at least 1s",
            "9:36: timeout_mailbox_connection_after = 0s makes no sense; it must be at least 1s",
            "10:24: min_polling_interval = 0s makes no sense; it must be at least 1s",
            "11:17: sync_deadline = 0s makes no sense; it must be at least 1s",
            "12:20: max_message_size = 10 is out of range (1024–1073741824)",
            "14:27: profile \"p\": move_undelivered_emails needs IMAP folders; a POP3 maildrop \
             has none (emails that fail are listed as item failures)",
            "19:21: mailbox a@x: incoming_delivery = \"forward_mailbox\" needs a forward mailbox \
             (a [[mailbox]] with forward_mailbox = true) to receive its forwards",
        ]
    );
}

#[test]
fn bounds_have_defaults() {
    let c = parse(GOOD).expect("valid");
    let p = &c.profiles[0];
    assert_eq!(p.max_message_size, 50 << 20);
    assert_eq!(p.sync_deadline, Duration::from_secs(300));
    assert_eq!(c.appliance.max_bytes_in_flight, 256 << 20);
    assert_eq!(c.appliance.store_cache_bytes, 32 << 20);
    assert_eq!(c.appliance.item_failure_max_tries, 3);
}

#[test]
fn a_poison_email_must_be_skipped_before_the_mailbox_is_disabled() {
    let text = GOOD.replace(
        "data_dir = \"/var/lib/sidesync\"",
        "data_dir = \"/var/lib/sidesync\"\ntransient_failure_retries = 4\nitem_failure_max_tries = 5",
    );
    assert_eq!(
        mistakes(&text),
        vec![
            "5:26: item_failure_max_tries = 5 is more than transient_failure_retries = 4: the \
             mailbox would be disabled before a failing email is skipped"
        ]
    );
}

#[test]
fn the_store_cache_is_configured_within_bounds() {
    let sized = GOOD.replace(
        "data_dir = \"/var/lib/sidesync\"",
        "data_dir = \"/var/lib/sidesync\"\nstore_cache_bytes = 134217728",
    );
    let c = parse(&sized).expect("valid");
    assert_eq!(c.appliance.store_cache_bytes, 128 << 20);
    let tiny = GOOD.replace(
        "data_dir = \"/var/lib/sidesync\"",
        "data_dir = \"/var/lib/sidesync\"\nstore_cache_bytes = 4096",
    );
    assert_eq!(
        mistakes(&tiny),
        vec!["4:21: store_cache_bytes = 4096 is out of range (1048576–68719476736)"]
    );
}

#[test]
fn a_plaintext_login_must_be_allowed_explicitly() {
    let text = GOOD.replace(
        "min_polling_interval",
        "incoming_tls = \"none\"\nmin_polling_interval",
    );
    assert_eq!(
        mistakes(&text),
        vec![
            "9:16: incoming_tls = \"none\" sends the password in the clear; set \
             allow_plaintext_login = true in profile \"corp\" if that is meant"
        ]
    );
    let allowed = text.replace(
        "incoming_tls = \"none\"",
        "incoming_tls = \"none\"\nallow_plaintext_login = true",
    );
    assert_eq!(
        parse(&allowed).expect("allowed").profiles[0].incoming.tls,
        TlsMode::None
    );
}

#[test]
fn a_secret_file_others_can_read_is_refused_with_the_fix() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let pw = dir.path().join("alice.password");
    std::fs::write(&pw, "s3cret\n").expect("write");
    std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let text = GOOD.replace(
        "password = \"s3cret\"",
        &format!("password_file = \"{}\"", pw.display()),
    );
    let m = mistakes(&text);
    assert!(
        m.iter()
            .any(|e| e.contains("can be read by others (mode 644); run chmod 600 on it")),
        "{m:?}"
    );
    std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let c = parse(&text).expect("owner-only is fine");
    assert_eq!(
        c.mailboxes[0].password.as_ref().map(|p| p.expose()),
        Some("s3cret")
    );
}

#[test]
fn relevance_defaults_follow_the_owner_then_the_profile_then_the_mailbox() {
    let two = format!(
        "{GOOD}\n[[mailbox]]\nemail_address = \"sales@example.com\"\nowner = \"queue\"\n\
         password = \"x\"\n"
    );
    let c = parse(&two).expect("valid");
    assert_eq!(c.mailboxes[0].track, Track::Responses, "users: responses");
    assert_eq!(c.mailboxes[1].track, Track::All, "queues: all");
    let c = parse(&two.replace(
        "min_polling_interval = \"2m\"",
        "min_polling_interval = \"2m\"\ntrack = \"known_contacts\"",
    ))
    .expect("valid");
    assert_eq!(c.mailboxes[0].track, Track::KnownContacts);
    assert_eq!(c.mailboxes[1].track, Track::KnownContacts);
    let c = parse(&two.replace("owner = \"queue\"", "owner = \"queue\"\ntrack = \"none\""))
        .expect("valid");
    assert_eq!(c.mailboxes[1].track, Track::None);
    let d = c.directory();
    assert_eq!(d.mailboxes["sales@example.com"].track, Track::None);
    assert!(d.mailboxes["sales@example.com"].queue);
    let m = mistakes(&GOOD.replace("approval", "track = \"most\"\napproval"));
    assert!(m[0].contains("track = \"most\" is not one of"), "{m:?}");
}

#[test]
fn changing_what_is_tracked_needs_no_new_test() {
    let a = parse(GOOD).expect("valid");
    let b = parse(&GOOD.replace("approval", "track = \"all\"\napproval")).expect("valid");
    assert_eq!(a.mailboxes[0].fingerprint, b.mailboxes[0].fingerprint);
    let mut c = parse(&GOOD.replace("s3cret", "other")).expect("valid");
    // Passwords enter the fingerprint only under the key file's MAC key.
    assert_eq!(a.mailboxes[0].fingerprint, c.mailboxes[0].fingerprint);
    let mut a = a;
    a.key_fingerprints(&[7; 32]);
    c.key_fingerprints(&[7; 32]);
    assert_ne!(a.mailboxes[0].fingerprint, c.mailboxes[0].fingerprint);
    let mut other_key = parse(&GOOD.replace("s3cret", "other")).expect("valid");
    other_key.key_fingerprints(&[8; 32]);
    assert_ne!(
        other_key.mailboxes[0].fingerprint, c.mailboxes[0].fingerprint,
        "keyed"
    );
}

#[test]
fn tracking_folder_rules() {
    let queue = GOOD.replace(
        "approval = \"approved\"",
        "owner = \"queue\"\n[[mailbox.tracking_folder]]\nfolder = \"X\"",
    );
    let m = mistakes(&queue);
    assert!(m[0].contains("a queue has no tracking folders"), "{m:?}");
    let bad = GOOD.replace(
        "approval = \"approved\"",
        "[[mailbox.tracking_folder]]\nfolder = \"X\"\nregarding = \"contoso\"",
    );
    let m = mistakes(&bad);
    assert!(
        m[0].contains("regarding \"contoso\" is not a record reference"),
        "{m:?}"
    );
    let many: String = (0..26)
        .map(|i| format!("[[mailbox.tracking_folder]]\nfolder = \"F{i}\"\n"))
        .collect();
    let m = mistakes(&GOOD.replace("approval = \"approved\"", &many));
    assert!(m[0].contains("26 tracking folders; at most 25"), "{m:?}");
}

#[test]
fn correlation_switches_and_token_widths() {
    let c = parse(GOOD).expect("valid");
    assert!(c.appliance.correlation.in_reply_to);
    assert_eq!(
        c.appliance.correlation.tracking_token,
        Some(crate::tracking::token::TokenFormat::default())
    );
    assert!(!c.appliance.correlation.smart_matching);
    let c = parse(&GOOD.replace(
        "data_dir = \"/var/lib/sidesync\"",
        "data_dir = \"/var/lib/sidesync\"\ncorrelation_in_reply_to = false\n\
         correlation_smart_matching = true\ntracking_token_prefix = \"Case#\"\n\
         tracking_token_user_digits = 5\ntracking_token_counter_digits = 6",
    ))
    .expect("valid");
    let t = c.appliance.correlation.tracking_token.expect("token on");
    assert_eq!(
        (t.prefix.as_str(), t.user_digits, t.counter_digits),
        ("Case#", 5, 6)
    );
    assert!(!c.appliance.correlation.in_reply_to && c.appliance.correlation.smart_matching);
    let m = mistakes(&GOOD.replace(
        "data_dir = \"/var/lib/sidesync\"",
        "data_dir = \"/var/lib/sidesync\"\ntracking_token_user_digits = 12",
    ));
    assert!(m[0].contains("tracking_token_user_digits"), "{m:?}");
}

#[test]
fn a_broken_contacts_file_is_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("contacts.csv");
    std::fs::write(&file, "carol@contoso.com,contact:42\nbroken line\n").expect("write");
    let text = GOOD.replace(
        "data_dir = \"/var/lib/sidesync\"",
        &format!(
            "data_dir = \"/var/lib/sidesync\"\ncontacts_file = \"{}\"",
            file.display()
        ),
    );
    let m = mistakes(&text);
    assert!(
        m[0].contains("line 2: \"broken line\" is not an email address"),
        "{m:?}"
    );
    std::fs::write(&file, "carol@contoso.com,contact:42\n").expect("write");
    assert!(parse(&text).is_ok());
    let m = mistakes(&text.replace("contacts.csv", "missing.csv"));
    assert!(m[0].contains("missing.csv"), "{m:?}");
}

#[test]
fn forward_mailbox_rules() {
    let forward = "\n[[mailbox]]\nemail_address = \"fw@example.com\"\npassword = \"x\"\nforward_mailbox = true\n";
    let users = GOOD.replace(
        "approval = \"approved\"",
        "incoming_delivery = \"forward_mailbox\"",
    );
    let c = parse(&format!(
        "{users}{forward}process_and_delete_emails = true\n"
    ))
    .expect("valid");
    let fw = c.mailbox("fw@example.com").expect("forward mailbox");
    assert!(fw.forward_mailbox && fw.process_and_delete_emails);
    assert_eq!(
        fw.outgoing_delivery,
        OutgoingDelivery::None,
        "a forward mailbox only receives"
    );
    let d = c.directory();
    assert!(d.forwarding.contains("alice@example.com"));
    assert!(
        !d.mailboxes.contains_key("fw@example.com"),
        "not a party of anything"
    );
    let m = mistakes(&format!(
        "{users}{forward}outgoing_delivery = \"server_side_sync\"\ntrack = \"all\"\n"
    ));
    assert!(
        m[0].contains("fw@example.com is a forward mailbox: its outgoing_delivery must be \"none\"; it has no track"),
        "{m:?}"
    );
    let m = mistakes(&GOOD.replace("approval", "process_and_delete_emails = true\napproval"));
    assert!(
        m[0].contains("process_and_delete_emails applies to a forward mailbox only"),
        "{m:?}"
    );
}

const OAUTH_APP: &str = r#"
[[profile]]
name = "m365"
is_default = true
incoming_server_location = "outlook.office365.com"
outgoing_server_location = "smtp.office365.com"
outgoing_tls = "starttls"
incoming_authentication_protocol = "xoauth2"
oauth_token_endpoint = "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token"
oauth_client_id = "11111111-2222-3333-4444-555555555555"
oauth_client_secret = "app-secret"
oauth_scope = "https://outlook.office365.com/.default"
oauth_client_secret_expires = 2027-06-30

[[mailbox]]
email_address = "alice@contoso.com"
approval = "approved"
"#;

#[test]
fn oauth_client_credentials_need_no_mailbox_password() {
    let c = parse(OAUTH_APP).expect("valid");
    let p = c.profile("m365").expect("profile");
    let o = p.oauth.as_ref().expect("oauth");
    assert_eq!(o.grant, OAuthGrant::ClientCredentials);
    assert_eq!(o.scope, "https://outlook.office365.com/.default");
    assert_eq!(
        o.client_secret.as_ref().map(|s| s.expose()),
        Some("app-secret")
    );
    assert_eq!(o.expiry_warning_days, 14);
    assert!(o.client_secret_expires.is_some());
    assert_eq!(p.incoming.auth, AuthProtocol::XOAuth2);
    assert_eq!(
        p.outgoing.as_ref().map(|e| e.auth),
        Some(AuthProtocol::Auto)
    );
    assert!(c.mailboxes[0].password.is_none());
}

#[test]
fn oauth_mistakes_are_named() {
    // A bearer mechanism without a token source.
    let m = mistakes(&GOOD.replace(
        "min_polling_interval = \"2m\"",
        "incoming_authentication_protocol = \"oauthbearer\"",
    ));
    assert!(
        m.iter()
            .any(|e| e.contains("logs in with OAuth tokens: set oauth_token_endpoint")),
        "{m:?}"
    );
    // Not https, no secret, no scope.
    let m = mistakes(
        &OAUTH_APP
            .replace(
                "https://login.microsoftonline.com",
                "http://login.microsoftonline.com",
            )
            .replace("oauth_client_secret = \"app-secret\"\n", "")
            .replace(
                "oauth_scope = \"https://outlook.office365.com/.default\"\n",
                "",
            ),
    );
    assert!(
        m.iter()
            .any(|e| e.contains("oauth_token_endpoint: \"http://")),
        "{m:?}"
    );
    assert!(
        m.iter()
            .any(|e| e.contains("needs oauth_client_secret_file")),
        "{m:?}"
    );
    assert!(
        m.iter()
            .any(|e| e.contains("client credentials need oauth_scope")),
        "{m:?}"
    );
    // A password mechanism with OAuth; oauth keys without the endpoint.
    let m = mistakes(&OAUTH_APP.replace("\"xoauth2\"", "\"plain\""));
    assert!(
        m.iter()
            .any(|e| e.contains("must be \"auto\", \"xoauth2\" or \"oauthbearer\"")),
        "{m:?}"
    );
    let m = mistakes(&GOOD.replace("min_polling_interval = \"2m\"", "oauth_client_id = \"x\""));
    assert!(
        m.iter()
            .any(|e| e.contains("the oauth_* keys need oauth_token_endpoint")),
        "{m:?}"
    );
    // Delegated: every mailbox brings its refresh token; a stray one is named.
    let delegated = OAUTH_APP.replace(
        "oauth_client_secret = \"app-secret\"",
        "oauth_grant = \"refresh_token\"",
    );
    let m = mistakes(&delegated);
    assert!(
        m.iter()
            .any(|e| e.contains("mailbox alice@contoso.com needs refresh_token_file")),
        "{m:?}"
    );
    let ok = parse(&format!(
        "{delegated}refresh_token = \"1//rt\"\nrefresh_token_expires = 2027-01-01\n"
    ))
    .expect("valid");
    assert_eq!(
        ok.mailboxes[0].refresh_token.as_ref().map(|t| t.expose()),
        Some("1//rt")
    );
    let m = mistakes(&format!("{GOOD}refresh_token = \"1//rt\"\n"));
    assert!(
        m.iter()
            .any(|e| e.contains("a refresh token needs a profile with oauth_grant")),
        "{m:?}"
    );
}

#[test]
fn oauth_certificates_come_with_their_key_and_not_with_a_secret() {
    let m = mistakes(&OAUTH_APP.replace(
        "oauth_client_secret = \"app-secret\"",
        "oauth_client_certificate = \"/etc/hostname\"",
    ));
    assert!(
        m.iter()
            .any(|e| e.contains("oauth_client_certificate and oauth_client_key_file go together")),
        "{m:?}"
    );
    // The key is owner-only (a key others can read is refused before it is read).
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let key = dir.path().join("app.key");
    std::fs::write(&key, "not a key\n").expect("write");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let m = mistakes(&OAUTH_APP.replace(
        "oauth_client_secret = \"app-secret\"",
        &format!(
            "oauth_client_secret = \"s\"\noauth_client_certificate = \"/etc/hostname\"\n\
             oauth_client_key_file = \"{}\"",
            key.display()
        ),
    ));
    assert!(m.iter().any(|e| e.contains("not both")), "{m:?}");
    assert!(
        m.iter()
            .any(|e| e.contains("oauth client certificate: /etc/hostname: not a PEM certificate")),
        "{m:?}"
    );
}

#[test]
fn idle_and_kept_sessions_are_for_imap_profiles() {
    let text = r#"
[[profile]]
name = "pop"
is_default = true
server_type = "pop3_smtp"
incoming_server_location = "pop.example.com"
idle = true
keep_sessions_open = true

[[mailbox]]
email_address = "a@example.com"
password = "s3cret"
"#;
    let m = mistakes(text);
    assert_eq!(m.len(), 2, "{m:?}");
    assert!(
        m[0].starts_with("7:8: idle = true is for IMAP profiles"),
        "{m:?}"
    );
    assert!(
        m[1].starts_with("8:22: keep_sessions_open = true is for IMAP profiles"),
        "{m:?}"
    );
    let imap = text.replace("server_type = \"pop3_smtp\"\n", "");
    let c = parse(&imap).expect("valid for IMAP");
    assert!(c.profiles[0].idle && c.profiles[0].keep_sessions_open);
}

#[test]
fn the_store_compression_level_is_one_unless_configured_within_zstds_levels() {
    assert_eq!(
        parse(GOOD)
            .expect("valid")
            .appliance
            .store_compression_level,
        1
    );
    let with = |line: &str| {
        GOOD.replace(
            "data_dir = \"/var/lib/sidesync\"",
            &format!("data_dir = \"/var/lib/sidesync\"\n{line}"),
        )
    };
    let fast = parse(&with("store_compression_level = -30")).expect("valid");
    assert_eq!(fast.appliance.store_compression_level, -30);
    assert_eq!(
        mistakes(&with("store_compression_level = 22")),
        vec!["4:27: store_compression_level = 22 is out of range (-100–19)"]
    );
}

/// A private key is a secret like a password: the status page's TLS key and an OAuth client's
/// (or service account's, which opens every mailbox of a domain) key others can read are refused.
#[test]
fn private_key_files_others_can_read_are_refused_with_the_fix() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let key = dir.path().join("k.pem");
    std::fs::write(&key, "-----BEGIN PRIVATE KEY-----\n").expect("write");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).expect("chmod");
    let refused = |m: &[String], name: &str| {
        m.iter().any(|e| {
            e.contains(&format!("{name} {}", key.display()))
                && e.contains("can be read by others (mode 640); run chmod 600 on it")
        })
    };
    let status = GOOD.replace(
        "data_dir = \"/var/lib/sidesync\"",
        &format!(
            "data_dir = \"/var/lib/sidesync\"\nstatus_tls_cert = \"/etc/hostname\"\n\
             status_tls_key = \"{}\"",
            key.display()
        ),
    );
    let m = mistakes(&status);
    assert!(refused(&m, "status_tls_key"), "{m:?}");
    let service_account = OAUTH_APP.replace(
        "oauth_client_secret = \"app-secret\"",
        &format!(
            "oauth_grant = \"service_account\"\noauth_client_key_file = \"{}\"",
            key.display()
        ),
    );
    let m = mistakes(&service_account);
    assert!(refused(&m, "oauth_client_key_file"), "{m:?}");
    // Owner-only passes this check (and goes on to be read as a key).
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let any = |text: &str| parse(text).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(!any(&status).contains("can be read by others"));
    assert!(!any(&service_account).contains("can be read by others"));
}

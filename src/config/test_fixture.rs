//! A small config for the tests of per-profile and per-mailbox keys: one profile (`#PROFILE` is
//! where its extra lines go), alice (`#ALICE`) and the sales queue.

use std::path::Path;

use super::{Config, ConfigErrors};

const TWO: &str = r#"
[appliance]
data_dir = "/var/lib/sidesync"

[[profile]]
name = "corp"
is_default = true
incoming_server_location = "imap.example.com"
#PROFILE

[[mailbox]]
email_address = "alice@example.com"
password = "s3cret"
#ALICE

[[mailbox]]
email_address = "sales@example.com"
owner = "queue"
password = "s3cret"
"#;

/// The config with `profile` in the profile and `alice` in alice's mailbox.
pub(super) fn two_mailboxes(profile: &str, alice: &str) -> Result<Config, ConfigErrors> {
    let text = TWO.replace("#PROFILE", profile).replace("#ALICE", alice);
    Config::parse_with(Path::new("/etc/sidesync/sidesync.toml"), &text, true)
}

//! An appliance under test: a temporary folder with an API token, a config written from parts,
//! and the running binary on a free status port.

use std::path::{Path, PathBuf};

use sidesync::store::Store;

use super::free_port;
use super::sidesync::Sidesync;

pub const TOKEN: &str = "test-token-0123456789abcdef";

pub struct Setup {
    pub dir: tempfile::TempDir,
    pub port: u16,
}

impl Setup {
    pub fn new() -> Setup {
        let dir = tempfile::tempdir().expect("tempdir");
        let token = dir.path().join("api.token");
        std::fs::write(&token, format!("{TOKEN}\n")).expect("token");
        // Secret files must be the owner's alone.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        Setup {
            dir,
            port: free_port(),
        }
    }

    /// Writes the config: `[appliance]` with a 1 s retry interval plus `appliance_extra`, then `rest`.
    pub fn write(&self, appliance_extra: &str, rest: &str) -> PathBuf {
        let path = self.dir.path().join("sidesync.toml");
        std::fs::write(
            &path,
            format!(
                "[appliance]\nallow_plaintext_passwords = true\ndata_dir = \"{}\"\nstatus_listen = \"127.0.0.1:{}\"\napi_token_file = \"{}\"\n\
                 retry_interval = \"1s\"\n{appliance_extra}\n{rest}",
                self.dir.path().join("data").display(),
                self.port,
                self.dir.path().join("api.token").display()
            ),
        )
        .expect("config");
        path
    }

    pub fn start(&self, config: &Path) -> Sidesync {
        Sidesync::start(config, &self.dir.path().join("sidesync.log"), self.port)
    }

    pub fn store(&self) -> Store {
        Store::open(&self.dir.path().join("data")).expect("store")
    }
}

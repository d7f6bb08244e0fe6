//! Replacing a file the appliance reads (its config, its key file), atomically and without
//! changing who may read it. An admin runs `sidesync secret rotate` as root on the packaged
//! layout, where `sidesync.toml` is root:sidesync 0640 and `secret.key` sidesync:sidesync 0600: a
//! replacement made by root and owned by root would leave the service unable to read either,
//! and its next start would fail. So the new file takes the old one's owner, group and mode (a
//! file made new takes its folder's owner and group), set on the temporary file before the
//! rename: the replacement is never readable by anyone the old file was not.

use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Writes `bytes` to `path` in place of what is there (temporary file, fsync, rename, fsync of
/// the folder). `new_mode` applies when there was no file yet.
pub fn replace(path: &Path, bytes: &[u8], new_mode: u32) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let (uid, gid, mode) = match std::fs::metadata(path) {
        Ok(m) => (m.uid(), m.gid(), m.mode() & 0o7777),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let d = std::fs::metadata(dir)?;
            (d.uid(), d.gid(), new_mode & 0o777)
        }
        Err(e) => return Err(e),
    };
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".sidesync-new");
    let tmp = dir.join(name);
    let _ = std::fs::remove_file(&tmp);
    let write = || -> io::Result<()> {
        // Owner-only until owner and mode are the old file's.
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        // Only when the new file is not already theirs: the service itself (its own files, in
        // its own folder) never needs to, and its unit's system call filter refuses chown.
        let made = f.metadata()?;
        if (made.uid(), made.gid()) != (uid, gid) {
            std::os::unix::fs::fchown(&f, Some(uid), Some(gid)).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!(
                        "cannot give the new file the owner {uid}:{gid} of {} ({e}); run this as \
                     root or as that owner",
                        path.display()
                    ),
                )
            })?;
        }
        f.set_permissions(std::fs::Permissions::from_mode(mode))?;
        f.write_all(bytes)?;
        f.sync_all()
    };
    if let Err(e) = write() {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    std::fs::rename(&tmp, path)?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_replacement_keeps_the_mode_and_a_new_file_takes_the_given_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("sidesync.toml");
        std::fs::write(&p, "old").expect("write");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).expect("chmod");
        replace(&p, b"new", 0o600).expect("replace");
        assert_eq!(std::fs::read_to_string(&p).expect("read"), "new");
        let m = std::fs::metadata(&p).expect("meta");
        assert_eq!(m.mode() & 0o777, 0o640);
        let fresh = dir.path().join("secret.key");
        replace(&fresh, b"k", 0o600).expect("new file");
        assert_eq!(
            std::fs::metadata(&fresh).expect("meta").mode() & 0o777,
            0o600
        );
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .expect("list")
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".sidesync-new"))
            .collect();
        assert!(left.is_empty(), "no temporary file left");
    }
}

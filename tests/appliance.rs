//! The appliance files: the annotated example config is valid, and the systemd unit verifies and
//! rates a low exposure.

mod support;

use std::process::Command;

#[test]
fn the_annotated_example_config_is_valid() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pw = dir.path().join("alice.password");
    std::fs::write(&pw, "example\n").expect("pw");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let text = std::fs::read_to_string("appliance/sidesync.toml").expect("example config");
    assert!(text.contains("/etc/sidesync/alice.password"));
    let path = dir.path().join("sidesync.toml");
    std::fs::write(
        &path,
        text.replace("/etc/sidesync/alice.password", &pw.display().to_string()),
    )
    .expect("write");
    let out = Command::new(support::sidesync::binary())
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .expect("check-config");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_config_the_package_installs_is_valid_and_starts_empty() {
    let out = Command::new(support::sidesync::binary())
        .args([
            "check-config",
            "--config",
            "appliance/sidesync-initial.toml",
        ])
        .output()
        .expect("check-config");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("(0 profiles, 0 mailboxes)"), "{said}");
}

/// The unit, pointing at the binary just built so that `verify` can check ExecStart.
fn unit_file(dir: &std::path::Path) -> std::path::PathBuf {
    let unit = std::fs::read_to_string("appliance/sidesync.service").expect("unit");
    let path = dir.join("sidesync.service");
    let binary = support::sidesync::binary();
    std::fs::write(
        &path,
        unit.replace("/usr/bin/sidesync", &binary.display().to_string()),
    )
    .expect("write unit");
    path
}

#[test]
fn the_systemd_unit_verifies() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(unit_file(dir.path()))
        .output()
        .expect("systemd-analyze (package systemd) is installed by the test command");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && err.trim().is_empty(), "{err}");
}

/// A core dump would hold every password and token in memory; the unit forbids them (systemd's
/// exposure score does not count this, so it is checked here).
#[test]
fn the_systemd_unit_allows_no_core_dumps() {
    let unit = std::fs::read_to_string("appliance/sidesync.service").expect("unit");
    let limits: Vec<&str> = unit
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("LimitCORE="))
        .collect();
    assert_eq!(limits, vec!["LimitCORE=0"], "{unit}");
}

#[test]
fn the_systemd_unit_exposure_is_at_most_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(unit_file(dir.path()))
        .output()
        .expect("systemd-analyze");
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_else(|| panic!("{text}"));
    let level: f64 = line
        .split(':')
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("cannot read the level in {line:?}"));
    assert!(level <= 2.0, "{line}");
}

/// The StatefulSet's config and manifests: its `sidesync.toml` checks with the Secret as the
/// credentials directory and a shard from the pod index, and every resource validates against
/// the Kubernetes schemas (kubernetes-validate from PyPI, strict, no cluster needed).
#[test]
fn the_kubernetes_statefulset_validates_and_its_config_checks() {
    let manifest = std::fs::read_to_string("appliance/kubernetes/sidesync.yaml").expect("manifest");
    let config: String = manifest
        .split("  sidesync.toml: |\n")
        .nth(1)
        .expect("the ConfigMap's sidesync.toml")
        .lines()
        .take_while(|l| l.is_empty() || l.starts_with("    "))
        .map(|l| format!("{}\n", l.strip_prefix("    ").unwrap_or(l)))
        .collect();
    let dir = tempfile::tempdir().expect("tempdir");
    let creds = dir.path().join("credentials");
    std::fs::create_dir(&creds).expect("credentials");
    std::fs::write(creds.join("api-token"), "a-long-enough-api-token-0123").expect("token");
    std::fs::write(
        creds.join("prometheus-token"),
        "another-long-enough-token-01",
    )
    .expect("token");
    std::fs::write(creds.join("alice"), "pw").expect("alice");
    // The listener faces the pod network: never its status without TLS, nor plain HTTP probes.
    let setting = |key: &str| {
        config
            .lines()
            .find_map(|l| l.strip_prefix(key)?.trim().strip_prefix('=').map(str::trim))
    };
    assert_eq!(setting("status_listen"), Some("\"0.0.0.0:8025\""));
    assert!(setting("status_tls_cert").is_some(), "{config}");
    assert_ne!(
        setting("status_public"),
        Some("true"),
        "status public: {config}"
    );
    let probes = manifest.matches("path: /healthz").count();
    assert!(probes >= 2, "{manifest}");
    assert_eq!(
        manifest.matches("scheme: HTTPS").count(),
        probes,
        "{manifest}"
    );
    let tls = dir.path().join("tls");
    std::fs::create_dir(&tls).expect("tls");
    let made = Command::new("openssl")
        .current_dir(&tls)
        .args([
            "req",
            "-x509",
            "-days",
            "2",
            "-subj",
            "/CN=sidesync",
            "-nodes",
        ])
        .args(["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"])
        .args(["-keyout", "tls.key", "-out", "tls.crt"])
        .output()
        .expect("openssl");
    assert!(made.status.success(), "{made:?}");
    let path = dir.path().join("sidesync.toml");
    std::fs::write(
        &path,
        config
            .replace(
                "/var/lib/sidesync",
                &dir.path().join("data").display().to_string(),
            )
            .replace("/run/secrets/sidesync-tls", &tls.display().to_string()),
    )
    .expect("config");
    let out = Command::new(support::sidesync::binary())
        .args(["check-config", "--config"])
        .arg(&path)
        .env("CREDENTIALS_DIRECTORY", &creds)
        .env("SIDESYNC_SHARD", "2/3")
        .output()
        .expect("check-config");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // A shard that cannot be is named.
    let out = Command::new(support::sidesync::binary())
        .args(["check-config", "--config"])
        .arg(&path)
        .env("CREDENTIALS_DIRECTORY", &creds)
        .env("SIDESYNC_SHARD", "3/3")
        .output()
        .expect("check-config");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && said.contains("SIDESYNC_SHARD"),
        "{said}"
    );

    let venv = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("kubernetes-validate");
    let validate = venv.join("bin/kubernetes-validate");
    if !validate.exists() {
        let made = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .expect("python3 -m venv (package python3-venv)");
        assert!(made.success(), "python3 -m venv failed");
        let installed = Command::new(venv.join("bin/pip"))
            .args(["install", "--quiet", "kubernetes-validate"])
            .status()
            .expect("pip");
        assert!(
            installed.success(),
            "pip install kubernetes-validate failed (PyPI reachable?)"
        );
    }
    let out = Command::new(&validate)
        .args(["--strict", "appliance/kubernetes/sidesync.yaml"])
        .output()
        .expect("kubernetes-validate");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{said}");
    for resource in [
        "configmap/sidesync-config",
        "secret/sidesync-secrets",
        "secret/sidesync-tls",
        "service/sidesync",
        "statefulset/sidesync",
    ] {
        assert!(
            said.contains(&format!("passed for resource {resource}")),
            "{said}"
        );
    }
}

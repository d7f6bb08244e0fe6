//! Status listener benchmark at 10,000 mailboxes: latency of `/`, `/status`, `/metrics` and
//! `/healthz` from a running appliance, beside Python's `http.server` serving the same page as a
//! static file (the floor for a page of that size), in the same run. Run it through
//! `bench/status.sh`.

#[path = "../tests/support/mod.rs"]
mod support;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::sidesync::Sidesync;
use support::web::http;
use support::{free_port, wait_for};

const FAILING: usize = 10;

fn timings(port: u16, path: &str, n: usize) -> (Vec<f64>, usize) {
    let mut ms = Vec::with_capacity(n);
    let mut size = 0;
    for _ in 0..n {
        let t = Instant::now();
        let r = http(port, "GET", path, None, b"");
        ms.push(t.elapsed().as_secs_f64() * 1e3);
        assert_eq!(r.code, 200, "{path}: {}", r.text());
        size = r.body.len();
    }
    ms.sort_by(f64::total_cmp);
    (ms, size)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mailboxes: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(10_000);
    let n: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(30);
    let root = PathBuf::from(
        std::env::var("SIDESYNC_BENCH_DIR").unwrap_or_else(|_| "/tmp/sidesync-bench-status".into()),
    );
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).expect("bench folder");
    // A port nobody listens on: a few mailboxes fail there, as a real appliance has some.
    let closed = free_port();
    let port = free_port();
    let mut cfg = format!(
        "[appliance]\ndata_dir = \"{}\"\nstatus_listen = \"127.0.0.1:{port}\"\nretry_interval = \"10s\"\n\n\
         [[profile]]\nname = \"failing\"\nincoming_server_location = \"127.0.0.1\"\nincoming_port_number = {closed}\n\
         incoming_tls = \"none\"\n\n\
         [[profile]]\nname = \"parked\"\nis_default = true\nactive = false\nincoming_server_location = \"127.0.0.1\"\n\n",
        root.join("data").display()
    );
    for i in 0..mailboxes {
        let profile = if i < FAILING { "failing" } else { "parked" };
        cfg.push_str(&format!(
            "[[mailbox]]\nemail_address = \"user{i:05}@bench.example\"\nprofile = \"{profile}\"\npassword = \"pw\"\napproval = \"approved\"\n"
        ));
    }
    let cfg_path = root.join("sidesync.toml");
    std::fs::write(&cfg_path, cfg).expect("config");
    let s = Sidesync::start(&cfg_path, &root.join("sidesync.log"), port);
    wait_for(
        "the failing mailboxes to fail",
        Duration::from_secs(120),
        || {
            let st = s.status();
            let failed = st["mailboxes"]
                .as_array()?
                .iter()
                .filter(|m| m["last_error"].is_object())
                .count();
            (failed >= FAILING).then_some(())
        },
    );
    let page = http(port, "GET", "/", None, b"");
    let site = root.join("static");
    std::fs::create_dir_all(&site).expect("static dir");
    std::fs::write(site.join("index.html"), &page.body).expect("page copy");
    let static_port = free_port();
    let mut python = Command::new("python3")
        .args([
            "-m",
            "http.server",
            &static_port.to_string(),
            "--bind",
            "127.0.0.1",
            "--directory",
        ])
        .arg(&site)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3 http.server");
    wait_for("http.server", Duration::from_secs(20), || {
        std::net::TcpStream::connect(("127.0.0.1", static_port)).ok()
    });
    println!("{mailboxes} mailboxes ({FAILING} failing), {n} sequential requests each\n");
    println!(
        "{:<28} {:>10} {:>11} {:>11}",
        "endpoint", "bytes", "median ms", "p95 ms"
    );
    let mut medians = Vec::new();
    for path in ["/", "/?page=50", "/status", "/metrics", "/healthz"] {
        let (ms, size) = timings(port, path, n);
        let (median, p95) = (ms[ms.len() / 2], ms[ms.len() * 95 / 100]);
        println!(
            "{:<28} {:>10} {:>11.1} {:>11.1}",
            format!("sidesync {path}"),
            size,
            median,
            p95
        );
        medians.push((path, median));
    }
    let (ms, size) = timings(static_port, "/index.html", n);
    let floor = ms[ms.len() / 2];
    println!(
        "{:<28} {:>10} {:>11.1} {:>11.1}",
        "python http.server (static)",
        size,
        floor,
        ms[ms.len() * 95 / 100]
    );
    let _ = python.kill();
    let _ = python.wait();
    println!(
        "\nratio sidesync / to the static copy (median): {:.2}",
        medians[0].1 / floor
    );
    assert!(s.terminate().success());
}

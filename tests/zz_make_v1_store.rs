//! One-off: writes tests/fixtures/store-v1/sidesync.redb with the schema-1 release.
mod support;
use std::time::SystemTime;
use support::dovecot::{Dovecot, PASSWORD};
use support::mail;
use support::sidesync::run_once;

#[test]
#[ignore]
fn make_v1_store() {
    let d = Dovecot::start();
    let tmp = tempfile::tempdir().expect("tempdir");
    for u in ["user1@example.com", "user2@example.com"] {
        for n in 0..6 {
            d.deliver(u, &mail::sample(u, n, 3000 + n * 500), "", SystemTime::now());
        }
    }
    let shared = b"Message-ID: <shared.1@example.org>\r\nDate: Mon, 1 Sep 2025 10:00:00 +0200\r\nFrom: Carol <carol@example.org>\r\nTo: user1@example.com, user2@example.com\r\nSubject: For both of you\r\n\r\nHello both.\r\n";
    d.deliver("user1@example.com", shared, "", SystemTime::now());
    d.deliver("user2@example.com", shared, "", SystemTime::now());
    d.deliver_to_folder("user1@example.com", "Projects", b"Message-ID: <proj.1@example.org>\r\nFrom: dave@example.org\r\nTo: user1@example.com\r\nSubject: Project kickoff\r\n\r\nKickoff.\r\n");
    let cfg = tmp.path().join("sidesync.toml");
    std::fs::write(&cfg, format!(
        "[appliance]\ndata_dir = \"{}\"\nstatus_listen = \"127.0.0.1:{}\"\n\
         [[profile]]\nname = \"local\"\nis_default = true\nincoming_server_location = \"127.0.0.1\"\n\
         incoming_port_number = {}\nca_file = \"{}\"\n\
         [[mailbox]]\nemail_address = \"user1@example.com\"\npassword = \"{PASSWORD}\"\napproval = \"approved\"\ntracking_folders = [\"Projects\"]\n\
         [[mailbox]]\nemail_address = \"user2@example.com\"\npassword = \"{PASSWORD}\"\napproval = \"approved\"\n",
        tmp.path().join("data").display(), support::free_port(), d.imaps_port, d.ca_file.display())).unwrap();
    let (st, out) = run_once(&cfg);
    assert!(st.success(), "{out}");
    {
        let store = sidesync::store::Store::open(&tmp.path().join("data")).unwrap();
        let w = store.start_writer();
        let raw = b"Message-ID: <out.1@example.com>\r\nFrom: user1@example.com\r\nTo: carol@example.org\r\nSubject: Quote [CRM:0001001001]\r\n\r\nOur quote.\r\n";
        let headers = sidesync::tracking::message::parse_headers(raw);
        let mut c = zstd::bulk::Compressor::new(sidesync::store::rawcodec::ZSTD_LEVEL).unwrap();
        w.enqueue_blocking(sidesync::store::QueuedEmail {
            mailbox: "user1@example.com".into(),
            dedup_key: sidesync::tracking::message::dedup_key(&headers, raw),
            headers,
            raw_encoded: sidesync::store::rawcodec::encode(raw, &mut c).unwrap(),
            size: raw.len() as u64,
            recipients: vec!["carol@example.org".into()],
        }).unwrap();
        w.shutdown();
        println!("activities: {}", store.activity_count().unwrap());
    }
    let dest = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/store-v1");
    std::fs::create_dir_all(&dest).unwrap();
    std::fs::copy(tmp.path().join("data/sidesync.redb"), dest.join("sidesync.redb")).unwrap();
}

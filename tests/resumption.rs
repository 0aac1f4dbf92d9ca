//! Session resumption with a real client: `openssl s_client -sess_out` then `-sess_in`, on one
//! terminus, across two terminus instances sharing a ticket key file, across a key file
//! rotation, and between listeners (never). Every command runs under `timeout` against
//! 127.0.0.1; every wait is bounded.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use support::*;

/// One request over TLS with s_client, saving the session to `out` and offering `resume`'s;
/// returns whether the handshake was a resumption.
async fn handshake(addr: SocketAddr, out: &Path, resume: Option<&Path>, extra: &[&str]) -> bool {
    let connect = addr.to_string();
    let out_s = out.display().to_string();
    let mut args = vec![
        "s_client",
        "-connect",
        &connect,
        "-servername",
        "app.test",
        "-ign_eof",
        "-sess_out",
        &out_s,
    ];
    let resume_s = resume.map(|p| p.display().to_string());
    if let Some(r) = &resume_s {
        args.extend(["-sess_in", r]);
    }
    args.extend_from_slice(extra);
    // Waiting for the answer makes s_client read the TLS 1.3 tickets sent after the handshake.
    let req = "GET / HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n";
    let o = run_tool("openssl", &args, Some(req)).await;
    let all = format!("{}\n{}", o.stdout, o.stderr);
    assert!(o.stdout.contains("HTTP/1.1 200"), "no answer:\n{all}");
    match (
        o.stdout.contains("\nReused, "),
        o.stdout.contains("\nNew, "),
    ) {
        (true, false) => true,
        (false, true) => false,
        _ => panic!("cannot tell New from Reused:\n{all}"),
    }
}

/// A fresh key file line, as the docs say to make one.
async fn key_line() -> String {
    let o = run_tool("openssl", &["rand", "-base64", "48"], None).await;
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    o.stdout
}

fn config(cert: &TestCert, backend: SocketAddr, listeners: &[(&str, &str)]) -> String {
    let mut s = format!(
        "[[certificate]]\nname = \"app\"\ncert = \"{}\"\nkey = \"{}\"\n\n",
        cert.cert_path.display(),
        cert.key_path.display()
    );
    for (name, resumption) in listeners {
        s += &format!("[[listener]]\nname = \"{name}\"\nbind = \"127.0.0.1:0\"\n[listener.resumption]\n{resumption}\n[[listener.route]]\npool = \"app\"\n\n");
    }
    s + &format!("[[pool]]\nname = \"app\"\n[[pool.backend]]\naddress = \"{backend}\"\n")
}

fn key_file_setting(path: &Path) -> String {
    format!("ticket_key_file = \"{}\"\n", path.display())
}

struct Setup {
    dir: tempfile::TempDir,
    cert: TestCert,
    backend: SocketAddr,
}

impl Setup {
    async fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let cert = write_cert(dir.path(), "app", &["app.test"]);
        let backend = demo_backend("app", Duration::ZERO).await;
        Setup { dir, cert, backend }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A terminus in its own directory `sub` with these listeners.
    async fn start(&self, sub: &str, listeners: &[(&str, &str)]) -> InProcess {
        let d = self.path(sub);
        std::fs::create_dir_all(&d).unwrap();
        start(&d, &config(&self.cert, self.backend, listeners)).await
    }
}

#[tokio::test]
async fn tls13_and_tls12_sessions_resume_and_are_counted() {
    let s = Setup::new().await;
    let d = s.path("one");
    std::fs::create_dir_all(&d).unwrap();
    let (t, stats) = start_with_stats(&d, &config(&s.cert, s.backend, &[("web", "")])).await;
    let addr = t.addr("web");
    let cases: [(&str, &[&str]); 3] = [
        ("TLS 1.3 ticket", &["-tls1_3"]),
        ("TLS 1.2 ticket", &["-tls1_2"]),
        ("TLS 1.2 session-ID cache", &["-tls1_2", "-no_ticket"]),
    ];
    for (i, (what, args)) in cases.iter().enumerate() {
        let sess = s.path(&format!("sess{i}"));
        assert!(!handshake(addr, &sess, None, args).await, "{what}: first");
        assert!(
            handshake(addr, &s.path("again"), Some(&sess), args).await,
            "{what}: not resumed"
        );
    }
    let web = stats["web"].clone();
    wait_until(|| web.full() + web.resumed() >= 6).await;
    assert_eq!((web.full(), web.resumed()), (3, 3));
}

#[tokio::test]
async fn a_shared_key_file_resumes_on_another_instance_and_a_different_one_does_not() {
    let s = Setup::new().await;
    let (shared, other) = (s.path("shared.key"), s.path("other.key"));
    std::fs::write(&shared, key_line().await).unwrap();
    std::fs::write(&other, key_line().await).unwrap();
    let a = s.start("a", &[("web", &key_file_setting(&shared))]).await;
    let b = s.start("b", &[("web", &key_file_setting(&shared))]).await;
    let c = s.start("c", &[("web", &key_file_setting(&other))]).await;
    for args in [&["-tls1_3"][..], &["-tls1_2"]] {
        let sess = s.path("sess");
        assert!(!handshake(a.addr("web"), &sess, None, args).await);
        let x = s.path("x");
        let resumed = |t: &InProcess| handshake(t.addr("web"), &x, Some(&sess), args);
        assert!(resumed(&b).await, "{args:?}: same key file, not resumed");
        assert!(!resumed(&c).await, "{args:?}: another key file, resumed");
    }
}

#[tokio::test]
async fn a_rotated_key_file_keeps_accepting_the_previous_key_until_it_is_removed() {
    let s = Setup::new().await;
    let file = s.path("ticket.key");
    let (old, new) = (key_line().await, key_line().await);
    std::fs::write(&file, &old).unwrap();
    let t = s.start("t", &[("web", &key_file_setting(&file))]).await;
    let before = s.path("before");
    assert!(!handshake(t.addr("web"), &before, None, &[]).await);
    // Rotate: the new key first, the old one kept. The file is polled every second.
    std::fs::write(&file, format!("{new}{old}")).unwrap();
    tokio::time::sleep(terminus::tls::tickets::KEY_FILE_POLL * 3).await;
    assert!(handshake(t.addr("web"), &s.path("x"), Some(&before), &[]).await);
    // New tickets are sealed with the new key: an instance holding only it resumes them.
    let after = s.path("after");
    assert!(!handshake(t.addr("web"), &after, None, &[]).await);
    let only_new = s.path("new.key");
    std::fs::write(&only_new, &new).unwrap();
    let n = s.start("n", &[("web", &key_file_setting(&only_new))]).await;
    assert!(handshake(n.addr("web"), &s.path("x"), Some(&after), &[]).await);
    // Removing the old key stops its tickets.
    std::fs::write(&file, &new).unwrap();
    tokio::time::sleep(terminus::tls::tickets::KEY_FILE_POLL * 3).await;
    assert!(!handshake(t.addr("web"), &s.path("x"), Some(&before), &[]).await);
}

#[tokio::test]
async fn listeners_never_accept_each_others_tickets() {
    let s = Setup::new().await;
    let file = s.path("ticket.key");
    std::fs::write(&file, key_line().await).unwrap();
    // Without a session-ID cache, so only a ticket could resume.
    let r = key_file_setting(&file) + "session_cache_size = 0\n";
    let t = s.start("t", &[("a", &r), ("b", &r)]).await;
    for args in [&["-tls1_3"][..], &["-tls1_2"]] {
        let sess = s.path("sess");
        assert!(!handshake(t.addr("a"), &sess, None, args).await);
        assert!(handshake(t.addr("a"), &s.path("x"), Some(&sess), args).await);
        assert!(
            !handshake(t.addr("b"), &s.path("x"), Some(&sess), args).await,
            "{args:?}: listener b resumed a ticket of listener a"
        );
    }
}

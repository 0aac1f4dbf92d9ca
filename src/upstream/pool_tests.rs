//! A pool built from config text: outcomes reported through it eject, `drain` and `backup`
//! keys take effect, and `can_take` tells sticky sessions where they may stay.

use super::*;
use crate::config::parse;

fn pool(pool_keys: &str, backends: &[&str]) -> Pool {
    let mut text = format!(
        "[[listener]]\nname = \"l\"\nbind = \"127.0.0.1:0\"\nprotocol = \"http\"\n[[listener.route]]\npool = \"app\"\n[[pool]]\nname = \"app\"\n{pool_keys}\n"
    );
    for (i, keys) in backends.iter().enumerate() {
        text.push_str(&format!(
            "[[pool.backend]]\nname = \"b{i}\"\naddress = \"127.0.0.1:{}\"\n{keys}\n",
            9001 + i
        ));
    }
    let config = parse(std::path::Path::new("t.toml"), &text).unwrap();
    Pool::new(&config.pools[0]).unwrap()
}

fn picks(p: &Pool, n: usize) -> Vec<String> {
    (0..n)
        .map(|_| p.pick(&PickContext::default()).unwrap().0.name.clone())
        .collect()
}

#[tokio::test]
async fn reported_failures_eject_and_traffic_moves() {
    let p = pool("[pool.outlier]\nconsecutive_failures = 2", &["", ""]);
    let b0 = p.backends[0].clone();
    p.report(&b0, Outcome::ServerError);
    assert!(b0.is_usable());
    p.report(&b0, Outcome::ConnectFailure);
    assert!(!b0.is_usable() && !p.can_take(&b0));
    assert!(picks(&p, 10).iter().all(|n| n == "b1"));
}

#[tokio::test]
async fn without_an_outlier_table_reports_change_nothing() {
    let p = pool("", &["", ""]);
    let b0 = p.backends[0].clone();
    for _ in 0..100 {
        p.report(&b0, Outcome::ServerError);
    }
    assert!(b0.is_usable());
    assert_eq!(b0.ejection().consecutive_failures(), 0);
}

#[tokio::test]
async fn drain_and_backup_keys_take_effect() {
    let p = pool("", &["drain = true", "", "backup = true"]);
    assert!(p.backends[0].is_draining() && !p.can_take(&p.backends[0]));
    assert!(picks(&p, 10).iter().all(|n| n == "b1"));
    // The backup may take sessions only while no primary is usable.
    assert!(!p.can_take(&p.backends[2]));
    p.backends[1].set_draining(true);
    assert!(p.can_take(&p.backends[2]));
    assert!(picks(&p, 10).iter().all(|n| n == "b2"));
}

#[tokio::test]
async fn sticky_sessions_stay_on_draining_backends_and_leave_disabled_ones_and_backups() {
    let p = pool("[pool.sticky]", &["", "", "backup = true"]);
    let sticky = p.sticky.as_ref().unwrap();
    let to = |name: &str| sticky.seal(name).unwrap();
    let pick = |cookie: &str| {
        let picked = p.pick_for(&PickContext::default(), Some(cookie.as_bytes()), None);
        let picked = picked.unwrap();
        (picked.backend.name.clone(), picked.sticky_hit)
    };
    use crate::config::BackendState::Disabled;
    assert_eq!(pick(&to("b0")), ("b0".into(), true));
    p.backends[0].set_draining(true);
    assert_eq!(
        pick(&to("b0")),
        ("b0".into(), true),
        "draining keeps sessions"
    );
    assert_eq!(pick(&to("b1")), ("b1".into(), true));
    assert!(
        (0..20).all(|_| pick("no cookie").0 == "b1"),
        "new sessions avoid the draining backend"
    );
    p.backends[0].set_state(Disabled);
    assert_eq!(pick(&to("b0")), ("b1".into(), false), "disabled: moved");
    // The backup keeps its sessions only while no primary is usable.
    p.backends[1].set_state(Disabled);
    assert_eq!(pick(&to("b2")), ("b2".into(), true));
    p.backends[1].set_draining(false);
    assert_eq!(pick(&to("b2")), ("b1".into(), false), "a primary is back");
}

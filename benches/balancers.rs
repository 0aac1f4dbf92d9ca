//! Micro-benchmarks of the balancers: one `pick` among 3, 10 and 100 backends, and one
//! `Pool::pick` on a small pool built from config text, as the server builds it.
//!
//! ```sh
//! cargo bench --bench balancers -- --warm-up-time 1 --measurement-time 2
//! cargo bench --bench balancers -- pick/maglev        # a filter (a regex on the ids)
//! ```
//!
//! The backends are in a steady state: varied weights (1 to 4), a few requests in flight on
//! most of them (0 to 6, held for the whole run), and one latency sample each (0.5 to 3.5 ms).
//! A pick starts no request, so every pick sees the same state. See bench/README.md.

use std::hint::black_box;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use terminus::config::{self, BalancerKind};
use terminus::upstream::balancer::{self, key_hash, Balancer, PickContext};
use terminus::upstream::{Backend, InFlight, Pool};

/// Backends per balancer.
const SIZES: [usize; 3] = [3, 10, 100];

/// Distinct keys the hashing balancers cycle through (a power of two).
const KEYS: usize = 1024;

/// The factor of consistent hashing with bounded loads in the `+bounded` variants.
const BOUNDED_LOAD: f64 = 1.25;

/// Backends as a pool holds them, with the requests held in flight on them.
struct Fleet {
    backends: Vec<Arc<Backend>>,
    _held: Vec<InFlight>,
}

fn fleet(n: usize) -> Fleet {
    let backends: Vec<Arc<Backend>> = (0..n)
        .map(|i| {
            let address = SocketAddr::from(([10, 0, (i / 200) as u8, (i % 200 + 1) as u8], 8080));
            let weight = 1 + (i % 4) as u32;
            let b = Arc::new(Backend::new(format!("backend-{i}"), address, weight));
            b.observe(Duration::from_micros(500 + (i as u64 * 337) % 3000));
            b
        })
        .collect();
    let held = (backends.iter().enumerate())
        .flat_map(|(i, b)| (0..(i * 5) % 7).map(move |_| b.start()))
        .collect();
    Fleet {
        backends,
        _held: held,
    }
}

/// Request keys as `hash_key = "source-ip"` would hash them: client addresses.
fn keys() -> Vec<PickContext> {
    (0..KEYS)
        .map(|i| PickContext {
            hash: Some(key_hash(
                format!("198.51.{}.{}", i / 256, i % 256).as_bytes(),
            )),
        })
        .collect()
}

fn hashing(kind: BalancerKind) -> bool {
    matches!(kind, BalancerKind::Maglev | BalancerKind::RingHash)
}

/// Times `b.pick` among `backends`: with no key, or cycling through `keys`.
fn bench_pick(
    c: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    id: BenchmarkId,
    b: &dyn Balancer,
    backends: &[Arc<Backend>],
    keys: Option<&[PickContext]>,
) {
    match keys {
        None => {
            let ctx = PickContext::default();
            c.bench_function(id, |bench| {
                bench.iter(|| b.pick(black_box(backends), black_box(&ctx)))
            });
        }
        Some(keys) => {
            let mut i = 0;
            c.bench_function(id, |bench| {
                bench.iter(|| {
                    i = (i + 1) % KEYS;
                    b.pick(black_box(backends), black_box(&keys[i]))
                })
            });
        }
    }
}

fn picks(c: &mut Criterion) {
    let keys = keys();
    let mut group = c.benchmark_group("pick");
    for n in SIZES {
        let fleet = fleet(n);
        let backends = &fleet.backends;
        for kind in BalancerKind::ALL {
            let b = balancer::build(kind, backends, None);
            let keys = hashing(kind).then_some(keys.as_slice());
            bench_pick(
                &mut group,
                BenchmarkId::new(kind.name(), n),
                b.as_ref(),
                backends,
                keys,
            );
        }
    }
    // Bounded loads add a scan of every backend to each pick: measured where it shows.
    let fleet = fleet(100);
    for kind in [BalancerKind::Maglev, BalancerKind::RingHash] {
        let b = balancer::build(kind, &fleet.backends, Some(BOUNDED_LOAD));
        let id = BenchmarkId::new(format!("{}+bounded-{BOUNDED_LOAD}", kind.name()), 100);
        bench_pick(&mut group, id, b.as_ref(), &fleet.backends, Some(&keys));
    }
    group.finish();
}

/// A pool of 3 backends as the server builds it (no outlier detection, no slow start, no
/// sticky cookie): the balancer behind primaries and backups, and the backend's client.
fn pool(balancer: &str) -> Pool {
    let mut text = format!(
        "[[listener]]\nname = \"web\"\nbind = \"127.0.0.1:0\"\nprotocol = \"http\"\n\
         [[listener.route]]\npool = \"app\"\n\
         [[pool]]\nname = \"app\"\nbalancer = \"{balancer}\"\n"
    );
    for i in 0..3 {
        text.push_str(&format!(
            "[[pool.backend]]\nname = \"b{i}\"\naddress = \"127.0.0.1:{}\"\n",
            9001 + i
        ));
    }
    let config = match config::parse(Path::new("bench.toml"), &text) {
        Ok(c) => c,
        Err(e) => panic!("the bench pool's config: {e}"),
    };
    match Pool::new(&config.pools[0]) {
        Ok(p) => p,
        Err(e) => panic!("the bench pool: {e}"),
    }
}

fn pool_picks(c: &mut Criterion) {
    let mut group = c.benchmark_group("pool");
    let p = pool("round-robin");
    let ctx = PickContext::default();
    group.bench_function(BenchmarkId::new("round-robin", 3), |bench| {
        bench.iter(|| black_box(&p).pick(black_box(&ctx)).is_some())
    });
    group.finish();
}

criterion_group! {
    name = benches;
    // Short by default, as the command line in the header would make them.
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
        .nresamples(20_000);
    targets = picks, pool_picks
}
criterion_main!(benches);

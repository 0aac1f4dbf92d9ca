//! Routing: which pool takes a request, by host (exact, then wildcard, then any) and the
//! longest matching path prefix.

use std::sync::Arc;

use crate::config::{HostPattern, Route};
use crate::metrics::{Metrics, RouteMetrics};
use crate::upstream::Pool;

#[derive(Debug)]
pub struct CompiledRoute {
    host: Option<HostPattern>,
    path_prefix: String,
    pub pool: Arc<Pool>,
    /// How metrics, logs and decisions name the route: its host (`*` for any) and path
    /// prefix, e.g. `api.example.com/v1` or `*/`.
    pub label: Arc<str>,
    pub metrics: Arc<RouteMetrics>,
}

/// A listener's routes, ordered most specific first so the first match wins.
#[derive(Debug, Default)]
pub struct Router {
    routes: Vec<CompiledRoute>,
}

/// Sort key: exact hosts before wildcards (longer suffixes first) before any host; within
/// the same host, longer path prefixes first.
fn specificity(r: &Route) -> (u8, usize, usize) {
    let (class, host_len) = match &r.host {
        Some(HostPattern::Exact(h)) => (0, h.len()),
        Some(HostPattern::Wildcard(s)) => (1, s.len()),
        None => (2, 0),
    };
    (
        class,
        usize::MAX - host_len,
        usize::MAX - r.path_prefix.len(),
    )
}

impl Router {
    /// `pools` is indexed by `Route::pool`.
    /// The routes of `listener`, to `pools`, counting into `metrics`.
    pub fn new(
        routes: &[Route],
        pools: &[Arc<Pool>],
        listener: &Arc<str>,
        metrics: &Metrics,
    ) -> Self {
        let mut sorted: Vec<&Route> = routes.iter().collect();
        sorted.sort_by_key(|r| specificity(r));
        let routes = sorted
            .into_iter()
            .filter_map(|r| {
                let host = match &r.host {
                    None => "*".to_owned(),
                    Some(HostPattern::Exact(h)) => h.clone(),
                    Some(HostPattern::Wildcard(suffix)) => format!("*{suffix}"),
                };
                let pool = pools.get(r.pool)?.clone();
                let label: Arc<str> = format!("{host}{}", r.path_prefix).into();
                let names: Vec<&str> = pool.backends.iter().map(|b| b.name.as_str()).collect();
                let metrics = RouteMetrics::new(metrics, listener, &label, &pool.name, &names);
                Some(CompiledRoute {
                    host: r.host.clone(),
                    path_prefix: r.path_prefix.clone(),
                    metrics: Arc::new(metrics),
                    pool,
                    label,
                })
            })
            .collect();
        Self { routes }
    }

    /// The pool for a request. `host` may carry a port and any case.
    pub fn find(&self, host: Option<&str>, path: &str) -> Option<&Arc<Pool>> {
        self.route(host, path).map(|r| &r.pool)
    }

    /// The route a request to `host` and `path` takes.
    pub fn route(&self, host: Option<&str>, path: &str) -> Option<&CompiledRoute> {
        let host = host.map(strip_port);
        self.routes
            .iter()
            .find(|r| path.starts_with(&r.path_prefix) && host_matches(r.host.as_ref(), host))
    }
}

fn host_matches(pattern: Option<&HostPattern>, host: Option<&str>) -> bool {
    match (pattern, host) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(HostPattern::Exact(h)), Some(host)) => h.eq_ignore_ascii_case(host),
        (Some(HostPattern::Wildcard(suffix)), Some(host)) => {
            host.len() > suffix.len()
                && host
                    .get(host.len() - suffix.len()..)
                    .is_some_and(|tail| tail.eq_ignore_ascii_case(suffix))
        }
    }
}

/// `example.com:8443` to `example.com`; `[::1]:8443` to `[::1]`.
pub fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.find(']').map_or(host, |i| &host[..=i]);
    }
    match host.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config;

    /// Pools named `names`, built from a parsed config so the test does not spell out every
    /// pool setting.
    fn pools(names: &[&str]) -> Vec<Arc<Pool>> {
        let mut text = String::from(
            "[[listener]]\nname = \"l\"\nbind = \"127.0.0.1:0\"\nprotocol = \"http\"\n[[listener.route]]\npool = \"any\"\n",
        );
        for n in names {
            text.push_str(&format!(
                "[[pool]]\nname = \"{n}\"\n[[pool.backend]]\naddress = \"127.0.0.1:9\"\n"
            ));
        }
        let config = config::parse(std::path::Path::new("t.toml"), &text).unwrap();
        config
            .pools
            .iter()
            .map(|p| Arc::new(Pool::new(p).unwrap()))
            .collect()
    }

    fn route(host: Option<HostPattern>, prefix: &str, pool: usize) -> Route {
        Route {
            host,
            path_prefix: prefix.into(),
            pool,
        }
    }

    #[tokio::test]
    async fn most_specific_route_wins() {
        let pools = pools(&["any", "api", "wild", "api-v2"]);
        let routes = vec![
            route(None, "/", 0),
            route(Some(HostPattern::Exact("api.test".into())), "/", 1),
            route(Some(HostPattern::Wildcard(".test".into())), "/", 2),
            route(Some(HostPattern::Exact("api.test".into())), "/v2/", 3),
        ];
        let r = Router::new(&routes, &pools, &Arc::from("l"), &Metrics::default());
        let name = |h: Option<&str>, p: &str| r.find(h, p).map(|p| p.name.clone());
        assert_eq!(name(Some("API.test:8443"), "/x").as_deref(), Some("api"));
        assert_eq!(
            name(Some("api.test"), "/v2/items").as_deref(),
            Some("api-v2")
        );
        assert_eq!(name(Some("www.test"), "/").as_deref(), Some("wild"));
        assert_eq!(name(Some("test"), "/").as_deref(), Some("any"));
        assert_eq!(name(None, "/").as_deref(), Some("any"));
    }

    #[test]
    fn ports_are_stripped() {
        assert_eq!(strip_port("a.test:80"), "a.test");
        assert_eq!(strip_port("[::1]:80"), "[::1]");
        assert_eq!(strip_port("[::1]"), "[::1]");
        assert_eq!(strip_port("a.test"), "a.test");
    }
}

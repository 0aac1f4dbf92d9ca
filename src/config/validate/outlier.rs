//! Validation of a pool's `[pool.outlier]` table (passive health checks) and of the failover
//! keys around it: the pool's `slow_start` and its backends' `backup`.

use std::time::Duration;

use super::Validator;
use crate::config::file::{FileOutlier, FilePool};
use crate::config::{Backend, OutlierDetection};

impl Validator<'_> {
    pub(super) fn outlier(&mut self, o: &FileOutlier) -> OutlierDetection {
        let consecutive_failures =
            self.int_or(&o.consecutive_failures, 1, 1000, "consecutive_failures", 5);
        let base_ejection = self.duration(&o.base_ejection, Duration::from_secs(30));
        let default_max = Duration::from_secs(300).max(base_ejection);
        let mut max_ejection = self.duration(&o.max_ejection, default_max);
        if let Some(m) = &o.max_ejection {
            if max_ejection < base_ejection {
                self.err(
                    m.span(),
                    format!(
                        "max_ejection = \"{}\" is shorter than base_ejection ({base_ejection:?})",
                        m.get_ref()
                    ),
                    "expected a duration at least as long as base_ejection",
                );
                max_ejection = base_ejection;
            }
        }
        let max_ejection_percent =
            self.int_or(&o.max_ejection_percent, 1, 100, "max_ejection_percent", 50);
        OutlierDetection {
            consecutive_failures,
            base_ejection,
            max_ejection,
            max_ejection_percent,
        }
    }

    /// `slow_start`: a duration, or none.
    pub(super) fn slow_start(&mut self, p: &FilePool) -> Option<Duration> {
        p.slow_start
            .as_ref()
            .map(|_| self.duration(&p.slow_start, Duration::from_secs(30)))
    }

    /// A pool needs a primary backend: backups alone would never be "only when no primary is
    /// usable", which is surely not what was meant.
    pub(super) fn some_primary(&mut self, p: &FilePool, backends: &[Backend]) {
        if backends.is_empty() || backends.iter().any(|b| !b.backup) {
            return;
        }
        let span = p.backends[0]
            .backup
            .as_ref()
            .map_or(p.name.span(), |b| b.span());
        self.err(
            span,
            format!("every backend of pool `{}` is a backup", p.name.get_ref()),
            "expected at least one backend without `backup = true` (backups take requests only when no primary is usable)",
        );
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use crate::config::{parse, Config, OutlierDetection};

    /// A pool with `pool_keys` and two backends, the second with `second_keys`.
    fn config(pool_keys: &str, second_keys: &str) -> Result<Config, Vec<String>> {
        let text = format!(
            "[[listener]]\nname = \"l\"\nbind = \"127.0.0.1:0\"\nprotocol = \"http\"\n[[listener.route]]\npool = \"app\"\n[[pool]]\nname = \"app\"\n{pool_keys}\n[[pool.backend]]\naddress = \"127.0.0.1:9001\"\n[[pool.backend]]\naddress = \"127.0.0.1:9002\"\n{second_keys}\n"
        );
        parse(Path::new("t.toml"), &text)
            .map_err(|e| e.to_string().lines().map(str::to_owned).collect())
    }

    #[test]
    fn defaults() {
        let c = config("[pool.outlier]", "").unwrap();
        let p = &c.pools[0];
        assert_eq!(
            p.outlier,
            Some(OutlierDetection {
                consecutive_failures: 5,
                base_ejection: Duration::from_secs(30),
                max_ejection: Duration::from_secs(300),
                max_ejection_percent: 50,
            })
        );
        assert_eq!(p.slow_start, None);
        assert!(p
            .backends
            .iter()
            .all(|b| !b.backup && b.state == crate::config::BackendState::Enabled));
        let c = config("slow_start = \"30s\"", "backup = true\ndrain = true").unwrap();
        assert_eq!(c.pools[0].outlier, None, "off without the table");
        assert_eq!(c.pools[0].slow_start, Some(Duration::from_secs(30)));
        assert!(
            c.pools[0].backends[1].backup
                && c.pools[0].backends[1].state == crate::config::BackendState::Draining
        );
        // A base longer than the default maximum raises the maximum with it.
        let c = config("[pool.outlier]\nbase_ejection = \"10m\"", "").unwrap();
        let o = c.pools[0].outlier.unwrap();
        assert_eq!(o.max_ejection, Duration::from_secs(600));
    }

    #[test]
    fn bad_values_are_refused_with_what_is_accepted() {
        let cases = [
            ("[pool.outlier]\nconsecutive_failures = 0", "", "t.toml:10:24: consecutive_failures = 0 is out of range; expected an integer from 1 to 1000"),
            ("[pool.outlier]\nmax_ejection_percent = 0", "", "t.toml:10:24: max_ejection_percent = 0 is out of range; expected an integer from 1 to 100"),
            ("[pool.outlier]\nbase_ejection = \"1m\"\nmax_ejection = \"30s\"", "", "t.toml:11:16: max_ejection = \"30s\" is shorter than base_ejection (60s); expected a duration at least as long as base_ejection"),
            ("[pool.outlier]\nbase_ejection = \"0s\"", "", "t.toml:10:17: a zero duration is not allowed"),
            ("slow_start = \"soon\"", "", "t.toml:9:14: `soon` is not a duration"),
            ("[pool.outlier]\nejection = \"1s\"", "", "t.toml:10:1: unknown key `ejection`"),
            ("", "backup = \"yes\"", "t.toml:14:10: invalid type: string \"yes\"; expected a boolean"),
        ];
        for (pool, second, want) in cases {
            let e = config(pool, second).unwrap_err();
            assert_eq!(e.len(), 1, "{pool}: {e:?}");
            assert!(e[0].starts_with(want), "{pool}: {e:?}");
        }
    }

    #[test]
    fn a_pool_of_backups_only_is_refused() {
        let text = "[[listener]]\nname = \"l\"\nbind = \"127.0.0.1:0\"\nprotocol = \"http\"\n[[listener.route]]\npool = \"app\"\n[[pool]]\nname = \"app\"\n[[pool.backend]]\naddress = \"127.0.0.1:9001\"\nbackup = true\n";
        let e = parse(Path::new("t.toml"), text).unwrap_err().to_string();
        assert!(
            e.starts_with("t.toml:11:10: every backend of pool `app` is a backup; expected at least one backend without `backup = true`"),
            "{e}"
        );
    }
}

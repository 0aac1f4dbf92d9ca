//! The optional file watch (`[global] watch`): polls the config file and every file it names
//! for a change of modification time or size. Polling, not inotify: it needs no dependency
//! and sees editors' rename-over saves and Kubernetes' symlink swaps like any other change.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use crate::Server;

/// How often an idle watch (`watch` not set) looks whether a reload turned it on.
const OFF_RECHECK: Duration = Duration::from_secs(1);

/// A file's modification time and size; `None` when it cannot be read (missing, say).
type Stamp = Option<(Option<SystemTime>, u64)>;

/// Waits for changes of the files the server's current config names.
pub struct FileWatch {
    server: Server,
    last: Vec<(PathBuf, Stamp)>,
}

impl FileWatch {
    /// A watch of `server`'s files; the first poll (at once) takes their state as the
    /// baseline.
    pub fn new(server: Server) -> Self {
        Self {
            server,
            last: Vec::new(),
        }
    }

    /// Completes at the first poll that sees a watched file changed since the poll before.
    /// A changed set of files (a reload named other files) only sets a new baseline.
    pub async fn changed(&mut self) {
        loop {
            let (interval, files) = self.server.watched();
            let Some(interval) = interval else {
                self.last.clear();
                tokio::time::sleep(OFF_RECHECK).await;
                continue;
            };
            // Off the runtime's threads: a stat on a network file system can block.
            if let Ok(now) = tokio::task::spawn_blocking(|| stamps(files)).await {
                let changed = differs(&self.last, &now);
                self.last = now;
                if changed {
                    return;
                }
            }
            tokio::time::sleep(interval).await;
        }
    }
}

fn stamps(files: Vec<PathBuf>) -> Vec<(PathBuf, Stamp)> {
    files
        .into_iter()
        .map(|path| {
            // `metadata` follows symlinks, so a swapped link target counts as a change.
            let stamp = std::fs::metadata(&path)
                .ok()
                .map(|m| (m.modified().ok(), m.len()));
            (path, stamp)
        })
        .collect()
}

/// Whether the same files as before have a different stamp.
fn differs(last: &[(PathBuf, Stamp)], now: &[(PathBuf, Stamp)]) -> bool {
    let same_files = last.iter().map(|(p, _)| p).eq(now.iter().map(|(p, _)| p));
    same_files && last != now
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_changed_stamp_of_the_same_files_is_a_change() {
        let at = |secs| Some((Some(SystemTime::UNIX_EPOCH + Duration::from_secs(secs)), 10));
        let a = |s: Stamp| vec![(PathBuf::from("a"), s)];
        assert!(!differs(&a(at(1)), &a(at(1))));
        assert!(differs(&a(at(1)), &a(at(2))));
        assert!(differs(&a(at(1)), &a(None)));
        assert!(!differs(&[], &a(at(1))), "a first poll is a baseline");
        let ab = vec![(PathBuf::from("a"), at(1)), (PathBuf::from("b"), at(1))];
        assert!(!differs(&a(at(1)), &ab), "new files are a baseline");
    }
}

//! Validation of a listener's `[listener.resumption]` table: ticket lifetime and rotation,
//! the shared ticket key file, and the session-ID cache.

use super::Validator;
use crate::config::file::FileResumption;
use crate::tls::ticket_keys::{self, MAX_PERIODS, MAX_TICKET_LIFETIME};
use crate::tls::{KeyFile, Resumption};

impl Validator<'_> {
    pub(super) fn resumption(&mut self, r: &FileResumption) -> Resumption {
        let d = Resumption::default();
        let ticket_lifetime = self.duration(&r.ticket_lifetime, d.ticket_lifetime);
        if let Some(v) = r
            .ticket_lifetime
            .as_ref()
            .filter(|_| ticket_lifetime > MAX_TICKET_LIFETIME)
        {
            self.err(
                v.span(),
                format!("ticket_lifetime `{}` is longer than 7 days", v.get_ref()),
                "expected at most \"7d\" (RFC 8446 caps ticket lifetimes at 7 days)",
            );
        }
        let rotate_every = self.duration(&r.rotate_every, d.rotate_every);
        if let Some(v) = &r.rotate_every {
            let whole_secs = rotate_every.subsec_nanos() == 0;
            let periods = ticket_lifetime
                .as_secs()
                .div_ceil(rotate_every.as_secs().max(1));
            if !whole_secs || periods > MAX_PERIODS {
                self.err(
                    v.span(),
                    format!("rotate_every `{}` is too short or not whole seconds", v.get_ref()),
                    format!("expected whole seconds, at least ticket_lifetime / {MAX_PERIODS} (e.g. \"1h\" with a 7-day lifetime)"),
                );
            }
        }
        let key_file = r.ticket_key_file.as_ref().and_then(|f| {
            let path = self.path(f.get_ref());
            match ticket_keys::read_key_file(&path) {
                Ok(secrets) => Some(KeyFile { path, secrets }),
                Err(e) => {
                    let text = e.to_string();
                    let (what, hint) = text.split_once("; ").unwrap_or((
                        &text,
                        "expected base64 lines of 32+ random bytes, e.g. from `openssl rand -base64 48`",
                    ));
                    self.err(f.span(), what.to_string(), hint.to_string());
                    None
                }
            }
        });
        let session_cache_size = self.int_or(
            &r.session_cache_size,
            0,
            10_000_000,
            "session_cache_size",
            d.session_cache_size as u32,
        ) as usize;
        Resumption {
            tickets: r.tickets.unwrap_or(d.tickets),
            ticket_lifetime,
            rotate_every,
            session_cache_size,
            key_file,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    fn listener(resumption: &str) -> String {
        format!(
            "[[certificate]]\nname = \"c\"\nself_signed = [\"localhost\"]\n\n\
             [[listener]]\nname = \"web\"\nbind = \"127.0.0.1:0\"\n\
             [listener.resumption]\n{resumption}\n\
             [[listener.route]]\npool = \"app\"\n\n\
             [[pool]]\nname = \"app\"\n[[pool.backend]]\naddress = \"127.0.0.1:1\"\n"
        )
    }

    fn errors(resumption: &str) -> String {
        match crate::config::parse(Path::new("t.toml"), &listener(resumption)) {
            Ok(_) => String::new(),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn defaults_and_limits() {
        let c = crate::config::parse(Path::new("t.toml"), &listener("")).unwrap();
        let r = &c.listeners[0].tls.as_ref().unwrap().resumption;
        assert_eq!(r, &crate::tls::Resumption::default());
        assert!(errors("ticket_lifetime = \"8d\"").contains("longer than 7 days"));
        assert!(errors("rotate_every = \"1s\"").contains("too short"));
        assert!(errors("session_cache_size = -1").contains("out of range"));
        assert!(errors("ticket_key_file = \"/nonexistent/k\"").contains("cannot read"));
        assert!(errors("tickets = false\nsession_cache_size = 0").is_empty());
    }
}

//! Policy presets in the spirit of Mozilla's: `modern` (TLS 1.3 only) and `intermediate`
//! (TLS 1.3 and 1.2 with ECDHE and AEAD suites only), and the listener's rustls config built from one.

use std::sync::Arc;

use rustls::ServerConfig;

use super::certs::LoadedCert;
use super::client_auth::{AuthorityCheck, ClientAuth};
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, NoServerSessionStorage, ServerSessionMemoryCache};

use super::kx;
use super::resolver::SniResolver;
use super::stats::HandshakeStats;
use super::ticket_keys::Resumption;
use super::tickets::Ticketer;

/// Which protocol versions and suites a listener offers. TLS 1.1 and older are never offered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsPolicy {
    /// TLS 1.3 only.
    Modern,
    /// TLS 1.3 and TLS 1.2 (ECDHE key exchange, AES-GCM and ChaCha20-Poly1305 only).
    Intermediate,
}

impl TlsPolicy {
    pub const NAMES: &'static str = "\"modern\" or \"intermediate\"";

    /// The protocol versions the preset offers.
    pub fn versions(self) -> &'static [&'static rustls::SupportedProtocolVersion] {
        static MODERN: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];
        match self {
            Self::Modern => MODERN,
            Self::Intermediate => rustls::DEFAULT_VERSIONS,
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "modern" => Some(Self::Modern),
            "intermediate" => Some(Self::Intermediate),
            _ => None,
        }
    }
}

/// The suites in terminus's order of preference, which wins over the client's (as in Go's
/// crypto/tls, Caddy, and HAProxy's default): AES-128-GCM first, whose key schedule (HKDF
/// with SHA-256) costs less per handshake than AES-256-GCM's (SHA-384) at a security level no
/// guidance asks more of; then AES-256-GCM; ChaCha20-Poly1305 last, except for clients that
/// list it first (phones without AES instructions, for which it is the fast one).
fn suites_in_order(chacha_first: bool) -> Vec<rustls::SupportedCipherSuite> {
    use rustls::crypto::aws_lc_rs::cipher_suite::*;
    let mut suites = vec![
        TLS13_AES_128_GCM_SHA256,
        TLS13_AES_256_GCM_SHA384,
        TLS13_CHACHA20_POLY1305_SHA256,
        TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    ];
    if chacha_first {
        // A stable sort keeps the rest in order.
        suites.sort_by_key(|s| !is_chacha(s.suite()));
    }
    suites
}

fn is_chacha(suite: rustls::CipherSuite) -> bool {
    use rustls::CipherSuite as S;
    matches!(
        suite,
        S::TLS13_CHACHA20_POLY1305_SHA256
            | S::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
            | S::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256
    )
}

/// A listener's rustls configurations: for clients that offer X25519MLKEM768 (which then get
/// it) and for the others, each with AES first and with ChaCha20 first (see
/// `suites_in_order`). All share the certificates, the session cache and the ticketer, so a
/// session resumes whichever of them served it.
#[derive(Debug, Clone)]
pub struct ServerTls {
    /// Indexed by whether the client listed ChaCha20-Poly1305 first.
    standard: [Arc<ServerConfig>; 2],
    post_quantum: [Arc<ServerConfig>; 2],
    stats: Arc<HandshakeStats>,
    resolver: Arc<SniResolver>,
    /// Whether client certificates are asked for (and so requests' hosts are checked).
    client_auth: bool,
    /// The resumption settings, and the session cache and ticketer they made: a reload with
    /// the same settings keeps them, so sessions resume across it.
    resumption: Resumption,
    storage: Arc<dyn rustls::server::StoresServerSessions>,
    ticketer: Option<Arc<dyn rustls::server::ProducesTickets>>,
}

impl ServerTls {
    /// A listener's TLS with default resumption (random ticket keys).
    pub fn new(
        policy: TlsPolicy,
        alpn: &[Vec<u8>],
        certs: &[LoadedCert],
        default_cert: usize,
    ) -> Result<Self, rustls::Error> {
        Self::with_resumption(
            policy,
            alpn,
            certs,
            default_cert,
            "",
            &Resumption::default(),
            &ClientAuth::None,
            None,
        )
    }

    /// A listener's TLS; `listener` (its name) is bound into its tickets, so no other
    /// listener accepts them. Both configs verify client certificates per `client_auth`.
    /// `previous` is the listener's TLS before a reload: when its resumption settings are the
    /// same, its session cache and ticket keys are kept, so clients still resume.
    #[allow(clippy::too_many_arguments)]
    pub fn with_resumption(
        policy: TlsPolicy,
        alpn: &[Vec<u8>],
        certs: &[LoadedCert],
        default_cert: usize,
        listener: &str,
        resumption: &Resumption,
        client_auth: &ClientAuth,
        previous: Option<&ServerTls>,
    ) -> Result<Self, rustls::Error> {
        let verifier = client_auth.verifier().map_err(rustls::Error::General)?;
        let resolver = Arc::new(SniResolver::new(certs, default_cert));
        let kept = previous.filter(|p| p.resumption == *resumption);
        let storage: Arc<dyn rustls::server::StoresServerSessions> = match kept {
            Some(p) => p.storage.clone(),
            None => match resumption.session_cache_size {
                0 => Arc::new(NoServerSessionStorage {}),
                n => ServerSessionMemoryCache::new(n),
            },
        };
        let ticketer: Option<Arc<dyn rustls::server::ProducesTickets>> = match kept {
            Some(p) => p.ticketer.clone(),
            None if resumption.tickets => Some(Ticketer::new(listener, resumption)?),
            None => None,
        };
        let build = |mut provider: CryptoProvider,
                     chacha_first: bool|
         -> Result<Arc<ServerConfig>, rustls::Error> {
            provider.cipher_suites = suites_in_order(chacha_first);
            let builder = ServerConfig::builder_with_provider(Arc::new(provider))
                .with_protocol_versions(policy.versions())?;
            let builder = match &verifier {
                Some(v) => builder.with_client_cert_verifier(v.clone()),
                None => builder.with_no_client_auth(),
            };
            let mut config = builder.with_cert_resolver(resolver.clone());
            config.ignore_client_order = true;
            config.alpn_protocols = alpn.to_vec();
            config.session_storage = storage.clone();
            if let Some(t) = &ticketer {
                config.ticketer = t.clone();
            }
            Ok(Arc::new(config))
        };
        Ok(Self {
            standard: [
                build(kx::standard_provider(), false)?,
                build(kx::standard_provider(), true)?,
            ],
            post_quantum: [
                build(kx::post_quantum_provider(), false)?,
                build(kx::post_quantum_provider(), true)?,
            ],
            stats: previous.map(|p| p.stats.clone()).unwrap_or_default(),
            resolver,
            client_auth: !client_auth.is_none(),
            resumption: resumption.clone(),
            storage,
            ticketer,
        })
    }

    /// The listener's handshake counters.
    pub fn stats(&self) -> &Arc<HandshakeStats> {
        &self.stats
    }

    /// The 421 check for a connection that sent `sni`: `None` unless the listener asks for
    /// client certificates.
    pub fn authority_check(&self, sni: Option<&str>) -> Option<AuthorityCheck> {
        self.client_auth.then(|| AuthorityCheck {
            sni: sni.map(str::to_ascii_lowercase),
            resolver: self.resolver.clone(),
        })
    }

    /// The configuration for the client that sent `hello`.
    pub fn config_for(&self, hello: &ClientHello<'_>) -> Arc<ServerConfig> {
        let chacha_first = hello.cipher_suites().first().is_some_and(|s| is_chacha(*s));
        let configs = if kx::offers_post_quantum(hello.named_groups()) {
            &self.post_quantum
        } else {
            &self.standard
        };
        configs[usize::from(chacha_first)].clone()
    }
}

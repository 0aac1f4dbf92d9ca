//! Upgraded connections (WebSocket and other `Upgrade:` protocols): once the backend answers
//! 101, the client's and the backend's connections are joined and bytes copied both ways.

use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper::Response;
use hyper_util::rt::TokioIo;
use tracing::debug;

use crate::upstream::InFlight;

/// Joins both sides once hyper hands them over; the backend counts the tunnel as in flight.
pub fn spawn_tunnel(
    client: OnUpgrade,
    backend_response: &mut Response<Incoming>,
    in_flight: InFlight,
) {
    let backend = hyper::upgrade::on(backend_response);
    tokio::spawn(async move {
        let (client, backend) = match tokio::try_join!(client, backend) {
            Ok(pair) => pair,
            Err(e) => {
                debug!(error = %e, "upgrade did not complete");
                return;
            }
        };
        let mut client = TokioIo::new(client);
        let mut backend = TokioIo::new(backend);
        match tokio::io::copy_bidirectional(&mut client, &mut backend).await {
            Ok((up, down)) => debug!(up, down, "upgraded connection closed"),
            Err(e) => debug!(error = %e, "upgraded connection ended with an error"),
        }
        drop(in_flight);
    });
}

//! Step 2: every configured client port answers TCP at the host's addresses.

use super::*;

/// How an endpoint is named in a report: "IMAP 993 (SSL/TLS)".
pub fn endpoint_name(endpoint: Endpoint) -> String {
    format!(
        "{} {} ({})",
        endpoint.protocol.label(),
        endpoint.port,
        endpoint.security.label()
    )
}

/// Step 2: the port at every address; the first connection that worked is kept for TLS.
pub(super) async fn check_port(endpoint: Endpoint, addresses: &[IpAddr]) -> (Finding, Option<(IpAddr, TcpStream)>) {
    let tries = join_all(addresses.iter().map(|ip| async move {
        let addr = SocketAddr::new(*ip, endpoint.port);
        let result = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => Ok(stream),
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                Err("connection refused (nothing listens there)".to_string())
            }
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!(
                "no answer within {} s (a firewall may drop it)",
                CONNECT_TIMEOUT.as_secs()
            )),
        };
        (*ip, result)
    }))
    .await;
    let mut reached = None;
    let mut good = Vec::new();
    let mut bad = Vec::new();
    for (ip, result) in tries {
        match result {
            Ok(stream) => {
                good.push(ip.to_string());
                if reached.is_none() {
                    let _ = stream.set_nodelay(true);
                    reached = Some((ip, stream));
                }
            }
            Err(why) => bad.push(format!("{ip}: {why}")),
        }
    }
    let name = endpoint_name(endpoint);
    let finding = if bad.is_empty() {
        Finding::new(
            Status::Ok,
            Check::Port,
            name,
            format!("reachable at {}", good.join(", ")),
        )
    } else if good.is_empty() {
        Finding::new(
            Status::Error,
            Check::Port,
            name,
            format!("port {} cannot be reached: {}", endpoint.port, bad.join("; ")),
        )
        .advice(format!(
            "Check that tern serve is running and listens on port {} (the [listen] table of tern.toml and its \
             start-up table), and that no firewall between clients and the server blocks it.",
            endpoint.port
        ))
    } else {
        Finding::new(
            Status::Warning,
            Check::Port,
            name,
            format!("reachable at {}, not at {}", good.join(", "), bad.join("; ")),
        )
        .advice(
            "Clients pick any of the host's addresses: make every client port reachable on all of them, or remove \
             the DNS record of the address that does not answer.",
        )
    };
    (finding.at(endpoint), reached)
}

//! `host:port` as the Gloo Mesh agent address takes it: a host name, an IPv4
//! address or an IPv6 literal in brackets, and a port.

use std::fmt;

/// A `host:port` with an IPv6 literal in brackets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostPort {
    pub host: String,
    pub port: u16,
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// Parses `host:port`, `1.2.3.4:port` or `[v6]:port`; an unbracketed IPv6
/// literal is refused because its last group cannot be told from a port.
pub fn parse_host_port(raw: &str) -> Result<HostPort, String> {
    let hint = "must be host:port, with an IPv6 literal in brackets, e.g. enterprise-agent.gloo-mesh:9977 or [2001:db8::1]:9977";
    let (host, port) = if let Some(rest) = raw.strip_prefix('[') {
        let (h, p) = rest
            .split_once("]:")
            .ok_or_else(|| format!("{raw:?} {hint}"))?;
        if h.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!("{raw:?}: {h:?} in brackets is not an IPv6 address"));
        }
        (h, p)
    } else {
        let (h, p) = raw
            .rsplit_once(':')
            .ok_or_else(|| format!("{raw:?} {hint}"))?;
        if h.contains(':') {
            return Err(format!("{raw:?} {hint}"));
        }
        let label_ok = !h.is_empty()
            && h.len() <= 253
            && h.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                    && !l.starts_with('-')
                    && !l.ends_with('-')
            });
        if !label_ok {
            return Err(format!("{raw:?}: {h:?} is not a host name or IPv4 address"));
        }
        (h, p)
    };
    let port: u16 = port
        .parse()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| format!("{raw:?}: {port:?} is not a port (1 to 65535)"))?;
    Ok(HostPort {
        host: host.to_string(),
        port,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn host_ports_need_brackets_around_ipv6() {
        assert_eq!(
            parse_host_port("[2001:db8::1]:9977").unwrap().to_string(),
            "[2001:db8::1]:9977"
        );
        assert_eq!(parse_host_port("agent.gloo-mesh:9977").unwrap().port, 9977);
        assert_eq!(parse_host_port("192.0.2.1:80").unwrap().host, "192.0.2.1");
        for bad in [
            "2001:db8::1:9977",
            "agent",
            "agent:0",
            "agent:70000",
            "[nope]:1",
            "[::1]9977",
            ":80",
            "-a:1",
        ] {
            assert!(parse_host_port(bad).is_err(), "{bad} accepted");
        }
    }

    proptest! {
        #[test]
        fn random_host_ports_never_panic(raw in any::<String>()) {
            let _ = parse_host_port(&raw);
        }
    }
}

//! Listening sockets. The default address of both binaries is `[::]`: one socket that accepts
//! IPv6 and (as IPv4-mapped addresses) IPv4, so the same defaults work in IPv4, IPv6-only and
//! dual-stack clusters, where kubelet probes the pod's own address of either family.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};

use socket2::{Domain, Protocol, Socket, Type};

/// Binds `addr`. For the IPv6 wildcard `[::]` the socket is made dual-stack explicitly (the
/// kernel default, `net.ipv6.bindv6only`, may say otherwise), and on a node whose kernel has
/// IPv6 switched off it falls back to `0.0.0.0` on the same port. Any other address is bound as
/// given.
pub fn bind(addr: SocketAddr) -> io::Result<tokio::net::TcpListener> {
    let SocketAddr::V6(v6) = addr else {
        return plain(addr);
    };
    if !v6.ip().is_unspecified() {
        return plain(addr);
    }
    let socket = match Socket::new(Domain::IPV6, Type::STREAM, Some(Protocol::TCP)) {
        Ok(socket) => socket,
        // EAFNOSUPPORT: the kernel has no IPv6 (ipv6.disable=1).
        Err(e) if e.raw_os_error() == Some(97) => {
            let v4 = SocketAddr::from((Ipv4Addr::UNSPECIFIED, addr.port()));
            tracing::warn!(%addr, fallback = %v4, error = %e, "no IPv6 on this node: listening on IPv4 only");
            return plain(v4);
        }
        Err(e) => return Err(e),
    };
    socket.set_only_v6(false)?;
    listen(socket, addr)
}

fn plain(addr: SocketAddr) -> io::Result<tokio::net::TcpListener> {
    let domain = if addr.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    listen(
        Socket::new(domain, Type::STREAM, Some(Protocol::TCP))?,
        addr,
    )
}

/// What `tokio::net::TcpListener::bind` does: address reuse (a restarted process can bind
/// while old connections linger in TIME_WAIT), non-blocking, backlog 1024.
fn listen(socket: Socket, addr: SocketAddr) -> io::Result<tokio::net::TcpListener> {
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    tokio::net::TcpListener::from_std(socket.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    // The wildcard itself is not bound here: tests listen on loopback only (a test of the
    // dual-stack default would have to listen on every interface of the machine).

    #[tokio::test]
    async fn other_addresses_are_bound_as_given() {
        let listener = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        assert!(listener.local_addr().unwrap().ip().is_loopback());
        let v6 = bind("[::1]:0".parse().unwrap()).unwrap();
        assert_eq!(v6.local_addr().unwrap().ip().to_string(), "::1");
    }
}

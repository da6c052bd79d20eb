//! The TC pull (docs/engine.md, "Per packet", step 0), live: the parser's
//! "truncated" answer on an skb with more bytes than its linear part pulls
//! them in and parses again; headers already linear are never pulled,
//! whatever their layout (VLAN tags, IPv6 extension headers).
//!
//! BPF_PROG_TEST_RUN builds only linear skbs (one buffer, no fragments), so
//! these skbs come from a packet socket with a virtio-net header, whose
//! `hdr_len` says how much of the frame the kernel puts in the linear part
//! (the rest goes to page fragments once the frame exceeds a page), sent out
//! of a veth whose tc-egress runs the entry. Truly truncated packets (linear
//! skbs ending inside a header) are tested with BPF_PROG_TEST_RUN in
//! entry_parse.rs.

mod common;

use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use emptcp::{Dataplane, EntryCounters, Hook};
use emptcp_testbed::{LinkEnd, LinkSpec, Topology, root_or_skip};
use emptcp_wire::packet::{Ipv6Extension, PacketBuilder, TcpFlags, VlanTag};
use emptcp_wire::tcp_opt::TcpOption;

use common::packets::dss;

/// Frames this long are built paged by the packet socket (its linear part
/// is then `hdr_len`); shorter ones, under a page, stay linear.
const PAYLOAD: usize = 6000;

/// A raw packet socket on one interface, each frame preceded by a
/// virtio-net header (`PACKET_VNET_HDR`).
struct PacketSocket {
    fd: OwnedFd,
    ifindex: u32,
}

impl PacketSocket {
    fn open(ifindex: u32) -> PacketSocket {
        // Protocol 0: the socket receives nothing, it only sends.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, 0) };
        assert!(
            fd >= 0,
            "packet socket: {}",
            std::io::Error::last_os_error()
        );
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let on: libc::c_int = 1;
        let rc = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_VNET_HDR,
                (&on as *const libc::c_int).cast(),
                std::mem::size_of_val(&on) as libc::socklen_t,
            )
        };
        assert_eq!(
            rc,
            0,
            "PACKET_VNET_HDR: {}",
            std::io::Error::last_os_error()
        );
        PacketSocket { fd, ifindex }
    }

    /// Sends `frame` with its first `linear` bytes in the skb's linear part.
    fn send(&self, frame: &[u8], linear: usize) {
        // struct virtio_net_hdr, little endian (virtio 1.0 and x86): no
        // checksum offload, no GSO, hdr_len.
        let mut msg = vec![0u8; 10];
        msg[2..4].copy_from_slice(&u16::try_from(linear).unwrap().to_le_bytes());
        msg.extend_from_slice(frame);
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_protocol = u16::from_be_bytes([frame[12], frame[13]]).to_be();
        addr.sll_ifindex = self.ifindex as i32;
        let sent = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                msg.as_ptr().cast(),
                msg.len(),
                0,
                (&addr as *const libc::sockaddr_ll).cast(),
                std::mem::size_of_val(&addr) as libc::socklen_t,
            )
        };
        assert_eq!(
            sent,
            msg.len() as isize,
            "sendto: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// A Linux-style MPTCP packet from `sport` (NOP NOP timestamps DSS) and its
/// headers' length (all but the payload).
fn frame(b: PacketBuilder, sport: u16) -> (Vec<u8>, usize) {
    let b = b.ports(sport, 80).flags(TcpFlags::ACK).options([
        TcpOption::Nop,
        TcpOption::Nop,
        TcpOption::Timestamps {
            value: 1,
            echo_reply: 2,
        },
        dss(),
    ]);
    let headers = b.clone().build().unwrap().len();
    (b.payload(vec![0x5a; PAYLOAD]).build().unwrap(), headers)
}

fn v4() -> PacketBuilder {
    PacketBuilder::ipv4(Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 9, 0, 1))
}

fn v6() -> PacketBuilder {
    PacketBuilder::ipv6("fd00::1".parse().unwrap(), "fd00::9".parse().unwrap())
}

const WATCHED: [&str; 7] = [
    "paged",
    "pulled",
    "tcp",
    "mptcp",
    "quick_mptcp",
    "malformed",
    "not_tcp",
];

/// The watched counters that moved while `send` ran, nonzero ones only,
/// sorted by name.
fn moved(dp: &Dataplane, send: impl FnOnce()) -> Vec<(&'static str, u64)> {
    let before: EntryCounters = dp.counters(Hook::TcEgress).unwrap();
    send();
    let after = dp.counters(Hook::TcEgress).unwrap();
    let mut out: Vec<(&str, u64)> = WATCHED
        .iter()
        .map(|&c| (c, after.get(c) - before.get(c)))
        .filter(|&(_, n)| n > 0)
        .collect();
    out.sort();
    out
}

#[test]
fn truncation_in_the_linear_part_pulls_and_linear_headers_never_do() {
    if !root_or_skip() {
        return;
    }
    let tb = Topology::builder("tcpull")
        .host("p")
        .link(
            LinkSpec::new(LinkEnd::new("p", "tp0"), LinkEnd::new("p", "tp1"))
                // Room for the paged frames (the packet socket refuses frames over the MTU).
                .mtu(9000),
        )
        .build()
        .expect("namespace with a veth pair");
    let host = tb.host("p").unwrap();
    let ifindex = host.ifindex("tp0").unwrap();
    // The thread stays in the namespace: the attachment and the socket live there.
    let _in_ns = host.enter().unwrap();
    let mut dp = Dataplane::load().unwrap();
    dp.attach(Hook::TcEgress, ifindex).unwrap();
    let sock = PacketSocket::open(ifindex);

    let walked = |pulled: bool| {
        let mut v = vec![("mptcp", 1), ("paged", 1), ("tcp", 1)];
        if pulled {
            v.push(("pulled", 1));
        }
        v.sort();
        v
    };

    // (a) Ethernet, IP and the fixed TCP header linear, the options not:
    // the option walk reports truncation, the entry pulls and parses again,
    // and the packet is an MPTCP packet, not a malformed one.
    let (p, headers) = frame(v4(), 41000);
    let fixed = 14 + 20 + 20;
    assert!(headers > fixed + 4, "the packet has options");
    assert_eq!(
        moved(&dp, || sock.send(&p, fixed)),
        walked(true),
        "options outside the linear part"
    );
    // The flow's next packet: the quick pass compares option words, which
    // are not in the linear part, so the packet takes the full path, pulled.
    assert_eq!(
        moved(&dp, || sock.send(&p, fixed)),
        walked(true),
        "the flow's next packet"
    );
    // Control: with its options linear, that packet does take the quick pass.
    assert_eq!(
        moved(&dp, || sock.send(&p, headers)),
        vec![("paged", 1), ("quick_mptcp", 1), ("tcp", 1)],
        "the flow's next packet, options linear"
    );
    // Cut inside the IPv6 header: the header parse reports truncation.
    let (p6, _) = frame(v6(), 41001);
    assert_eq!(
        moved(&dp, || sock.send(&p6, 14 + 20)),
        walked(true),
        "the IPv6 header outside the linear part"
    );

    // (b) Every header linear, payload in fragments: no pull. The old check
    // (a second, simpler parser) pulled the VLAN-tagged and the IPv6
    // extension-header packets, which it could not read; the runs above
    // are the control that these skbs do get pulled when they must.
    for (what, (p, headers)) in [
        ("plain IPv4", frame(v4(), 42000)),
        (
            "VLAN-tagged IPv4",
            frame(v4().vlan(VlanTag::dot1q(10)), 42001),
        ),
        (
            "QinQ IPv6",
            frame(
                v6().vlan(VlanTag::dot1ad(100)).vlan(VlanTag::dot1q(10)),
                42002,
            ),
        ),
        (
            "IPv6 with hop-by-hop and destination options",
            frame(
                v6().ipv6_extension(Ipv6Extension::hop_by_hop_padded(&[]))
                    .ipv6_extension(Ipv6Extension::destination_options_padded(&[])),
                42003,
            ),
        ),
    ] {
        assert!(p.len() > headers + 4096, "{what}: a paged skb");
        assert_eq!(
            moved(&dp, || sock.send(&p, headers)),
            walked(false),
            "{what}: headers linear"
        );
    }
}

//! Proptest strategies for every MPTCP option, TCP option lists and whole packets (feature
//! `proptest`).
//!
//! Every value these strategies make is encodable: serializing it succeeds and parsing the bytes
//! gives the value back. Use them to drive data-plane tests over the whole option space.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;

use crate::mptcp::{
    AddAddr, AddAddrV0, DataSeq, Dss, DssMapping, MpCapable, MpCapableKeys, MpFail, MpFastclose,
    MpJoin, MpPrio, MpTcpRst, MptcpOption, MptcpVersion, RemoveAddr,
};
use crate::packet::{
    ChecksumMode, EthernetHeader, IpHeader, Ipv4Header, Ipv6Extension, Ipv6Header, PacketBuilder,
    TcpFlags, TcpHeader, VlanTag, ethertype,
};
use crate::tcp_opt::{MAX_OPTION_AREA, SackBlock, TcpOption};

/// Any IPv4 or IPv6 address.
pub fn ip_addr() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(|o| IpAddr::V4(Ipv4Addr::from(o))),
        any::<[u8; 16]>().prop_map(|o| IpAddr::V6(Ipv6Addr::from(o))),
    ]
}

fn data_seq() -> impl Strategy<Value = DataSeq> {
    prop_oneof![
        any::<u32>().prop_map(DataSeq::Short),
        any::<u64>().prop_map(DataSeq::Long),
    ]
}

/// Any MP_CAPABLE.
pub fn mp_capable() -> impl Strategy<Value = MpCapable> {
    let keys = prop_oneof![
        Just(MpCapableKeys::None),
        any::<u64>().prop_map(MpCapableKeys::Sender),
        any::<(u64, u64)>().prop_map(|(sender, receiver)| MpCapableKeys::Both { sender, receiver }),
        (
            any::<u64>(),
            any::<u64>(),
            any::<u16>(),
            option::of(any::<u16>())
        )
            .prop_map(
                |(sender, receiver, data_len, checksum)| MpCapableKeys::WithData {
                    sender,
                    receiver,
                    data_len,
                    checksum,
                }
            ),
    ];
    (0u8..16, any::<u8>(), keys).prop_map(|(version, flags, keys)| MpCapable {
        version,
        flags,
        keys,
    })
}

/// Any MP_JOIN, in each of its three forms.
pub fn mp_join() -> impl Strategy<Value = MpJoin> {
    prop_oneof![
        (
            any::<bool>(),
            any::<u8>(),
            any::<u32>(),
            any::<u32>(),
            0u8..8
        )
            .prop_map(
                |(backup, address_id, token, random, reserved)| MpJoin::Syn {
                    backup,
                    address_id,
                    token,
                    random,
                    reserved,
                }
            ),
        (
            any::<bool>(),
            any::<u8>(),
            any::<u64>(),
            any::<u32>(),
            0u8..8
        )
            .prop_map(
                |(backup, address_id, hmac, random, reserved)| MpJoin::SynAck {
                    backup,
                    address_id,
                    hmac,
                    random,
                    reserved,
                }
            ),
        (any::<[u8; 20]>(), 0u16..0x1000)
            .prop_map(|(hmac, reserved)| MpJoin::Ack { hmac, reserved }),
    ]
}

/// Any DSS: every combination of A, a, M, m, F, with or without checksum.
pub fn dss() -> impl Strategy<Value = Dss> {
    let mapping = (
        data_seq(),
        any::<u32>(),
        any::<u16>(),
        option::of(any::<u16>()),
    )
        .prop_map(|(data_seq, subflow_seq, data_len, checksum)| DssMapping {
            data_seq,
            subflow_seq,
            data_len,
            checksum,
        });
    (
        option::of(data_seq()),
        option::of(mapping),
        any::<bool>(),
        any::<u16>(),
    )
        .prop_map(|(data_ack, mapping, data_fin, bits)| {
            let mut allowed = Dss::RESERVED_MASK;
            if data_ack.is_none() {
                allowed |= Dss::FLAG_DATA_ACK_LONG;
            }
            if mapping.is_none() {
                allowed |= Dss::FLAG_DSN_LONG;
            }
            Dss {
                data_ack,
                mapping,
                data_fin,
                unused_bits: bits & allowed,
            }
        })
}

/// Any RFC 8684 ADD_ADDR.
pub fn add_addr() -> impl Strategy<Value = AddAddr> {
    (
        any::<bool>(),
        any::<u8>(),
        ip_addr(),
        option::of(any::<u16>()),
        option::of(any::<u64>()),
        0u8..8,
    )
        .prop_map(
            |(echo, address_id, address, port, hmac, reserved)| AddAddr {
                echo,
                address_id,
                address,
                port,
                hmac,
                reserved,
            },
        )
}

/// Any RFC 6824 ADD_ADDR.
pub fn add_addr_v0() -> impl Strategy<Value = AddAddrV0> {
    (any::<u8>(), ip_addr(), option::of(any::<u16>())).prop_map(|(address_id, address, port)| {
        AddAddrV0 {
            address_id,
            address,
            port,
        }
    })
}

/// The options both versions read the same way.
fn common_option() -> impl Strategy<Value = MptcpOption> {
    prop_oneof![
        mp_capable().prop_map(MptcpOption::from),
        mp_join().prop_map(MptcpOption::from),
        dss().prop_map(MptcpOption::from),
        (vec(any::<u8>(), 1..=40), 0u8..16).prop_map(|(address_ids, reserved)| {
            RemoveAddr {
                address_ids,
                reserved,
            }
            .into()
        }),
        (any::<bool>(), option::of(any::<u8>()), 0u8..8).prop_map(
            |(backup, address_id, reserved)| MpPrio {
                backup,
                address_id,
                reserved,
            }
            .into()
        ),
        (any::<u64>(), 0u16..0x1000)
            .prop_map(|(data_seq, reserved)| MpFail { data_seq, reserved }.into()),
        (any::<u64>(), 0u16..0x1000).prop_map(|(receiver_key, reserved)| {
            MpFastclose {
                receiver_key,
                reserved,
            }
            .into()
        }),
        (0u8..16, any::<u8>()).prop_map(|(flags, reason)| MpTcpRst { flags, reason }.into()),
        (9u8..=15, 0u8..16, vec(any::<u8>(), 0..24)).prop_map(|(subtype, low_bits, data)| {
            MptcpOption::Unknown {
                subtype,
                low_bits,
                data,
            }
        }),
    ]
}

/// Any MPTCP option as `version` defines them (ADD_ADDR in that version's form).
pub fn mptcp_option(version: MptcpVersion) -> BoxedStrategy<MptcpOption> {
    match version {
        MptcpVersion::V1 => prop_oneof![
            9 => common_option(),
            1 => add_addr().prop_map(MptcpOption::from),
        ]
        .boxed(),
        MptcpVersion::V0 => prop_oneof![
            9 => common_option(),
            1 => add_addr_v0().prop_map(MptcpOption::from),
        ]
        .boxed(),
    }
}

/// Any TCP option except EOL and padding, MPTCP options in RFC 8684 form.
pub fn tcp_option() -> impl Strategy<Value = TcpOption> {
    let sack = vec(
        any::<(u32, u32)>().prop_map(|(left, right)| SackBlock { left, right }),
        1..=4,
    );
    prop_oneof![
        1 => Just(TcpOption::Nop),
        1 => any::<u16>().prop_map(TcpOption::Mss),
        1 => any::<u8>().prop_map(TcpOption::WindowScale),
        1 => Just(TcpOption::SackPermitted),
        1 => sack.prop_map(TcpOption::Sack),
        1 => any::<(u32, u32)>()
            .prop_map(|(value, echo_reply)| TcpOption::Timestamps { value, echo_reply }),
        4 => mptcp_option(MptcpVersion::V1).prop_map(TcpOption::Mptcp),
        1 => (
            any::<u8>().prop_filter("kinds without a decoder", |k| ![0, 1, 2, 3, 4, 5, 8, 30]
                .contains(k)),
            vec(any::<u8>(), 0..12)
        )
            .prop_map(|(kind, data)| TcpOption::Unknown { kind, data }),
    ]
}

/// A list of options of at most `max_len` bytes, sometimes ended by EOL and padding.
pub fn tcp_option_list(max_len: usize) -> impl Strategy<Value = Vec<TcpOption>> {
    (vec(tcp_option(), 0..8), option::of(vec(any::<u8>(), 0..4))).prop_map(move |(options, end)| {
        let mut used = 0;
        let mut list: Vec<TcpOption> = options
            .into_iter()
            .take_while(|o| {
                used += o.wire_len();
                used <= max_len
            })
            .collect();
        used = list.iter().map(TcpOption::wire_len).sum();
        if let Some(padding) = end
            && used < max_len
        {
            list.push(TcpOption::EndOfList);
            let room = max_len - used - 1;
            let padding: Vec<u8> = padding.into_iter().take(room).collect();
            if !padding.is_empty() {
                list.push(TcpOption::Padding(padding));
            }
        }
        list
    })
}

fn ipv6_extension() -> impl Strategy<Value = Ipv6Extension> {
    let options = vec(any::<u8>(), 0..14);
    prop_oneof![
        options
            .clone()
            .prop_map(|o| Ipv6Extension::hop_by_hop_padded(&o)),
        options.prop_map(|o| Ipv6Extension::destination_options_padded(&o)),
        (any::<u8>(), any::<u8>(), 0usize..3, any::<u8>()).prop_map(
            |(routing_type, segments_left, words, fill)| Ipv6Extension::Routing {
                routing_type,
                segments_left,
                data: vec![fill; 4 + 8 * words],
            }
        ),
        (any::<bool>(), any::<u32>(), any::<u8>(), 0u8..4).prop_map(
            |(more_fragments, identification, reserved, reserved_bits)| Ipv6Extension::Fragment {
                fragment_offset: 0,
                more_fragments,
                identification,
                reserved,
                reserved_bits,
            }
        ),
    ]
}

/// Any IPv4 (with options) or IPv6 (with extension headers) header carrying TCP, first
/// fragment only.
pub fn ip_header() -> impl Strategy<Value = IpHeader> {
    let v4 = (
        any::<u8>(),
        any::<u16>(),
        any::<u16>(),
        any::<u8>(),
        any::<[u8; 4]>(),
        any::<[u8; 4]>(),
        0usize..=10,
        any::<u8>(),
    )
        .prop_map(
            |(dscp_ecn, identification, flags, ttl, src, dst, words, fill)| {
                IpHeader::V4(Ipv4Header {
                    dscp_ecn,
                    identification,
                    flags_fragment: flags & 0xe000,
                    ttl,
                    protocol: crate::checksum::IPPROTO_TCP,
                    src: src.into(),
                    dst: dst.into(),
                    options: vec![fill; 4 * words],
                })
            },
        );
    let v6 = (
        any::<u8>(),
        0u32..0x10_0000,
        any::<u8>(),
        any::<[u8; 16]>(),
        any::<[u8; 16]>(),
        vec(ipv6_extension(), 0..3),
    )
        .prop_map(
            |(traffic_class, flow_label, hop_limit, src, dst, extensions)| {
                IpHeader::V6(Ipv6Header {
                    traffic_class,
                    flow_label,
                    hop_limit,
                    src: src.into(),
                    dst: dst.into(),
                    extensions,
                    upper_protocol: crate::checksum::IPPROTO_TCP,
                })
            },
        );
    prop_oneof![v4, v6]
}

/// Any TCP header.
pub fn tcp_header() -> impl Strategy<Value = TcpHeader> {
    (
        any::<(u16, u16, u32, u32)>(),
        any::<u8>(),
        0u8..16,
        any::<(u16, u16)>(),
    )
        .prop_map(
            |((src_port, dst_port, seq, ack), flags, reserved, (window, urgent_ptr))| TcpHeader {
                src_port,
                dst_port,
                seq,
                ack,
                flags: TcpFlags(flags),
                reserved,
                window,
                urgent_ptr,
            },
        )
}

/// Any builder of a valid packet: with or without Ethernet, up to two VLAN tags, any IP
/// header, any option list that fits, payload and trailer; correct checksums.
pub fn packet_builder() -> impl Strategy<Value = PacketBuilder> {
    let vlan = (
        prop_oneof![Just(ethertype::VLAN), Just(ethertype::QINQ)],
        any::<u16>(),
    )
        .prop_map(|(tpid, tci)| VlanTag { tpid, tci });
    (
        option::of(any::<([u8; 6], [u8; 6])>()),
        vec(vlan, 0..=2),
        ip_header(),
        tcp_header(),
        tcp_option_list(MAX_OPTION_AREA),
        vec(any::<u8>(), 0..64),
        vec(any::<u8>(), 0..8),
    )
        .prop_map(|(ethernet, vlans, ip, tcp, options, payload, trailer)| {
            let builder = match &ip {
                IpHeader::V4(v4) => PacketBuilder::ipv4(v4.src, v4.dst),
                IpHeader::V6(v6) => PacketBuilder::ipv6(v6.src, v6.dst),
            };
            let mut builder = builder.options(options).payload(payload).trailer(trailer);
            builder.ip = ip;
            builder.tcp = tcp;
            builder.ethernet = ethernet.map(|(src, dst)| EthernetHeader { dst, src });
            if builder.ethernet.is_some() {
                builder.vlans = vlans;
            }
            builder.ipv4_checksum = ChecksumMode::Correct;
            builder
        })
}

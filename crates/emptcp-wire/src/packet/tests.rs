//! Packet builder and parser tests. The two reference frames were laid out by hand and their
//! checksums computed independently with Python (`struct` and a 10-line RFC 1071 sum).

use std::net::{Ipv4Addr, Ipv6Addr};

use super::*;
use crate::error::ErrorKind;
use crate::mptcp::{MpCapable, MpCapableKeys, MpPrio, MptcpOption};
use crate::tcp_opt::{TcpOption, serialize_options};

/// Ethernet / 802.1Q vid 100 / IPv4 id 0x1234 DF / TCP 40000 -> 80 SYN+ACK seq 0x01020304
/// window 65535 / MSS 1460, SACK permitted, NOP, NOP, MP_CAPABLE(v1, A|H, key 0x0102..08) /
/// "hello". IPv4 checksum 0x1481, TCP checksum 0x2af2.
#[rustfmt::skip]
const IPV4_FRAME: [u8; 83] = [
    0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01,
    0x81, 0x00, 0x00, 0x64, 0x08, 0x00,
    0x45, 0x00, 0x00, 0x41, 0x12, 0x34, 0x40, 0x00, 0x40, 0x06, 0x14, 0x81,
    0x0a, 0x00, 0x00, 0x01, 0x0a, 0x00, 0x00, 0x02,
    0x9c, 0x40, 0x00, 0x50, 0x01, 0x02, 0x03, 0x04, 0x00, 0x00, 0x00, 0x00,
    0xa0, 0x12, 0xff, 0xff, 0x2a, 0xf2, 0x00, 0x00,
    0x02, 0x04, 0x05, 0xb4, 0x04, 0x02, 0x01, 0x01,
    0x1e, 0x0c, 0x01, 0x81, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08,
    0x68, 0x65, 0x6c, 0x6c, 0x6f,
];

/// Bare IPv6 2001:db8::1 -> 2001:db8::2 / hop-by-hop (PadN) / destination options (PadN) /
/// TCP 443 -> 50000 ACK seq 7 ack 9 window 1000 / MP_PRIO(B), EOL. TCP checksum 0x0c55.
#[rustfmt::skip]
const IPV6_PACKET: [u8; 80] = [
    0x60, 0x00, 0x00, 0x00, 0x00, 0x28, 0x00, 0x40,
    0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01,
    0x20, 0x01, 0x0d, 0xb8, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02,
    0x3c, 0x00, 0x01, 0x04, 0x00, 0x00, 0x00, 0x00,
    0x06, 0x00, 0x01, 0x04, 0x00, 0x00, 0x00, 0x00,
    0x01, 0xbb, 0xc3, 0x50, 0x00, 0x00, 0x00, 0x07, 0x00, 0x00, 0x00, 0x09,
    0x60, 0x10, 0x03, 0xe8, 0x0c, 0x55, 0x00, 0x00,
    0x1e, 0x03, 0x51, 0x00,
];

const SRC4: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const DST4: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
const SRC6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
const DST6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2);

fn mp_capable_synack() -> TcpOption {
    TcpOption::Mptcp(
        MpCapable {
            version: 1,
            flags: 0x81,
            keys: MpCapableKeys::Sender(0x0102_0304_0506_0708),
        }
        .into(),
    )
}

fn ipv4_builder() -> PacketBuilder {
    let mut builder = PacketBuilder::ipv4(SRC4, DST4)
        .vlan(VlanTag::dot1q(100))
        .ports(40000, 80)
        .seq(0x0102_0304)
        .flags(TcpFlags::SYN | TcpFlags::ACK)
        .window(65535)
        .options([
            TcpOption::Mss(1460),
            TcpOption::SackPermitted,
            TcpOption::Nop,
            TcpOption::Nop,
            mp_capable_synack(),
        ])
        .payload(b"hello".to_vec());
    if let IpHeader::V4(v4) = &mut builder.ip {
        v4.identification = 0x1234;
    }
    builder
}

fn ipv6_builder() -> PacketBuilder {
    let prio = MpPrio {
        backup: true,
        address_id: None,
        reserved: 0,
    };
    PacketBuilder::ipv6(SRC6, DST6)
        .without_ethernet()
        .ipv6_extension(Ipv6Extension::hop_by_hop_padded(&[]))
        .ipv6_extension(Ipv6Extension::destination_options_padded(&[]))
        .ports(443, 50000)
        .seq(7)
        .ack(9)
        .window(1000)
        .option(TcpOption::Mptcp(prio.into()))
}

#[test]
fn builds_the_reference_ipv4_frame() {
    assert_eq!(ipv4_builder().build().unwrap(), IPV4_FRAME);
}

#[test]
fn builds_the_reference_ipv6_packet() {
    assert_eq!(ipv6_builder().build().unwrap(), IPV6_PACKET);
}

#[test]
fn parses_the_reference_ipv4_frame() {
    let parsed = ParsedPacket::parse(&IPV4_FRAME).unwrap();
    assert_eq!(
        parsed.offsets,
        LayerOffsets {
            l2: Some(0),
            l3: 18,
            l4: 38,
            tcp_options: 58,
            payload: 78,
            end: 83,
        }
    );
    assert_eq!(parsed.vlans, [VlanTag::dot1q(100)]);
    assert_eq!(parsed.tcp.flags, TcpFlags::SYN | TcpFlags::ACK);
    assert_eq!(parsed.ipv4_checksum, Some(0x1481));
    assert_eq!(parsed.tcp_checksum, 0x2af2);
    assert_eq!(parsed.payload(), b"hello");
    let options = parsed.options().unwrap();
    let offsets: Vec<usize> = options.iter().map(|o| o.offset).collect();
    assert_eq!(offsets, [0, 4, 6, 7, 8]);
    assert_eq!(options[4].option, mp_capable_synack());
    assert_eq!(parsed.mptcp_options().count(), 1);
    parsed.verify_checksums().unwrap();
    assert_eq!(parsed.to_builder().build().unwrap(), IPV4_FRAME);
}

#[test]
fn parses_the_reference_ipv6_packet() {
    let parsed = ParsedPacket::parse_ip(&IPV6_PACKET).unwrap();
    assert_eq!(parsed.offsets.l2, None);
    assert_eq!(parsed.offsets.l4, 56);
    assert_eq!(parsed.offsets.tcp_options, 76);
    assert_eq!(parsed.offsets.payload, 80);
    let IpHeader::V6(v6) = &parsed.ip else {
        panic!("not ipv6");
    };
    assert_eq!(v6.extensions.len(), 2);
    assert_eq!(parsed.ipv4_checksum, None);
    parsed.verify_checksums().unwrap();
    let options: Vec<_> = parsed
        .options()
        .unwrap()
        .iter()
        .map(|o| &o.option)
        .collect();
    assert_eq!(options.len(), 2);
    assert_eq!(options[1], &TcpOption::EndOfList);
    assert_eq!(parsed.to_builder().build().unwrap(), IPV6_PACKET);
}

#[test]
fn wrong_checksums_are_reported_by_name() {
    let frame = ipv4_builder()
        .tcp_checksum(ChecksumMode::Wrong)
        .build()
        .unwrap();
    let err = ParsedPacket::parse(&frame)
        .unwrap()
        .verify_checksums()
        .unwrap_err();
    let ErrorKind::BadChecksum(report) = err.kind() else {
        panic!("{err}");
    };
    assert!(report.ipv4_header.unwrap().valid);
    assert_eq!(report.tcp.found, 0x2af3);
    assert_eq!(report.tcp.expected, 0x2af2);
    assert_eq!(
        err.to_string(),
        "bad checksum: tcp checksum 0x2af3, expected 0x2af2 at byte 18"
    );

    let frame = ipv4_builder()
        .ipv4_checksum(ChecksumMode::Value(0))
        .build()
        .unwrap();
    let report = ParsedPacket::parse(&frame).unwrap().checksums();
    assert!(!report.ipv4_header.unwrap().valid);
    assert!(report.tcp.valid);
}

#[test]
fn qinq_ipv4_options_and_trailer() {
    let frame = PacketBuilder::ipv4(SRC4, DST4)
        .vlan(VlanTag::dot1ad(10))
        .vlan(VlanTag::dot1q(20))
        .ipv4_options([0x94, 0x04, 0x00, 0x00, 0x01, 0x01, 0x01, 0x00])
        .option(TcpOption::Nop)
        .trailer(vec![0u8; 6])
        .build()
        .unwrap();
    let parsed = ParsedPacket::parse(&frame).unwrap();
    assert_eq!(parsed.vlans.len(), 2);
    assert_eq!(parsed.offsets.l3, 22);
    assert_eq!(parsed.offsets.l4, 22 + 28);
    assert_eq!(parsed.trailer(), [0u8; 6]);
    parsed.verify_checksums().unwrap();
    // The option area was padded with EOL to one word.
    assert_eq!(parsed.option_area(), [1, 0, 0, 0]);
    assert_eq!(parsed.to_builder().build().unwrap(), frame);
}

#[test]
fn ipv6_routing_and_fragment_headers() {
    let final_dst = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 0x99);
    let mut routing_data = vec![0u8; 4];
    routing_data.extend(final_dst.octets());
    let frame = PacketBuilder::ipv6(SRC6, DST6)
        .ipv6_extension(Ipv6Extension::Routing {
            routing_type: 2,
            segments_left: 1,
            data: routing_data,
        })
        .ipv6_extension(Ipv6Extension::Fragment {
            fragment_offset: 0,
            more_fragments: false,
            identification: 0xabcd,
            reserved: 0,
            reserved_bits: 0,
        })
        .payload(vec![1, 2, 3])
        .build()
        .unwrap();
    let parsed = ParsedPacket::parse(&frame).unwrap();
    assert_eq!(parsed.offsets.l4, 14 + 40 + 24 + 8);
    parsed.verify_checksums().unwrap();
    // The checksum covers the final destination, not the header's.
    let segment = parsed.segment();
    assert_eq!(
        parsed.tcp_checksum,
        crate::checksum::tcp_checksum_v6(SRC6, final_dst, segment)
    );
    assert_ne!(
        parsed.tcp_checksum,
        crate::checksum::tcp_checksum_v6(SRC6, DST6, segment)
    );
}

#[test]
fn builder_refuses_impossible_layouts() {
    let too_many_options = PacketBuilder::ipv4(SRC4, DST4).raw_options(vec![1; 41]);
    assert!(matches!(
        too_many_options.build().unwrap_err().kind(),
        ErrorKind::BadLayout { length: 44, .. }
    ));
    let odd_ipv4_options = PacketBuilder::ipv4(SRC4, DST4).ipv4_options([1, 1]);
    assert!(odd_ipv4_options.build().is_err());
    let v6_with_v4_options = PacketBuilder::ipv6(SRC6, DST6).ipv4_options([1, 1, 1, 1]);
    assert!(v6_with_v4_options.build().is_err());
    let bad_hbh = PacketBuilder::ipv6(SRC6, DST6).ipv6_extension(Ipv6Extension::HopByHop(vec![]));
    assert!(bad_hbh.build().is_err());
    let three_tags = PacketBuilder::ipv4(SRC4, DST4)
        .vlan(VlanTag::dot1q(1))
        .vlan(VlanTag::dot1q(2))
        .vlan(VlanTag::dot1q(3));
    assert_eq!(
        three_tags.build().unwrap_err().kind(),
        &ErrorKind::TooManyVlanTags
    );
    let bad_option = PacketBuilder::ipv4(SRC4, DST4).option(TcpOption::Sack(vec![]));
    assert!(bad_option.build().is_err());
}

#[test]
fn malformed_options_leave_the_packet_parseable() {
    let frame = PacketBuilder::ipv4(SRC4, DST4)
        .raw_options([0x01, 0x02, 0x09, 0x00])
        .build()
        .unwrap();
    let parsed = ParsedPacket::parse(&frame).unwrap();
    let err = parsed.options().unwrap_err();
    assert_eq!(
        err.kind(),
        &ErrorKind::OptionPastEnd {
            kind: 2,
            length: 9,
            available: 3
        }
    );
    assert_eq!(err.offset(), Some(14 + 20 + 20 + 2));
    parsed.verify_checksums().unwrap();
}

#[test]
fn parse_errors_name_the_layer_and_offset() {
    let good = ipv4_builder().build().unwrap();
    let mut cases: Vec<(Vec<u8>, ErrorKind, usize)> = Vec::new();

    let mut arp = good.clone();
    arp[16..18].copy_from_slice(&[0x08, 0x06]);
    cases.push((arp, ErrorKind::UnsupportedEtherType(0x0806), 16));

    let three_tags = PacketBuilder::ipv4(SRC4, DST4)
        .vlan(VlanTag::dot1q(1))
        .vlan(VlanTag::dot1q(2))
        .build()
        .unwrap();
    let mut three = three_tags[..20].to_vec();
    three.extend([0x81, 0x00, 0x00, 0x03]);
    three.extend(&three_tags[20..]);
    cases.push((three, ErrorKind::TooManyVlanTags, 20));

    let mut v6_in_v4 = good.clone();
    v6_in_v4[18] = 0x65;
    cases.push((
        v6_in_v4,
        ErrorKind::IpVersionMismatch {
            expected: 4,
            found: 6,
        },
        18,
    ));

    let mut ihl = good.clone();
    ihl[18] = 0x44;
    cases.push((ihl, ErrorKind::BadIpv4HeaderLength { ihl: 4 }, 18));

    let mut udp = good.clone();
    udp[27] = 17;
    cases.push((udp, ErrorKind::NotTcp { protocol: 17 }, 27));

    let mut fragment = good.clone();
    fragment[24..26].copy_from_slice(&[0x00, 0x10]);
    cases.push((
        fragment,
        ErrorKind::NonFirstFragment {
            fragment_offset: 16,
        },
        24,
    ));

    let mut long = good.clone();
    long[20..22].copy_from_slice(&100u16.to_be_bytes());
    cases.push((
        long,
        ErrorKind::BadIpLength {
            declared: 100,
            available: 65,
            headers: 40,
        },
        20,
    ));

    let mut doff = good.clone();
    doff[50] = 0x40;
    cases.push((doff, ErrorKind::BadDataOffset { data_offset: 4 }, 50));

    let mut doff_past = good.clone();
    doff_past[50] = 0xf0;
    cases.push((doff_past, ErrorKind::BadDataOffset { data_offset: 15 }, 50));

    for (frame, kind, offset) in cases {
        let err = ParsedPacket::parse(&frame).unwrap_err();
        assert_eq!(err.kind(), &kind);
        assert_eq!(err.offset(), Some(offset), "{kind}");
    }

    for cut in 0..good.len() - 5 {
        assert!(ParsedPacket::parse(&good[..cut]).is_err(), "cut at {cut}");
    }
}

#[test]
fn overrides_produce_inconsistent_headers_on_purpose() {
    let frame = PacketBuilder::ipv4(SRC4, DST4)
        .option(TcpOption::Mss(1400))
        .data_offset(15)
        .ip_length(1000)
        .build()
        .unwrap();
    assert_eq!(frame[14 + 2..14 + 4], 1000u16.to_be_bytes());
    assert_eq!(frame[14 + 20 + 12], 0xf0);
    assert!(ParsedPacket::parse(&frame).is_err());
}

#[test]
fn serialize_options_feeds_raw_options() {
    let area = serialize_options(&[TcpOption::Nop, mp_capable_synack()]).unwrap();
    let frame = PacketBuilder::ipv4(SRC4, DST4)
        .raw_options(area.clone())
        .build()
        .unwrap();
    let parsed = ParsedPacket::parse(&frame).unwrap();
    assert_eq!(&parsed.option_area()[..13], area);
    let mptcp: Vec<&MptcpOption> = parsed.mptcp_options().collect();
    assert_eq!(mptcp.len(), 1);
}

#[test]
fn captures_cut_short_parse_with_their_missing_bytes() {
    let frame = ipv4_builder().payload(vec![7u8; 100]).build().unwrap();
    let cut = &frame[..frame.len() - 60];
    assert!(matches!(
        ParsedPacket::parse(cut).unwrap_err().kind(),
        ErrorKind::BadIpLength { .. }
    ));
    let parsed = ParsedPacket::parse_capture(cut).unwrap();
    assert_eq!(parsed.missing_bytes(), 60);
    assert_eq!(parsed.payload().len(), 40);
    assert_eq!(parsed.offsets.end, cut.len());
    assert_eq!(parsed.options().unwrap().len(), 5);
    assert!(matches!(
        parsed.verify_checksums().unwrap_err().kind(),
        ErrorKind::Truncated { needed: 60, .. }
    ));
    assert_eq!(parsed.to_builder().build().unwrap(), cut);
    // A whole packet parses the same either way.
    let whole = ParsedPacket::parse_capture(&frame).unwrap();
    assert_eq!(whole, ParsedPacket::parse(&frame).unwrap());
    assert_eq!(whole.missing_bytes(), 0);
    // Cutting into the options is still an error.
    assert!(ParsedPacket::parse_capture(&frame[..70]).is_err());

    let packet = ipv6_builder().payload(vec![1u8; 30]).build().unwrap();
    let parsed = ParsedPacket::parse_ip_capture(&packet[..packet.len() - 29]).unwrap();
    assert_eq!(parsed.missing_bytes(), 29);
    assert_eq!(parsed.payload(), [1]);
    assert_eq!(
        parsed.to_builder().build().unwrap(),
        packet[..packet.len() - 29]
    );
}

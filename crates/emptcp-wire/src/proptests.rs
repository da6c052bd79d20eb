//! Property tests: round trips of every option variant and of whole packets, arbitrary bytes
//! against every parser, and checksums against an independent implementation.

use proptest::collection::vec;
use proptest::prelude::*;

use crate::checksum;
use crate::fuzzing::check_roundtrip;
use crate::mptcp::{MptcpOption, MptcpVersion};
use crate::packet::{ChecksumMode, IpHeader, ParsedPacket};
use crate::strategy;
use crate::tcp_opt::{self, TcpOption, parse_options, serialize_options};

/// A deliberately different Internet checksum: 16-bit words from `chunks`, a u32 accumulator
/// folded once at the end, over an explicitly built pseudo-header.
fn reference_tcp_checksum(ip: &IpHeader, segment: &[u8]) -> u16 {
    let mut bytes = Vec::new();
    match ip {
        IpHeader::V4(v4) => {
            bytes.extend(v4.src.octets());
            bytes.extend(v4.dst.octets());
            bytes.extend([0, 6]);
            bytes.extend((segment.len() as u16).to_be_bytes());
        }
        IpHeader::V6(v6) => {
            bytes.extend(v6.src.octets());
            bytes.extend(v6.final_destination().octets());
            bytes.extend((segment.len() as u32).to_be_bytes());
            bytes.extend([0, 0, 0, 6]);
        }
    }
    let mut zeroed = segment.to_vec();
    zeroed[16] = 0;
    zeroed[17] = 0;
    bytes.extend(zeroed);
    let mut total: u32 = bytes
        .chunks(2)
        .map(|pair| u32::from(pair[0]) << 8 | u32::from(*pair.get(1).unwrap_or(&0)))
        .sum();
    while total > 0xffff {
        total = (total >> 16) + (total & 0xffff);
    }
    !(total as u16)
}

/// 1000 cases per property, unless `PROPTEST_CASES` asks for another number.
fn config() -> ProptestConfig {
    let mut config = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = 1000;
    }
    config
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn mptcp_v1_value_bytes_value(option in strategy::mptcp_option(MptcpVersion::V1)) {
        let bytes = option.to_bytes().unwrap();
        prop_assert_eq!(bytes.len(), option.wire_len());
        prop_assert_eq!(MptcpOption::parse(&bytes).unwrap(), option);
        check_roundtrip(&bytes);
    }

    #[test]
    fn mptcp_v0_value_bytes_value(option in strategy::mptcp_option(MptcpVersion::V0)) {
        let bytes = option.to_bytes().unwrap();
        prop_assert_eq!(MptcpOption::parse_versioned(&bytes, MptcpVersion::V0).unwrap(), option);
    }

    #[test]
    fn option_list_value_bytes_value(options in strategy::tcp_option_list(255)) {
        let bytes = serialize_options(&options).unwrap();
        prop_assert_eq!(parse_options(&bytes).unwrap(), options.clone());
        let mut expected_offset = 0;
        for located in tcp_opt::options(&bytes) {
            let located = located.unwrap();
            prop_assert_eq!(located.offset, expected_offset);
            expected_offset += located.option.wire_len();
        }
        prop_assert_eq!(expected_offset, bytes.len());
    }

    #[test]
    fn arbitrary_option_areas_never_panic(area in vec(any::<u8>(), 0..64)) {
        check_roundtrip(&area);
    }

    #[test]
    fn arbitrary_mptcp_bodies_never_panic(
        subtype in 0u8..16, low in 0u8..16, body in vec(any::<u8>(), 0..40), lie in any::<bool>()
    ) {
        // A kind-30 option whose length byte matches (or, with `lie`, does not): the parser
        // must reach every subtype's length checks.
        let mut option = vec![30, (body.len() + 3) as u8, subtype << 4 | low];
        option.extend(body);
        if lie {
            option[1] = option[1].wrapping_add(1);
        }
        check_roundtrip(&option);
        let mut area = vec![1];
        area.extend(&option);
        check_roundtrip(&area);
    }

    #[test]
    fn arbitrary_frames_never_panic(frame in vec(any::<u8>(), 0..160)) {
        check_roundtrip(&frame);
    }

    #[test]
    fn built_packets_parse_back_and_verify(builder in strategy::packet_builder()) {
        let frame = builder.build().unwrap();
        let parsed = match builder.ethernet {
            Some(_) => ParsedPacket::parse(&frame),
            None => ParsedPacket::parse_ip(&frame),
        }
        .unwrap();
        prop_assert_eq!(&parsed.ip, &builder.ip);
        prop_assert_eq!(parsed.tcp, builder.tcp);
        prop_assert_eq!(&parsed.vlans, &builder.vlans);
        prop_assert_eq!(parsed.payload(), builder.payload.as_slice());
        prop_assert_eq!(parsed.trailer(), builder.trailer.as_slice());
        prop_assert_eq!(&parsed.option_area()[..builder.tcp_options.len()], builder.tcp_options.as_slice());
        prop_assert!(parsed.options().is_ok());
        parsed.verify_checksums().unwrap();
        prop_assert_eq!(parsed.tcp_checksum, reference_tcp_checksum(&parsed.ip, parsed.segment()));
        check_roundtrip(&frame);
    }

    #[test]
    fn wrong_checksum_modes_always_fail(builder in strategy::packet_builder(), ip in any::<bool>()) {
        let broken = if ip && matches!(builder.ip, IpHeader::V4(_)) {
            builder.ipv4_checksum(ChecksumMode::Wrong)
        } else {
            builder.tcp_checksum(ChecksumMode::Wrong)
        };
        let frame = broken.build().unwrap();
        let parsed = match broken.ethernet {
            Some(_) => ParsedPacket::parse(&frame),
            None => ParsedPacket::parse_ip(&frame),
        }
        .unwrap();
        prop_assert!(parsed.verify_checksums().is_err());
    }

    #[test]
    fn mutated_packets_never_panic(
        builder in strategy::packet_builder(),
        edits in vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
    ) {
        let mut frame = builder.build().unwrap();
        for (at, value) in edits {
            let at = at.index(frame.len());
            frame[at] = value;
        }
        if truncate {
            frame.truncate(cut.index(frame.len() + 1));
        }
        check_roundtrip(&frame);
    }

    #[test]
    fn incremental_update_matches_recompute(
        data in vec(any::<u8>(), 2..80),
        at in any::<prop::sample::Index>(),
        new in vec(any::<u8>(), 0..8),
    ) {
        let start = at.index(data.len());
        let end = (start + new.len()).min(data.len());
        let new = &new[..end - start];
        let before = checksum::internet_checksum(&data);
        let mut changed = data.clone();
        changed[start..end].copy_from_slice(new);
        let updated = checksum::update_bytes_at(before, start, &data[start..end], new);
        prop_assert!(checksum::verifies(checksum::add(checksum::sum(&changed), updated)));
    }

    #[test]
    fn options_at_every_alignment(option in strategy::tcp_option(), nops in 0usize..4) {
        let mut list = vec![TcpOption::Nop; nops];
        list.push(option.clone());
        let bytes = serialize_options(&list).unwrap();
        let located: Vec<_> = tcp_opt::options(&bytes).collect::<Result<_, _>>().unwrap();
        prop_assert_eq!(located.last().map(|l| (l.offset, &l.option)), Some((nops, &option)));
    }
}

//! The round-trip checks behind the `parse_packet` fuzz target, kept here so that the unit
//! tests run them too.
//!
//! Unlike the rest of the crate these functions panic, on purpose: a panic is how a fuzzer or a
//! property test learns that a parser accepted bytes its serializer does not reproduce.

use crate::mptcp::{MptcpOption, MptcpVersion};
use crate::packet::{ChecksumMode, ParsedPacket};
use crate::tcp_opt::{self, serialize_options};

/// Feeds `data` to every parser: as an option area, as one MPTCP option (both versions), as an
/// Ethernet frame and as a bare IP packet (each whole and as a capture cut short). Whatever parses must serialize back to exactly
/// `data`, and a parsed packet rebuilt with correct checksums must verify.
///
/// # Panics
///
/// When a round trip fails; never for malformed input.
pub fn check_roundtrip(data: &[u8]) {
    for version in [MptcpVersion::V0, MptcpVersion::V1] {
        if let Ok(options) = tcp_opt::parse_options_versioned(data, version) {
            let bytes = serialize_options(&options)
                .unwrap_or_else(|e| panic!("parsed options do not serialize: {e}: {options:?}"));
            assert_eq!(bytes, data, "option area round trip ({version:?})");
        }
        if let Ok(option) = MptcpOption::parse_versioned(data, version) {
            let bytes = option
                .to_bytes()
                .unwrap_or_else(|e| panic!("parsed option does not serialize: {e}: {option:?}"));
            assert_eq!(bytes, data, "mptcp option round trip ({version:?})");
            assert_eq!(option.wire_len(), data.len());
        }
    }
    let parsers = [
        ParsedPacket::parse,
        ParsedPacket::parse_ip,
        ParsedPacket::parse_capture,
        ParsedPacket::parse_ip_capture,
    ];
    for parse in parsers {
        if let Ok(packet) = parse(data) {
            check_packet(&packet, data);
        }
    }
}

fn check_packet(packet: &ParsedPacket, data: &[u8]) {
    let builder = packet.to_builder();
    let rebuilt = builder
        .build()
        .unwrap_or_else(|e| panic!("parsed packet does not rebuild: {e}"));
    assert_eq!(rebuilt, data, "packet round trip");
    if let Ok(options) = packet.options() {
        for located in options {
            let range = located.range();
            let area = packet.option_area();
            let mut bytes = Vec::new();
            located
                .option
                .write_to(&mut bytes)
                .unwrap_or_else(|e| panic!("parsed option does not serialize: {e}"));
            assert_eq!(area.get(range), Some(bytes.as_slice()), "option offset");
        }
    }
    if packet.missing_bytes() > 0 {
        // A capture cut short has no checksum to repair.
        assert!(packet.verify_checksums().is_err());
        return;
    }
    let repaired = builder
        .ipv4_checksum(ChecksumMode::Correct)
        .tcp_checksum(ChecksumMode::Correct)
        .build()
        .unwrap_or_else(|e| panic!("repaired packet does not build: {e}"));
    let reparsed = match packet.offsets.l2 {
        Some(_) => ParsedPacket::parse(&repaired),
        None => ParsedPacket::parse_ip(&repaired),
    }
    .unwrap_or_else(|e| panic!("repaired packet does not parse: {e}"));
    if let Err(e) = reparsed.verify_checksums() {
        panic!("repaired packet fails its checksums: {e}");
    }
}

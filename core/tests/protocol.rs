//! The wire layout, byte for byte, and total decoding.

use gloam_core::protocol::{
    flags, offset, CallId, Header, Hello, Kind, Message, PayloadLocation, ProtocolError,
    DEFAULT_MAX_PAYLOAD, INLINE_CAPACITY, MESSAGE_SIZE,
};
use gloam_core::ErrorKind;
use proptest::prelude::*;

fn sample_header() -> Header {
    Header {
        kind: Kind::Invoke,
        flags: flags::TRUNCATED,
        function_id: 0x0102,
        method_id: 0x0304,
        caller: 0x0506_0708,
        sequence: 0x090a_0b0c,
        parent_call_id: 0x1112_1314_1516_1718,
        send_ts: 0x2122_2324_2526_2728,
        payload_len: 3,
        payload_loc: PayloadLocation::Inline,
        status: Some(ErrorKind::Timeout),
        deadline_ns: 0x3132_3334_3536_3738,
        processing_ns: 0x4142_4344_4546_4748,
        dispatch_delay_ns: 0x5152_5354,
        worker_id: 0x6162_6364,
    }
}

#[test]
fn header_layout_byte_for_byte() {
    let m = Message::with_inline(sample_header(), b"abc").unwrap();
    let b = m.to_bytes();
    assert_eq!(b.len(), MESSAGE_SIZE);
    let expected_header: [u8; 64] = [
        3, 6, 0x01, 0x00, // version, kind, flags
        0x02, 0x01, 0x04, 0x03, // function id, method id
        0x08, 0x07, 0x06, 0x05, // caller
        0x0c, 0x0b, 0x0a, 0x09, // sequence
        0x18, 0x17, 0x16, 0x15, 0x14, 0x13, 0x12, 0x11, // parent call id
        0x28, 0x27, 0x26, 0x25, 0x24, 0x23, 0x22, 0x21, // send ts
        3, 0, 0, 0, // payload len
        0, 7, 0, 0, // location, status, reserved
        0x38, 0x37, 0x36, 0x35, 0x34, 0x33, 0x32, 0x31, // deadline
        0x48, 0x47, 0x46, 0x45, 0x44, 0x43, 0x42, 0x41, // processing ns
        0x54, 0x53, 0x52, 0x51, // dispatch delay
        0x64, 0x63, 0x62, 0x61, // worker id
    ];
    assert_eq!(&b[..64], &expected_header[..]);
    assert_eq!(&b[offset::INLINE..offset::INLINE + 3], b"abc");
    assert!(b[offset::INLINE + 3..].iter().all(|&x| x == 0));
    assert_eq!(Message::decode(&b, DEFAULT_MAX_PAYLOAD).unwrap(), m);
}

#[test]
fn call_id_packing() {
    // A caller's worker id carries its generation in the high half.
    let id = CallId::new(0x0003_beef, 0x1234_5678);
    assert_eq!(id.0, 0x0003_beef_1234_5678);
    assert_eq!((id.caller(), id.sequence()), (0x0003_beef, 0x1234_5678));
    assert_eq!(id.to_string(), "0003beef12345678");
    let mut h = Header::new(Kind::Dispatch);
    h.function_id = 7;
    h.set_call_id(id);
    assert_eq!(h.call_id(), id);
    assert_eq!(h.function_id, 7, "the call id does not carry the function");
    // Two incarnations of one worker slot never share a call id.
    assert_ne!(CallId::new(0x0001_0005, 1), CallId::new(0x0002_0005, 1));
}

fn valid_bytes() -> [u8; MESSAGE_SIZE] {
    Message::with_inline(sample_header(), b"abc")
        .unwrap()
        .to_bytes()
}

#[test]
fn every_bad_field_is_named() {
    type Mutation = Box<dyn Fn(&mut Vec<u8>)>;
    let cases: Vec<(Mutation, ProtocolError, &str)> = vec![
        (
            Box::new(|b| b.truncate(100)),
            ProtocolError::Truncated { len: 100 },
            "truncated",
        ),
        (
            Box::new(|b| b.push(0)),
            ProtocolError::TooLong { len: 1025 },
            "oversized",
        ),
        (
            Box::new(|b| b[0] = 1),
            ProtocolError::BadVersion { found: 1 },
            "`version`",
        ),
        (
            Box::new(|b| b[1] = 99),
            ProtocolError::UnknownKind(99),
            "`kind`",
        ),
        (
            Box::new(|b| b[2] = 0x80),
            ProtocolError::UnknownFlags(0x80),
            "`flags`",
        ),
        (
            Box::new(|b| b[36] = 7),
            ProtocolError::UnknownPayloadLocation(7),
            "`payload_loc`",
        ),
        (
            Box::new(|b| b[37] = 200),
            ProtocolError::UnknownStatus(200),
            "`status`",
        ),
        (
            Box::new(|b| b[32..36].copy_from_slice(&961u32.to_le_bytes())),
            ProtocolError::InlineTooLong { len: 961 },
            "`payload_len`",
        ),
        (
            Box::new(|b| {
                b[36] = 1;
                b[32..36].copy_from_slice(&(20u32 << 20).to_le_bytes());
            }),
            ProtocolError::PayloadTooLong {
                len: 20 << 20,
                limit: DEFAULT_MAX_PAYLOAD,
            },
            "`payload_len`",
        ),
    ];
    for (mutate, expected, field) in cases {
        let mut b = valid_bytes().to_vec();
        mutate(&mut b);
        let err = Message::decode(&b, DEFAULT_MAX_PAYLOAD).unwrap_err();
        assert_eq!(err, expected);
        assert!(err.to_string().contains(field), "{err} should name {field}");
    }
}

#[test]
fn garbage_never_panics() {
    for len in [0usize, 1, 63, 64, 1023, 1024, 1025, 4096] {
        for fill in [0u8, 0xff, 0x01, 0x5a] {
            let _ = Message::decode(&vec![fill; len], DEFAULT_MAX_PAYLOAD);
        }
    }
}

#[test]
fn failure_text_is_cut_on_a_char_boundary() {
    let long = "é".repeat(600); // 1200 bytes
    let m = Message::failure(Header::new(Kind::Failed), ErrorKind::HandlerFailed, &long);
    assert!(m.header.flags & flags::TRUNCATED != 0);
    assert!(m.inline_payload().len() <= INLINE_CAPACITY);
    assert!(m.failure_text().chars().all(|c| c == 'é'));
    assert_eq!(m.header.status, Some(ErrorKind::HandlerFailed));
}

#[test]
fn hello_round_trip_and_bad_payloads() {
    let h = Hello {
        pid: 42,
        function: "Foo".into(),
        language: "python".into(),
        secret: "0123abcd".into(),
    };
    let m = h.to_message().unwrap();
    let back = Message::decode(&m.to_bytes(), DEFAULT_MAX_PAYLOAD).unwrap();
    assert_eq!(Hello::from_message(&back).unwrap(), h);
    let short =
        Message::with_inline(gloam_core::protocol::Header::new(Kind::Hello), &[1, 0]).unwrap();
    let err = Hello::from_message(&short).unwrap_err();
    assert!(err.to_string().contains("hello.pid"), "{err}");
    let cut = Message::with_inline(Header::new(Kind::Hello), &[1, 0, 0, 0, 9, b'a']).unwrap();
    let err = Hello::from_message(&cut).unwrap_err();
    assert!(err.to_string().contains("hello.function"), "{err}");
}

fn arb_kind() -> impl Strategy<Value = Kind> {
    (1u8..=9).prop_map(|b| Kind::from_u8(b).unwrap())
}

fn arb_status() -> impl Strategy<Value = Option<ErrorKind>> {
    prop_oneof![Just(None), (1u8..=12).prop_map(ErrorKind::from_code)]
}

prop_compose! {
    fn arb_message()(
        kind in arb_kind(), truncated in any::<bool>(), function_id in any::<u16>(),
        method_id in any::<u16>(), caller in any::<u32>(), sequence in any::<u32>(),
        parent in any::<u64>(), send_ts in any::<u64>(), status in arb_status(),
        deadline in any::<u64>(), processing in any::<u64>(), delay in any::<u32>(),
        worker in any::<u32>(), payload in proptest::collection::vec(any::<u8>(), 0..=INLINE_CAPACITY),
    ) -> Message {
        let header = Header {
            kind, flags: if truncated { flags::TRUNCATED } else { 0 }, function_id, method_id,
            caller, sequence, parent_call_id: parent, send_ts, payload_len: 0,
            payload_loc: PayloadLocation::Inline, status, deadline_ns: deadline,
            processing_ns: processing, dispatch_delay_ns: delay, worker_id: worker,
        };
        Message::with_inline(header, &payload).unwrap()
    }
}

proptest! {
    #[test]
    fn encode_decode_round_trips(m in arb_message()) {
        let back = Message::decode(&m.to_bytes(), DEFAULT_MAX_PAYLOAD).unwrap();
        prop_assert_eq!(back, m);
    }

    #[test]
    fn descriptor_headers_round_trip(len in 0u32..=(16 << 20), id in any::<u64>()) {
        let mut h = Header::new(Kind::Complete);
        h.set_call_id(CallId(id));
        h.payload_loc = PayloadLocation::Descriptor;
        h.payload_len = len;
        let m = Message::new(h);
        let back = Message::decode(&m.to_bytes(), DEFAULT_MAX_PAYLOAD).unwrap();
        prop_assert_eq!(back.header, h);
        prop_assert_eq!(back.header.call_id(), CallId(id));
    }

    #[test]
    fn any_bytes_decode_or_name_an_error(bytes in proptest::collection::vec(any::<u8>(), 0..1100)) {
        match Message::decode(&bytes, DEFAULT_MAX_PAYLOAD) {
            Ok(m) => prop_assert_eq!(Message::decode(&m.to_bytes(), DEFAULT_MAX_PAYLOAD).unwrap(), m),
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }
}

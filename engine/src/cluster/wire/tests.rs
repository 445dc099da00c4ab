use super::*;
use proptest::prelude::*;

fn roundtrip(f: &Frame) -> Frame {
    let mut buf = BytesMut::new();
    f.encode(&mut buf);
    let mut h = [0u8; HEADER_LEN];
    h.copy_from_slice(&buf[..HEADER_LEN]);
    let header = FrameHeader::decode(&h).expect("header");
    assert_eq!(header.len as usize, buf.len() - HEADER_LEN);
    Frame::decode(&header, buf.freeze().slice(HEADER_LEN..)).expect("frame")
}

fn decode_all(bytes: &[u8]) -> Result<Vec<Frame>, ClusterError> {
    let mut out = Vec::new();
    let mut rest = Bytes::copy_from_slice(bytes);
    while !rest.is_empty() {
        let Some(h) = rest.get(..HEADER_LEN) else {
            return Err(ClusterError::frame("header", "truncated"));
        };
        let mut hb = [0u8; HEADER_LEN];
        hb.copy_from_slice(h);
        let header = FrameHeader::decode(&hb)?;
        let end = HEADER_LEN + header.len as usize;
        if rest.len() < end {
            return Err(ClusterError::frame("len", "truncated"));
        }
        out.push(Frame::decode(&header, rest.slice(HEADER_LEN..end))?);
        rest = rest.slice(end..);
    }
    Ok(out)
}

fn hello() -> Hello {
    Hello {
        version: VERSION,
        token: b"s3cret".to_vec(),
        node: "node-a".into(),
        functions: vec![FunctionInfo {
            name: "Echo".into(),
            capacity: 1040,
            max_payload: 1 << 24,
            timeout_ms: 30_000,
            idempotent: true,
            allow_get: false,
        }],
    }
}

#[test]
fn every_frame_kind_round_trips() {
    let head = ResultHead {
        status: Some(ErrorKind::Timeout),
        output_len: 3,
        queued_ns: 1,
        running_ns: 2,
        processing_ns: 3,
    };
    let frames = [
        Frame::Hello(hello()),
        Frame::Welcome(Welcome {
            version: VERSION,
            heartbeat_ms: 500,
            engine_id: 7,
        }),
        Frame::Refuse {
            version: VERSION,
            reason: RefuseReason::Token,
            text: "wrong join token".into(),
        },
        Frame::Call {
            call: 9,
            more: false,
            head: CallHead {
                budget_us: 1500,
                input_len: 2,
                name: "Echo".into(),
            },
            chunk: Bytes::from_static(b"hi"),
        },
        Frame::Data {
            call: 9,
            more: true,
            chunk: Bytes::from_static(b"xyz"),
        },
        Frame::Result {
            call: 9,
            more: false,
            head,
            chunk: Bytes::from_static(b"abc"),
        },
        Frame::Ping { sent_ns: 42 },
        Frame::Pong { sent_ns: 42 },
        Frame::Drain,
        Frame::Drained,
    ];
    for f in &frames {
        assert_eq!(&roundtrip(f), f);
    }
}

#[test]
fn the_header_is_laid_out_as_documented() {
    let mut buf = BytesMut::new();
    Frame::Ping { sent_ns: 0x0102 }.encode(&mut buf);
    assert_eq!(
        &buf[..],
        &[8, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 1, 0, 0, 0, 0, 0, 0]
    );
    let mut buf = BytesMut::new();
    Frame::Data {
        call: 0x0a0b,
        more: true,
        chunk: Bytes::from_static(b"z"),
    }
    .encode(&mut buf);
    assert_eq!(&buf[..8], &[1, 0, 0, 0, 5, MORE, 0, 0]);
    assert_eq!(&buf[8..16], &0x0a0bu64.to_le_bytes());
}

#[test]
fn large_payloads_travel_in_chunks_that_must_add_up() {
    let input = Bytes::from(vec![7u8; 3 * CHUNK + 5]);
    let frames = call_frames(1, 0, "Echo", input.clone());
    assert_eq!(frames.len(), 4);
    let Frame::Call {
        head, chunk, more, ..
    } = roundtrip(&frames[0])
    else {
        panic!("not a CALL")
    };
    assert!(more && chunk.len() == CHUNK);
    let mut a = Assembly::new(head.input_len, &chunk);
    let mut whole = None;
    for f in &frames[1..] {
        let Frame::Data { chunk, more, .. } = roundtrip(f) else {
            panic!("not DATA")
        };
        whole = a.push(&chunk, more).expect("chunk");
    }
    assert_eq!(whole, Some(input));
    // One byte too many, or the last chunk short: refused.
    let mut a = Assembly::new(4, &Bytes::from_static(b"ab"));
    assert!(a.push(&Bytes::from_static(b"abc"), true).is_err());
    let mut a = Assembly::new(4, &Bytes::from_static(b"ab"));
    assert!(a.push(&Bytes::from_static(b"a"), false).is_err());
    // A result's chunks likewise.
    let out = result_frames(2, hello_head(), Bytes::from(vec![1u8; CHUNK + 1]));
    assert_eq!(out.len(), 2);
}

fn hello_head() -> ResultHead {
    ResultHead {
        status: None,
        output_len: 0,
        queued_ns: 0,
        running_ns: 0,
        processing_ns: 0,
    }
}

#[test]
fn errors_name_the_field() {
    let err = |bytes: &[u8]| match decode_all(bytes) {
        Ok(f) => panic!("decoded {f:?}"),
        Err(e) => e.to_string(),
    };
    // An oversized length is refused from the header alone.
    let mut h = [0u8; HEADER_LEN];
    h[..4].copy_from_slice(&u32::MAX.to_le_bytes());
    h[4] = 7;
    assert!(err(&h).contains("field `len`"), "{}", err(&h));
    h[..4].copy_from_slice(&8u32.to_le_bytes());
    h[4] = 99;
    assert!(err(&h).contains("field `kind`"));
    h[4] = 7;
    h[5] = 0x80;
    assert!(err(&h).contains("field `flags`"));
    // A body shorter than its fields.
    let mut buf = BytesMut::new();
    Frame::Ping { sent_ns: 1 }.encode(&mut buf);
    buf[0] = 4;
    let e = err(&buf[..HEADER_LEN + 4]);
    assert!(
        e.contains("field `sent_ns`") && e.contains("truncated"),
        "{e}"
    );
    // A chunk longer than the length declared.
    let mut buf = BytesMut::new();
    Frame::Call {
        call: 1,
        more: false,
        head: CallHead {
            budget_us: 0,
            input_len: 1,
            name: "Echo".into(),
        },
        chunk: Bytes::from_static(b"toolong"),
    }
    .encode(&mut buf);
    assert!(err(&buf).contains("field `input_len`"));
    // A bad function name.
    let mut buf = BytesMut::new();
    Frame::Call {
        call: 1,
        more: false,
        head: CallHead {
            budget_us: 0,
            input_len: 0,
            name: "no such/name".into(),
        },
        chunk: Bytes::new(),
    }
    .encode(&mut buf);
    assert!(err(&buf).contains("field `name`"));
}

#[test]
fn another_version_is_named_with_ours() {
    let mut h = hello();
    h.version = VERSION + 1;
    let mut buf = BytesMut::new();
    Frame::Hello(h).encode(&mut buf);
    match decode_all(&buf) {
        Err(ClusterError::Version { peer }) => assert_eq!(peer, VERSION + 1),
        other => panic!("{other:?}"),
    }
    let text = ClusterError::Version { peer: 9 }.to_string();
    assert!(
        text.contains("protocol 9") && text.contains(&format!("speaks {VERSION}")),
        "{text}"
    );
}

proptest! {
    #[test]
    fn any_bytes_decode_or_fail_without_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        if let Ok(frames) = decode_all(&bytes) {
            for f in frames {
                prop_assert_eq!(roundtrip(&f), f);
            }
        }
    }

    #[test]
    fn valid_headers_with_random_bodies_never_panic(kind in 1u8..=10, more in any::<bool>(), body in proptest::collection::vec(any::<u8>(), 0..120)) {
        let mut h = [0u8; HEADER_LEN];
        h[..4].copy_from_slice(&(body.len() as u32).to_le_bytes());
        h[4] = kind;
        h[5] = u8::from(more);
        let header = FrameHeader::decode(&h).expect("valid header");
        if let Ok(f) = Frame::decode(&header, Bytes::from(body)) {
            prop_assert_eq!(roundtrip(&f), f);
        }
    }
}

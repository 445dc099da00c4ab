//! Any bytes: decoding returns a message or a named error, never panics, and a decoded
//! message re-encodes to something that decodes to the same message.
#![no_main]

use gloam_core::protocol::{Hello, Message, DEFAULT_MAX_PAYLOAD};
use gloam_core::table::FunctionTable;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = Message::decode(data, DEFAULT_MAX_PAYLOAD) {
        let again = Message::decode(&m.to_bytes(), DEFAULT_MAX_PAYLOAD).expect("re-decode");
        assert_eq!(again, m);
        let _ = Hello::from_message(&m);
    }
    let _ = FunctionTable::decode(data);
});

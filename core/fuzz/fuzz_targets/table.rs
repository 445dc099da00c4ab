//! The function table trailing `WELCOME` (`FunctionTable::decode`): any bytes decode to a
//! table or a named error, never panic, and a decoded table re-encodes to text that decodes
//! to the same table, whose every name passes the protocol's name check.
#![no_main]

use gloam_core::protocol::validate_function_name;
use gloam_core::table::FunctionTable;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(t) = FunctionTable::decode(data) else {
        return;
    };
    for (id, name) in t.entries() {
        assert!(validate_function_name(name).is_ok(), "{name:?}");
        assert!(t.name_of(*id).is_some());
        assert!(t.id_of(name).is_ok());
    }
    let again = FunctionTable::decode(&t.encode()).expect("an encoded table decodes");
    assert_eq!(again, t);
});

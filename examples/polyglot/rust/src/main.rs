//! The polyglot stack's Rust functions (see `examples/polyglot/README.md`).
//!
//! - `Store`: the last step of the chain. Takes the order JSON built by Python, Go, Node and
//!   C, assigns it an order id (a per-process counter), "stores" it (keeps the count and the
//!   bytes seen, in memory) and answers the final document: the order, a `store` section and
//!   `path`, the languages that handled it in order.
//! - `Echo`: the input back (for the per-language round-trip figures).

use std::sync::atomic::{AtomicU64, Ordering};

use gloam_core::{serve, Ctx, HandlerError, Handlers};
use serde_json::{json, Value};

static ORDERS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);

fn store(_ctx: &Ctx<'_>, input: &[u8]) -> Result<Vec<u8>, HandlerError> {
    let mut doc: Value = serde_json::from_slice(input)
        .map_err(|e| HandlerError::new(format!("Store: input is not JSON: {e}")))?;
    let obj = doc
        .as_object_mut()
        .ok_or_else(|| HandlerError::new("Store: input must be a JSON object"))?;
    let checksum = obj
        .get("checksum")
        .and_then(|c| c.get("crc32"))
        .and_then(Value::as_str)
        .ok_or_else(|| HandlerError::new("Store: missing checksum.crc32 (C's step)"))?
        .to_string();
    let n = ORDERS.fetch_add(1, Ordering::Relaxed) + 1;
    let total = BYTES.fetch_add(input.len() as u64, Ordering::Relaxed) + input.len() as u64;
    let path: Vec<Value> = ["frontend", "auth", "render", "checksum"]
        .iter()
        .filter_map(|k| obj.get(*k).and_then(|s| s.get("lang")).cloned())
        .chain(std::iter::once(json!("rust")))
        .collect();
    obj.insert(
        "store".into(),
        json!({
            "lang": "rust",
            "order_id": format!("ord-{}-{n}", std::process::id()),
            "key": format!("orders/{checksum}"),
            "orders_stored": n,
            "bytes_stored": total,
        }),
    );
    obj.insert("path".into(), Value::Array(path));
    serde_json::to_vec(&doc).map_err(|e| HandlerError::new(e.to_string()))
}

fn main() {
    let handlers = Handlers::new()
        .handler("Store", store)
        .handler("Echo", |_, input| Ok(input.to_vec()));
    if let Err(e) = serve(handlers) {
        eprintln!("polyglot-rust: {e}");
        std::process::exit(1);
    }
}

//! The __GLOAM_NAME__ function. `gloam up` builds it (`cargo build`) and serves it; then
//! `gloam invoke __GLOAM_NAME__ --data World` answers `Hello, World!`.

use gloam_core::{serve, Ctx, HandlerError, Handlers};

/// What __GLOAM_NAME__ answers for `input`.
fn greet(input: &[u8]) -> Result<Vec<u8>, HandlerError> {
    let name: &[u8] = if input.is_empty() { b"World" } else { input };
    Ok([b"Hello, ".as_slice(), name, b"!"].concat())
}

/// Serves one call of __GLOAM_NAME__ (`ctx.invoke("Other", input)` calls another function).
fn handle(_ctx: &Ctx<'_>, input: &[u8]) -> Result<Vec<u8>, HandlerError> {
    greet(input)
}

fn main() {
    // Serves the function named by GLOAM_FUNCTION (set by `gloam up`) until the engine stops.
    if let Err(e) = serve(Handlers::new().handler("__GLOAM_NAME__", handle)) {
        eprintln!("__GLOAM_PACKAGE__: {e}");
        std::process::exit(1);
    }
}

#[cfg(test)]
mod tests {
    use super::greet;

    #[test]
    fn greets_the_input_or_the_world() {
        assert_eq!(greet(b"Ada").ok(), Some(b"Hello, Ada!".to_vec()));
        assert_eq!(greet(b"").ok(), Some(b"Hello, World!".to_vec()));
    }
}

//! Generates include/gloam.h with cbindgen. The header is committed; `test.sh` fails when a
//! fresh generation differs from the committed copy.

use std::path::PathBuf;

fn main() {
    let crate_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    println!("cargo:rerun-if-changed=src");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    // A hand edit of the header must be seen (and undone) by the next build.
    println!("cargo:rerun-if-changed=include/gloam.h");
    let config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml"))
        .expect("bindings/c/cbindgen.toml is valid");
    match cbindgen::Builder::new()
        .with_crate(&crate_dir)
        .with_config(config)
        .generate()
    {
        Ok(bindings) => {
            // write_to_file leaves the file untouched when the content is the same.
            bindings.write_to_file(crate_dir.join("include/gloam.h"));
        }
        Err(e) => panic!("cbindgen could not generate gloam.h: {e}"),
    }
}

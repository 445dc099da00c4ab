//go:build gloam_release

package gloam

// The release build of the Rust core (cargo build --release -p gloam-c), chosen with
// -tags gloam_release.

// #cgo LDFLAGS: ${SRCDIR}/../../target/release/libgloam.a -ldl -lpthread -lm
import "C"

//go:build !gloam_release

package gloam

// The debug build of the Rust core (cargo build -p gloam-c). Build with -tags gloam_release
// to link target/release/libgloam.a instead (cargo build --release -p gloam-c).

// #cgo LDFLAGS: ${SRCDIR}/../../target/debug/libgloam.a -ldl -lpthread -lm
import "C"

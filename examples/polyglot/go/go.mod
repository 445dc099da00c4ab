module gloam.dev/examples/polyglot

go 1.22

require gloam.dev/gloam v0.0.0

replace gloam.dev/gloam => ../../../bindings/go

module __GLOAM_PACKAGE__

go 1.22

require gloam.dev/gloam v0.0.0

// The Gloam SDK's Go module (bindings/install.sh puts it there, linked to its libgloam.a).
replace gloam.dev/gloam => __GLOAM_SDK__/go

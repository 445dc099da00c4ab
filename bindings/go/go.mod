module gloam.dev/gloam

go 1.22

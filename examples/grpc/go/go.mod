module gloam.example/grpc-greeter

go 1.22

require (
	gloam.dev/gloam v0.0.0
	google.golang.org/protobuf v1.36.5
)

replace gloam.dev/gloam => ../../../bindings/go

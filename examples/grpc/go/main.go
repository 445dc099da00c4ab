// The Go side of the gRPC example: function grpc:demo.Greeter serves service demo.Greeter of
// ../greeter.proto. The handler reads the method from call.Method() and decodes the request
// with the code protoc-gen-go generated (demo/greeter.pb.go): the payload of a gRPC call is
// the method's raw protobuf message.
//
// Regenerate demo/ after changing the .proto (from examples/grpc):
//
//	protoc -I. --go_out=go --go_opt=module=gloam.example/grpc-greeter greeter.proto
package main

import (
	"context"
	"fmt"
	"log"
	"os"
	"strconv"

	"gloam.dev/gloam"
	"google.golang.org/protobuf/proto"

	"gloam.example/grpc-greeter/demo"
)

func greeter(ctx context.Context, call *gloam.Call, input []byte) ([]byte, error) {
	var req demo.HelloRequest
	if err := proto.Unmarshal(input, &req); err != nil {
		return nil, fmt.Errorf("bad HelloRequest: %w", err)
	}
	reply := func(msg string) ([]byte, error) {
		return proto.Marshal(&demo.HelloReply{Message: msg})
	}
	switch call.Method() {
	case "SayHello":
		return reply(fmt.Sprintf("Hello, %s (from Go, method SayHello)", req.GetName()))
	case "Fail":
		return nil, fmt.Errorf("Fail was called")
	case "Crash":
		os.Exit(3)
	case "Nested":
		// The call's deadline (from grpc-timeout) travels with the internal call; a timeout
		// returned as is keeps its kind (gRPC DEADLINE_EXCEEDED).
		if _, err := call.Invoke(ctx, "Sleep", []byte(strconv.Itoa(int(req.GetSleepMs())))); err != nil {
			return nil, err
		}
		return reply("woke up")
	case "Nop":
		return nil, nil
	}
	return nil, fmt.Errorf("no method %q", call.Method())
}

func main() {
	if err := gloam.Serve(map[string]gloam.Handler{"Greeter": greeter}); err != nil {
		log.Fatal(err)
	}
}

// A client of the gRPC example with the Go grpc package (a client we did not write): it calls
// one method through the Gloam gateway with the generated message types and prints the
// outcome, for ci/grpc/grpc_example.py.
//
//	grpc-client ADDR /demo.Greeter/SayHello NAME [SLEEP_MS [TIMEOUT_MS]]
//
// prints "OK <message>" or "ERR <code> <message>".
package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"gloam.example/grpc-greeter/demo"
)

func main() {
	if len(os.Args) < 4 {
		fmt.Fprintln(os.Stderr, "usage: grpc-client ADDR /Service/Method NAME [SLEEP_MS [TIMEOUT_MS]]")
		os.Exit(2)
	}
	addr, method, name := os.Args[1], os.Args[2], os.Args[3]
	req := &demo.HelloRequest{Name: name}
	if len(os.Args) > 4 {
		ms, _ := strconv.Atoi(os.Args[4])
		req.SleepMs = uint32(ms)
	}
	timeout := 20 * time.Second
	if len(os.Args) > 5 {
		ms, _ := strconv.Atoi(os.Args[5])
		timeout = time.Duration(ms) * time.Millisecond
	}
	conn, err := grpc.Dial(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		fmt.Println("ERR dial", err)
		return
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var reply demo.HelloReply
	if err := conn.Invoke(ctx, method, req, &reply); err != nil {
		s := status.Convert(err)
		fmt.Printf("ERR %s %s\n", s.Code(), s.Message())
		return
	}
	fmt.Printf("OK %s\n", reply.GetMessage())
}

// The __GLOAM_NAME__ function. `gloam up` builds it (`go build`) and serves it; then
// `gloam invoke __GLOAM_NAME__ --data World` answers `Hello, World!`.
package main

import (
	"context"
	"log"

	"gloam.dev/gloam"
)

// greet is what __GLOAM_NAME__ answers for input.
func greet(input []byte) ([]byte, error) {
	if len(input) == 0 {
		input = []byte("World")
	}
	return append(append([]byte("Hello, "), input...), '!'), nil
}

// handle serves one call (call.Invoke(ctx, "Other", input) calls another function).
func handle(ctx context.Context, call *gloam.Call, input []byte) ([]byte, error) {
	return greet(input)
}

func main() {
	// Serves the function named by GLOAM_FUNCTION (set by `gloam up`) until the engine stops.
	if err := gloam.Serve(map[string]gloam.Handler{"__GLOAM_NAME__": handle}); err != nil {
		log.Fatal(err)
	}
}

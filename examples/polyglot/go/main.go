// Command polyglot-go holds the polyglot stack's Go functions: Auth (the second step of the
// chain) and Echo.
//
// Auth checks the order's token (this demo accepts "demo-<user>"), adds an "auth" section
// (role and discount) and passes the order on with an internal call to Render (Node.js), whose
// answer it returns. A bad token fails the call, and the caller (Python's Frontend) sees it.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"strings"

	"gloam.dev/gloam"
)

func auth(ctx context.Context, call *gloam.Call, input []byte) ([]byte, error) {
	var order map[string]any
	if err := json.Unmarshal(input, &order); err != nil {
		return nil, fmt.Errorf("Auth: the input is not a JSON object: %w", err)
	}
	user, _ := order["user"].(string)
	token, _ := order["token"].(string)
	if user == "" || token != "demo-"+user {
		return nil, fmt.Errorf("Auth: bad token for user %q", user)
	}
	delete(order, "token") // never passed further down
	role, discount := "customer", 0
	if strings.HasPrefix(user, "vip-") {
		role, discount = "vip", 10
	}
	order["auth"] = map[string]any{"lang": "go", "user": user, "role": role, "discount_pct": discount}
	next, err := json.Marshal(order)
	if err != nil {
		return nil, err
	}
	return call.Invoke(ctx, "Render", next)
}

func echo(_ context.Context, _ *gloam.Call, input []byte) ([]byte, error) { return input, nil }

func main() {
	if err := gloam.Serve(map[string]gloam.Handler{"Auth": auth, "Echo": echo}); err != nil {
		log.Fatalf("polyglot-go: %v", err)
	}
}

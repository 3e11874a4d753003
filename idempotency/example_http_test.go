package idempotency_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/idemq/idemq/idempotency"
)

// An order endpoint behind the Idempotency-Key middleware. The client's
// retry with the same key and body gets the first response back without a
// second order; the same key with another body is refused.
func ExampleHTTPMiddleware() {
	mw, err := idempotency.HTTPMiddleware(idempotency.HTTPOptions{
		Store:    idempotency.NewMemoryStore(),
		Required: true,
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	orders := 0
	handler := mw(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		orders++
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		fmt.Fprintf(w, `{"order":%d}`, orders)
	}))

	post := func(key, body string) {
		req := httptest.NewRequest(http.MethodPost, "/orders", strings.NewReader(body))
		req.Header.Set("Idempotency-Key", key)
		rec := httptest.NewRecorder()
		handler.ServeHTTP(rec, req)
		fmt.Printf("%d %s replayed=%q\n", rec.Code, strings.TrimSpace(rec.Body.String()),
			rec.Header().Get(idempotency.HTTPReplayedHeader))
	}
	post("8e03978e-40d5-43e8-bc93-6894a57f9324", `{"item":"book"}`)
	post("8e03978e-40d5-43e8-bc93-6894a57f9324", `{"item":"book"}`) // a retry
	post("8e03978e-40d5-43e8-bc93-6894a57f9324", `{"item":"pen"}`)  // a reused key
	fmt.Println("orders placed:", orders)

	// Output:
	// 201 {"order":1} replayed=""
	// 201 {"order":1} replayed="true"
	// 422 {"error":"Idempotency-Key was used with a different request"} replayed=""
	// orders placed: 1
}

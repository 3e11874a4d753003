package stock_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/idemq/idemq/stock"
)

// Two vouchers, one per customer. Alice reserves and confirms hers (a
// retried Reserve with the same ID takes nothing more); she cannot take a
// second one; Bob holds the last; Carol finds them sold out.
func ExampleMemoryStore() {
	ctx := context.Background()
	s := stock.NewMemoryStore()
	if err := s.Define(ctx, "spa-voucher", stock.ItemConfig{HolderLimit: 1}); err != nil {
		fmt.Println(err)
		return
	}
	if err := s.Restock(ctx, "spa-voucher", 2); err != nil {
		fmt.Println(err)
		return
	}
	reserve := func(id, holder string) (stock.Reservation, error) {
		return s.Reserve(ctx, stock.ReserveRequest{
			Item: "spa-voucher", Holder: holder, ID: id, Hold: 10 * time.Minute,
		})
	}

	r, err := reserve("res-alice-1", "alice")
	fmt.Println("alice:", r.State, err)
	r, err = s.Confirm(ctx, r.ID)
	fmt.Println("alice:", r.State, err)
	r, err = reserve("res-alice-1", "alice") // a retry: the same reservation
	fmt.Println("alice retried:", r.State, err)

	_, err = reserve("res-alice-2", "alice")
	fmt.Println("alice again, holder limit:", errors.Is(err, stock.ErrHolderLimit))

	r, err = reserve("res-bob-1", "bob")
	fmt.Println("bob:", r.State, err)

	_, err = reserve("res-carol-1", "carol")
	fmt.Println("carol, sold out:", errors.Is(err, stock.ErrSoldOut))

	l, err := s.Level(ctx, "spa-voucher")
	fmt.Printf("available=%d held=%d confirmed=%d %v\n", l.Available, l.Held, l.Confirmed, err)

	// Output:
	// alice: held <nil>
	// alice: confirmed <nil>
	// alice retried: confirmed <nil>
	// alice again, holder limit: true
	// bob: held <nil>
	// carol, sold out: true
	// available=0 held=1 confirmed=1 <nil>
}

// An item that is a pool of unique codes: each confirmed unit hands out
// one code, and no code is ever given out twice.
func ExampleMemoryStore_codes() {
	ctx := context.Background()
	s := stock.NewMemoryStore()
	if err := s.Define(ctx, "gift-card", stock.ItemConfig{Codes: true}); err != nil {
		fmt.Println(err)
		return
	}
	n, err := s.LoadCodes(ctx, "gift-card", []string{"GC-7Q2M", "GC-K9XD"})
	fmt.Println("loaded:", n, err)
	n, err = s.LoadCodes(ctx, "gift-card", []string{"GC-7Q2M"}) // already loaded
	fmt.Println("loaded again:", n, err)

	r, err := s.Reserve(ctx, stock.ReserveRequest{
		Item: "gift-card", Holder: "alice", ID: "res-1", Hold: 10 * time.Minute,
	})
	fmt.Println(r.State, r.Codes, err)
	r, err = s.Confirm(ctx, r.ID)
	fmt.Println(r.State, r.Codes, err)

	l, err := s.Level(ctx, "gift-card")
	fmt.Println("available:", l.Available, err)

	// Output:
	// loaded: 2 <nil>
	// loaded again: 0 <nil>
	// held [] <nil>
	// confirmed [GC-7Q2M] <nil>
	// available: 1 <nil>
}

// What customers see: large pools are shown as "10+" so that their exact
// stock stays private, the last few as a countdown, and an item that is
// sold out or disabled as unavailable.
func ExampleDisplay() {
	for _, l := range []stock.Level{
		{Item: "mug", Available: 50},
		{Item: "poster", Available: 7},
		{Item: "tote", Available: 0},
		{Item: "spa-voucher", Available: 12, Disabled: true, Reason: "partner down"},
	} {
		fmt.Printf("%s: %s\n", l.Item, stock.Display(l, 0))
	}

	// Output:
	// mug: 10+
	// poster: 7
	// tote: Unavailable
	// spa-voucher: Unavailable
}

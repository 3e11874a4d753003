package main

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/idemq/idemq/backpressure"
	"github.com/idemq/idemq/idempotency"
	"github.com/idemq/idemq/stock"
)

// serverOptions tunes a server. Zero fields take the defaults below; the
// tests and the demonstration shorten some of them.
type serverOptions struct {
	// Hold is how long a redeem holds its unit while the partner answers.
	// It must be well above PartnerTimeout. Default 1m.
	Hold time.Duration
	// PartnerTimeout bounds one call to the partner. Default 5s.
	PartnerTimeout time.Duration
	// BreakerFailures is how many partner failures in a row open an
	// item's breaker. Default 5.
	BreakerFailures int
	// OpenTimeout is how long an item's breaker stays open before its
	// half-open probe. Default 30s.
	OpenTimeout time.Duration
	// DisabledRetryAfter is the Retry-After of a redeem refused because
	// an operator disabled the item. Default 1m.
	DisabledRetryAfter time.Duration
	// CacheTTL bounds how stale GET /items/{item} may be. Default 1s.
	CacheTTL time.Duration
	// MaxInFlight redeems run at once; more wait up to MaxWait, in a
	// queue of up to MaxQueue, and the rest get 503. Defaults 64, 5s and
	// 4096.
	MaxInFlight int
	MaxWait     time.Duration
	MaxQueue    int
	// SweepInterval is how often expired holds are swept and open
	// breakers checked. Default 1s.
	SweepInterval time.Duration
	// PartnerLatency is how long the fake partner takes. Default none.
	PartnerLatency time.Duration
	// Logger receives store failures and breaker transitions. Default
	// slog.Default().
	Logger *slog.Logger
}

func (o serverOptions) withDefaults() (serverOptions, error) {
	if o.Hold < 0 || o.PartnerTimeout < 0 || o.OpenTimeout < 0 || o.DisabledRetryAfter < 0 ||
		o.CacheTTL < 0 || o.MaxWait < 0 || o.SweepInterval < 0 || o.PartnerLatency < 0 {
		return o, errors.New("negative duration in server options")
	}
	if o.BreakerFailures < 0 || o.MaxInFlight < 0 || o.MaxQueue < 0 {
		return o, errors.New("negative count in server options")
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&o.Hold, time.Minute)
	def(&o.PartnerTimeout, 5*time.Second)
	def(&o.OpenTimeout, 30*time.Second)
	def(&o.DisabledRetryAfter, time.Minute)
	def(&o.CacheTTL, time.Second)
	def(&o.MaxWait, 5*time.Second)
	def(&o.SweepInterval, time.Second)
	if o.Hold <= o.PartnerTimeout {
		return o, fmt.Errorf("hold %s must be longer than the partner timeout %s", o.Hold, o.PartnerTimeout)
	}
	if o.BreakerFailures == 0 {
		o.BreakerFailures = 5
	}
	if o.MaxInFlight == 0 {
		o.MaxInFlight = 64
	}
	if o.MaxQueue == 0 {
		o.MaxQueue = 4096
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o, nil
}

// maxAttempts is how many reservations one Idempotency-Key may go
// through: each redeem that failed after reserving (the partner failed)
// released its reservation, and the key's next attempt takes the next ID.
const maxAttempts = 8

// sweepBatch is how many expired holds one Sweep call returns.
const sweepBatch = 1000

// server is the redeem service: an http.Handler, and the background work
// of [server.maintain].
type server struct {
	o       serverOptions
	stock   stock.Store
	cache   *stock.LevelCache
	partner *partner
	mux     *http.ServeMux
	breaker backpressure.BreakerOptions // template of the items' breakers

	mu       sync.Mutex
	breakers map[string]*itemBreaker
}

// itemBreaker is the breaker around the partner calls of one item.
type itemBreaker struct {
	*backpressure.Breaker
	// transitions counts the breaker's state changes, reported by its
	// OnStateChange, so a redeem can tell that the breaker just
	// re-enabled its item.
	transitions atomic.Uint64
}

// newServer returns the service over a stock store and an idempotency
// store.
func newServer(st stock.Store, keys idempotency.Store, opts serverOptions) (*server, error) {
	o, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	cache, err := stock.NewLevelCache(st, stock.CacheOptions{TTL: o.CacheTTL})
	if err != nil {
		return nil, err
	}
	s := &server{
		o:       o,
		stock:   st,
		cache:   cache,
		partner: newPartner(o.PartnerLatency),
		mux:     http.NewServeMux(),
		breaker: backpressure.BreakerOptions{
			ConsecutiveFailures: o.BreakerFailures,
			OpenTimeout:         o.OpenTimeout,
		},
		breakers: map[string]*itemBreaker{},
	}
	// Validate the breakers' options now, so that creating one per item
	// later cannot fail.
	if _, err := backpressure.NewBreaker(s.breaker); err != nil {
		return nil, err
	}

	dedupe, err := idempotency.HTTPMiddleware(idempotency.HTTPOptions{
		Store:    keys,
		Required: true,
		Logger:   o.Logger,
	})
	if err != nil {
		return nil, err
	}
	// Admission goes first, so that a request turned away holds no key.
	admission, err := backpressure.NewAdmission(backpressure.AdmissionOptions{
		Name:     "redeem",
		Limit:    o.MaxInFlight,
		MaxWait:  o.MaxWait,
		MaxQueue: o.MaxQueue,
	})
	if err != nil {
		return nil, err
	}
	admit, err := backpressure.HTTPMiddleware(admission, backpressure.HTTPOptions{})
	if err != nil {
		return nil, err
	}

	s.mux.Handle("POST /items/{item}/redeem", admit(dedupe(http.HandlerFunc(s.redeem))))
	s.mux.HandleFunc("GET /items/{item}", s.availability)
	s.mux.HandleFunc("POST /admin/items/{item}/disable", s.disable)
	s.mux.HandleFunc("POST /admin/items/{item}/enable", s.enable)
	s.mux.HandleFunc("POST /admin/partner/fail", s.partnerFail)
	s.mux.HandleFunc("POST /admin/partner/recover", s.partnerRecover)
	return s, nil
}

func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// itemBreaker returns item's breaker, creating it when create is set; nil
// if there is none.
func (s *server) itemBreaker(item string, create bool) *itemBreaker {
	s.mu.Lock()
	defer s.mu.Unlock()
	if b, ok := s.breakers[item]; ok || !create {
		return b
	}
	ib := &itemBreaker{}
	switchItem := stock.DisableWhileOpen(s.stock, item, "partner unavailable", s.o.Logger)
	opts := s.breaker
	opts.Name = "partner:" + item
	opts.OnStateChange = func(name string, from, to backpressure.State) {
		switchItem(name, from, to)
		s.cache.Forget(item) // show the change now, not a TTL later
		ib.transitions.Add(1)
		s.o.Logger.LogAttrs(context.Background(), slog.LevelWarn, "partner breaker changed state",
			slog.String("item", item), slog.String("from", from.String()), slog.String("to", to.String()))
	}
	b, err := backpressure.NewBreaker(opts)
	if err != nil {
		panic(fmt.Sprintf("redeem: breaker options validated in newServer: %v", err))
	}
	ib.Breaker = b
	s.breakers[item] = ib
	return ib
}

// redemption is the answer to a granted redeem.
type redemption struct {
	ReservationID string `json:"reservation_id"`
	Item          string `json:"item"`
	Holder        string `json:"holder"`
	Quantity      int    `json:"quantity"`
	State         string `json:"state"`
	Code          string `json:"code,omitempty"`
}

type errorBody struct {
	Error  string `json:"error"`
	Reason string `json:"reason,omitempty"`
}

// maxHolderLen bounds a holder's name.
const maxHolderLen = 200

func (s *server) redeem(w http.ResponseWriter, r *http.Request) {
	item := r.PathValue("item")
	if stock.CheckName("item", item) != nil { // no store defines one
		writeJSON(w, http.StatusNotFound, errorBody{Error: "unknown item"})
		return
	}
	var body struct {
		Holder string `json:"holder"`
	}
	// The idempotency middleware has read the body already, within its
	// own size limit.
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		writeJSON(w, http.StatusBadRequest, errorBody{Error: `body must be a JSON object {"holder": "..."}`})
		return
	}
	holder := strings.TrimSpace(body.Holder)
	if holder == "" || len(holder) > maxHolderLen {
		writeJSON(w, http.StatusBadRequest, errorBody{Error: fmt.Sprintf("holder must be 1 to %d bytes", maxHolderLen)})
		return
	}
	ctx := r.Context()
	key := idempotencyKey(r)

	// The partner's breaker is asked before a unit is taken, so that a
	// redeem it turns away takes and releases nothing, and uses up none of
	// the key's attempts. A redeem that then does not call the partner
	// records no outcome (context.Canceled is neither a success nor a
	// failure), which gives a half-open breaker's probe slot back.
	b := s.itemBreaker(item, true)
	ticket, err := b.Allow()
	if err != nil {
		d, _ := backpressure.RetryAfterHint(err)
		reason := "circuit open"
		if re, ok := errors.AsType[*backpressure.RejectedError](err); ok {
			reason = re.Reason
		}
		w.Header().Set("Retry-After", backpressure.RetryAfterSeconds(d))
		writeJSON(w, http.StatusServiceUnavailable, errorBody{Error: "partner unavailable", Reason: reason})
		return
	}
	recorded := false
	record := func(err error) {
		recorded = true
		b.Record(ticket, err)
	}
	defer func() {
		if !recorded { // the reserve, the refusal or the partner panicked
			b.Record(ticket, errors.New("redeem: panicked before the partner's outcome was recorded"))
		}
	}()

	res, err := s.reserve(ctx, item, holder, key)
	if errors.Is(err, stock.ErrDisabled) && s.reenabled(item) {
		res, err = s.reserve(ctx, item, holder, key)
	}
	if err != nil {
		record(context.Canceled)
		s.refuse(w, r, item, err)
		return
	}
	if res.State == stock.Confirmed { // an earlier attempt got this far
		record(context.Canceled)
		writeJSON(w, http.StatusCreated, redemptionOf(res))
		return
	}

	// Settling the reservation goes on when the client hangs up: a unit
	// left held would be lost to everyone until the hold expires.
	settle, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	pctx, pcancel := context.WithTimeout(ctx, s.o.PartnerTimeout)
	err = s.partner.Activate(pctx, res.ID)
	pcancel()
	record(err)
	if err != nil {
		if rerr := s.stock.Release(settle, res.ID); rerr != nil {
			// The hold expires on its own; the key's retry finds it
			// held and asks the partner again.
			s.o.Logger.LogAttrs(ctx, slog.LevelError, "release after a partner failure failed",
				slog.String("reservation", res.ID), slog.Any("error", rerr))
		}
		s.o.Logger.LogAttrs(ctx, slog.LevelInfo, "partner failed; reservation released",
			slog.String("reservation", res.ID), slog.Any("error", err))
		writeJSON(w, http.StatusBadGateway, errorBody{Error: "partner failed; the unit was released, retry with the same Idempotency-Key"})
		return
	}

	res, err = s.stock.Confirm(settle, res.ID)
	if err != nil {
		// Not stored, so the client's retry with the same key comes
		// back: it finds the reservation still held and confirms it, or
		// (ErrExpired) takes a new one.
		s.o.Logger.LogAttrs(ctx, slog.LevelError, "confirm failed",
			slog.String("item", item), slog.Any("error", err))
		w.Header().Set("Retry-After", "1")
		writeJSON(w, http.StatusServiceUnavailable, errorBody{Error: "confirmation failed; retry with the same Idempotency-Key"})
		return
	}
	writeJSON(w, http.StatusCreated, redemptionOf(res))
}

var errTooManyAttempts = errors.New("too many failed attempts with this Idempotency-Key")

// reserve takes the key's current reservation: the first of its IDs that
// was not released or expired by an earlier failed attempt.
func (s *server) reserve(ctx context.Context, item, holder, key string) (stock.Reservation, error) {
	for n := range maxAttempts {
		res, err := s.stock.Reserve(ctx, stock.ReserveRequest{
			Item:   item,
			Holder: holder,
			ID:     reservationID(item, key, n),
			Hold:   s.o.Hold,
		})
		if err != nil {
			return res, err
		}
		if res.State == stock.Held || res.State == stock.Confirmed {
			return res, nil
		}
	}
	return stock.Reservation{}, errTooManyAttempts
}

// reenabled tells whether item's breaker, asked now, left the open state:
// its OnStateChange has then enabled the item. Nothing else asks an open
// breaker while its item is disabled, as no redeem gets as far as the
// partner; the maintenance loop asks every second.
func (s *server) reenabled(item string) bool {
	b := s.itemBreaker(item, false)
	if b == nil {
		return false
	}
	before := b.transitions.Load()
	return b.State() != backpressure.StateOpen && b.transitions.Load() != before
}

// refuse answers a Reserve that failed.
func (s *server) refuse(w http.ResponseWriter, r *http.Request, item string, err error) {
	switch {
	case errors.Is(err, stock.ErrSoldOut):
		writeJSON(w, http.StatusConflict, errorBody{Error: "sold out"})
	case errors.Is(err, stock.ErrHolderLimit):
		writeJSON(w, http.StatusConflict, errorBody{Error: "holder limit reached"})
	case errors.Is(err, stock.ErrDisabled):
		retry := s.o.DisabledRetryAfter
		if b := s.itemBreaker(item, false); b != nil {
			switch b.State() {
			case backpressure.StateOpen:
				retry = b.RemainingDelay()
			case backpressure.StateHalfOpen:
				// The breaker is enabling the item, on another
				// goroutine: come back at once.
				retry = time.Second
			}
		}
		var re *stock.ReservationError
		reason := ""
		if errors.As(err, &re) {
			reason = re.Reason
		}
		w.Header().Set("Retry-After", backpressure.RetryAfterSeconds(retry))
		writeJSON(w, http.StatusServiceUnavailable, errorBody{Error: "item unavailable", Reason: reason})
	case errors.Is(err, stock.ErrUnknownItem):
		writeJSON(w, http.StatusNotFound, errorBody{Error: "unknown item"})
	case errors.Is(err, stock.ErrConflict):
		writeJSON(w, http.StatusUnprocessableEntity, errorBody{Error: "Idempotency-Key was used for another redeem"})
	case errors.Is(err, errTooManyAttempts):
		writeJSON(w, http.StatusUnprocessableEntity, errorBody{Error: err.Error() + "; use a new one"})
	default:
		if r.Context().Err() == nil {
			s.o.Logger.LogAttrs(r.Context(), slog.LevelError, "reserve failed",
				slog.String("item", item), slog.Any("error", err))
		}
		w.Header().Set("Retry-After", "1")
		writeJSON(w, http.StatusServiceUnavailable, errorBody{Error: "stock unavailable"})
	}
}

func redemptionOf(res stock.Reservation) redemption {
	out := redemption{
		ReservationID: res.ID,
		Item:          res.Item,
		Holder:        res.Holder,
		Quantity:      res.Quantity,
		State:         string(res.State),
	}
	if len(res.Codes) > 0 {
		out.Code = res.Codes[0] // one unit, one code
	}
	return out
}

// reservationID derives the n-th reservation ID of a redeem from its item
// and Idempotency-Key: a hash, so that any key makes an ID of bounded
// length and plain characters.
func reservationID(item, key string, n int) string {
	h := sha256.New()
	var b [8]byte
	for _, s := range [...]string{item, key} {
		binary.BigEndian.PutUint64(b[:], uint64(len(s)))
		h.Write(b[:])
		h.Write([]byte(s))
	}
	binary.BigEndian.PutUint64(b[:], uint64(n))
	h.Write(b[:])
	return "rdm_" + hex.EncodeToString(h.Sum(nil)[:16])
}

// idempotencyKey returns the request's key as the idempotency middleware
// reads it: a quoted Structured Field string is unquoted.
func idempotencyKey(r *http.Request) string {
	v := strings.TrimSpace(r.Header.Get("Idempotency-Key"))
	if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
		if u, err := strconv.Unquote(v); err == nil {
			return u
		}
	}
	return v
}

func (s *server) availability(w http.ResponseWriter, r *http.Request) {
	item := r.PathValue("item")
	shown, err := s.cache.Display(r.Context(), item)
	switch {
	case errors.Is(err, stock.ErrUnknownItem):
		writeJSON(w, http.StatusNotFound, errorBody{Error: "unknown item"})
		return
	case err != nil:
		s.o.Logger.LogAttrs(r.Context(), slog.LevelError, "level failed",
			slog.String("item", item), slog.Any("error", err))
		w.Header().Set("Retry-After", "1")
		writeJSON(w, http.StatusServiceUnavailable, errorBody{Error: "stock unavailable"})
		return
	}
	writeJSON(w, http.StatusOK, struct {
		Item         string `json:"item"`
		Availability string `json:"availability"`
	}{item, shown})
}

// itemState is the answer of the admin endpoints for items.
type itemState struct {
	Item     string `json:"item"`
	Disabled bool   `json:"disabled"`
	Reason   string `json:"reason,omitempty"`
}

func (s *server) disable(w http.ResponseWriter, r *http.Request) {
	item := r.PathValue("item")
	var body struct {
		Reason string `json:"reason"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&body); err != nil && !errors.Is(err, io.EOF) {
		writeJSON(w, http.StatusBadRequest, errorBody{Error: `body must be empty or a JSON object {"reason": "..."}`})
		return
	}
	reason := strings.TrimSpace(body.Reason)
	if reason == "" {
		reason = "disabled by an operator"
	}
	if err := s.stock.Disable(r.Context(), item, reason); err != nil {
		s.adminFailed(w, r, item, err)
		return
	}
	s.cache.Forget(item)
	writeJSON(w, http.StatusOK, itemState{Item: item, Disabled: true, Reason: reason})
}

func (s *server) enable(w http.ResponseWriter, r *http.Request) {
	item := r.PathValue("item")
	if err := s.stock.Enable(r.Context(), item); err != nil {
		s.adminFailed(w, r, item, err)
		return
	}
	s.cache.Forget(item)
	writeJSON(w, http.StatusOK, itemState{Item: item})
}

func (s *server) adminFailed(w http.ResponseWriter, r *http.Request, item string, err error) {
	if errors.Is(err, stock.ErrUnknownItem) {
		writeJSON(w, http.StatusNotFound, errorBody{Error: "unknown item"})
		return
	}
	s.o.Logger.LogAttrs(r.Context(), slog.LevelError, "switching item failed",
		slog.String("item", item), slog.Any("error", err))
	writeJSON(w, http.StatusServiceUnavailable, errorBody{Error: "stock unavailable"})
}

func (s *server) partnerFail(w http.ResponseWriter, _ *http.Request) {
	s.partner.failing.Store(true)
	writeJSON(w, http.StatusOK, map[string]string{"partner": "failing"})
}

func (s *server) partnerRecover(w http.ResponseWriter, _ *http.Request) {
	s.partner.failing.Store(false)
	writeJSON(w, http.StatusOK, map[string]string{"partner": "ok"})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v) // the client may have gone; nothing to do
}

// maintain does the background work until ctx is done: every
// SweepInterval it returns the units of expired holds, and asks each
// open breaker for its state, which half-opens it (and so enables its
// item) once its open timeout has passed.
func (s *server) maintain(ctx context.Context) {
	t := time.NewTicker(s.o.SweepInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s.sweep(ctx)
		s.mu.Lock()
		bs := make([]*itemBreaker, 0, len(s.breakers))
		for _, b := range s.breakers {
			bs = append(bs, b)
		}
		s.mu.Unlock()
		for _, b := range bs {
			b.State()
		}
	}
}

// sweep expires holds a batch at a time until none is left.
func (s *server) sweep(ctx context.Context) {
	for {
		n, err := s.stock.Sweep(ctx, sweepBatch)
		if err != nil {
			if ctx.Err() == nil {
				s.o.Logger.LogAttrs(ctx, slog.LevelError, "sweep failed", slog.Any("error", err))
			}
			return
		}
		if n > 0 {
			s.o.Logger.LogAttrs(ctx, slog.LevelInfo, "expired holds swept", slog.Int("holds", n))
		}
		if n < sweepBatch {
			return
		}
	}
}

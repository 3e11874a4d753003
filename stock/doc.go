// Package stock will hand out limited stock (vouchers, items) so that no
// unit is ever granted twice and none is lost.
//
// It will hold the Store contract and reservation lifecycle (reserve with a
// hold time, confirm, release, expiry), pools of unique codes, an admin
// disable switch checked in the same atomic step as a reservation, the
// display level shown to customers ("10+", a count, "Unavailable") and an
// in-memory store. Postgres and Redis stores will live in subpackages.
package stock

package contract

// Limits of the shop's contract. openapi.yaml declares the same figures (its minimum,
// maximum, maxItems and default), and a test holds the two together; the monolith's modules
// and the extracted services enforce them alike.
const (
	// MaxCents bounds every amount of money (prices, order totals, charges, credit limits):
	// 2^53−1 cents, the largest integer a JSON number is exact for in every client.
	MaxCents int64 = 1<<53 - 1
	// MaxLineQuantity bounds the quantity of one line of an order or a reservation.
	MaxLineQuantity = 1_000_000
	// MaxStock bounds an item's stock on hand (hence reserved and available, and a single
	// restock): it keeps every stock count within 32 bits, as the document declares.
	MaxStock = 1_000_000_000
	// MaxOrderLines bounds the lines of an order or a reservation.
	MaxOrderLines = 100
	// DefaultPageLimit is how many entries a list returns when the request names no limit.
	DefaultPageLimit = 50
	// MaxPageLimit is the most entries a list returns at once.
	MaxPageLimit = 200
)

// Package contract is the neutral home of the shop's contracts: the OpenAPI document that the
// monolith's modules and the extracted services both serve, and the event types and payloads
// both sides emit and consume. Neither side owns it, so extraction never imports the monolith.
package contract

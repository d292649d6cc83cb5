package protocols

import "context"

// Quarantiner is implemented by accumulators that keep the payloads an
// input could not read, raw, for inspection (the agent's keeps them in a
// bounded bbolt file under its data dir). An input hands a payload over
// before it acknowledges it to the device, and whatever the outcome the
// payload counts as refused: a payload that cannot be read now never will
// be. source says where it came from ("mqtt sensors/d01/s0001/air",
// "http /write from 10.0.0.7:51234"). Quarantine must be safe for
// concurrent use and must not keep raw after it returns.
type Quarantiner interface {
	Quarantine(ctx context.Context, source string, raw []byte, reason error) error
}

// Quarantine hands raw to acc when acc keeps a quarantine; otherwise it
// does nothing and returns nil.
func Quarantine(ctx context.Context, acc Accumulator, source string, raw []byte, reason error) error {
	q, ok := acc.(Quarantiner)
	if !ok {
		return nil
	}
	return q.Quarantine(ctx, source, raw, reason)
}

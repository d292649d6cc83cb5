// Package process is the agent's local processing between the inputs and
// the durable buffer: filter, deadband (report by exception), aggregate
// (tumbling windows), tags, scale and rename stages, chained in the order
// the configuration lists them.
//
// # Basics
//
// Build decodes a processors list (the global one of agent.yaml, or one
// input's own) strictly, reporting every problem with its file:line, and
// returns a Chain. The agent calls Chain.Process with each batch an input
// writes and passes the result to the buffer; it calls Chain.Flush when
// Chain.NextFlush says, for the windows an aggregate has completed, and
// Flush(true) followed by Close on shutdown.
//
//	chain, err := process.Build(doc, cfg.Processors, "processors", process.Env{
//		StateDir: dataDir, Log: log, Metrics: set,
//	})
//	pts = chain.Process(pts)          // then buffer.Append(pts)
//	out := chain.Flush(false)         // at chain.NextFlush()
//	out = chain.Flush(true)           // on shutdown, then buffer.Append(out)
//	err = chain.Close()               // after the last Append
//
// Stages change points in place: the chain owns the slice handed to it and
// the points' Tags and Fields, which must not share backing arrays between
// points (the codec and the simulator cut them with full slice
// expressions). Every stage works on a point's own timestamp, not the wall
// clock, except that aggregate windows close by the clock (Env.Now).
//
// Counters, per stage name (the stage's name key, or its path such as
// processors-0): citysense_agent_process_points_in_total,
// citysense_agent_process_points_out_total,
// citysense_agent_process_dropped_total{reason} and
// citysense_agent_process_passed_total{reason} (field values, not points:
// a dropped point counts each of its fields), plus the gauge
// citysense_agent_process_series for stages that keep per-series state.
//
// # State across restarts
//
// Deadband (last value sent per series) and aggregate (open windows, and
// per series the end of the last window emitted) keep state in
// Env.StateDir as <type>-<name>.json. Build reads the file; the chain
// removes it when it first runs; Close writes it again, atomically. A
// crash therefore leaves no file, and the next run starts afresh: a
// deadband sends the first value of every series again, which is safe,
// rather than comparing against a value the crashed run may have moved
// past. The file is written only by Close, not periodically, for that
// reason: a snapshot older than the last value sent could hide a change.
//
// # Caveats
//
// An input acknowledges a reading once it is in the buffer, and points an
// aggregate holds are not there yet: a crash or power cut loses the open
// windows (up to one window plus grace of the folded values). Where that
// matters, keep drop_original: false so the raw readings are buffered too.
//
// Close must follow the buffer write of the last Process and Flush output,
// since the deadband state records those values as sent.
//
// The package imports protocols and internal/confx; it must not import the
// buffer, the uplink, any protocol sub-package or the collector.
package process

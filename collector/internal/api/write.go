package api

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nuid"

	"github.com/citysense/citysense/collector/internal/auth"
	"github.com/citysense/citysense/protocols"
)

// Publisher takes decoded, validated batches and returns only once they
// are durable on the bus: the collector's enrich stage
// (*ingest.SeriesPublisher), which enriches them and returns after
// CS_SERIES acknowledged every partition. It must be safe for concurrent
// use.
type Publisher interface {
	Write(ctx context.Context, batches []protocols.Batch) (int, error)
}

// WriteLimits bound what the Influx write endpoints accept.
type WriteLimits struct {
	// MaxBody bounds a request body as sent and again after gzip
	// decompression; more is 413.
	MaxBody int64
	// MaxPast and MaxFuture bound timestamps relative to the request's
	// arrival; a point outside is rejected with its line.
	MaxPast, MaxFuture time.Duration
	// MaxTags and MaxFields bound one point.
	MaxTags, MaxFields int
	// MaxLine bounds one line of line protocol, in bytes without the
	// newline.
	MaxLine int
}

// DefaultWriteLimits are the limits of an API built with a zero
// Options.Write; the collector passes its configuration instead.
func DefaultWriteLimits() WriteLimits {
	return WriteLimits{
		MaxBody:   32 << 20,
		MaxPast:   7305 * 24 * time.Hour, // 20 years
		MaxFuture: time.Hour,
		MaxTags:   64,
		MaxFields: 256,
		MaxLine:   64 << 10,
	}
}

const (
	// chunkPoints bounds one published batch, so that a large body is
	// enriched and acknowledged in steps and its messages stay under
	// nats-server's max_payload.
	chunkPoints = 20_000
	// publishTimeout bounds the wait for one PubAck.
	publishTimeout = 10 * time.Second
	// retryAfter is what a 503 tells the writer to wait, in seconds.
	retryAfter = "5"
	// maxConcurrentWrites bounds the bodies held in memory at once; a
	// request beyond waits for a slot before its body is read.
	maxConcurrentWrites = 4
	// writeReadTimeout replaces the server's 10 s read timeout for write
	// requests: a 32 MiB body over a slow uplink takes longer.
	writeReadTimeout = 2 * time.Minute
	// maxReported is how many rejected lines a 400 names; the rest are
	// counted.
	maxReported = 10
)

// influxError writes an error in InfluxDB's JSON shape. The v1 endpoint
// adds "error", the key InfluxDB 1.x clients (Telegraf's outputs.influxdb)
// read; "partial write" in the message tells them not to resend the batch.
func influxError(w http.ResponseWriter, v1 bool, status int, code, msg string) {
	body := map[string]string{"code": code, "message": msg}
	if v1 {
		body["error"] = msg
	}
	b, _ := json.Marshal(body)
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	if len(msg) > 512 {
		msg = msg[:512] // the body has it whole; headers stay small
	}
	h.Set("X-Influxdb-Error", msg)
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

func (a *API) writeV1(w http.ResponseWriter, r *http.Request) { a.write(w, r, true) }
func (a *API) writeV2(w http.ResponseWriter, r *http.Request) { a.write(w, r, false) }

// write serves POST /write and POST /api/v2/write: authenticate, read the
// body within the limits, decode it, publish the valid points to CS_RAW
// and answer only after JetStream acknowledged them.
func (a *API) write(w http.ResponseWriter, r *http.Request, v1 bool) {
	arrived := a.opts.Now()
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		influxError(w, v1, http.StatusBadRequest, "invalid", "malformed query string")
		return
	}
	// Authentication first: nothing about the request is judged, and
	// nothing is read, for a client without a valid token.
	var tok auth.Token
	ok := false
	if a.opts.Credentials != nil {
		tok, ok = a.opts.Credentials.VerifyToken(requestToken(r, q, v1))
	}
	if !ok {
		a.writeUnauthorized.Inc()
		influxError(w, v1, http.StatusUnauthorized, "unauthorized", "unauthorized access: a valid token is required")
		return
	}
	prec, status, msg := checkWriteRequest(r, q, v1)
	if status != 0 {
		influxError(w, v1, status, "invalid", msg)
		return
	}
	if a.opts.Bus == nil {
		w.Header().Set("Retry-After", retryAfter)
		influxError(w, v1, http.StatusServiceUnavailable, "unavailable", "the bus is not available")
		return
	}
	limits := a.opts.Write
	if r.ContentLength > limits.MaxBody {
		influxError(w, v1, http.StatusRequestEntityTooLarge, "request too large",
			fmt.Sprintf("body of %d bytes is over the limit of %d bytes", r.ContentLength, limits.MaxBody))
		return
	}
	select {
	case a.writeSlots <- struct{}{}:
		defer func() { <-a.writeSlots }()
	case <-r.Context().Done():
		return // the client gave up while waiting
	}
	// Best effort: a ResponseWriter that cannot extend its deadline keeps
	// the server's.
	_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(writeReadTimeout))
	sc := getScratch()
	defer putScratch(sc)
	body, status, msg := readBody(w, r, limits.MaxBody, &sc.body)
	if status != 0 {
		code := "invalid"
		if status == http.StatusRequestEntityTooLarge {
			code = "request too large"
		}
		influxError(w, v1, status, code, msg)
		return
	}
	a.writeBytes.Add(len(body))

	res, err := a.decodeAndPublish(r.Context(), sc, body, prec, arrived, subjectToken(tok.Name))
	a.writePoints.Add(res.written)
	a.writeRejected.Add(res.rejected())
	if err != nil {
		a.log.Warn("api: write: bus did not acknowledge, asking the writer to retry", "token", tok.Name,
			"points_acknowledged", res.written, "err", err)
		w.Header().Set("Retry-After", retryAfter)
		influxError(w, v1, http.StatusServiceUnavailable, "unavailable",
			"the bus did not acknowledge the batch; retry later (points already acknowledged are stored once however often they are sent)")
		return
	}
	if res.rejected() > 0 {
		a.log.Debug("api: write: lines rejected", "token", tok.Name, "written", res.written, "rejected", res.rejected())
		influxError(w, v1, http.StatusBadRequest, "invalid", res.message())
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// checkWriteRequest reads the precision and checks the encoding. A non-zero
// status is the answer to give.
func checkWriteRequest(r *http.Request, q url.Values, v1 bool) (protocols.Precision, int, string) {
	prec := q.Get("precision")
	want := "ns, us, ms or s"
	if v1 {
		want = "n, ns, u, us, ms or s"
	}
	p, err := protocols.ParsePrecision(prec)
	// The v2 API knows only the long names.
	if err != nil || !v1 && (prec == "n" || prec == "u" || prec == "µs") {
		return 0, http.StatusBadRequest, fmt.Sprintf("precision %q: want %s", prec, want)
	}
	switch enc := strings.ToLower(strings.TrimSpace(r.Header.Get("Content-Encoding"))); enc {
	case "", "identity", "gzip":
	default:
		return 0, http.StatusUnsupportedMediaType, fmt.Sprintf("Content-Encoding %q: want gzip or none", enc)
	}
	return p, 0, ""
}

// requestToken finds the token where InfluxDB clients put it: the
// Authorization header as "Token <t>" (v2 clients, Telegraf) or "Bearer
// <t>"; for v1 also Basic auth or the u/p query parameters, the password
// being the token and the user name ignored.
func requestToken(r *http.Request, q url.Values, v1 bool) string {
	h := r.Header.Get("Authorization")
	scheme, cred, _ := strings.Cut(h, " ")
	switch strings.ToLower(scheme) {
	case "token", "bearer":
		return strings.TrimSpace(cred)
	case "basic":
		if !v1 {
			return ""
		}
		raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(cred))
		if err != nil {
			return ""
		}
		_, pass, _ := strings.Cut(string(raw), ":")
		return pass
	}
	if v1 {
		return q.Get("p")
	}
	return ""
}

// writeScratch is the memory a write request reuses from earlier ones:
// the body, the decoder's slabs and names, and the points not yet
// published. Allocated afresh for every request they were half of the
// collector's allocations during ingest.
type writeScratch struct {
	body    bytes.Buffer
	dec     protocols.Decoder
	pending []protocols.Point
	used    int // the most points pending held during the request
}

// scratches keeps one scratch per concurrent write. Not a sync.Pool: a
// pool is emptied by every other garbage collection, and each refill
// allocated the slabs again.
var scratches = make(chan *writeScratch, maxConcurrentWrites)

// maxKeptBody bounds the body buffer a scratch keeps for the next request:
// one 32 MiB body must not pin 32 MiB for good.
const maxKeptBody = 4 << 20

func getScratch() *writeScratch {
	select {
	case sc := <-scratches:
		return sc
	default:
		return &writeScratch{}
	}
}

// putScratch returns sc once nothing of the request refers to its memory.
func putScratch(sc *writeScratch) {
	if sc.body.Cap() > maxKeptBody {
		sc.body = bytes.Buffer{}
	}
	sc.body.Reset()
	clear(sc.pending[:sc.used]) // stale points would keep string values alive
	sc.pending, sc.used = sc.pending[:0], 0
	select {
	case scratches <- sc:
	default:
	}
}

// readBody reads the whole body into buf, decompressing gzip, and enforces
// max on both the bytes received and the bytes decompressed: a gzip bomb
// stops at max+1 bytes of output. A non-zero status is the answer to give.
func readBody(w http.ResponseWriter, r *http.Request, max int64, buf *bytes.Buffer) ([]byte, int, string) {
	tooLarge := fmt.Sprintf("body is over the limit of %d bytes", max)
	var rd io.Reader = http.MaxBytesReader(w, r.Body, max)
	if strings.EqualFold(strings.TrimSpace(r.Header.Get("Content-Encoding")), "gzip") {
		gz, err := gzip.NewReader(rd)
		if err != nil {
			if isMaxBytes(err) {
				return nil, http.StatusRequestEntityTooLarge, tooLarge
			}
			return nil, http.StatusBadRequest, "body is not valid gzip: " + err.Error()
		}
		defer gz.Close()
		rd = gz
		tooLarge = fmt.Sprintf("body is over the limit of %d bytes (after gzip decompression)", max)
	}
	if r.ContentLength > 0 {
		// ReadFrom wants MinRead bytes free before it reads EOF: a buffer
		// of exactly the body's size would be doubled at the end.
		buf.Grow(int(min(r.ContentLength, max)) + bytes.MinRead)
	}
	n, err := io.Copy(buf, io.LimitReader(rd, max+1))
	switch {
	case isMaxBytes(err):
		return nil, http.StatusRequestEntityTooLarge, tooLarge
	case err != nil:
		return nil, http.StatusBadRequest, "cannot read body: " + err.Error()
	case n > max:
		return nil, http.StatusRequestEntityTooLarge, tooLarge
	}
	return buf.Bytes(), 0, ""
}

func isMaxBytes(err error) bool {
	var mbe *http.MaxBytesError
	return errors.As(err, &mbe)
}

// subjectToken makes s usable as one NATS subject token. Token names are
// already restricted to [A-Za-z0-9_-]; this is the second line of defence.
func subjectToken(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			b[i] = '_'
		}
	}
	if len(b) == 0 {
		return "_"
	}
	return string(b)
}

// lineProblem is one rejected line (or point, when its line is unknown).
type lineProblem struct {
	line int // 0: unknown, then point names the point
	msg  string
}

// rejectedPoint is a decoded point refused by a limit; its line is found
// after decoding (see locate).
type rejectedPoint struct {
	index int // among the points Decode delivered
	desc  string
	msg   string
}

// writeResult is the outcome of one request's body.
type writeResult struct {
	written    int
	decodeErrs *protocols.DecodeErrors
	long       []lineProblem
	limited    []rejectedPoint
	limitedN   int // beyond those kept in limited
	lines      map[int]int
}

func (res *writeResult) rejected() int {
	n := len(res.long) + len(res.limited) + res.limitedN
	if res.decodeErrs != nil {
		n += len(res.decodeErrs.Errs) + res.decodeErrs.Dropped
	}
	return n
}

// message is the 400 answer: how much was written and the first rejected
// lines in line order.
func (res *writeResult) message() string {
	var probs []lineProblem
	probs = append(probs, res.long...)
	if res.decodeErrs != nil {
		for _, e := range res.decodeErrs.Errs {
			probs = append(probs, lineProblem{line: e.Line, msg: e.Error()})
		}
	}
	for _, p := range res.limited {
		if line, ok := res.lines[p.index]; ok {
			probs = append(probs, lineProblem{line: line, msg: fmt.Sprintf("line %d: %s", line, p.msg)})
		} else {
			probs = append(probs, lineProblem{msg: fmt.Sprintf("%s: %s", p.desc, p.msg)})
		}
	}
	sortProblems(probs)
	var b strings.Builder
	fmt.Fprintf(&b, "partial write: %s written, %s rejected: ", plural(res.written, "point"), plural(res.rejected(), "line"))
	for i, p := range probs {
		if i == maxReported {
			break
		}
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(p.msg)
	}
	if more := res.rejected() - min(len(probs), maxReported); more > 0 {
		fmt.Fprintf(&b, "; and %d more", more)
	}
	return b.String()
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return strconv.Itoa(n) + " " + what + "s"
}

// sortProblems orders problems by line, those without a line last; each
// group keeps its order.
func sortProblems(ps []lineProblem) {
	slices.SortStableFunc(ps, func(a, b lineProblem) int {
		switch {
		case a.line == b.line:
			return 0
		case a.line == 0:
			return 1
		case b.line == 0:
			return -1
		}
		return a.line - b.line
	})
}

// decodeAndPublish decodes body, checks each point against the limits and
// hands the valid ones to the enrich stage in batches of at most
// chunkPoints, with the id http-<token name>-<nuid>. Written batches do not
// pass through CS_RAW: they are decoded and checked here already, and a
// second durable hop only to decode them again cost a fifth of the
// collector's ingest CPU. It returns an error only when the bus did not
// acknowledge a batch.
// Points live in sc until the request ends.
func (a *API) decodeAndPublish(ctx context.Context, sc *writeScratch, body []byte, prec protocols.Precision, now time.Time, name string) (*writeResult, error) {
	limits := a.opts.Write
	res := &writeResult{}
	// Over-long lines become comments in place, so that the decoder skips
	// them and every other line keeps its number.
	res.long = blankLongLines(body, limits.MaxLine)

	oldest, newest := now.Add(-limits.MaxPast).UnixNano(), now.Add(limits.MaxFuture).UnixNano()
	pending := sc.pending[:0] // not yet published
	defer func() { sc.pending, sc.used = pending, max(sc.used, len(pending)) }()
	flush := func() error {
		if len(pending) == 0 {
			return nil
		}
		// Not cancelled with the request: a client that hangs up while
		// a message is in flight must not leave its fate unknown here.
		pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), publishTimeout)
		defer cancel()
		if _, err := a.opts.Bus.Write(pctx, []protocols.Batch{{ID: "http-" + name + "-" + nuid.Next(), Points: pending}}); err != nil {
			return err
		}
		res.written += len(pending)
		sc.used = max(sc.used, len(pending))
		// The enrich stage keeps nothing of a batch once Write returned:
		// neither the points nor their tag and field slices, which the
		// decoder hands out again to the next request.
		pending = pending[:0]
		return nil
	}
	// Only the first rejections are kept for the answer (which names at
	// most maxReported); the rest are counted.
	reject := func(i int, p *protocols.Point, msg string) {
		if len(res.limited) < 100 {
			res.limited = append(res.limited, rejectedPoint{index: i, desc: describe(p), msg: msg})
		} else {
			res.limitedN++
		}
	}
	errPublish := errors.New("publish failed")
	var pubErr error
	index := 0
	err := sc.dec.Decode(body, protocols.DecodeOptions{Precision: prec, Now: now}, func(p protocols.Point) error {
		i := index
		index++
		if msg := checkLimits(&p, limits, oldest, newest); msg != "" {
			reject(i, &p, msg)
			return nil
		}
		pending = append(pending, p)
		if len(pending) >= chunkPoints {
			if pubErr = flush(); pubErr != nil {
				return errPublish
			}
		}
		return nil
	})
	if errors.Is(err, errPublish) {
		return res, pubErr
	}
	if err := flush(); err != nil {
		return res, err
	}
	var de *protocols.DecodeErrors
	if errors.As(err, &de) {
		res.decodeErrs = de
	}
	if len(res.limited) > 0 {
		res.lines = locate(body, index, res.decodeErrs)
	}
	return res, nil
}

// checkLimits returns why p is refused, or "".
func checkLimits(p *protocols.Point, l WriteLimits, oldest, newest int64) string {
	switch {
	case len(p.Tags) > l.MaxTags:
		return fmt.Sprintf("%d tags, more than the limit of %d", len(p.Tags), l.MaxTags)
	case len(p.Fields) > l.MaxFields:
		return fmt.Sprintf("%d fields, more than the limit of %d", len(p.Fields), l.MaxFields)
	case p.Time < oldest:
		return fmt.Sprintf("timestamp %s is more than %s in the past", fmtTime(p.Time), fmtDuration(l.MaxPast))
	case p.Time > newest:
		return fmt.Sprintf("timestamp %s is more than %s in the future", fmtTime(p.Time), fmtDuration(l.MaxFuture))
	}
	return ""
}

func fmtTime(ns int64) string { return time.Unix(0, ns).UTC().Format(time.RFC3339Nano) }

// fmtDuration writes whole days as "7305d", the way the configuration
// spells them.
func fmtDuration(d time.Duration) string {
	if d >= 24*time.Hour && d%(24*time.Hour) == 0 {
		return strconv.FormatInt(int64(d/(24*time.Hour)), 10) + "d"
	}
	return d.String()
}

// describe names a point whose line is unknown.
func describe(p *protocols.Point) string {
	return fmt.Sprintf("point %q at %s", p.Measurement, fmtTime(p.Time))
}

// blankLongLines turns every line longer than max bytes into a comment of
// the same length and reports it.
func blankLongLines(body []byte, max int) []lineProblem {
	var out []lineProblem
	line := 0
	for start := 0; start < len(body); {
		line++
		end := bytes.IndexByte(body[start:], '\n')
		if end < 0 {
			end = len(body)
		} else {
			end += start
		}
		if n := end - start; n > max {
			body[start] = '#'
			for i := start + 1; i < end; i++ {
				if c := body[i]; c < 0x20 || c == 0x7f {
					body[i] = ' ' // a comment may hold printable bytes only
				}
			}
			out = append(out, lineProblem{line: line, msg: fmt.Sprintf("line %d: %d bytes, more than the limit of %d", line, n, max)})
		}
		start = end + 1
	}
	return out
}

// locate maps the index of each point Decode delivered to its line, by
// pairing the entries of body, in order, with the points and the decode
// errors. The codec does not report lines of good points, and the entry
// rules below mirror its decoder (leading spaces, empty lines, CR LF,
// comments). When the pairing does not add up (an entry spanning lines
// inside a quoted string, more errors than were kept), it returns nil and
// the rejected points are named by measurement and time instead.
func locate(body []byte, points int, de *protocols.DecodeErrors) map[int]int {
	errLines := map[int]bool{}
	nerr := 0
	if de != nil {
		if de.Dropped > 0 {
			return nil
		}
		for _, e := range de.Errs {
			errLines[e.Line] = true
		}
		nerr = len(de.Errs)
	}
	entries := entryLines(body)
	if len(errLines) != nerr || len(entries) != points+nerr {
		return nil
	}
	out := make(map[int]int, points)
	i := 0
	for _, line := range entries {
		if errLines[line] {
			delete(errLines, line)
			continue
		}
		out[i] = line
		i++
	}
	if len(errLines) > 0 {
		return nil // an error on a line that is no entry: pairing is off
	}
	return out
}

// entryLines returns the numbers of the lines that start an entry.
func entryLines(body []byte) []int {
	var out []int
	line := 0
	for start := 0; start < len(body); {
		line++
		end := bytes.IndexByte(body[start:], '\n')
		if end < 0 {
			end = len(body)
		} else {
			end += start
		}
		l := body[start:end]
		start = end + 1
		for len(l) > 0 && l[0] == ' ' {
			l = l[1:]
		}
		if len(l) == 0 || string(l) == "\r" || l[0] == '#' && printable(bytes.TrimSuffix(l[1:], []byte("\r"))) {
			continue
		}
		out = append(out, line)
	}
	return out
}

func printable(b []byte) bool {
	for _, c := range b {
		if c < 0x20 || c == 0x7f {
			return false
		}
	}
	return true
}

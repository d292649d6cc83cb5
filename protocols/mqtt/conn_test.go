package mqtt

import (
	"bytes"
	"io"
	"net"
	"testing"
	"time"
)

// TestBufferedConn: writes arrive in order and complete, Close flushes what
// is pending, reads pass through, and a write after the peer went away
// fails rather than vanishing.
func TestBufferedConn(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	got := make(chan []byte, 1)
	go func() {
		s, err := l.Accept()
		if err != nil {
			got <- nil
			return
		}
		_, _ = s.Write([]byte("hello from the broker"))
		b, _ := io.ReadAll(s)
		s.Close()
		got <- b
	}()
	raw, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c := newBufferedConn(raw)
	var want bytes.Buffer
	for i := range 5000 {
		p := []byte{0x40, 0x02, byte(i >> 8), byte(i)} // a PUBACK
		if n, err := c.Write(p); n != 4 || err != nil {
			t.Fatalf("Write = %d, %v", n, err)
		}
		want.Write(p)
	}
	buf := make([]byte, 21)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "hello from the broker" {
		t.Fatalf("Read = %q, %v", buf, err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if b := <-got; !bytes.Equal(b, want.Bytes()) {
		t.Fatalf("peer got %d bytes, want %d in order", len(b), want.Len())
	}
	if _, err := c.Write([]byte{1}); err == nil {
		t.Fatal("Write after Close succeeded")
	}

	// The peer closes: a later write reports it.
	go func() {
		s, err := l.Accept()
		if err == nil {
			s.Close()
		}
	}()
	raw, err = net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c = newBufferedConn(raw)
	defer c.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := c.Write(make([]byte, 1024)); err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("writes to a closed peer kept succeeding")
		}
		time.Sleep(time.Millisecond)
	}
}

package modbus

import (
	"errors"
	"fmt"
	"io"
	"log"
	"time"

	sv "github.com/simonvetter/modbus"
)

// Client is the part of a Modbus client the input uses. One Client serves
// one bus (a TCP address or a serial port); it is not used concurrently.
type Client interface {
	Open() error
	Close() error
	SetUnitID(id uint8) error
	// ReadRegisters reads holding (input false) or input registers.
	ReadRegisters(addr, count uint16, input bool) ([]uint16, error)
	// ReadBits reads coils (discrete false) or discrete inputs.
	ReadBits(addr, count uint16, discrete bool) ([]bool, error)
}

// BusConfig is where and how to reach one bus.
type BusConfig struct {
	URL      string // tcp://host:port, rtu:///dev/ttyUSB0, rtuovertcp://host:port
	Speed    uint   // serial only
	DataBits uint
	Parity   string // N, E, O
	StopBits uint
	Timeout  time.Duration
}

// ClientFactory creates a Client; tests substitute a fake.
type ClientFactory func(BusConfig) (Client, error)

// ExceptionError is a Modbus exception: the device answered, but refused
// the request (e.g. code 2, illegal data address). Other errors (timeouts,
// broken connections, bad CRC) are transport errors.
type ExceptionError struct {
	Code byte
	Err  error
}

func (e *ExceptionError) Error() string { return fmt.Sprintf("modbus exception %d: %v", e.Code, e.Err) }
func (e *ExceptionError) Unwrap() error { return e.Err }

// svClient adapts github.com/simonvetter/modbus.
type svClient struct{ c *sv.ModbusClient }

// NewClient returns a Client on github.com/simonvetter/modbus.
func NewClient(cfg BusConfig) (Client, error) {
	parity := sv.PARITY_NONE
	switch cfg.Parity {
	case "E":
		parity = sv.PARITY_EVEN
	case "O":
		parity = sv.PARITY_ODD
	}
	c, err := sv.NewClient(&sv.ClientConfiguration{
		URL:      cfg.URL,
		Speed:    cfg.Speed,
		DataBits: cfg.DataBits,
		Parity:   parity,
		StopBits: cfg.StopBits,
		Timeout:  cfg.Timeout,
		Logger:   log.New(io.Discard, "", 0), // errors are returned and logged by the input
	})
	if err != nil {
		return nil, err
	}
	return &svClient{c: c}, nil
}

func (s *svClient) Open() error              { return s.c.Open() }
func (s *svClient) Close() error             { return s.c.Close() }
func (s *svClient) SetUnitID(id uint8) error { return s.c.SetUnitId(id) }

func (s *svClient) ReadRegisters(addr, count uint16, input bool) ([]uint16, error) {
	rt := sv.HOLDING_REGISTER
	if input {
		rt = sv.INPUT_REGISTER
	}
	v, err := s.c.ReadRegisters(addr, count, rt)
	return v, exception(err)
}

func (s *svClient) ReadBits(addr, count uint16, discrete bool) ([]bool, error) {
	if discrete {
		v, err := s.c.ReadDiscreteInputs(addr, count)
		return v, exception(err)
	}
	v, err := s.c.ReadCoils(addr, count)
	return v, exception(err)
}

// exception turns the library's exception errors into *ExceptionError.
func exception(err error) error {
	codes := []struct {
		err  error
		code byte
	}{
		{sv.ErrIllegalFunction, 1}, {sv.ErrIllegalDataAddress, 2}, {sv.ErrIllegalDataValue, 3},
		{sv.ErrServerDeviceFailure, 4}, {sv.ErrAcknowledge, 5}, {sv.ErrServerDeviceBusy, 6},
		{sv.ErrMemoryParityError, 8}, {sv.ErrGWPathUnavailable, 10}, {sv.ErrGWTargetFailedToRespond, 11},
	}
	for _, c := range codes {
		if errors.Is(err, c.err) {
			return &ExceptionError{Code: c.code, Err: err}
		}
	}
	return err
}

// Interface guards.
var (
	_ Client        = (*svClient)(nil)
	_ ClientFactory = NewClient
)

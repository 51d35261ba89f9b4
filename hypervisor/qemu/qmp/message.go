package qmp

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"
)

// ErrProtocol means the peer sent something that is not QMP. The
// connection is closed when it happens, since a stream of JSON objects
// cannot be resynchronised reliably after garbage.
var ErrProtocol = errors.New("qmp: protocol error")

// Version is QEMU's version as the greeting reports it.
type Version struct {
	Major, Minor, Micro int
	// Package is the distribution's build string, such as
	// "Debian 1:7.2+dfsg-7".
	Package string
}

// AtLeast reports whether v is major.minor or later.
func (v Version) AtLeast(major, minor int) bool {
	if v.Major != major {
		return v.Major > major
	}
	return v.Minor >= minor
}

func (v Version) String() string {
	return fmt.Sprintf("%d.%d.%d", v.Major, v.Minor, v.Micro)
}

// Greeting is the first message a QMP server sends.
type Greeting struct {
	Version Version
	// Capabilities lists what the server offers ("oob"). This client
	// enables none of them.
	Capabilities []string
}

// Event is an asynchronous QMP event such as SHUTDOWN or STOP.
type Event struct {
	Name string
	// Data is the event's "data" member, or nil when it has none.
	Data json.RawMessage
	// Time is the server's timestamp for the event.
	Time time.Time
}

// Error is a command failure reported by the server. Class is QMP's error
// class ("GenericError", "CommandNotFound", "DeviceNotFound", ...) and Desc
// its human-readable description.
type Error struct {
	Command string
	Class   string
	Desc    string
}

func (e *Error) Error() string {
	if e.Command == "" {
		return fmt.Sprintf("qmp: %s: %s", e.Class, e.Desc)
	}
	return fmt.Sprintf("qmp: %s: %s: %s", e.Command, e.Class, e.Desc)
}

// kind tells the message types apart.
type kind int

const (
	kindUnknown kind = iota
	kindGreeting
	kindEvent
	kindReturn
	kindError
)

// message is one decoded server message.
type message struct {
	kind     kind
	greeting Greeting
	event    Event
	// id is the reply's id when it is one this client could have sent
	// (a non-negative integer); hasID is false otherwise.
	id     uint64
	hasID  bool
	anyID  bool // the reply carried an id member at all
	ret    json.RawMessage
	err    *Error
	rawLen int
}

type wireMessage struct {
	QMP *struct {
		Version struct {
			QEMU struct {
				Major int `json:"major"`
				Minor int `json:"minor"`
				Micro int `json:"micro"`
			} `json:"qemu"`
			Package string `json:"package"`
		} `json:"version"`
		Capabilities []string `json:"capabilities"`
	} `json:"QMP"`
	Event     *string         `json:"event"`
	Data      json.RawMessage `json:"data"`
	Timestamp *struct {
		Seconds      int64 `json:"seconds"`
		Microseconds int64 `json:"microseconds"`
	} `json:"timestamp"`
	Return json.RawMessage `json:"return"`
	Error  *struct {
		Class string `json:"class"`
		Desc  string `json:"desc"`
	} `json:"error"`
	ID json.RawMessage `json:"id"`
}

// decodeMessage decodes one JSON object sent by a QMP server. Valid JSON of
// an unknown shape decodes to kindUnknown (newer servers may add message
// types); anything that is not a JSON object is an ErrProtocol error.
func decodeMessage(raw []byte) (message, error) {
	var w wireMessage
	trimmed := bytes.TrimSpace(raw)
	if len(trimmed) == 0 || trimmed[0] != '{' {
		return message{}, fmt.Errorf("%w: expected a JSON object, got %s", ErrProtocol, quote(trimmed))
	}
	if err := json.Unmarshal(trimmed, &w); err != nil {
		return message{}, fmt.Errorf("%w: %v in %s", ErrProtocol, err, quote(trimmed))
	}
	m := message{rawLen: len(raw)}
	switch {
	case w.QMP != nil:
		m.kind = kindGreeting
		m.greeting = Greeting{
			Version: Version{
				Major:   w.QMP.Version.QEMU.Major,
				Minor:   w.QMP.Version.QEMU.Minor,
				Micro:   w.QMP.Version.QEMU.Micro,
				Package: w.QMP.Version.Package,
			},
			Capabilities: w.QMP.Capabilities,
		}
	case w.Event != nil:
		m.kind = kindEvent
		m.event.Name = *w.Event
		if len(w.Data) > 0 && !bytes.Equal(w.Data, []byte("null")) {
			m.event.Data = w.Data
		}
		if t := w.Timestamp; t != nil && t.Seconds >= 0 && t.Microseconds >= 0 && t.Microseconds < 1e6 {
			m.event.Time = time.Unix(t.Seconds, t.Microseconds*1000)
		}
	case w.Error != nil:
		m.kind = kindError
		m.err = &Error{Class: w.Error.Class, Desc: w.Error.Desc}
	case w.Return != nil:
		m.kind = kindReturn
		m.ret = w.Return
	default:
		m.kind = kindUnknown
	}
	if m.kind == kindReturn || m.kind == kindError {
		if len(w.ID) > 0 && !bytes.Equal(w.ID, []byte("null")) {
			m.anyID = true
			if id, err := strconv.ParseUint(string(w.ID), 10, 64); err == nil {
				m.id, m.hasID = id, true
			}
		}
	}
	return m, nil
}

// quote shortens b for an error message.
func quote(b []byte) string {
	const max = 80
	if len(b) > max {
		return strconv.Quote(string(b[:max])) + "..."
	}
	return strconv.Quote(string(b))
}

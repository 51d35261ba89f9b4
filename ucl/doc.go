// Package ucl parses UCL, the configuration language of libucl (used by
// FreeBSD pkg and vmstated), in pure Go.
//
// It follows libucl 0.9.4 closely: every case of the conformance corpus that
// libucl accepts gives the same values here, and every case it rejects is
// rejected, with an error that names the file, line and column.
//
// # Quick start
//
// Decode a config into a struct:
//
//	type VM struct {
//		ConfigFile string        `ucl:"configfile"`
//		CPUs       int           `ucl:"cpus"`
//		Memory     int64         `ucl:"memory"`     // 8G, 2gb, 4096
//		Stop       time.Duration `ucl:"stop_timeout"` // 30s, 5min, or 30
//	}
//	var cfg struct{ VM map[string]VM `ucl:"vm"` }
//	err := ucl.Unmarshal(data, &cfg)
//
// Or parse into a tree of Nodes, which keeps positions for messages, and
// turns on macros and variables:
//
//	root, err := ucl.ParseFile("vm0/config", ucl.Options{
//		Macros:        true,                          // .include, .priority
//		Vars:          map[string]string{"VM": "vm0"}, // $VM, ${VM}
//		LowercaseKeys: true,
//	})
//	cpus := root.Get("cpus") // *Node with Kind, Pos, Int, ...
//
// # The language, briefly
//
//	# comment; /* block comments */ nest
//	name = web              # "key = value", "key: value" or "key value"
//	memory = 8G             # k m g are 1000-based, kb mb gb 1024-based
//	timeout = 30s           # s ms min h d w y give float seconds (time values)
//	bsdvm {                 # an object; braces around the whole file are optional
//	    network "tap0" { bridge = bridge0 }  # section shorthand: network.tap0
//	}
//	disk { path = /dev/ada0 }
//	disk { path = /dev/ada1 }  # a repeated key collects its values in an
//	                           # (implicit) array; objects are not merged
//	text = <<EOD
//	raw lines
//	EOD
//
// Surprises carried over from libucl on purpose: bare m is mega, not
// minutes (10m is 10000000; write 10min); a suffixed number followed by a
// space or tab is a string ("30s ;" is the string "30s"); a number followed
// by a /* */ comment is a string; // does not start a comment; dots in bare
// keys are literal (a.b = 1 is the key "a.b"); numbers that do not fit are
// errors, not strings; nan and inf are floats.
//
// # Values
//
// Node.Value and Unmarshal into *any give map[string]any, []any, string,
// int64, float64 (floats and time values, in seconds), bool and nil. A
// Node's Str also holds the source text of numbers and booleans (for
// example "14.0" or "8G"), and decoding a number into a string field uses
// that text, so osversion = 14.0 stays "14.0".
//
// # Macros
//
// With Options.Macros set:
//
//	.include "path"                        keys of the file join the current object
//	.include(try=true) "local.conf"        a missing file is skipped
//	.include(glob=true) "conf.d/*.conf"    every match, in sorted order; no match is
//	                                       an error unless try=true
//	.include(priority=5) "override.conf"   its keys get priority 5
//	.try_include "x"                       the same as .include(try=true) "x"
//	.priority 5                            later keys of this file get priority 5
//
// A relative path is relative to the directory of the including file (not
// to the working directory, as in libucl; $CURDIR/x still works). Included
// keys are added at the include point with the usual rule for repeated keys;
// between values of different priority (0 to 15, default 0) the higher one
// wins and the lower is dropped, which lets a VM config include a template
// and override some of its keys. Includes may nest 16 deep; a loop is an
// error that names the chain (wrapping ErrIncludeLoop). Errors inside an
// included file point into that file and list the .include lines that led
// there. .includes (signed), .inherit and .load are not supported and are
// errors.
//
// # Variables
//
// Variable expansion is on when Options.Vars is non-nil or Macros is set.
// ${NAME} must name a variable exactly; $NAME takes the longest variable
// name the text starts with ($ABItest is $ABI then "test"). FILENAME and
// CURDIR are always defined as the absolute path of the file being parsed
// and its directory ("undef" and the working directory without a file
// name). Unknown variables stay as written. As in libucl, $$ becomes $ only
// in a string that also refers to a known variable, and expansion applies
// to double-quoted, unquoted and heredoc values and macro arguments, never
// to keys or single-quoted strings.
//
// # Choices where libucl has quirks
//
// The conformance corpus lists libucl behaviours that a parser may choose
// not to copy. This package decides:
//
//   - Text after the closing brace of a braced top-level object (or bracket
//     of a top-level array) is an error. libucl ignores it, which silently
//     drops configuration.
//   - A UTF-8 byte order mark at the start of a file is skipped. libucl makes
//     it part of the first key, which no one means.
//   - A float with a byte suffix is multiplied, then truncated: 1.5kb is 1536
//     and 2.9mb is 3040870. libucl truncates first (1.5kb is 1024), which
//     contradicts what the text says.
//   - Empty array slots are skipped ([1,,2] is [1, 2]), as in libucl:
//     repeated separators are allowed everywhere else too.
//   - {"a" 1} is accepted and {"a": 1 "b": 2} makes a the string `1 "b": 2`,
//     as in libucl: these are the ordinary "key value" form and unquoted
//     string rules, not JSON special cases.
//   - Ms means milliseconds, as in libucl: suffix letters are
//     case-insensitive everywhere.
//   - With macros off, .include and .priority lines are errors, as in libucl.
//
// Other deviations, all in input no real config has: a hex number needs the
// 0x prefix at its start (libucl also reads 12x5 as hex 5); a hex number
// with a time suffix is a time value; surrogate pairs in \u escapes are
// combined into one character and lone surrogates become U+FFFD (libucl
// writes each half as invalid UTF-8); a heredoc tag needs at least one
// letter; blanks and comments before the top-level brace may repeat;
// objects and arrays nest at most 1000 deep.
//
// Columns in positions count characters, not bytes, and are 1-based.
package ucl

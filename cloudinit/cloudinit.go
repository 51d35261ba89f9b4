// Package cloudinit builds NoCloud seed images for cloud-init: an ISO 9660
// image with the volume label "cidata" holding the files user-data,
// meta-data and, when given, network-config, which cloud-init in the guest
// finds on any attached drive.
//
// The contract: the files the user names are used as they are; what they
// leave out is generated (meta-data with instance-id and local-hostname,
// a #cloud-config user-data with ssh_authorized_keys). meta-data always
// carries an instance-id, and a generated one is derived from the VM's
// name and the digest of everything on the seed, so that a changed seed is
// a new instance to cloud-init (which runs its once-per-instance steps
// again) and an unchanged one is not. An image whose files already hold
// exactly the wanted contents is left alone.
//
// The image is written in Go (github.com/kdomanski/iso9660), so hosts
// need no genisoimage or xorriso.
package cloudinit

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/kdomanski/iso9660"
)

// VolumeID is the label cloud-init's NoCloud source looks for.
const VolumeID = "cidata"

// File names on the seed.
const (
	UserData      = "user-data"
	MetaData      = "meta-data"
	NetworkConfig = "network-config"
)

// MaxFileSize bounds each file read into a seed: the daemon holds the
// files in memory while it writes the image.
const MaxFileSize = 4 << 20

// Config says what goes on a seed. File paths empty = generated (or, for
// NetworkConfig, left out).
type Config struct {
	UserData      string
	MetaData      string
	NetworkConfig string
	// Hostname becomes meta-data's local-hostname (generated meta-data
	// only); empty uses the VM's name where it is a valid host name.
	Hostname string
	// SSHAuthorizedKeys go into the generated user-data.
	SSHAuthorizedKeys []string
}

// Seed is the contents of a seed image.
type Seed struct {
	// Files maps the file names on the image to their contents.
	Files map[string][]byte
	// InstanceID is meta-data's instance-id.
	InstanceID string
}

// Build reads c's files and makes the seed for the VM called name.
func Build(name string, c Config) (*Seed, error) {
	files := map[string][]byte{}
	read := func(what, path string) ([]byte, error) {
		b, err := readCapped(path)
		if err != nil {
			return nil, fmt.Errorf("cloud_init.%s: %w", what, err)
		}
		return b, nil
	}
	var err error
	if c.UserData != "" {
		if files[UserData], err = read("user_data", c.UserData); err != nil {
			return nil, err
		}
	} else {
		files[UserData] = generatedUserData(c.SSHAuthorizedKeys)
	}
	if c.NetworkConfig != "" {
		if files[NetworkConfig], err = read("network_config", c.NetworkConfig); err != nil {
			return nil, err
		}
	}
	var meta []byte
	if c.MetaData != "" {
		if meta, err = read("meta_data", c.MetaData); err != nil {
			return nil, err
		}
	} else {
		host := c.Hostname
		if host == "" && validHostname(name) {
			host = name
		}
		if host != "" {
			meta = []byte("local-hostname: " + yamlString(host) + "\n")
		}
	}
	id := ""
	if m := instanceIDLine.FindSubmatch(meta); m != nil {
		id = strings.Trim(strings.TrimSpace(string(m[1])), `"'`)
	} else {
		// The digest covers every file as it will be written except the
		// id itself.
		files[MetaData] = meta
		id = name + "-" + digest(files)[:16]
		meta = append([]byte("instance-id: "+yamlString(id)+"\n"), meta...)
	}
	files[MetaData] = meta
	return &Seed{Files: files, InstanceID: id}, nil
}

var instanceIDLine = regexp.MustCompile(`(?m)^instance-id:[ \t]*(.*?)[ \t]*$`)

var hostnameRE = regexp.MustCompile(`^([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$`)

func validHostname(s string) bool { return len(s) <= 253 && hostnameRE.MatchString(s) }

func generatedUserData(keys []string) []byte {
	var b bytes.Buffer
	b.WriteString("#cloud-config\n")
	if len(keys) > 0 {
		b.WriteString("ssh_authorized_keys:\n")
		for _, k := range keys {
			b.WriteString("  - " + yamlString(k) + "\n")
		}
	}
	return b.Bytes()
}

// yamlString quotes s for YAML: a JSON string is a YAML double-quoted
// scalar, so nothing in s can change the document's structure.
func yamlString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func readCapped(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	b, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(b) > MaxFileSize {
		return nil, fmt.Errorf("%s is larger than %d MiB; a seed file this big is a mistake (put large data on a disk)", path, MaxFileSize>>20)
	}
	return b, nil
}

// digest hashes file names and contents in name order.
func digest(files map[string][]byte) string {
	h := sha256.New()
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(h, "%s\x00%d\x00", n, len(files[n]))
		h.Write(files[n])
	}
	return hex.EncodeToString(h.Sum(nil))
}

// WriteISO writes the seed as an ISO 9660 image.
func (s *Seed) WriteISO(w io.Writer) error {
	iw, err := iso9660.NewWriter()
	if err != nil {
		return fmt.Errorf("cloud-init seed: %w", err)
	}
	defer iw.Cleanup()
	names := make([]string, 0, len(s.Files))
	for n := range s.Files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if err := iw.AddFile(bytes.NewReader(s.Files[n]), n); err != nil {
			return fmt.Errorf("cloud-init seed: adding %s: %w", n, err)
		}
	}
	if err := iw.WriteTo(w, VolumeID); err != nil {
		return fmt.Errorf("cloud-init seed: %w", err)
	}
	return nil
}

// Ensure makes path a seed image holding s: an image that already holds
// exactly s's files is kept (rebuilt reports false); otherwise a new one
// replaces it atomically.
func Ensure(path string, s *Seed) (rebuilt bool, err error) {
	if old, err := ReadISO(path); err == nil && maps.EqualFunc(old, s.Files, bytes.Equal) {
		return false, nil
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return false, fmt.Errorf("cloud-init seed: %w", err)
	}
	defer os.Remove(tmp.Name())
	w := bufio.NewWriter(tmp)
	err = s.WriteISO(w)
	if err == nil {
		err = w.Flush()
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return false, fmt.Errorf("cloud-init seed %s: %w", path, err)
	}
	return true, nil
}

// ReadISO returns the files in the root directory of the ISO 9660 image
// at path, by the names a guest sees (lower case, without ";1").
func ReadISO(path string) (map[string][]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	img, err := iso9660.OpenImage(f)
	if err != nil {
		return nil, err
	}
	root, err := img.RootDir()
	if err != nil {
		return nil, err
	}
	children, err := root.GetChildren()
	if err != nil {
		return nil, err
	}
	out := map[string][]byte{}
	for _, c := range children {
		if c.IsDir() {
			continue
		}
		if c.Size() > MaxFileSize {
			return nil, errors.New(c.Name() + " is too large")
		}
		b, err := io.ReadAll(c.Reader())
		if err != nil {
			return nil, err
		}
		out[strings.ToLower(strings.TrimSuffix(c.Name(), ";1"))] = b
	}
	return out, nil
}

// Label returns the volume identifier of the ISO 9660 image at path.
func Label(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	img, err := iso9660.OpenImage(f)
	if err != nil {
		return "", err
	}
	return img.Label()
}

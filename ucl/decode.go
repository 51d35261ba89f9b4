package ucl

// Unmarshal parses data and stores the result in v.
func Unmarshal(data []byte, v any) error {
	n, err := Parse(data, Options{})
	if err != nil {
		return err
	}
	if pa, ok := v.(*any); ok {
		*pa = n.Value()
		return nil
	}
	return n.Decode(v)
}

func (n *Node) Decode(v any) error { return nil }

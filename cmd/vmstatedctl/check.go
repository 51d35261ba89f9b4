package main

import "errors"

func cmdCheck(e *env, args []string) error {
	fs := e.newFlags("check")
	fs.String("c", "", "config directory")
	if _, err := e.parse(fs, args, 0, 0); err != nil {
		return err
	}
	return errors.New("check is not available in this build")
}

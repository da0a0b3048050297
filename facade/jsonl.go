package facade

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
)

// jsonLines appends JSON values to a file, one a line, and keeps the file within a size
// limit by renaming it to FILE.1 (replacing the previous one) when the next line would pass
// it: at most twice the limit is ever on disk. Not safe for concurrent use.
type jsonLines struct {
	path string
	f    *os.File
	size int64
}

func (j *jsonLines) write(v any, max int64) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encoding a line of %s: %w", j.path, err)
	}
	b = append(b, '\n')
	if j.f == nil {
		if err := j.open(); err != nil {
			return err
		}
	}
	if j.size > 0 && j.size+int64(len(b)) > max {
		if err := j.f.Close(); err != nil {
			return fmt.Errorf("rotating %s: %w", j.path, err)
		}
		j.f = nil
		if err := os.Rename(j.path, j.path+".1"); err != nil {
			return fmt.Errorf("rotating %s: %w", j.path, err)
		}
		if err := j.open(); err != nil {
			return err
		}
	}
	n, err := j.f.Write(b)
	j.size += int64(n)
	if err != nil {
		return fmt.Errorf("appending to %s: %w", j.path, err)
	}
	return nil
}

func (j *jsonLines) open() error {
	if err := os.MkdirAll(filepath.Dir(j.path), 0o755); err != nil {
		return fmt.Errorf("opening %s: %w", j.path, err)
	}
	f, err := os.OpenFile(j.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("opening %s: %w", j.path, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("opening %s: %w", j.path, err)
	}
	j.f, j.size = f, fi.Size()
	return nil
}

func (j *jsonLines) close() error {
	if j.f == nil {
		return nil
	}
	err := j.f.Close()
	j.f = nil
	return err
}

package store

import (
	"reflect"
	"testing"
)

func TestSplitStatements(t *testing.T) {
	sql := `-- a comment
CREATE TABLE a (id TEXT);

CREATE FUNCTION f() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- kept: inside the body
    PERFORM 1;

    RETURN NEW;
END;
$$;
INSERT INTO a (id)
    VALUES ('x;y');
SELECT 1`
	want := []string{
		"CREATE TABLE a (id TEXT);",
		"CREATE FUNCTION f() RETURNS trigger LANGUAGE plpgsql AS $$\nBEGIN\n    -- kept: inside the body\n    PERFORM 1;\n\n    RETURN NEW;\nEND;\n$$;",
		"INSERT INTO a (id)\n    VALUES ('x;y');",
		"SELECT 1",
	}
	if got := splitStatements(sql); !reflect.DeepEqual(got, want) {
		t.Errorf("got %q\nwant %q", got, want)
	}
}

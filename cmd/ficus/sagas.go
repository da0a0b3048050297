package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"gorm.io/gorm"

	"github.com/ficus-project/ficus/monolith/orders"
	"github.com/ficus-project/ficus/platform/config"
	"github.com/ficus-project/ficus/platform/fault"
	"github.com/ficus-project/ficus/platform/store"
)

// sagasCommand shows the order sagas and resumes stuck ones.
func sagasCommand() *command {
	return &command{
		name:    "sagas",
		summary: "the order sagas: list them by state, resume a stuck one",
		about: `Shows the order sagas (remote mode: the monolith places orders through a saga once inventory
or payments is an extracted service; docs/saga.md) and resumes the stuck ones: sagas whose
compensation kept failing past monolith.saga.compensation_attempts, parked until an operator
has mended what failed.

Both subcommands work on the monolith's database directly (monolith.database in
config.yaml), not through the monolith: they work while it is down, and a resumed saga is
taken up by the running monolith within a second (or when it next starts).`,
		examples: []string{"ficus sagas list -state stuck", "ficus sagas resume 01932c3e-5f7a-7c1e-9b7e-2f0d8a1c4e55"},
		subs:     []*command{sagasListCommand(), sagasResumeCommand()},
	}
}

// maxSagasPage bounds one page of ficus sagas list.
const maxSagasPage = 1000

// openSagaDB opens the monolith's database named by the config at path.
func openSagaDB(ctx context.Context, path string) (*gorm.DB, error) {
	cfg, err := config.Load(path)
	if err != nil {
		return nil, err
	}
	gdb, err := store.Open(ctx, cfg.Monolith.Database, store.Options{Resolve: cfg.Resolve, Modules: []string{orders.Module}})
	if err != nil {
		return nil, fmt.Errorf("opening the monolith's database: %w", err)
	}
	// A database the monolith never ran on has no saga table: nothing to show or resume.
	if err := orders.Migrate(ctx, gdb); err != nil {
		_ = store.Close(gdb)
		return nil, err
	}
	return gdb, nil
}

// sagasListCommand lists sagas.
func sagasListCommand() *command {
	var path, state, after string
	var limit int
	return &command{
		name:    "list",
		summary: "list the order sagas, oldest first, optionally of one state",
		about: `Lists the order sagas, oldest first: the order id, what the saga does (place or cancel), its
state (running, compensating, stuck, placed, cancelled), the step it is at with its attempts,
why it compensates, when it last changed and its last error. A count by state follows. With
-state only sagas in that state are listed; a page holds -limit sagas, and a full page says
how to ask for the next.`,
		examples: []string{"ficus sagas list", "ficus sagas list -state stuck", "ficus sagas list -limit 100 -after 01932c3e-5f7a-7c1e-9b7e-2f0d8a1c4e55"},
		flags: func(fs *flag.FlagSet) {
			configFlag(fs, &path)
			fs.StringVar(&state, "state", "", "only sagas in `STATE`: "+strings.Join(orders.SagaStates, ", "))
			fs.IntVar(&limit, "limit", 50, fmt.Sprintf("sagas per page (at most %d)", maxSagasPage))
			fs.StringVar(&after, "after", "", "start after the saga with this order `ID` (the next page)")
		},
		run: func(ctx context.Context, e env, _ []string) error {
			if state != "" && !slices.Contains(orders.SagaStates, state) {
				return usageError{"ficus sagas list", fmt.Sprintf("-state %q: want one of %s", state, strings.Join(orders.SagaStates, ", "))}
			}
			if limit < 1 || limit > maxSagasPage {
				return usageError{"ficus sagas list", fmt.Sprintf("-limit %d: want 1 to %d", limit, maxSagasPage)}
			}
			gdb, err := openSagaDB(ctx, path)
			if err != nil {
				return err
			}
			defer store.Close(gdb)
			sagas, err := orders.ListSagas(ctx, gdb, state, after, limit)
			if err != nil {
				return err
			}
			counts, err := orders.CountSagas(ctx, gdb)
			if err != nil {
				return err
			}
			writeSagas(e.stdout, sagas)
			writeSagaCounts(e.stdout, counts)
			if len(sagas) == limit {
				args := ""
				if state != "" {
					args = " -state " + state
				}
				fmt.Fprintf(e.stdout, "more: ficus sagas list%s -limit %d -after %s\n", args, limit, sagas[len(sagas)-1].ID)
			}
			return nil
		},
	}
}

func writeSagas(w io.Writer, sagas []orders.Saga) {
	if len(sagas) == 0 {
		fmt.Fprintln(w, "no sagas")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ORDER\tKIND\tSTATE\tSTEP\tATTEMPTS\tREASON\tUPDATED\tLAST ERROR")
	for _, sg := range sagas {
		step, attempts, lastErr := "-", "-", ""
		if st := focus(sg); st != nil {
			step, attempts, lastErr = st.Name, fmt.Sprint(st.Attempts), st.Error
		}
		if len(lastErr) > 120 {
			lastErr = lastErr[:120] + "…"
		}
		reason := "-"
		if sg.Reason != nil {
			reason = sg.Reason.Code
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", sg.ID, sg.Kind, sg.State, step, attempts, reason,
			sg.UpdatedAt.UTC().Format(time.RFC3339), lastErr)
	}
	_ = tw.Flush()
}

// focus is the step that says where a saga is: the one running, or the compensation a stuck
// saga is stuck at.
func focus(sg orders.Saga) *orders.SagaStep {
	if st := sg.Current(); st != nil {
		return st
	}
	return lastFailed(sg)
}

// lastFailed is the compensation a stuck saga is stuck at.
func lastFailed(sg orders.Saga) *orders.SagaStep {
	if sg.State != orders.SagaStuck {
		return nil
	}
	for i := len(sg.Steps) - 1; i >= 0; i-- {
		switch st := &sg.Steps[i]; st.Name {
		case orders.StepRefund, orders.StepRelease, orders.StepReturn:
			if st.Status == orders.StepFailed {
				return st
			}
		}
	}
	return nil
}

func writeSagaCounts(w io.Writer, counts map[string]int64) {
	var total int64
	var parts []string
	for _, st := range orders.SagaStates {
		if n := counts[st]; n > 0 {
			total += n
			parts = append(parts, fmt.Sprintf("%d %s", n, st))
		}
	}
	if total == 0 {
		return
	}
	fmt.Fprintf(w, "%d saga(s) in all: %s\n", total, strings.Join(parts, ", "))
	if counts[orders.SagaStuck] > 0 {
		fmt.Fprintln(w, "stuck sagas wait for you: mend what their last error names, then: ficus sagas resume ORDER")
	}
}

// sagasResumeCommand resumes a stuck saga.
func sagasResumeCommand() *command {
	var path string
	return &command{
		name:    "resume",
		args:    "ORDER",
		summary: "resume a stuck saga: its failed compensation is tried again",
		about: `Takes a stuck saga up again: the compensation it is stuck at gets a fresh set of attempts
(monolith.saga.compensation_attempts), from now. Mend what its last error names first (bring
the service back): a saga that fails again is stuck again. The running monolith takes it up
within a second; a stopped one, when it next starts. Only a stuck saga can be resumed.`,
		examples: []string{"ficus sagas resume 01932c3e-5f7a-7c1e-9b7e-2f0d8a1c4e55"},
		flags:    func(fs *flag.FlagSet) { configFlag(fs, &path) },
		nargs: func(args []string) error {
			if len(args) != 1 {
				return errors.New("takes one ORDER id (ficus sagas list -state stuck shows them)")
			}
			return nil
		},
		run: func(ctx context.Context, e env, args []string) error {
			gdb, err := openSagaDB(ctx, path)
			if err != nil {
				return err
			}
			defer store.Close(gdb)
			before, err := orders.GetSaga(ctx, gdb, args[0])
			if errors.Is(err, orders.ErrSagaNotFound) {
				return fmt.Errorf("no saga for order %s (ficus sagas list shows them)", args[0])
			}
			if err != nil {
				return err
			}
			sg, err := orders.ResumeSaga(ctx, gdb, args[0], time.Now())
			if fe, ok := fault.As(err); ok && fe.Code == orders.ErrNotStuck.Code {
				return fmt.Errorf("saga %s is %s, not stuck: only a stuck saga is resumed", args[0], before.State)
			}
			if err != nil {
				return err
			}
			at := "-"
			if st := sg.Current(); st != nil {
				at = st.Name
			}
			last := ""
			if st := lastFailed(before); st != nil {
				last = fmt.Sprintf(" (it was stuck at %s after %d attempts: %s)", st.Name, st.Attempts, st.Error)
			}
			fmt.Fprintf(e.stdout, "resumed saga %s at %s%s\nthe monolith takes it up within a second, or when it next starts; follow it with: ficus sagas list\n",
				sg.ID, at, last)
			return nil
		},
	}
}

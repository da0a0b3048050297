package db

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"gorm.io/gorm"
	"gorm.io/gorm/clause"

	"github.com/ficus-project/ficus/monolith/orders/internal/domain"
)

// ErrVersion is a saga saved over a version other than the one it was loaded at: someone
// else (another process, the payment event) moved it on meanwhile.
var ErrVersion = errors.New("the saga changed since it was read")

type sagaRow struct {
	ID         string `gorm:"primaryKey"`
	Kind       string
	RequestKey *string
	CustomerID string
	Request    string
	Lines      string
	TotalCents int64
	PaymentID  string
	State      string
	Step       string
	Steps      string
	Reason     string
	Version    int64
	Owner      string
	LeaseUntil time.Time
	NextAt     time.Time
	Deadline   time.Time
	CreatedAt  time.Time
	UpdatedAt  time.Time
	FinishedAt *time.Time
}

func (sagaRow) TableName() string { return "orders_sagas" }

func fromSaga(s domain.Saga) (sagaRow, error) {
	r := sagaRow{ID: s.ID, Kind: s.Kind, CustomerID: s.CustomerID, TotalCents: s.TotalCents, PaymentID: s.PaymentID,
		State: s.State, Version: s.Version, Owner: s.Owner, LeaseUntil: s.LeaseUntil.UTC(), NextAt: s.NextAt.UTC(),
		Deadline: s.Deadline.UTC(), CreatedAt: s.CreatedAt.UTC(), UpdatedAt: s.UpdatedAt.UTC(), FinishedAt: utcPtr(s.FinishedAt)}
	if s.RequestKey != "" {
		k := s.RequestKey
		r.RequestKey = &k
	}
	if st := s.Current(); st != nil {
		r.Step = st.Name
	}
	var err error
	if r.Request, err = marshal(nonNil(s.Request)); err != nil {
		return r, err
	}
	if r.Lines, err = marshal(nonNil(s.Lines)); err != nil {
		return r, err
	}
	if r.Steps, err = marshal(nonNil(s.Steps)); err != nil {
		return r, err
	}
	if s.Reason != nil {
		if r.Reason, err = marshal(s.Reason); err != nil {
			return r, err
		}
	}
	return r, nil
}

func toSaga(r sagaRow) (domain.Saga, error) {
	s := domain.Saga{ID: r.ID, Kind: r.Kind, CustomerID: r.CustomerID, TotalCents: r.TotalCents, PaymentID: r.PaymentID,
		State: r.State, Version: r.Version, Owner: r.Owner, LeaseUntil: r.LeaseUntil.UTC(), NextAt: r.NextAt.UTC(),
		Deadline: r.Deadline.UTC(), CreatedAt: r.CreatedAt.UTC(), UpdatedAt: r.UpdatedAt.UTC(), FinishedAt: utcPtr(r.FinishedAt)}
	if r.RequestKey != nil {
		s.RequestKey = *r.RequestKey
	}
	if err := json.Unmarshal([]byte(r.Request), &s.Request); err != nil {
		return s, fmt.Errorf("decoding saga %s's request: %w", r.ID, err)
	}
	if err := json.Unmarshal([]byte(r.Lines), &s.Lines); err != nil {
		return s, fmt.Errorf("decoding saga %s's lines: %w", r.ID, err)
	}
	if err := json.Unmarshal([]byte(r.Steps), &s.Steps); err != nil {
		return s, fmt.Errorf("decoding saga %s's steps: %w", r.ID, err)
	}
	if r.Reason != "" {
		s.Reason = new(domain.Reason)
		if err := json.Unmarshal([]byte(r.Reason), s.Reason); err != nil {
			return s, fmt.Errorf("decoding saga %s's reason: %w", r.ID, err)
		}
	}
	return s, nil
}

func marshal(v any) (string, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return "", fmt.Errorf("encoding saga: %w", err)
	}
	return string(b), nil
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

func utcPtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}

// InsertSaga stores a new saga.
func InsertSaga(tx *gorm.DB, s domain.Saga) error {
	r, err := fromSaga(s)
	if err != nil {
		return err
	}
	if err := tx.Create(&r).Error; err != nil {
		return fmt.Errorf("inserting saga: %w", err)
	}
	return nil
}

// InsertSagaOnce stores a new saga unless one with the same request key exists; it reports
// whether it stored it. A saga without a request key is always stored.
func InsertSagaOnce(tx *gorm.DB, s domain.Saga) (bool, error) {
	r, err := fromSaga(s)
	if err != nil {
		return false, err
	}
	res := tx.Clauses(clause.OnConflict{Columns: []clause.Column{{Name: "request_key"}}, DoNothing: true}).Create(&r)
	if res.Error != nil {
		return false, fmt.Errorf("inserting saga: %w", res.Error)
	}
	return res.RowsAffected == 1, nil
}

// GetSaga loads a saga; domain.ErrNotFound when the order has none.
func GetSaga(tx *gorm.DB, id string) (domain.Saga, error) {
	var r sagaRow
	err := tx.Where("id = ?", id).Take(&r).Error
	if errors.Is(err, gorm.ErrRecordNotFound) {
		return domain.Saga{}, domain.ErrNotFound
	}
	if err != nil {
		return domain.Saga{}, fmt.Errorf("loading saga: %w", err)
	}
	return toSaga(r)
}

// SagaByKey finds the saga a request with key started, if any.
func SagaByKey(tx *gorm.DB, key string) (domain.Saga, bool, error) {
	var rows []sagaRow
	if err := tx.Where("request_key = ?", key).Limit(1).Find(&rows).Error; err != nil {
		return domain.Saga{}, false, fmt.Errorf("finding saga by request key: %w", err)
	}
	if len(rows) == 0 {
		return domain.Saga{}, false, nil
	}
	s, err := toSaga(rows[0])
	return s, err == nil, err
}

// ForgetRequestKey detaches a saga from the request that started it, so that the request may
// start another (its first try failed with a 5xx, which does not burn an Idempotency-Key).
func ForgetRequestKey(tx *gorm.DB, id string) error {
	if err := tx.Model(&sagaRow{}).Where("id = ?", id).Update("request_key", nil).Error; err != nil {
		return fmt.Errorf("forgetting saga %s's request key: %w", id, err)
	}
	return nil
}

// SaveSaga stores s over the version prev it was loaded at; ErrVersion when the saga moved
// on since. s.Version must already be prev+1.
func SaveSaga(tx *gorm.DB, s domain.Saga, prev int64) error {
	r, err := fromSaga(s)
	if err != nil {
		return err
	}
	res := tx.Exec(`UPDATE orders_sagas SET kind = ?, customer_id = ?, request = ?, lines = ?, total_cents = ?,
		payment_id = ?, state = ?, step = ?, steps = ?, reason = ?, version = ?, owner = ?, lease_until = ?, next_at = ?,
		deadline = ?, updated_at = ?, finished_at = ? WHERE id = ? AND version = ?`,
		r.Kind, r.CustomerID, r.Request, r.Lines, r.TotalCents, r.PaymentID, r.State, r.Step, r.Steps, r.Reason,
		r.Version, r.Owner, r.LeaseUntil, r.NextAt, r.Deadline, r.UpdatedAt, r.FinishedAt, s.ID, prev)
	if res.Error != nil {
		return fmt.Errorf("saving saga %s: %w", s.ID, res.Error)
	}
	if res.RowsAffected != 1 {
		return fmt.Errorf("saving saga %s at version %d: %w", s.ID, prev, ErrVersion)
	}
	return nil
}

// DueSagas returns up to limit sagas, soonest due first, that still have work whose time has
// come at now and that owner may drive: its own, or any whose lease has run out.
func DueSagas(tx *gorm.DB, now time.Time, owner string, limit int) ([]string, error) {
	var ids []string
	err := tx.Model(&sagaRow{}).
		Where("state IN ? AND next_at <= ? AND (owner = ? OR lease_until <= ?)",
			[]string{domain.SagaRunning, domain.SagaCompensating}, now.UTC(), owner, now.UTC()).
		Order("next_at").Limit(limit).Pluck("id", &ids).Error
	if err != nil {
		return nil, fmt.Errorf("finding sagas due: %w", err)
	}
	return ids, nil
}

// ListSagas returns up to limit sagas in state (any state when empty), oldest first (by id,
// a UUIDv7), after the one with id afterID ("" for the first page).
func ListSagas(tx *gorm.DB, state, afterID string, limit int) ([]domain.Saga, error) {
	q := tx.Model(&sagaRow{})
	if state != "" {
		q = q.Where("state = ?", state)
	}
	if afterID != "" {
		q = q.Where("id > ?", afterID)
	}
	var rows []sagaRow
	if err := q.Order("id").Limit(limit).Find(&rows).Error; err != nil {
		return nil, fmt.Errorf("listing sagas: %w", err)
	}
	out := make([]domain.Saga, 0, len(rows))
	for _, r := range rows {
		s, err := toSaga(r)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

// CountSagas returns how many sagas are in each state.
func CountSagas(tx *gorm.DB) (map[string]int64, error) {
	var rows []struct {
		State string
		N     int64
	}
	if err := tx.Model(&sagaRow{}).Select("state, COUNT(*) AS n").Group("state").Scan(&rows).Error; err != nil {
		return nil, fmt.Errorf("counting sagas: %w", err)
	}
	out := make(map[string]int64, len(rows))
	for _, r := range rows {
		out[r.State] = r.N
	}
	return out, nil
}

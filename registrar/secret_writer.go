package registrar

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	fleetv1 "github.com/fleetbridge/fleetbridge/api/v1alpha1"
	"github.com/fleetbridge/fleetbridge/internal/owned"
)

// secretWriter owns every write fleetbridge makes to a Secret on the management cluster: it applies a
// desired Secret unless the cache shows it current, creates without ever taking over someone else's
// Secret, repairs drift, and deletes. It remembers each write, so the watch event the write causes and a
// cache still behind it cost no second write, while a Secret changed or deleted after the cache showed
// the write is written back.
type secretWriter struct {
	client client.Client
	// reader reads a Secret's live metadata when a create finds one the cache did not show.
	reader client.Reader
	now    func() time.Time

	mu       sync.Mutex
	last     map[types.NamespacedName]writeRecord
	inFlight map[types.NamespacedName]string // hash of the apply configuration being sent
	// observed is the version of a Secret whose watch event matched the write in flight.
	observed map[types.NamespacedName]string
}

// writeRecord is the last write to one Secret.
type writeRecord struct {
	hash     string    // of the apply configuration sent
	replaced string    // resourceVersion the write replaced ("" when it created the Secret)
	written  string    // resourceVersion the write produced
	uid      types.UID // of the Secret written
	at       time.Time
	// seen: the cache has shown the written version since, so a cache without it is not lagging.
	seen bool
}

// cacheLag bounds how long a cache that still shows what a write replaced is taken to be behind it; past
// that, the Secret is written again (its events may have been lost across a relist).
const cacheLag = 10 * time.Second

// writeOutcome says what a write did.
type writeOutcome string

const (
	writeUnchanged writeOutcome = ""
	writeCreated   writeOutcome = "create"
	writeUpdated   writeOutcome = "update"
	// writeRepaired: the Secret drifted from what fleetbridge last wrote, and was written back.
	writeRepaired writeOutcome = "repair"
)

func newSecretWriter(c client.Client, reader client.Reader, now func() time.Time) *secretWriter {
	return &secretWriter{client: c, reader: reader, now: now,
		last: map[types.NamespacedName]writeRecord{}, inFlight: map[types.NamespacedName]string{}, observed: map[types.NamespacedName]string{}}
}

// applyConfigOf is the server-side apply configuration of a Secret's labels, annotations, type and data:
// what fleetbridge sends for a desired Secret, and what an observed Secret holds in the same shape.
func applyConfigOf(s *corev1.Secret) *corev1ac.SecretApplyConfiguration {
	ac := corev1ac.Secret(s.Name, s.Namespace).WithLabels(s.Labels).WithData(s.Data)
	typ := s.Type
	if typ == "" {
		typ = corev1.SecretTypeOpaque
	}
	ac = ac.WithType(typ)
	if len(s.Annotations) > 0 {
		ac = ac.WithAnnotations(s.Annotations)
	}
	return ac
}

// hashOf digests an apply configuration (encoding/json sorts map keys, so equal content hashes equal).
func hashOf(ac *corev1ac.SecretApplyConfiguration) string {
	raw, err := json.Marshal(ac)
	if err != nil {
		return ""
	}
	sum := sha256.Sum256(raw)
	return hex.EncodeToString(sum[:])
}

// owner identifies whose Secret a write is for; a Secret fleetbridge owns for anyone else is refused.
type owner struct {
	registration string
	cluster      types.NamespacedName
}

// write makes the Secret hold desired. existing is the cache's copy (nil when the cache has none);
// rotated says desired carries a renewed token (for the count of writes by cause).
func (w *secretWriter) write(ctx context.Context, o owner, existing, desired *corev1.Secret, rotated bool) (writeOutcome, error) {
	key := client.ObjectKeyFromObject(desired)
	w.mu.Lock()
	rec := w.last[key]
	if existing != nil && rec.written != "" && existing.ResourceVersion == rec.written {
		rec.seen = true
		w.last[key] = rec
	}
	w.mu.Unlock()
	if existing != nil {
		if err := ownedFor(o, existing); err != nil {
			return writeUnchanged, err
		}
	}
	if secretUpToDate(existing, desired) {
		return writeUnchanged, nil
	}
	ac := applyConfigOf(desired)
	hash := hashOf(ac)
	seenVersion := ""
	if existing != nil {
		seenVersion = existing.ResourceVersion
	}
	if rec.hash == hash && !rec.seen && rec.replaced == seenVersion && w.now().Sub(rec.at) < cacheLag {
		// The cache still shows what the last identical write replaced.
		return writeUnchanged, nil
	}
	// Someone else changed or deleted what this controller last wrote: the write repairs it.
	drifted := rec.hash == hash && (existing != nil && existing.ResourceVersion != rec.written && existing.ResourceVersion != rec.replaced ||
		existing == nil && (rec.seen || w.now().Sub(rec.at) >= cacheLag))
	outcome := writeUpdated
	switch {
	case drifted:
		outcome = writeRepaired
	case existing == nil:
		outcome = writeCreated
	}
	create := existing == nil
	if create && rec.uid != "" {
		// This controller wrote the Secret, and the cache no longer shows it: deleted, or its labels
		// stripped (which takes it out of the cache). One read tells which, so the repair is one write.
		live, err := w.liveOwned(ctx, o, key, rec.uid)
		switch {
		case err == nil:
			create, seenVersion = false, live.ResourceVersion
		case !apierrors.IsNotFound(err):
			return writeUnchanged, err
		}
	}

	// The watch event of this write may reach isOwnWrite before the apply returns.
	w.mu.Lock()
	w.inFlight[key] = hash
	delete(w.observed, key)
	w.mu.Unlock()
	defer func() {
		w.mu.Lock()
		delete(w.inFlight, key)
		delete(w.observed, key)
		w.mu.Unlock()
	}()
	if !create && existing != nil && createdFields(existing, desired) {
		if err := w.adoptCreated(ctx, key, desired.Labels[owned.LabelOutput]); err != nil {
			return writeUnchanged, failure(fleetv1.ReasonWriteFailed, "write Secret %s/%s: %s", desired.Namespace, desired.Name, apiReason(err))
		}
	}
	written, uid, err := w.send(ctx, desired, ac, create)
	if create && (apierrors.IsAlreadyExists(err) || apierrors.IsConflict(err)) {
		live, ownErr := w.liveOwned(ctx, o, key, rec.uid)
		if ownErr != nil {
			return writeUnchanged, ownErr
		}
		seenVersion = live.ResourceVersion
		if outcome == writeCreated {
			outcome = writeUpdated
		}
		create = false
		written, uid, err = w.send(ctx, desired, applyConfigOf(desired), false)
	}
	if err != nil {
		return writeUnchanged, failure(fleetv1.ReasonWriteFailed, "write Secret %s/%s: %s", desired.Namespace, desired.Name, apiReason(err))
	}
	w.mu.Lock()
	w.last[key] = writeRecord{hash: hash, replaced: seenVersion, written: written, uid: uid, at: w.now(),
		seen: w.observed[key] == written}
	w.mu.Unlock()
	operation, cause := "update", causeChange
	switch {
	case outcome == writeRepaired:
		cause = causeRepair
	case outcome == writeCreated:
		cause = causeCreate
	case rotated:
		cause = causeRotation
	}
	if create {
		operation = "create"
	}
	countWrite(desired.Labels[owned.LabelOutput], operation, cause)
	return outcome, nil
}

// send writes desired. A Secret that does not exist yet is created: a plain create is create-only by
// nature (AlreadyExists when someone's Secret has the name, which is never taken over) and costs the API
// server less than a server-side apply. Every later write server-side applies exactly the fields of ac
// as fleetbridge's field manager, taking them back from anyone who changed them and dropping the ones
// fleetbridge no longer wants.
func (w *secretWriter) send(ctx context.Context, desired *corev1.Secret, ac *corev1ac.SecretApplyConfiguration, create bool) (string, types.UID, error) {
	if create {
		s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: desired.Namespace, Name: desired.Name,
			Labels: desired.Labels, Annotations: desired.Annotations}, Type: desired.Type, Data: desired.Data}
		if s.Type == "" {
			s.Type = corev1.SecretTypeOpaque
		}
		if err := w.client.Create(ctx, s, client.FieldOwner(owned.FieldManager)); err != nil {
			return "", "", err
		}
		return s.ResourceVersion, s.UID, nil
	}
	if err := w.client.Apply(ctx, ac, client.FieldOwner(owned.FieldManager), client.ForceOwnership); err != nil {
		return "", "", err
	}
	return ptr.Deref(ac.ResourceVersion, ""), ptr.Deref(ac.UID, ""), nil
}

// adoptCreated folds the managedFields entry of the create that first wrote a Secret into fleetbridge's
// server-side apply entry, so the apply that follows drops what fleetbridge no longer wants. It changes
// no field, only who owns them, and only a Secret's first write that drops a key needs it (createdFields).
// Whoever can write the Secret can write a managedFields entry in fleetbridge's name too; such an entry
// can only make fleetbridge drop, from that same Secret, a key its writer could remove directly, so it
// is used as it is.
func (w *secretWriter) adoptCreated(ctx context.Context, key types.NamespacedName, output string) error {
	live := newPartialSecret()
	if err := w.reader.Get(ctx, key, live); err != nil {
		return err
	}
	var created *metav1.ManagedFieldsEntry
	entries := make([]metav1.ManagedFieldsEntry, 0, len(live.ManagedFields))
	for i, e := range live.ManagedFields {
		if e.Manager == owned.FieldManager && e.Operation == metav1.ManagedFieldsOperationUpdate {
			created = &live.ManagedFields[i]
			continue
		}
		entries = append(entries, e)
	}
	if created == nil || created.FieldsV1 == nil {
		return nil
	}
	merged := false
	for i, e := range entries {
		if e.Manager != owned.FieldManager || e.Operation != metav1.ManagedFieldsOperationApply || e.FieldsV1 == nil {
			continue
		}
		var a, b map[string]any
		if err := json.Unmarshal(e.FieldsV1.Raw, &a); err != nil {
			return err
		}
		if err := json.Unmarshal(created.FieldsV1.Raw, &b); err != nil {
			return err
		}
		raw, err := json.Marshal(mergeFieldSets(a, b))
		if err != nil {
			return err
		}
		entries[i].FieldsV1 = &metav1.FieldsV1{Raw: raw}
		merged = true
	}
	if !merged {
		entries = append(entries, metav1.ManagedFieldsEntry{Manager: owned.FieldManager, Operation: metav1.ManagedFieldsOperationApply,
			APIVersion: "v1", FieldsType: "FieldsV1", FieldsV1: created.FieldsV1, Time: created.Time})
	}
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"resourceVersion": live.ResourceVersion, "managedFields": entries}})
	if err != nil {
		return err
	}
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: key.Namespace, Name: key.Name}}
	if err := w.client.Patch(ctx, s, client.RawPatch(types.MergePatchType, patch), client.FieldOwner(owned.FieldManager)); err != nil {
		return err
	}
	countWrite(output, "patch", causeChange)
	return nil
}

// liveOwned reads the live metadata of a Secret a create found, and returns it when it is fleetbridge's
// for this owner: its ownership labels say so, or its labels were stripped but it is the very Secret this
// process wrote (its UID). Anything else, managedFields included (anyone can write them), does not make
// a Secret fleetbridge's: it is a Conflict.
func (w *secretWriter) liveOwned(ctx context.Context, o owner, key types.NamespacedName, wroteUID types.UID) (*metav1.PartialObjectMetadata, error) {
	live := newPartialSecret()
	if err := w.reader.Get(ctx, key, live); err != nil {
		return nil, &reasonError{reason: fleetv1.ReasonWriteFailed, msg: fmt.Sprintf("read Secret %s/%s: %s", key.Namespace, key.Name, apiReason(err)), cause: err}
	}
	if owned.IsOwned(live.Labels) {
		return live, ownedFor(o, live)
	}
	if wroteUID != "" && live.UID == wroteUID {
		return live, nil
	}
	return nil, failure(fleetv1.ReasonConflict, "Secret %s/%s exists and is not managed by fleetbridge", key.Namespace, key.Name)
}

// ownedFor refuses a Secret that is not fleetbridge's for this owner. The message names only the
// reader's own objects: never the other Cluster or Registration a Secret was written for.
func ownedFor(o owner, s metav1.Object) error {
	l := s.GetLabels()
	if !owned.IsOwned(l) {
		return failure(fleetv1.ReasonConflict, "Secret %s/%s exists and is not managed by fleetbridge", s.GetNamespace(), s.GetName())
	}
	if l[owned.LabelRegistration] != o.registration || l[owned.LabelClusterNamespace] != o.cluster.Namespace || l[owned.LabelClusterName] != o.cluster.Name {
		return failure(fleetv1.ReasonConflict, "Secret %s/%s is managed by fleetbridge for another cluster or Registration", s.GetNamespace(), s.GetName())
	}
	return nil
}

// delete removes an owned Secret (only the version it was given: a UID precondition) and forgets it.
func (w *secretWriter) delete(ctx context.Context, s *corev1.Secret) error {
	if !owned.IsOwned(s.Labels) {
		return fmt.Errorf("refusing to delete Secret %s/%s: not managed by fleetbridge", s.Namespace, s.Name)
	}
	w.forget(client.ObjectKeyFromObject(s))
	err := w.client.Delete(ctx, s, client.Preconditions{UID: &s.UID})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		return fmt.Errorf("delete Secret %s/%s: %w", s.Namespace, s.Name, err)
	}
	if err == nil {
		countWrite(s.Labels[owned.LabelOutput], "delete", causeRemove)
	}
	return nil
}

func (w *secretWriter) forget(key types.NamespacedName) {
	w.mu.Lock()
	delete(w.last, key)
	w.mu.Unlock()
}

// isOwnWrite says whether an observed Secret is the version the last write produced, or holds exactly
// what the write in flight applies: its watch event needs no reconcile, since the reconcile that wrote
// it already made it current. Seeing the written version also marks the cache caught up.
func (w *secretWriter) isOwnWrite(obj client.Object) bool {
	key := client.ObjectKeyFromObject(obj)
	w.mu.Lock()
	defer w.mu.Unlock()
	rec, ok := w.last[key]
	if ok && rec.written != "" && rec.written == obj.GetResourceVersion() {
		rec.seen = true
		w.last[key] = rec
		return true
	}
	inFlight, writing := w.inFlight[key]
	s, isSecret := obj.(*corev1.Secret)
	if !writing || !isSecret {
		return false
	}
	if hashOf(applyConfigOf(s)) != inFlight {
		return false
	}
	w.observed[key] = obj.GetResourceVersion()
	return true
}

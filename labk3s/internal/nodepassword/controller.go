package nodepassword

import (
	"context"
	"time"

	"github.com/sirupsen/logrus"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// OrphanAge: a node-password Secret with no Node is deleted once it is this
// old (k3s: a node asks for its certificate well before its Node exists).
const OrphanAge = 10 * time.Minute

// RunController deletes a node's password Secret when its Node is deleted,
// as k3s's servers do (so `kubectl delete node` lets a machine join again
// under that name), and, once a minute, Secrets of names that have no Node
// and are older than OrphanAge (a deletion no server saw). Every server
// runs it; deleting twice is harmless.
func RunController(ctx context.Context, cs kubernetes.Interface) {
	factory := informers.NewSharedInformerFactory(cs, 0)
	nodes := factory.Core().V1().Nodes().Informer()
	_, err := nodes.AddEventHandler(cache.ResourceEventHandlerFuncs{
		DeleteFunc: func(obj interface{}) {
			name := ""
			switch n := obj.(type) {
			case *corev1.Node:
				name = n.Name
			case cache.DeletedFinalStateUnknown:
				if node, ok := n.Obj.(*corev1.Node); ok {
					name = node.Name
				}
			}
			if name == "" {
				return
			}
			err := cs.CoreV1().Secrets(metav1.NamespaceSystem).Delete(ctx, SecretName(name), metav1.DeleteOptions{})
			switch {
			case err == nil:
				logrus.Infof("Node %s deleted: removed its node-password secret %s", name, SecretName(name))
			case apierrors.IsNotFound(err):
			default:
				logrus.Warnf("Unable to remove node password of deleted node %s: %v", name, err)
			}
		},
	})
	if err != nil {
		logrus.Errorf("node-password controller: %v", err)
		return
	}
	factory.Start(ctx.Done())
	go func() {
		t := time.NewTicker(time.Minute)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			if nodes.HasSynced() {
				sweepOrphans(ctx, cs, nodes.GetStore())
			}
		}
	}()
}

func sweepOrphans(ctx context.Context, cs kubernetes.Interface, nodes cache.Store) {
	have := map[string]bool{}
	for _, k := range nodes.ListKeys() {
		have[SecretName(k)] = true
	}
	secrets := cs.CoreV1().Secrets(metav1.NamespaceSystem)
	list, err := secrets.List(ctx, metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("type", string(SecretType)).String()})
	if err != nil {
		return
	}
	cutoff := time.Now().Add(-OrphanAge)
	for i := range list.Items {
		s := &list.Items[i]
		if have[s.Name] || s.CreationTimestamp.Time.After(cutoff) {
			continue
		}
		uid := s.UID
		if err := secrets.Delete(ctx, s.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}}); err == nil {
			logrus.Warnf("Deleted orphaned node-password secret %s created %s", s.Name, s.CreationTimestamp)
		}
	}
}

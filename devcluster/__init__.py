"""A real Kubernetes control plane for the tests: etcd, kube-apiserver, kube-controller-manager
and kube-scheduler built from source (hack/build-cluster-bin.sh), plus a node agent that plays
the kubelet and really runs pods of the project's own image. pytest fixtures in fixtures.py;
`python -m devcluster up --dir DIR` / `down --dir DIR` outside pytest."""

"""The local Kubernetes cluster of the tests, the demo and the benchmarks: etcd, kube-apiserver,
kube-controller-manager and kube-scheduler, and a real node (kubelet, kube-proxy, containerd,
runc, CNI), all built from source (hack/build-cluster-bin.sh), running images built from the
project's Dockerfile (images/). pytest fixtures in fixtures.py; `python -m devcluster up --dir DIR`
/ `down --dir DIR` outside pytest."""
